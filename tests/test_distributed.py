"""DDP with two CPU processes: training runs, and evaluation equals the single-process one."""

import json

from helpers import TINY_SCALE, run_entry_point


def test_ddp_sim_test_metrics_equal_single_process_evaluation(tmp_path):
    common = ("data.synthetic.scale=" + str(TINY_SCALE), "data.image_size=[64,32]", "data.val_ids=3",
              f"paths.data_dir={tmp_path / 'data'}")
    trained = run_entry_point(
        "train.py", "experiment=lfm_resnet18_synthetic", "trainer=ddp_sim", "trainer.max_epochs=1",
        "data.num_workers=0", "logger.wandb.mode=disabled", *common, f"hydra.run.dir={tmp_path / 'ddp'}",
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert (tmp_path / "ddp" / "train_ddp_process_1.log").is_file(), "the second rank did not run"
    evaluated = run_entry_point(
        "eval.py", f"ckpt_path={tmp_path / 'ddp' / 'checkpoints' / 'best.ckpt'}", "logger.wandb.mode=disabled",
        f"hydra.run.dir={tmp_path / 'single'}",
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    distributed = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    single = json.loads((tmp_path / "single" / "metrics.json").read_text())
    for key in ("test/rank1", "test/rank5", "test/rank10", "test/mAP", "test/cmc", "test/num_valid_queries"):
        assert distributed[key] == single[key], key
    num_query = len(list((tmp_path / "data" / "synthetic" / "market_style_seed0" / "query").glob("*.jpg")))
    assert distributed["test/num_valid_queries"] == num_query
