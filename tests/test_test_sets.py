"""More test sets in one run (data.test_sets): their settings, and testing a model on each."""

from pathlib import Path

import lightning as L
import pytest
from helpers import PROJECT_ROOT
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from lfm.errors import InputError
from lfm.models.reid import ReIDModule, check_rerank_settings
from lfm.runs.pipeline import evaluation_overrides, resolve_test_sets, run_extra_test_sets

OPTIMIZER = {"name": "sgd", "lr": 0.01}
SCHEDULER = {"name": "constant"}


def composed(*overrides: str):
    with initialize_config_dir(str(PROJECT_ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["paths.data_dir=/datasets", *overrides])
        return cfg, resolve_test_sets(cfg, OmegaConf.to_container(cfg.data, resolve=True))


def test_each_name_is_a_data_config_resolved_with_this_runs_paths_and_image_size():
    _, settings = composed(
        "data.test_sets=[synthetic_duke, dukemtmc]", "data.image_size=[64,32]", "data.eval_batch_size=7"
    )
    assert list(settings) == ["synthetic_duke", "dukemtmc"]
    assert settings["synthetic_duke"]["root"] == "/datasets/synthetic/duke_style_seed0"
    assert settings["synthetic_duke"]["synthetic"]["preset"] == "duke_style"
    assert Path(settings["dukemtmc"]["root"]).parent == Path("/datasets")
    assert all(s["image_size"] == [64, 32] and s["eval_batch_size"] == 7 for s in settings.values())


def test_no_test_sets_by_default_and_bad_names_are_refused():
    assert composed()[1] == {}
    with pytest.raises(InputError, match="data.test_sets names 'nope'"):
        composed("data.test_sets=[nope]")


def test_a_model_is_tested_on_each_set_under_its_name(tiny_market, tiny_duke):
    model = ReIDModule(backbone="resnet18", num_classes=3, optimizer=OPTIMIZER, scheduler=SCHEDULER, embedding_dim=32)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    common = {"image_size": [64, 32], "eval_batch_size": 64, "num_workers": 0}
    sets = {"market": {"root": str(tiny_market), **common}, "duke": {"root": str(tiny_duke), **common}}
    results = run_extra_test_sets(trainer, model, sets, seed=0)
    market_metrics, duke_metrics = results["market"][1], results["duke"][1]
    assert set(market_metrics) >= {"test/market/mAP", "test/market/mINP", "test/market/rank1"}
    assert duke_metrics["test/duke/num_valid_queries"] == results["duke"][0].test_set.num_query
    assert market_metrics["test/market/mAP"] != duke_metrics["test/duke/mAP"]
    assert model.test_prefix == "test"


def test_eval_takes_only_evaluation_settings_of_a_reid_checkpoint():
    cfg = OmegaConf.create({"model": {"rerank": True, "rerank_settings": None, "ap": "trapezoid"}})
    assert evaluation_overrides(cfg, "reid") == {"rerank": True, "ap": "trapezoid"}
    with pytest.raises(InputError, match="model.rerank is a re-ID evaluation setting"):
        evaluation_overrides(cfg, "classification")
    with pytest.raises(InputError, match="model.embedding_dim cannot change at evaluation"):
        evaluation_overrides(OmegaConf.create({"model": {"embedding_dim": 64}}), "reid")
    with pytest.raises(InputError, match="model.distance must be one of"):  # refused before any data work
        evaluation_overrides(OmegaConf.create({"model": {"distance": "manhattan"}}), "reid")
    with pytest.raises(InputError, match="model.rerank_settings: rerank lambda_value"):
        evaluation_overrides(OmegaConf.create({"model": {"rerank_settings": {"lambda_value": 2}}}), "reid")


def test_rerank_settings_are_checked_with_their_key():
    assert check_rerank_settings(None) == {}
    assert check_rerank_settings({"k1": 10}) == {"k1": 10}
    with pytest.raises(InputError, match="model.rerank_settings: rerank k1 must be a positive int"):
        check_rerank_settings({"k1": 0})
    with pytest.raises(InputError, match="model.rerank_settings: .*unexpected keyword argument 'k3'"):
        check_rerank_settings({"k3": 1})
