"""Feature regularizers inserted at a named layer: LFM, Dropout2d, DropBlock."""

import pytest
import torch
from torch import nn

from lfm.errors import InputError
from lfm.models.backbones import ResNetFeatures
from lfm.models.regularizers import DropBlock2d, attach_feature_regularizer


@pytest.mark.parametrize(
    ("key", "settings", "module_type"),
    [
        ("dropout2d", {"after": "conv1", "p": 0.5}, nn.Dropout2d),
        ("dropblock", {"after": ["layer1", "layer2"], "p": 0.1, "block_size": 3}, DropBlock2d),
    ],
)
def test_regularizer_is_inserted_and_only_active_in_training(key, settings, module_type):
    backbone = ResNetFeatures("resnet18")
    backbone.regularizers = attach_feature_regularizer(backbone, key, settings)
    assert all(isinstance(module, module_type) for module in backbone.regularizers.values())
    backbone.eval()
    x = torch.rand(2, 3, 64, 32)
    reference = ResNetFeatures("resnet18").eval()
    reference.load_state_dict(backbone.state_dict())
    assert torch.equal(backbone(x), reference(x))


def test_dropout2d_drops_whole_channels_of_the_named_output():
    backbone = ResNetFeatures("resnet18").train()
    attach_feature_regularizer(backbone, "dropout2d", {"after": "conv1", "p": 0.5})
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
        attach_feature_regularizer(ResNetFeatures("resnet18"), key, settings)


def test_lfm_changes_the_named_layers_output_and_nothing_before_it():
    torch.manual_seed(0)
    masked = ResNetFeatures("resnet18").eval()
    plain = ResNetFeatures("resnet18").eval()
    plain.load_state_dict(masked.state_dict())
    masked.lfm = attach_feature_regularizer(masked, "lfm", {"after": "layer2.1", "p": 1.0, "fill": "zero"})
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
