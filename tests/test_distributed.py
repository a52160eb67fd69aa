"""DDP with two CPU processes: training runs, and evaluation equals the single-process one."""

import json

import pytest
from helpers import TINY_SCALE, run_entry_point

TINY_ATTACK = ("attack=literature", "attack.eps=[0,2]", "attack.methods=[fgsm]", "attack.losses=[sma]")


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """One short training run under trainer=ddp_sim."""
    base = tmp_path_factory.mktemp("ddp")
    run_dir = base / "ddp"
    trained = run_entry_point(
        "train.py",
        "experiment=lfm_resnet18_synthetic",
        "trainer=ddp_sim",
        "trainer.max_epochs=1",
        "data.num_workers=0",
        "logger.wandb.mode=disabled",
        f"data.synthetic.scale={TINY_SCALE}",
        "data.image_size=[64,32]",
        "data.val_ids=3",
        f"paths.data_dir={base / 'data'}",
        f"hydra.run.dir={run_dir}",
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    return base, run_dir


@pytest.fixture(scope="module")
def single_evaluation(ddp_run):
    """src/eval.py on one process: the best checkpoint's test metrics and a tiny attack table."""
    base, run_dir = ddp_run
    eval_dir = base / "single"
    evaluated = run_entry_point(
        "eval.py",
        f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}",
        "logger.wandb.mode=disabled",
        *TINY_ATTACK,
        f"hydra.run.dir={eval_dir}",
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    return eval_dir


def test_ddp_sim_test_metrics_equal_single_process_evaluation(ddp_run, single_evaluation):
    base, run_dir = ddp_run
    assert (run_dir / "train_ddp_process_1.log").is_file(), "the second rank did not run"
    distributed = json.loads((run_dir / "metrics.json").read_text())
    single = json.loads((single_evaluation / "metrics.json").read_text())
    for key in ("test/rank1", "test/rank5", "test/rank10", "test/mAP", "test/cmc", "test/num_valid_queries"):
        assert distributed[key] == single[key], key
    num_query = len(list((base / "data" / "synthetic" / "market_style_seed0" / "query").glob("*.jpg")))
    assert distributed["test/num_valid_queries"] == num_query


def test_ddp_sim_evaluation_equals_single_process_and_writes_once(ddp_run, single_evaluation, tmp_path):
    _, run_dir = ddp_run
    eval_dir = tmp_path / "eval_ddp"
    evaluated = run_entry_point(
        "eval.py",
        f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}",
        "trainer=ddp_sim",
        "logger.wandb.mode=disabled",
        *TINY_ATTACK,
        f"hydra.run.dir={eval_dir}",
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert (eval_dir / "train_ddp_process_1.log").is_file(), "the second rank did not run"
    distributed = json.loads((eval_dir / "metrics.json").read_text())
    assert distributed == json.loads((single_evaluation / "metrics.json").read_text())
    assert "attack/fgsm/sma/eps2/mAP" in distributed
    assert json.loads((eval_dir / "robustness.json").read_text()) == json.loads(
        (single_evaluation / "robustness.json").read_text()
    )
    # Rank 0 alone keeps the books: one of each file, run.json written once (no "resumed"), one report.
    for name in ("metrics.json", "run.json", "robustness.json"):
        assert list(eval_dir.rglob(name)) == [eval_dir / name], name
    assert "resumed" not in json.loads((eval_dir / "run.json").read_text())
    assert evaluated.stdout.count("Run directory:") == 1
    assert evaluated.stdout.count("Robustness (") == 1
