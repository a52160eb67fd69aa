"""Every config composes, and the experiments say what they claim to."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

CONF = Path(__file__).resolve().parents[1] / "conf"
EXPERIMENTS = sorted(path.stem for path in (CONF / "experiment").glob("*.yaml"))
MASKING_KEYS = ("p", "mask_ratio", "area", "aspect", "fill", "selection", "channel_sampling", "region")


def compose_config(name: str, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=name, overrides=list(overrides), return_hydra_config=True)


def resolved(cfg) -> dict:
    """The config as the entry point sees it, run from /project (without the hydra node)."""
    cfg.hydra.runtime.output_dir = "/tmp/out"
    cfg.hydra.runtime.cwd = "/project"
    cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    config = OmegaConf.to_container(cfg, resolve=True)
    config.pop("hydra")
    return config


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_resolves(experiment):
    config = resolved(compose_config("train", f"experiment={experiment}"))
    assert config["run_name"] == experiment
    assert config["model"]["backbone"] in ("resnet18", "resnet34", "resnet50")
    assert (config["model"]["lfm"] is None) == (not experiment.startswith("lfm_"))


@pytest.mark.parametrize("group", ["data", "lfm", "logger", "trainer", "debug"])
def test_every_group_option_composes(group):
    for path in sorted((CONF / group).glob("*.yaml")):
        resolved(compose_config("train", f"{group}={path.stem}"))


def without_regularizers(config: dict) -> dict:
    config.pop("run_name")
    for key in ("lfm", "dropout2d", "dropblock"):
        config["model"].pop(key)
    for key in ("random_erasing", "cutout"):
        config["data"].pop(key)
    return config


@pytest.mark.parametrize("experiment", [name for name in EXPERIMENTS if not name.startswith("lfm_")])
def test_comparisons_differ_from_their_lfm_experiment_only_in_the_regularizer(experiment):
    method, setup = experiment.split("_resnet")
    comparison = resolved(compose_config("train", f"experiment={experiment}"))
    lfm = resolved(compose_config("train", f"experiment=lfm_resnet{setup}"))
    regularizers = {key: comparison["model"][key] for key in ("lfm", "dropout2d", "dropblock")}
    regularizers.update({key: comparison["data"][key] for key in ("random_erasing", "cutout")})
    assert [key for key, value in regularizers.items() if value is not None] == (
        [] if method == "baseline" else [method]
    )
    assert without_regularizers(comparison) == without_regularizers(lfm)


def test_paper_experiment_is_the_papers_setup():
    config = resolved(compose_config("train", "experiment=lfm_resnet50"))
    model = config["model"]
    assert model["backbone"] == "resnet50" and model["pretrained"] is True
    assert model["lfm"]["after"] == "conv1"
    assert config["data"]["name"] == "market1501" and config["data"]["image_size"] == [256, 128]
    assert config["data"]["batch_size"] == 32 and config["trainer"]["max_epochs"] == 60
    assert model["optimizer"] == {
        **model["optimizer"],
        "name": "sgd",
        "lr": 0.05,
        "nesterov": True,
        "backbone_lr_mult": 0.1,
    }
    assert model["scheduler"]["milestones"] == [40]


def test_official_preset_reproduces_the_released_code():
    lfm = resolved(compose_config("train", "lfm=official"))["model"]["lfm"]
    assert lfm == {
        **lfm,
        "after": "conv1",
        "p": 0.15,
        "selection": "batch",
        "channel_sampling": "with_replacement",
        "region": "band",
        "fill": "random",
        "mask_ratio": 0.5,
    }


def test_lfm_presets_set_every_masking_argument():
    for preset in ("paper", "official"):
        lfm = resolved(compose_config("train", f"lfm={preset}"))["model"]["lfm"]
        assert set(lfm) == {"_target_", "after", *MASKING_KEYS}


def test_lfm_knobs_from_the_command_line():
    lfm = resolved(compose_config("train", "model.lfm.after=[conv1,layer2.1]", "model.lfm.mask_ratio=0.25"))["model"][
        "lfm"
    ]
    assert lfm["after"] == ["conv1", "layer2.1"] and lfm["mask_ratio"] == 0.25


def test_data_root_points_at_the_generated_dataset():
    config = resolved(compose_config("train", "data=synthetic_duke"))
    assert config["data"]["root"] == "/project/data/synthetic/duke_style_seed0"
    assert config["data"]["synthetic"]["preset"] == "duke_style"


def test_eval_uses_the_checkpoint_data_unless_a_dataset_is_chosen():
    data = dict(compose_config("eval", "ckpt_path=x.ckpt").data)
    assert data.pop("test_sets") == [] and set(data.values()) == {None}  # no dataset: the checkpoint's, as trained
    assert compose_config("eval", "ckpt_path=x.ckpt", "data=synthetic_duke").data.name == "synthetic_duke"
