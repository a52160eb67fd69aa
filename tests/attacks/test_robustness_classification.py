"""The classification track end to end: train on the generated CIFAR-10 stand-in through
src/train.py, then src/eval.py with an attack preset writes the accuracy table."""

import json

import pytest
from helpers import run_entry_point

TINY_CIFAR = (
    "experiment=lfm_resnet18_synthetic_cifar10",
    "data.synthetic.num_train=500",
    "data.synthetic.num_test=200",
    "data.val_size=100",
    "data.batch_size=50",
    "data.num_workers=0",
    "trainer.max_epochs=2",
    "logger.wandb.mode=disabled",
)


pytestmark = pytest.mark.slow  # about a minute on 2 quiet cores: run by `make test-slow`


@pytest.fixture(scope="module")
def cifar_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("cifar")
    result = run_entry_point(
        "train.py", *TINY_CIFAR, f"paths.data_dir={base / 'data'}", f"hydra.run.dir={base / 'run'}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return base / "run", result


def test_train_reports_test_accuracy_and_marks_the_checkpoint(cifar_run):
    run_dir, result = cifar_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["test/accuracy"] <= 1.0 and 0.0 <= metrics["val/accuracy"] <= 1.0
    assert "Results: accuracy=" in result.stdout
    config = (run_dir / "config.yaml").read_text()
    assert "task: classification" in config and "small_input: false" in config


def test_eval_writes_the_accuracy_table(cifar_run, tmp_path):
    run_dir, _ = cifar_run
    result = run_entry_point(
        "eval.py",
        f"ckpt_path={run_dir / 'checkpoints/last.ckpt'}",
        "attack=literature",
        "attack.eps=[0,8]",
        "attack.methods=[noise,fgsm,ifgsm]",
        "attack.losses=[ce,cw]",
        "logger.wandb.mode=disabled",
        f"hydra.run.dir={tmp_path / 'eval'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    eval_dir = tmp_path / "eval"
    for name in ("robustness.json", "robustness.csv", "robustness.png"):
        assert (eval_dir / name).is_file(), name
    table = json.loads((eval_dir / "robustness.json").read_text())
    assert table["task"] == "classification"
    rows = {(row["method"], row["loss"], row["eps"]): row["accuracy"] for row in table["rows"]}
    assert len(rows) == 1 + 2 + 2 * 2 * 2
    clean = rows[("clean", "none", 0.0)]
    assert clean == json.loads((eval_dir / "metrics.json").read_text())["test/accuracy"]
    assert all(accuracy == clean for (_, _, eps), accuracy in rows.items() if eps == 0)
    for loss in ("ce", "cw"):
        assert rows[("ifgsm", loss, 8.0)] <= rows[("fgsm", loss, 8.0)] <= clean
    assert "accuracy" in result.stdout and "Robustness (literature, white-box" in result.stdout
