"""Config entries {_target_: import path, keyword arguments}: built as Hydra builds them, checked first."""

import functools

import pytest
from lightning.pytorch.callbacks import Callback
from omegaconf import OmegaConf
from torch import nn

from lfm.errors import InputError
from lfm.targets import build, check_target, target_name


def test_an_entry_is_built_with_its_arguments_and_the_callers():
    layer = build(OmegaConf.create({"_target_": "torch.nn.Dropout2d", "p": 0.2}), "key", nn.Module, inplace=True)
    assert isinstance(layer, nn.Dropout2d) and layer.p == 0.2 and layer.inplace


def test_nested_entries_and_partial_are_hydras():
    net = build({"_target_": "torch.nn.Sequential", "_args_": [{"_target_": "torch.nn.ReLU"}]}, "key", nn.Module)
    assert isinstance(net[0], nn.ReLU)
    factory = build({"_target_": "torch.nn.Dropout", "_partial_": True}, "key", nn.Module)
    assert isinstance(factory, functools.partial) and factory(p=0.3).p == 0.3


def test_containers_reach_the_target_as_plain_lists_and_dicts():
    built = build(OmegaConf.create({"_target_": "builtins.dict", "sizes": [1, 2], "inner": {"a": 1}}), "key")
    assert type(built["sizes"]) is list and type(built["inner"]) is dict


@pytest.mark.parametrize(
    ("entry", "kind", "fragment"),
    [
        ({"p": 0.1}, None, "key has no _target_; give the import path"),
        ({"_target_": "Dropout"}, None, "key._target_=Dropout is not an import path"),
        ({"_target_": "no_such_package.Thing"}, None, "key._target_=no_such_package.Thing: no module no_such_package"),
        ({"_target_": "torch.nn.Dropout3"}, None, "key._target_=torch.nn.Dropout3: module torch.nn has no Dropout3"),
        ({"_target_": "torch.nn.Dropout", "q": 1}, None, "key: torch.nn.Dropout does not take these arguments"),
        ({"_target_": "torch.nn.Dropout", "p": 2.0}, None, r"invalid key setting: .*got 2.0 \(torch.nn.Dropout\)"),
        ({"_target_": "torch.nn.Dropout"}, Callback, "key._target_=torch.nn.Dropout is not a lightning.Callback"),
        ({"_target_": "os.getcwd"}, nn.Module, "key._target_=os.getcwd built a str, not a torch.nn.Module"),
        ({"_target_": "math.pi"}, None, "key._target_=math.pi is a float, not a class or a function"),
    ],
)
def test_a_bad_entry_is_one_line_naming_the_key(entry, kind, fragment):
    with pytest.raises(InputError, match=fragment) as error:
        build(entry, "key", kind)
    assert "\n" not in str(error.value)


def test_an_entry_is_checked_without_being_built():
    assert check_target({"_target_": "torch.nn.Dropout", "p": 0.5}, "key", nn.Module) is nn.Dropout
    with pytest.raises(InputError, match="does not take these arguments"):
        check_target({"_target_": "torch.nn.Dropout"}, "key", nn.Module, probability=0.5)


def test_names_of_entries_for_run_names():
    assert target_name("resnet50") == "resnet50"
    assert target_name({"_target_": "lab.models.TinyNet", "width": 8}) == "TinyNet"
    config = OmegaConf.create({"backbone": {"_target_": "lab.TinyNet"}, "name": "${lfm.name:${backbone}}_market"})
    assert config.name == "TinyNet_market"
