"""Local Feature Masking (LFM): train, compare, sweep and attack CNNs with LFM.

The package in layers, each using only those above it:
- `errors`: the one exception type for bad user input; `targets`: objects built from config
  entries with `_target_` (imported here: it registers the config resolver `lfm.name`).
- `masking`: the LFM op (`local_feature_masking`) and layer (`LocalFeatureMasking`).
- `data`, `models`, `metrics`, `attacks`: datasets and loaders; backbones, heads, where a
  regularizer goes (`models.insertion`) and the LightningModules; re-ID and classification
  metrics; adversarial attacks and the robustness evaluation.
- `runs`: one run, start to finish (train, eval, outputs, callbacks, seeds).
- `jobs`, `sweeps`, `study`: many runs: executors, sweep files, the comparison study.
- `analysis`: reading run outputs for notebooks and reports (tables, inspection, plots, demo).
"""

import lfm.targets  # noqa: F401  (registers the resolver `lfm.name` used in conf/*.yaml)

__version__ = "0.1.0"
