"""The offline sweep runner on tiny real training runs: it completes, isolates a failure, resumes, tabulates;
two at once give the same numbers."""

import csv
import io
import json
import os
import subprocess
import sys

import pytest
from helpers import PROJECT_ROOT, TINY_SCALE
from rich.console import Console

from lfm.jobs.executors import LocalExecutor
from lfm.sweeps.runner import run_sweep
from lfm.sweeps.runs import STATE_FILE

# mask_ratio 1.5 composes (it is a float) but the model refuses it: the middle run fails.
SWEEP = """name: tiny
program: src/train.py
method: grid
metric: {{name: val/mAP_best, goal: maximize}}
parameters:
  model.lfm.mask_ratio:
    values: [0.25, 1.5, 0.5]
command:
  - ${{env}}
  - ${{interpreter}}
  - ${{program}}
  - experiment=lfm_resnet18_synthetic
  - debug=fast
  - data.synthetic.scale={scale}
  - data.image_size=[64,32]
  - data.val_ids=3
  - model.lfm.after=layer1
  - logger.wandb.mode=offline
  - paths.data_dir={data_dir}
  - ${{args_no_hyphens}}
"""


def quiet_console() -> Console:
    """Records what the runner prints, for the asserts."""
    return Console(width=200, record=True, file=io.StringIO())


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """One sweep of three tiny runs (the second fails), run from the project root as a user would."""
    base = tmp_path_factory.mktemp("sweep")
    sweep_file = base / "tiny.yaml"
    sweep_file.write_text(SWEEP.format(scale=TINY_SCALE, data_dir=base / "data"))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(PROJECT_ROOT)
        patch.setenv("WANDB_MODE", "offline")
        patch.delenv("WANDB_API_KEY", raising=False)
        console = quiet_console()
        result = run_sweep(sweep_file, out_dir=base / "out", console=console)
    return sweep_file, result, console.export_text()


def test_the_sweep_runs_each_run_in_its_own_directory(sweep):
    _, result, _ = sweep
    state = json.loads((result.out_dir / STATE_FILE).read_text())
    records = list(state["runs"].values())
    assert [record["parameters"] for record in records] == [
        {"model.lfm.mask_ratio": 0.25},
        {"model.lfm.mask_ratio": 1.5},
        {"model.lfm.mask_ratio": 0.5},
    ]
    assert [record["status"] for record in records] == ["finished", "failed", "finished"]
    for run_id, record in state["runs"].items():
        run_dir = result.out_dir / "runs" / run_id
        if record["status"] == "finished":
            metrics = json.loads((run_dir / "metrics.json").read_text())
            assert 0.0 <= metrics["val/mAP_best"] <= 1.0 and 0.0 <= metrics["test/mAP"] <= 1.0
            config = (run_dir / "config.yaml").read_text()
            assert f"mask_ratio: {record['parameters']['model.lfm.mask_ratio']}" in config
            assert "group: tiny" in config  # the W&B run is grouped by sweep
            assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1


def test_a_failing_run_is_recorded_and_the_sweep_goes_on(sweep):
    _, result, printed = sweep
    failed = [record for record in result.state["runs"].values() if record["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["returncode"] == 2
    assert failed[0]["error"].startswith("error:") and "mask_ratio" in failed[0]["error"]
    assert result.failed == [run_id for run_id, record in result.state["runs"].items() if record["status"] == "failed"]
    assert "FAILED (exit 2)" in printed and printed.index("FAILED") < printed.index("[3/3]")


def test_the_results_table_has_one_row_per_finished_run(sweep):
    _, result, printed = sweep
    with result.table_path.open() as handle:
        table = list(csv.DictReader(handle))
    assert result.table_path == result.out_dir / "results.csv"
    assert sorted(float(row["model.lfm.mask_ratio"]) for row in table) == [0.25, 0.5]
    assert all(
        row["model.lfm.after"] == "layer1" and row["seed"] == "0" and row["regularizer"] == "lfm" for row in table
    )
    for column in ("test/rank1", "test/mAP", "val/mAP_best", "train/lfm_masked_fraction/layer1"):
        assert all(0.0 <= float(row[column]) <= 1.0 for row in table), column
    assert f"Results table: {result.table_path}" in printed and "Sweep tiny: 2 finished runs" in printed


def test_running_the_sweep_again_runs_nothing_new(sweep):
    sweep_file, first, _ = sweep
    finished = {path: path.stat().st_mtime_ns for path in first.out_dir.glob("runs/*/metrics.json")}
    console = quiet_console()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(PROJECT_ROOT)
        again = run_sweep(sweep_file, out_dir=first.out_dir, console=console)
    printed = console.export_text()
    assert printed.count("finished earlier, skipped") == 2 and printed.count("failed earlier") == 1
    assert "running in" not in printed
    assert again.state == first.state and len(again.rows) == 2
    assert {path: path.stat().st_mtime_ns for path in first.out_dir.glob("runs/*/metrics.json")} == finished


def test_retry_failed_runs_a_failed_run_again_and_keeps_the_old_attempt(sweep):
    sweep_file, first, _ = sweep
    failed_id = first.failed[0]
    console = quiet_console()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(PROJECT_ROOT)
        again = run_sweep(sweep_file, out_dir=first.out_dir, retry_failed=True, console=console)
    printed = console.export_text()
    assert printed.count("running in") == 1 and printed.count("finished earlier, skipped") == 2
    assert again.failed == [failed_id]
    assert (first.out_dir / "attempts" / f"{failed_id}-1" / "stderr.log").is_file()
    assert (first.out_dir / "runs" / failed_id / "stderr.log").is_file()


def test_the_command_line_tool_reports_a_bad_sweep_file_in_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "program: src/train.py\nmethod: grid\nparameters:\n  model.lfm.ratio: {values: [0.1]}\n"
        "command:\n  - ${program}\n  - ${args_no_hyphens}\n"
    )
    result = subprocess.run(
        [sys.executable, "src/sweep.py", str(bad)], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(f"error: {bad}: parameters.model.lfm.ratio is not a key")


SPEED = ("train/epoch_seconds", "train/images_per_second")


@pytest.mark.slow
def test_two_runs_at_once_give_the_sequential_numbers(sweep, tmp_path):
    """With the threads per job of the sequential sweep (a CPU run's numbers depend on its thread count)."""
    sweep_file, first, _ = sweep
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(PROJECT_ROOT)
        patch.setenv("WANDB_MODE", "offline")
        parallel = run_sweep(
            sweep_file,
            out_dir=tmp_path / "parallel",
            console=quiet_console(),
            executor=LocalExecutor(2, threads=len(os.sched_getaffinity(0))),
        )

    def numbers(table_path):
        """The table without the training speed (which depends on what else runs meanwhile)."""
        with table_path.open() as handle:
            return [{key: value for key, value in row.items() if key not in SPEED} for row in csv.DictReader(handle)]

    assert numbers(parallel.table_path) == numbers(first.table_path)
    records = list(parallel.state["runs"].values())
    assert records[0]["started"] < records[1]["ended"] and records[1]["started"] < records[0]["ended"]
