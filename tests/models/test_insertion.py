"""Inserting a module after a named submodule."""

import pytest
import torch
from torch import nn

from lfm.models.backbones import FeatureStackFeatures, ResNetFeatures
from lfm.models.insertion import insert_after, insert_after_each, insertion_points


class AddOne(nn.Module):
    def forward(self, x):
        return x + 1


def capture_outputs(model):
    outputs = {}
    for name, module in model.named_modules():
        if name:
            module.register_forward_hook(lambda _m, _i, out, name=name: outputs.__setitem__(name, out))
    return outputs


def test_inserted_module_changes_only_the_named_output():
    torch.manual_seed(0)
    model = ResNetFeatures("resnet18").eval()
    x = torch.randn(2, 3, 64, 32)
    plain = model(x)
    handle = insert_after(model, "layer1.0", AddOne())
    outputs = capture_outputs(model)
    changed = model(x)
    assert not torch.allclose(plain, changed)
    handle.remove()
    assert torch.equal(model(x), plain)
    assert torch.equal(outputs["layer1.1"], model.layer1[1](outputs["layer1.0"]))


def test_insertion_keeps_state_dict_keys():
    model = ResNetFeatures("resnet18")
    keys = list(model.state_dict())
    modules, _ = insert_after_each(model, ["conv1", "layer2"], AddOne)
    assert list(model.state_dict()) == keys
    assert list(modules) == ["conv1", "layer2"]


def test_dotted_names_become_module_dict_keys():
    modules, _ = insert_after_each(ResNetFeatures("resnet18"), ["layer2.1"], AddOne)
    assert list(modules) == ["layer2__1"]


def test_unknown_name_lists_valid_names():
    model = ResNetFeatures("resnet18")
    with pytest.raises(
        ValueError, match="unknown insertion point 'layer5'.*conv1, bn1, relu, maxpool, layer1"
    ) as error:
        insert_after(model, "layer5", AddOne())
    assert "layer4.1" in str(error.value)


def test_duplicate_names_are_refused():
    with pytest.raises(ValueError, match="distinct"):
        insert_after_each(ResNetFeatures("resnet18"), ["conv1", "conv1"], AddOne)


def test_insertion_points_by_depth():
    names = insertion_points(ResNetFeatures("resnet18"), max_depth=1)
    assert names == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]


def test_unknown_name_suggests_a_deeper_name_of_this_model():
    model = FeatureStackFeatures("mobilenet_v3_large")
    with pytest.raises(ValueError, match=r"valid names: features, features.0, .*such as features.0.0\)"):
        insert_after(model, "layer1", AddOne())
