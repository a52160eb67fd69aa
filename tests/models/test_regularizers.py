"""Feature regularizers inserted at a named layer: LFM, Dropout2d, DropBlock and a user's own class."""

import pytest
import torch
from helpers import LAB_METHODS
from torch import nn

from lfm.errors import InputError
from lfm.masking import LocalFeatureMasking
from lfm.models.backbones import ResNetFeatures
from lfm.models.regularizers import (
    BUILT_IN_REGULARIZERS,
    DropBlock2d,
    attach_feature_regularizer,
    attach_feature_regularizers,
)


def built_in(key: str, settings: dict) -> tuple[dict, str]:
    """The entry and config key of built-in regularizer `key` (model.<key>)."""
    return {"_target_": BUILT_IN_REGULARIZERS[key], **settings}, f"model.{key}"


@pytest.mark.parametrize(
    ("key", "settings", "module_type"),
    [
        ("dropout2d", {"after": "conv1", "p": 0.5}, nn.Dropout2d),
        ("dropblock", {"after": ["layer1", "layer2"], "p": 0.1, "block_size": 3}, DropBlock2d),
    ],
)
def test_regularizer_is_inserted_and_only_active_in_training(key, settings, module_type):
    backbone = ResNetFeatures("resnet18")
    backbone.regularizers = attach_feature_regularizer(backbone, *built_in(key, settings))
    assert all(isinstance(module, module_type) for module in backbone.regularizers.values())
    backbone.eval()
    x = torch.rand(2, 3, 64, 32)
    reference = ResNetFeatures("resnet18").eval()
    reference.load_state_dict(backbone.state_dict())
    assert torch.equal(backbone(x), reference(x))


def test_dropout2d_drops_whole_channels_of_the_named_output():
    backbone = ResNetFeatures("resnet18").train()
    attach_feature_regularizer(backbone, *built_in("dropout2d", {"after": "conv1", "p": 0.5}))
    seen = {}
    backbone.bn1.register_forward_pre_hook(lambda _m, inputs: seen.__setitem__("x", inputs[0]))
    backbone(torch.rand(4, 3, 64, 32))
    zero_channels = (seen["x"] == 0).flatten(2).all(dim=2)
    assert 0 < zero_channels.float().mean() < 1


@pytest.mark.parametrize(
    ("key", "settings", "fragment"),
    [
        ("dropblock", {"after": "conv1", "p": 0.1, "block_size": 4}, "invalid model.dropblock setting: block_size"),
        ("dropblock", {"after": "conv1", "p": 1.5, "block_size": 3}, "invalid model.dropblock setting: p"),
        ("dropout2d", {"after": "conv1", "p": 1.5}, "invalid model.dropout2d setting"),
        ("dropout2d", {"after": "head", "p": 0.1}, "model.dropout2d.after: unknown insertion point 'head'"),
        ("dropout2d", {"p": 0.1}, "model.dropout2d.after is empty"),
    ],
)
def test_bad_settings_name_the_key(key, settings, fragment):
    with pytest.raises(InputError, match=fragment):
        attach_feature_regularizer(ResNetFeatures("resnet18"), *built_in(key, settings))


def test_lfm_changes_the_named_layers_output_and_nothing_before_it():
    torch.manual_seed(0)
    masked = ResNetFeatures("resnet18").eval()
    plain = ResNetFeatures("resnet18").eval()
    plain.load_state_dict(masked.state_dict())
    masked.lfm = attach_feature_regularizer(masked, *built_in("lfm", {"after": "layer2.1", "p": 1.0, "fill": "zero"}))
    masked.lfm.train()
    order, outputs = [], {}

    def record(key):
        def hook(_module, _inputs, output):
            order.append(key[1])
            outputs[key] = output

        return hook

    for label, model in (("masked", masked), ("plain", plain)):
        for name, module in model.named_modules():
            if name and "lfm" not in name:
                module.register_forward_hook(record((label, name)))
    layer3_inputs = {}
    masked.layer3.register_forward_pre_hook(lambda _m, inputs: layer3_inputs.__setitem__("masked", inputs[0]))
    plain.layer3.register_forward_pre_hook(lambda _m, inputs: layer3_inputs.__setitem__("plain", inputs[0]))
    x = torch.rand(2, 3, 64, 32)
    masked(x), plain(x)
    executed_before = order[: order.index("layer2.1")]
    for name in executed_before:
        assert torch.equal(outputs[("masked", name)], outputs[("plain", name)]), name
    changed = layer3_inputs["masked"] != layer3_inputs["plain"]
    assert changed.any() and (layer3_inputs["masked"][changed] == 0).all()
    assert not torch.equal(outputs[("masked", "layer3")], outputs[("plain", "layer3")])


class AddOne(nn.Module):
    """Not the identity in evaluation: an inserted regularizer must still be skipped there."""

    def forward(self, features):
        return features + 1


@pytest.fixture
def lab_methods(monkeypatch):
    """tests/plugins on the Python path, as a user's own module folder on PYTHONPATH."""
    monkeypatch.syspath_prepend(str(LAB_METHODS))


@pytest.mark.parametrize("target", ["lab_methods.ChannelNoise", "lab_methods.channel_noise"])
def test_a_users_regularizer_from_its_import_path_acts_in_training_only(lab_methods, target):
    backbone = ResNetFeatures("resnet18")
    backbone.regularizers = attach_feature_regularizers(
        backbone, {"noise": {"_target_": target, "after": ["conv1", "layer2"], "std": 0.5}}
    )
    modules = backbone.regularizers["noise"]
    assert list(modules) == ["conv1", "layer2"] and modules["conv1"] is not modules["layer2"]
    reference = ResNetFeatures("resnet18")
    reference.load_state_dict(backbone.state_dict())
    x = torch.rand(2, 3, 64, 32)
    backbone.eval(), reference.eval()
    assert torch.equal(backbone(x), reference(x))
    assert modules["conv1"].calls == modules["layer2"].calls == 0
    backbone.train(), reference.train()
    assert not torch.allclose(backbone(x), reference(x))
    assert modules["conv1"].calls == modules["layer2"].calls == 1


def test_inserted_regularizers_are_skipped_in_evaluation():
    backbone = ResNetFeatures("resnet18")
    backbone.regularizers = attach_feature_regularizers(
        backbone, {"add_one": {"_target_": f"{__name__}.AddOne", "after": "layer4"}}
    )
    reference = ResNetFeatures("resnet18").eval()
    reference.load_state_dict(backbone.state_dict())
    x = torch.rand(2, 3, 64, 32)
    assert torch.equal(backbone.eval()(x), reference(x))
    assert torch.allclose(backbone.train()(x), reference.train()(x) + 1, atol=1e-5)


def test_built_in_and_users_regularizers_share_one_mapping(lab_methods):
    backbone = ResNetFeatures("resnet18")
    inserted = attach_feature_regularizers(
        backbone,
        {"noise": {"_target_": "lab_methods.ChannelNoise", "after": "layer1"}, "off": None},
        lfm={"after": "conv1", "p": 0.5},  # a checkpoint from before _target_: the built-in class
        dropout2d=None,
        dropblock={"_target_": "lfm.models.regularizers.DropBlock2d", "after": "layer2", "p": 0.1, "block_size": 3},
    )
    assert {label: list(modules) for label, modules in inserted.items()} == {
        "lfm": ["conv1"],
        "dropblock": ["layer2"],
        "noise": ["layer1"],
    }
    assert isinstance(inserted["lfm"]["conv1"], LocalFeatureMasking)


@pytest.mark.parametrize(
    ("regularizers", "fragment"),
    [
        (
            {"mine": {"_target_": "lab_methods.Missing", "after": "conv1"}},
            "model.regularizers.mine._target_=lab_methods.Missing: module lab_methods has no Missing",
        ),
        (
            {"mine": {"_target_": "no_such_lab.Noise", "after": "conv1"}},
            "model.regularizers.mine._target_=no_such_lab.Noise: no module no_such_lab on the Python path",
        ),
        (
            {"mine": {"_target_": "lab_methods.ChannelNoise", "after": "conv1", "sigma": 1}},
            "model.regularizers.mine: lab_methods.ChannelNoise does not take these arguments .*it takes std",
        ),
        (
            {"mine": {"_target_": "lab_methods.ChannelNoise", "after": "conv1", "std": -1}},
            "invalid model.regularizers.mine setting: std must be >= 0",
        ),
        (
            {"mine": {"_target_": "lab_methods.EpochCounter", "after": "conv1"}},
            r"model.regularizers.mine._target_=lab_methods.EpochCounter is not a torch.nn.Module",
        ),
        (
            {"mine": {"_target_": "lab_methods.ChannelNoise", "after": "head"}},
            "model.regularizers.mine.after: unknown insertion point 'head'",
        ),
        ({"mine": {"_target_": "lab_methods.ChannelNoise"}}, "model.regularizers.mine.after is empty"),
        ({"mine": {"after": "conv1"}}, "model.regularizers.mine has no _target_"),
        (
            {"lfm": {"_target_": "lab_methods.ChannelNoise", "after": "conv1"}},
            "model.regularizers.lfm: 'lfm' is the label of model.lfm",
        ),
    ],
)
def test_a_bad_users_regularizer_names_its_key(lab_methods, regularizers, fragment):
    with pytest.raises(InputError, match=fragment):
        attach_feature_regularizers(ResNetFeatures("resnet18"), regularizers)
