"""--dry-run of src/sweep.py and src/study.py checks the job options as a real run does, and runs nothing."""

import importlib.util
import sys

import pytest
from helpers import PROJECT_ROOT

from lfm.study.spec import load_study, study_steps, tuning_steps
from lfm.sweeps.runs import prepare_sweep

SWEEP_FILE = PROJECT_ROOT / "conf" / "sweep" / "demo.yaml"
ARGUMENTS = {"sweep": [str(SWEEP_FILE)], "study": ["embedded"]}


def main_of(script: str, monkeypatch, capsys, *options: str) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of src/<script>.py with `options`, run in this process (a new process
    costs seconds of imports), on a machine with no GPU to share."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setattr(sys, "argv", [f"src/{script}.py", *ARGUMENTS[script], *options])
    spec = importlib.util.spec_from_file_location(f"{script}_entry_point", PROJECT_ROOT / "src" / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    status = module.main()
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.parametrize("script", ["sweep", "study"])
@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--jobs", "0"), "--jobs must be at least 1, got 0"),
        (("--jobs", "-1"), "--jobs must be at least 1, got -1"),
        (("--threads-per-job", "0"), "--threads-per-job must be at least 1, got 0"),
        (("--partition", "gpu"), "--partition goes with --executor slurm"),
    ],
)
def test_a_dry_run_refuses_the_job_options_a_real_run_refuses(script, options, message, tmp_path, monkeypatch, capsys):
    out = ("--out", str(tmp_path / "out"))
    real = main_of(script, monkeypatch, capsys, *out, *options)
    dry = main_of(script, monkeypatch, capsys, *out, *options, "--dry-run")
    assert dry == real == (2, "", f"error: {message}\n")
    assert not (tmp_path / "out").exists()


def test_a_valid_dry_run_prints_each_run_of_the_sweep(tmp_path, monkeypatch, capsys):
    options = ("--out", str(tmp_path / "out"), "--jobs", "2", "--threads-per-job", "1", "--dry-run")
    status, out, err = main_of("sweep", monkeypatch, capsys, *options)
    lines = out.splitlines()
    assert (status, err) == (0, "")
    assert len(lines) == len(prepare_sweep(SWEEP_FILE).points) > 1 and all("src/train.py" in line for line in lines)
    assert not (tmp_path / "out").exists()


def test_a_valid_dry_run_lists_each_step_of_the_study(tmp_path, monkeypatch, capsys):
    options = ("--out", str(tmp_path / "out"), "--jobs", "2", "--threads-per-job", "1", "--dry-run")
    status, out, err = main_of("study", monkeypatch, capsys, *options)
    spec = load_study("embedded")
    assert status == 0
    assert err == "the configs of its 19 distinct training runs compose and pass src/train.py's checks\n"
    assert out.splitlines() == [step.key for step in [*tuning_steps(spec), *study_steps(spec)]]
    assert not (tmp_path / "out").exists()
