"""Reproducibility and crash-safe resume, through src/train.py on a small generated dataset
(the tensor data pipeline: decoded-image cache, augmentation drawn from a checkpointed generator)."""

import json
import signal
import subprocess
import time

import pytest
from helpers import PROJECT_ROOT, TINY_SCALE, entry_point, run_entry_point

DETERMINISTIC_RUN = (
    "experiment=lfm_resnet18_synthetic",
    f"data.synthetic.scale={TINY_SCALE}",
    "data.image_size=[64,32]",
    "data.val_ids=3",
    "data.num_workers=1",
    "data.pipeline=tensor",
    "trainer.max_epochs=3",
    "trainer.deterministic=true",
    "logger.wandb.mode=offline",
)


def metrics_of(run_dir):
    """metrics.json without what differs between identical runs: paths and timings."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("best_checkpoint", "train/images_per_second", "train/epoch_seconds"):
        metrics.pop(key)
    return metrics


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_dir):
    run_dir = tmp_path_factory.mktemp("runs") / "uninterrupted"
    result = run_entry_point("train.py", *DETERMINISTIC_RUN, f"paths.data_dir={data_dir}", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def test_same_seed_and_config_give_identical_metrics(uninterrupted, data_dir, tmp_path):
    result = run_entry_point(
        "train.py", *DETERMINISTIC_RUN, f"paths.data_dir={data_dir}", f"hydra.run.dir={tmp_path / 'again'}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert metrics_of(tmp_path / "again") == metrics_of(uninterrupted)


def test_a_run_killed_mid_epoch_resumes_to_the_same_metrics(uninterrupted, data_dir, tmp_path):
    run_dir = tmp_path / "killed"
    command, env = entry_point("train.py", *DETERMINISTIC_RUN, f"paths.data_dir={data_dir}", f"hydra.run.dir={run_dir}")
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # into the second epoch
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL and not (run_dir / "metrics.json").exists()
    first_wandb_id = json.loads((run_dir / "run.json").read_text())["wandb_id"]

    resumed = run_entry_point("train.py", *DETERMINISTIC_RUN, f"paths.data_dir={data_dir}", f"hydra.run.dir={run_dir}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resuming from {last}" in resumed.stdout + resumed.stderr
    assert metrics_of(run_dir) == metrics_of(uninterrupted)
    run_info = json.loads((run_dir / "run.json").read_text())
    assert run_info["wandb_id"] == first_wandb_id and len(run_info["resumed"]) == 1
    assert {path.name.rsplit("-", 1)[-1] for path in (run_dir / "wandb").glob("offline-run-*")} == {first_wandb_id}
    assert (run_dir / "csv" / "metrics.csv").is_file() and (run_dir / "csv" / "resumed_1" / "metrics.csv").is_file()


def test_explicit_checkpoint_of_another_architecture_is_refused(uninterrupted, data_dir, tmp_path):
    result = run_entry_point(
        "train.py",
        *DETERMINISTIC_RUN,
        "model.backbone=resnet34",
        f"paths.data_dir={data_dir}",
        f"ckpt_path={uninterrupted / 'checkpoints' / 'last.ckpt'}",
        f"hydra.run.dir={tmp_path / 'other'}",
    )
    assert result.returncode == 2
    assert "model.backbone=resnet18, but this run has model.backbone=resnet34" in result.stderr


@pytest.mark.slow
def test_one_checkpoint_evaluates_identically_on_both_pipelines(uninterrupted, data_dir, tmp_path):
    data = [
        "data=synthetic_market",
        f"data.synthetic.scale={TINY_SCALE}",
        "data.image_size=[64,32]",
        "data.val_ids=3",
        f"paths.data_dir={data_dir}",
        "logger.wandb.mode=disabled",
    ]
    results = {}
    for pipeline in ("tensor", "pil"):
        result = run_entry_point(
            "eval.py",
            f"ckpt_path={uninterrupted / 'checkpoints' / 'best.ckpt'}",
            *data,
            f"data.pipeline={pipeline}",
            f"hydra.run.dir={tmp_path / pipeline}",
        )
        assert result.returncode == 0, result.stderr[-3000:]
        results[pipeline] = json.loads((tmp_path / pipeline / "metrics.json").read_text())
        results[pipeline].pop("checkpoint")
    assert results["tensor"] == results["pil"]
    assert results["tensor"]["test/mAP"] == metrics_of(uninterrupted)["test/mAP"]
