"""timm and IBN-Net backbones through src/train.py, as a user runs them (tiny data, debug=fast)."""

import json
import shutil

import pytest
from helpers import assert_one_line_error, run_entry_point


def short_run(tiny_market, tmp_path, *overrides: str):
    data = tmp_path / "market"
    shutil.copytree(tiny_market, data)
    return run_entry_point(
        "train.py",
        "experiment=lfm_resnet18_synthetic",
        "debug=fast",
        "data=market1501",
        f"data.root={data}",
        "data.image_size=[64,32]",
        "data.val_ids=3",
        *overrides,
        f"hydra.run.dir={tmp_path / 'run'}",
    )


@pytest.mark.parametrize(
    ("backbone", "stage"),
    [
        ("timm:resnet18d", "layer1"),
        pytest.param("timm:regnetx_002", "s2", marks=pytest.mark.slow),
        pytest.param("timm:convnext_atto", "stages.1", marks=pytest.mark.slow),
    ],
)
def test_lfm_after_a_timm_stage_trains_tests_and_logs_what_it_masks(tiny_market, tmp_path, backbone, stage):
    result = short_run(tiny_market, tmp_path, f"model.backbone={backbone}", f"model.lfm.after={stage}")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0.0 <= metrics["test/mAP"] <= 1.0
    expected = metrics[f"train/lfm_expected_fraction/{stage}"]
    assert 0.0 < expected < 0.1  # p=0.5 x half the channels x a mean area of 21 %
    assert metrics[f"train/lfm_masked_fraction/{stage}"] == pytest.approx(expected, rel=0.5)


@pytest.mark.slow  # a ResNet-50-sized network: about 45 s on 2 CPU cores; its architecture is tested in test_backbones.py
def test_ibn_a_resnet_trains_and_tests(tiny_market, tmp_path):
    result = short_run(tiny_market, tmp_path, "model.backbone=resnet50_ibn_a", "trainer.limit_train_batches=1")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0.0 <= metrics["test/mAP"] <= 1.0 and metrics["train/lfm_masked_fraction/conv1"] > 0


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        pytest.param(
            ("model.backbone=timm:not_a_model",),
            ("unknown timm model 'not_a_model'", "model.backbone"),
            marks=pytest.mark.slow,
        ),
        (
            ("model.backbone=timm:resnet18d", "model.lfm.after=layer9"),
            (
                "model.lfm.after: unknown insertion point 'layer9'",
                "valid names: act1, layer1, layer2, layer3, layer4, conv1",
            ),
        ),
        pytest.param(
            ("model.backbone=timm:convnext_atto", "model.lfm.after=stages.0", "model.last_stride=1"),
            ("model.last_stride=1 is not available for timm:convnext_atto",),
            marks=pytest.mark.slow,
        ),
    ],
)
def test_bad_timm_settings_stop_before_any_data_work(tmp_path, overrides, fragments):
    """The start-up check builds the timm model on the meta device: a bad name fails at once,
    even before the (here missing) dataset is looked at."""
    result = run_entry_point(
        "train.py",
        "experiment=lfm_resnet18_synthetic",
        "data=market1501",
        "data.root=/nonexistent",
        *overrides,
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert_one_line_error(result, *fragments)
