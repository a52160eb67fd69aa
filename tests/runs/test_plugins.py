"""A lab's own methods next to LFM, by config alone: a backbone, a feature regularizer and callbacks from a
module outside the package (tests/plugins/lab_methods.py, on PYTHONPATH), through src/train.py."""

import json
import subprocess

import pytest
import torch
from helpers import LAB_METHODS, PROJECT_ROOT, TINY_TRAIN, assert_one_line_error, entry_point, with_lab_methods
from omegaconf import OmegaConf

from lfm.runs.pipeline import load_checkpoint, load_module

NOISE = "+model.regularizers.noise={_target_:lab_methods.ChannelNoise,after:stem,std:0.3}"


def run_with_lab_methods(script: str, *overrides: str) -> subprocess.CompletedProcess:
    command, env = entry_point(script, *overrides)
    return subprocess.run(
        command, cwd=PROJECT_ROOT, env=with_lab_methods(env), capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def lab_run(tmp_path_factory, tiny_market):
    """LFM and the lab's regularizer on the lab's backbone, with EarlyStopping and a callback of the lab's."""
    run_dir = tmp_path_factory.mktemp("lab") / "run"
    result = run_with_lab_methods(
        "train.py",
        *TINY_TRAIN,
        f"data.root={tiny_market}",
        "model.backbone={_target_:lab_methods.TinyConvNet,width:8}",
        "model.lfm.after=stage1",
        NOISE,
        "trainer.max_epochs=4",
        "+callbacks.early_stopping={_target_:lightning.pytorch.callbacks.EarlyStopping,"
        "monitor:val/mAP,mode:max,patience:1,min_delta:1.0}",
        "+callbacks.epochs={_target_:lab_methods.EpochCounter}",
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def test_early_stopping_added_by_override_stops_the_run(lab_run):
    # no epoch improves val/mAP by 1.0: patience 1 stops after the second of four epochs
    assert json.loads((lab_run / "metrics.json").read_text())["epochs"] == 2
    callbacks = OmegaConf.load(lab_run / "config.yaml").callbacks
    assert callbacks.early_stopping._target_ == "lightning.pytorch.callbacks.EarlyStopping"
    assert callbacks.random_state.seed == 0  # the project's own callbacks are config entries too


def test_the_checkpoint_holds_the_labs_backbone_and_regularizer_next_to_lfm(lab_run, monkeypatch):
    monkeypatch.syspath_prepend(str(LAB_METHODS))
    from lab_methods import ChannelNoise, TinyConvNet

    path = lab_run / "checkpoints" / "last.ckpt"
    model = load_module(path, load_checkpoint(path))
    assert isinstance(model.net.backbone, TinyConvNet) and model.net.backbone.out_channels == 16
    assert list(model.net.regularizers) == ["lfm", "noise"]
    noise = model.net.regularizers["noise"]["stem"]
    assert isinstance(noise, ChannelNoise) and noise.std == 0.3
    images = torch.rand(2, 3, 64, 32)
    model.eval()
    model.net(images)
    assert noise.calls == 0  # skipped in evaluation
    model.train()
    model.net(images)
    assert noise.calls == 1


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        pytest.param(  # also tested in process (tests/models/test_regularizers.py): the slow suite runs it end to end
            "+model.regularizers.noise={_target_:lab_methods.EpochCounter,after:conv1}",
            "model.regularizers.noise._target_=lab_methods.EpochCounter is not a torch.nn.Module",
            marks=pytest.mark.slow,
        ),
        (
            "+callbacks.noise={_target_:lab_methods.ChannelNoise}",
            "callbacks.noise._target_=lab_methods.ChannelNoise is not a lightning.Callback",
        ),
    ],
)
def test_a_wrong_kind_of_plugin_stops_before_any_data_work(tmp_path, override, fragment):
    data_dir = tmp_path / "data"
    result = run_with_lab_methods(
        "train.py", *TINY_TRAIN, override, f"paths.data_dir={data_dir}", f"hydra.run.dir={tmp_path / 'run'}"
    )
    assert_one_line_error(result, fragment)
    assert not data_dir.exists()


def test_a_checkpoint_from_before_target_entries_loads(lab_run, tmp_path, monkeypatch):
    """Checkpoints written before _target_ hold model.lfm without it and no model.regularizers."""
    monkeypatch.syspath_prepend(str(LAB_METHODS))
    checkpoint = torch.load(lab_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    settings = checkpoint["hyper_parameters"]
    settings.pop("regularizers")
    settings["lfm"].pop("_target_")
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    model = load_module(old, load_checkpoint(old))
    assert list(model.net.regularizers) == ["lfm"]
    assert type(model.net.regularizers["lfm"]["stage1"]).__name__ == "LocalFeatureMasking"
