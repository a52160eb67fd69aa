"""A study's training runs are composed and checked before any starts (src/study.py --dry-run), a lab's own
regularizer (tests/plugins/lab_methods.py) included; at tiny size such a study runs (slow)."""

import json
import subprocess

import pytest
from helpers import LAB_METHODS, PROJECT_ROOT, TINY_SCALE, entry_point, with_lab_methods

from lfm.errors import InputError
from lfm.study.config_check import check_training_runs, distinct_training_runs
from lfm.study.spec import load_study

NOISE = "+model.regularizers.noise={_target_:lab_methods.ChannelNoise,after:conv1,std:0.3}"
TINY = [f"data.synthetic.scale={TINY_SCALE}", "data.image_size=[64,32]", "data.val_ids=3", "debug=fast"]


def study_file(tmp_path, noise: str = NOISE):
    path = tmp_path / "lab.yaml"
    path.write_text(
        json.dumps(
            {
                "name": "lab",
                "seeds": [0],
                "baseline": "baseline",
                "methods": {
                    "baseline": ["experiment=baseline_resnet18_synthetic"],
                    "lfm": ["experiment=lfm_resnet18_synthetic"],
                    "noise": ["experiment=baseline_resnet18_synthetic", noise],
                },
                "tuning": {"seed": 5, "candidates": {"noise": [["model.regularizers.noise.std=0.1"]]}},
                "domains": [{"train": "synthetic_market", "cross": [], "attacked": []}],
                "train_overrides": [*TINY, f"paths.data_dir={tmp_path / 'data'}"],
                "eval_overrides": [f"paths.data_dir={tmp_path / 'data'}", "logger=csv"],
                "claims": [{"text": "Noise beats LFM", "question": "in_domain", "method": "noise", "reference": "lfm"}],
            }
        )
    )
    return path


def test_every_distinct_training_run_is_checked(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(LAB_METHODS))
    spec = load_study(str(study_file(tmp_path)))
    keys = [step.key for step in distinct_training_runs(spec)]
    assert keys == [
        "tune/noise/candidate0",
        "tune/noise/candidate1",
        "synthetic_market/baseline/seed0/train",
        "synthetic_market/lfm/seed0/train",
        "synthetic_market/noise/seed0/train",
    ]
    assert check_training_runs(spec) == 5


@pytest.mark.parametrize(
    ("noise", "fragment"),
    [
        (NOISE.replace("ChannelNoise", "ChannelNoize"), "tune/noise/candidate0: model.regularizers.noise._target_"),
        (NOISE.replace("std:", "sigma:"), "model.regularizers.noise: lab_methods.ChannelNoise does not take"),
        (NOISE.replace("+model", "model"), "tune/noise/candidate0: Hydra rejects its overrides"),
    ],
)
def test_a_bad_method_fails_the_dry_run_naming_the_file_step_and_key(tmp_path, monkeypatch, noise, fragment):
    monkeypatch.syspath_prepend(str(LAB_METHODS))
    spec = load_study(str(study_file(tmp_path, noise)))
    with pytest.raises(InputError, match=fragment) as error:
        check_training_runs(spec)
    assert str(error.value).startswith(str(spec.path))
    assert not (tmp_path / "data").exists()


@pytest.mark.slow
def test_a_study_of_the_labs_regularizer_against_lfm_runs_at_tiny_size(tmp_path):
    out_dir = tmp_path / "out"
    command, env = entry_point("study.py", str(study_file(tmp_path)), "--out", str(out_dir), "--jobs", "2")
    env = with_lab_methods(env)
    dry = subprocess.run([*command, "--dry-run"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr[-3000:]
    result = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = (out_dir / "report.md").read_text()
    assert "Noise beats LFM" in report
    trained = out_dir / "runs" / "synthetic_market" / "noise" / "seed0" / "train" / "config.yaml"
    assert "lab_methods.ChannelNoise" in trained.read_text()
