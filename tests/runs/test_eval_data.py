"""The data settings of src/eval.py: the checkpoint's (or a chosen data config's), loaded as this evaluation says."""

import pytest
from helpers import PROJECT_ROOT
from hydra import compose, initialize_config_dir

from lfm.errors import InputError
from lfm.runs.pipeline import evaluation_data

TRAINED = {
    "root": "/datasets/market",
    "image_size": [64, 32],
    "eval_batch_size": 128,
    "num_workers": 2,
    "pipeline": "tensor",
    "cache_dir": None,
    "cache_max_memory": 0.5,
    "cache_on_device": False,
    "seed": 0,
}


def eval_config(*overrides: str):
    with initialize_config_dir(str(PROJECT_ROOT / "conf"), version_base="1.3"):
        return compose("eval", overrides=["ckpt_path=x.ckpt", "paths.data_dir=/datasets", *overrides])


def test_the_checkpoints_data_settings_are_kept_unless_given():
    assert evaluation_data(eval_config(), TRAINED) == TRAINED


def test_the_given_loading_settings_replace_the_checkpoints():
    given = {
        "pipeline": "pil",
        "num_workers": 0,
        "eval_batch_size": 7,
        "cache_dir": "/scratch/cache",
        "cache_max_memory": 0.1,
        "cache_on_device": True,
    }
    cfg = eval_config(*(f"data.{key}={value}" for key, value in given.items()))
    assert evaluation_data(cfg, TRAINED) == {**TRAINED, **given}


def test_a_chosen_data_config_is_loaded_as_given_and_keeps_the_rest():
    settings = evaluation_data(eval_config("data=synthetic_duke", "data.pipeline=pil"), TRAINED)
    assert settings["root"] == "/datasets/synthetic/duke_style_seed0" and settings["name"] == "synthetic_duke"
    assert settings["pipeline"] == "pil" and settings["num_workers"] == 2 and settings["image_size"] == [128, 64]
    cifar = evaluation_data(eval_config("data=synthetic_cifar10"), TRAINED)
    assert cifar["pipeline"] == "tensor" and not {"cache_dir", "cache_max_memory", "cache_on_device"} & set(cifar)


def test_a_data_key_that_would_change_the_test_is_refused_with_its_name():
    with pytest.raises(InputError, match="data.image_size cannot change when testing the checkpoint's own data"):
        evaluation_data(eval_config("+data.image_size=[32,16]"), TRAINED)
