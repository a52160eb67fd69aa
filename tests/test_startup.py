"""Start-up: a bad config value stops src/train.py and src/eval.py before any data work, and
the package imports no more than a training run needs."""

import subprocess
import sys

import pytest
from helpers import PROJECT_ROOT, assert_one_line_error, run_entry_point


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        pytest.param(
            ("model.lfm.after=not_a_layer",), ("model.lfm.after", "not_a_layer", "layer1"), marks=pytest.mark.slow
        ),
        (("model.optimizer.name=bogus",), ("model.optimizer.name", "bogus")),
        (("trainer.precision=bogus",), ("invalid trainer setting", "bogus")),
        (("callbacks=lfm_warmup", "callbacks.lfm.after=not_a_layer"), ("callbacks.lfm.after", "not_a_layer")),
        (
            ("experiment=lfm_resnet18_synthetic_cifar10", "model.scheduler.name=bogus"),
            ("model.scheduler.name", "bogus"),
        ),
        (("model.pretrained=/nonexistent/weights.pth",), ("model.pretrained", "/nonexistent/weights.pth")),
    ],
)
def test_bad_config_value_fails_before_the_data_is_generated(tmp_path, overrides, fragments):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    result = run_entry_point(
        "train.py",
        "experiment=lfm_resnet18_synthetic",
        *overrides,
        f"paths.data_dir={data_dir}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert_one_line_error(result, *fragments)
    assert not any(data_dir.iterdir()), "the data was generated before the config was checked"


def test_eval_checks_the_trainer_settings_before_the_data(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(b"not read: the trainer settings are checked first")
    result = run_entry_point(
        "eval.py",
        f"ckpt_path={checkpoint}",
        "data=synthetic_market",
        "trainer.precision=bogus",
        f"paths.data_dir={data_dir}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert_one_line_error(result, "invalid trainer setting", "bogus")
    assert not any(data_dir.iterdir())


def test_the_pipeline_imports_no_wandb():
    """W&B's import costs half a second; it happens only when a run has a W&B logger."""
    code = "import sys, lfm.runs.pipeline; print('wandb' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
