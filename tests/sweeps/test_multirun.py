"""Hydra multirun (-m) over the same knobs: one W&B run per job, and a failing job does not end the sweep."""

import json

import pytest
from helpers import PROJECT_ROOT, TINY_TRAIN, run_entry_point
from hydra import compose, initialize_config_dir


@pytest.mark.slow
def test_multirun_survives_a_failing_job_and_closes_each_wandb_run(tmp_path):
    sweep_dir = tmp_path / "multirun"
    result = run_entry_point(
        "train.py",
        "-m",
        *(override for override in TINY_TRAIN if not override.startswith("model.lfm.mask_ratio=")),
        "test=false",
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.sweep.dir={sweep_dir}",
        "model.lfm.mask_ratio=0.25,1.5,0.5",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "error: " in result.stderr and "mask_ratio" in result.stderr
    assert not (sweep_dir / "1" / "metrics.json").exists()
    wandb_ids = set()
    for job, mask_ratio in (("0", 0.25), ("2", 0.5)):
        metrics = json.loads((sweep_dir / job / "metrics.json").read_text())
        assert 0.0 <= metrics["val/mAP_best"] <= 1.0
        assert f"mask_ratio: {mask_ratio}" in (sweep_dir / job / "config.yaml").read_text()
        runs = list((sweep_dir / job / "wandb").glob("offline-run-*"))
        assert len(runs) == 1, f"job {job} logged into {runs}"
        wandb_ids.add(runs[0].name.rsplit("-", 1)[-1])
    assert len(wandb_ids) == 2


def test_the_slurm_launcher_config_composes_without_the_plugin_installed():
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert launcher.partition == "gpu" and launcher.gpus_per_node == 1 and launcher.tasks_per_node == 1
