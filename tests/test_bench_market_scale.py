"""benchmarks/bench_market_scale.py at tiny sizes (--quick), so the Market-scale rehearsal keeps working."""

import importlib

import pytest
import torch
from helpers import PROJECT_ROOT

PHASES = ["synthetic data", "cache build", "training", "feature extraction", "ranking", "re-ranking", "attack"]


@pytest.fixture
def bench(monkeypatch):
    """The script as a module (it imports its neighbours in benchmarks/)."""
    monkeypatch.syspath_prepend(str(PROJECT_ROOT / "benchmarks"))
    return importlib.import_module("bench_market_scale")


def test_peak_memory_is_measured_per_phase(bench):
    _, _, large = bench.measured(lambda: float(torch.ones(50_000_000).sum()))  # 200 MB, freed at the end
    _, _, small = bench.measured(lambda: None)
    assert large - small > 0.15


@pytest.mark.slow  # about 15 s: a benchmark's self-test, run by `make test-slow`
def test_quick_run_prints_every_phase_beside_its_bound(bench, capsys):
    phases = bench.main(["--quick"])
    out = capsys.readouterr().out
    assert [phase.name for phase in phases] == PHASES
    assert "| phase | what ran | seconds | peak memory (GB) | compute bound | time / bound | target |" in out
    for phase in phases:
        assert f"| {phase.name} | {phase.work} | " in out
        assert phase.seconds >= 0 and 0 < phase.peak_gb < bench.TARGET_PEAK_GB
    assert {phase.name: phase.ratio > 0 for phase in phases if phase.ratio is not None} == {
        "cache build": True,
        "training": True,
        "feature extraction": True,
    }
    # ranking and re-ranking at the whole (2%) test set's size, from the features of every k-th image
    ranked = {phase.name: phase.work for phase in phases}
    assert "67 x 318" in ranked["ranking"] and "67 x 318" in ranked["re-ranking"]
    assert "attack table: ifgsm sma eps 8: mAP" in out
    assert "projection: 60 epochs of 259 images on a GPU whose plain loop trains 3800 images/s" in out
