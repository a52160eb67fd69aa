"""src/train.py and src/eval.py as a user runs them, on a small generated dataset."""

import json
import shutil
import subprocess
from importlib.metadata import version

import pytest
import torch
from helpers import PROJECT_ROOT, TINY_TRAIN, assert_one_line_error, entry_point, run_entry_point


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One short training run through src/train.py, shared by the tests below."""
    base = tmp_path_factory.mktemp("train")
    run_dir = base / "run"
    result = run_entry_point("train.py", *TINY_TRAIN, f"paths.data_dir={base / 'data'}", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir, result


def test_train_writes_the_run_directory(trained_run):
    run_dir, result = trained_run
    for name in (
        "config.yaml",
        "run.json",
        "metrics.json",
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
        "csv/metrics.csv",
    ):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "wandb").glob("offline-run-*")), "no offline W&B run in the run directory"
    assert f"Run directory: {run_dir}" in result.stdout
    assert "Results: rank1=" in result.stdout


def test_train_metrics_are_ranking_fractions(trained_run):
    run_dir, _ = trained_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("test/rank1", "test/rank5", "test/rank10", "test/mAP", "val/mAP", "val/mAP_best"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["test/rank1"] <= metrics["test/rank5"] <= metrics["test/rank10"]
    assert metrics["test/cmc"][0] == metrics["test/rank1"] and len(metrics["test/cmc"]) == 50
    assert metrics["test/num_valid_queries"] > 0 and metrics["test/ap"] == "standard"
    run_info = json.loads((run_dir / "run.json").read_text())
    assert run_info["seed"] == 0 and run_info["versions"]["torch"] == version("torch")


def test_checkpoint_holds_the_lfm_model(trained_run):
    run_dir, _ = trained_run
    checkpoint = torch.load(run_dir / "checkpoints/best.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["hyper_parameters"]["lfm"]["after"] == "layer1"
    assert checkpoint["hyper_parameters"]["lfm"]["mask_ratio"] == 0.25
    assert checkpoint["datamodule_hyper_parameters"]["image_size"] == [64, 32]


def test_logged_masked_fraction_matches_the_configuration(trained_run):
    run_dir, _ = trained_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    expected = 0.5 * 16 / 64 * (0.02 + 0.4) / 2  # p x k/C (layer1 of a ResNet-18 has 64 channels) x mean area
    assert metrics["train/lfm_expected_fraction/layer1"] == pytest.approx(expected)
    assert metrics["train/lfm_masked_fraction/layer1"] == pytest.approx(expected, rel=0.5)


@pytest.mark.parametrize(
    "method",
    [
        "dropout2d",
        *(pytest.param(method, marks=pytest.mark.slow) for method in ("dropblock", "random_erasing", "cutout")),
    ],
)
def test_each_comparison_regularizer_trains_through_its_experiment(method, tmp_path, tiny_market):
    result = run_entry_point(
        "train.py",
        f"experiment={method}_resnet18_synthetic",
        "debug=fast",
        "trainer.limit_train_batches=1",
        "data=market1501",
        f"data.root={tiny_market}",
        "data.image_size=[64,32]",
        "data.val_ids=3",
        "test=false",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert f"  {method}:\n" in config and f"{method}: null" not in config
    assert "lfm: null" in config
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


def test_eval_reproduces_the_test_metrics_of_the_best_checkpoint(trained_run, tmp_path):
    run_dir, _ = trained_run
    result = run_entry_point(
        "eval.py",
        f"ckpt_path={run_dir / 'checkpoints/best.ckpt'}",
        f"hydra.run.dir={tmp_path / 'eval'}",
        "logger.wandb.mode=disabled",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    trained = json.loads((run_dir / "metrics.json").read_text())
    for key in ("test/rank1", "test/rank5", "test/rank10", "test/mAP", "test/cmc"):
        assert evaluated[key] == pytest.approx(trained[key], abs=1e-6), key


def test_eval_loads_the_checkpoints_data_as_the_command_says(trained_run, tmp_path):
    """The cache error's advice works: data.pipeline=pil (and the other loading keys) replace the checkpoint's."""
    run_dir, _ = trained_run
    common = (f"ckpt_path={run_dir / 'checkpoints/best.ckpt'}", "logger.wandb.mode=disabled")
    too_large = run_entry_point("eval.py", *common, "data.cache_max_memory=1e-9", f"hydra.run.dir={tmp_path / 'a'}")
    assert_one_line_error(too_large, "data.cache_max_memory=1e-09", "set data.pipeline=pil")
    trained = json.loads((run_dir / "metrics.json").read_text())
    keys = ("test/rank1", "test/rank5", "test/rank10", "test/mAP", "test/mINP", "test/cmc")
    for name, overrides in (
        ("tensor", ("data.eval_batch_size=7",)),
        ("pil", ("data.pipeline=pil", "data.num_workers=0", "data.cache_max_memory=1e-9")),
    ):
        eval_dir = tmp_path / name
        result = run_entry_point(
            "eval.py", *common, *overrides, f"data.cache_dir={eval_dir / 'cache'}", f"hydra.run.dir={eval_dir}"
        )
        assert result.returncode == 0, result.stderr[-3000:]
        evaluated = json.loads((eval_dir / "metrics.json").read_text())
        for key in keys:
            assert evaluated[key] == pytest.approx(trained[key], abs=1e-6), (name, key)
    assert list((tmp_path / "tensor" / "cache").rglob("test-64x32.uint8")), "the cache is not in data.cache_dir"
    assert not (tmp_path / "pil" / "cache").exists(), "the pil pipeline built an image cache"


def test_a_finished_run_directory_is_never_overwritten(trained_run):
    run_dir, _ = trained_run
    before = {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file() and "wandb" not in path.parts}
    result = run_entry_point("train.py", *TINY_TRAIN, f"hydra.run.dir={run_dir}")
    assert result.returncode == 2
    assert "already holds metrics.json" in result.stderr
    for path, content in before.items():
        if path.name != "train.log":
            assert path.read_bytes() == content, path


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        (
            ("experiment=lfm_resnet50", "model.pretrained=false", "data.root=/nonexistent"),
            ("data.root=/nonexistent", "bounding_box_train/"),
        ),
        (("model.backbone=resnet51",), ("model.backbone", "resnet18")),
        (("model.lfm.mask_ratio=1.5",), ("model.lfm", "mask_ratio", "1.5")),
        pytest.param(("model.lfm.area=[0.5,0.1]",), ("model.lfm", "area"), marks=pytest.mark.slow),
        pytest.param(("model.lfm.p=1.2",), ("model.lfm", "p must be in [0, 1]", "1.2"), marks=pytest.mark.slow),
        pytest.param(("model.lfm.aspect=[0,2]",), ("model.lfm", "aspect"), marks=pytest.mark.slow),
        pytest.param(("model.lfm.fill=purple",), ("model.lfm", "fill", "purple"), marks=pytest.mark.slow),
        (("model.lfm.after=layer9",), ("model.lfm.after", "layer9", "layer1")),
        (("data.val_ids=100000",), ("data.val_ids",)),
        (("data.cache_max_memory=1e-9",), ("data.cache_max_memory=1e-09", "set data.pipeline=pil")),
        (("data.pipeline=dali",), ("data.pipeline", "tensor", "pil")),
        (("ckpt_path=/nonexistent/last.ckpt",), ("ckpt_path=/nonexistent/last.ckpt",)),
    ],
)
def test_bad_training_input_gives_one_line(tiny_market, tmp_path, overrides, fragments):
    data = tmp_path / "market"
    shutil.copytree(tiny_market, data)
    result = run_entry_point(
        "train.py",
        "data=market1501",
        f"data.root={data}",
        "model.backbone=resnet18",
        "debug=fast",
        *overrides,
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert_one_line_error(result, *fragments)


def remove_query_folder(root):
    shutil.rmtree(root / "query")


def empty_query_folder(root):
    for path in (root / "query").iterdir():
        path.unlink()


def add_unparsable_name(root):
    (root / "bounding_box_train" / "holiday_photo.jpg").write_bytes(b"")


@pytest.mark.parametrize(
    ("damage", "fragments"),
    [
        (remove_query_folder, ("is missing query/",)),
        pytest.param(empty_query_folder, ("query holds no usable images",), marks=pytest.mark.slow),
        (add_unparsable_name, ("holiday_photo.jpg", "0002_c1s1_000451_03.jpg")),
    ],
)
def test_wrong_layout_gives_one_line(tiny_market, tmp_path, damage, fragments):
    data = tmp_path / "market"
    shutil.copytree(tiny_market, data)
    damage(data)
    result = run_entry_point(
        "train.py",
        "data=market1501",
        f"data.root={data}",
        "model.backbone=resnet18",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert_one_line_error(result, str(data), *fragments)


def test_full_traceback_on_request(tmp_path):
    command, env = entry_point("train.py", "model.lfm.p=7", f"hydra.run.dir={tmp_path / 'run'}")
    env["HYDRA_FULL_ERROR"] = "1"
    result = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "Traceback" in result.stderr and "InputError" in result.stderr


def test_corrupt_image_stops_the_run_before_training(tiny_market, tmp_path):
    data = tmp_path / "market"
    shutil.copytree(tiny_market, data)
    corrupt = sorted((data / "bounding_box_test").glob("0*.jpg"))[0]
    corrupt.write_bytes(b"\xff\xd8 not a jpeg")
    result = run_entry_point(
        "train.py",
        "data=market1501",
        f"data.root={data}",
        "model.backbone=resnet18",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert_one_line_error(result, f"cannot read image {corrupt}")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_pretrained_weights_unavailable_offline(tiny_market, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    result = run_entry_point(
        "train.py", "experiment=lfm_resnet50", f"data.root={tiny_market}", f"hydra.run.dir={tmp_path / 'run'}"
    )
    assert_one_line_error(result, "model.pretrained", "resnet50", str(tmp_path / "torch"))


def test_eval_with_missing_or_corrupt_checkpoint(tmp_path):
    missing = run_entry_point("eval.py", f"ckpt_path={tmp_path / 'none.ckpt'}", f"hydra.run.dir={tmp_path / 'a'}")
    assert_one_line_error(missing, f"ckpt_path={tmp_path / 'none.ckpt'}")
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"definitely not a checkpoint")
    result = run_entry_point("eval.py", f"ckpt_path={corrupt}", f"hydra.run.dir={tmp_path / 'b'}")
    assert_one_line_error(result, str(corrupt))


def test_eval_reranks_and_writes_a_feature_file_that_python_m_lfm_metrics_reproduces(trained_run, tmp_path):
    run_dir, _ = trained_run
    eval_dir = tmp_path / "eval"
    result = run_entry_point(
        "eval.py",
        f"ckpt_path={run_dir / 'checkpoints/best.ckpt'}",
        f"hydra.run.dir={eval_dir}",
        "logger.wandb.mode=disabled",
        "model.rerank=true",
        "model.rerank_settings={k1: 8, k2: 3}",
        "save_features=true",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test/rerank: rank1=" in result.stdout
    evaluated = json.loads((eval_dir / "metrics.json").read_text())
    trained = json.loads((run_dir / "metrics.json").read_text())
    assert evaluated["test/mAP"] == pytest.approx(trained["test/mAP"], abs=1e-6)
    assert 0 < evaluated["test/mINP"] <= evaluated["test/rank10"]
    assert evaluated["test/rerank/mAP"] != pytest.approx(evaluated["test/mAP"], abs=1e-6)
    features = eval_dir / "features.npz"
    assert evaluated["features_file/test"] == str(features)
    command, env = entry_point("eval.py")
    reproduced = subprocess.run(
        [command[0], "-m", "lfm.metrics", str(features), "--rerank", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
    )
    assert reproduced.returncode == 0, reproduced.stderr
    metrics = json.loads(reproduced.stdout)
    for key in ("rank1", "rank5", "rank10", "mAP", "mINP", "rerank/rank1", "rerank/mAP", "rerank/mINP"):
        assert metrics[key] == pytest.approx(evaluated[f"test/{key}"], abs=1e-9), key


def test_a_model_key_eval_cannot_change_gives_one_line(trained_run, tmp_path):
    run_dir, _ = trained_run
    result = run_entry_point(
        "eval.py",
        f"ckpt_path={run_dir / 'checkpoints/best.ckpt'}",
        f"hydra.run.dir={tmp_path / 'eval'}",
        "logger.wandb.mode=disabled",
        "+model.backbone=resnet50",
    )
    assert_one_line_error(result, "model.backbone cannot change at evaluation")


@pytest.mark.slow
def test_eval_on_more_test_sets_reports_each(trained_run, tmp_path):
    run_dir, _ = trained_run
    result = run_entry_point(
        "eval.py",
        f"ckpt_path={run_dir / 'checkpoints/best.ckpt'}",
        f"hydra.run.dir={tmp_path / 'e'}",
        "logger.wandb.mode=disabled",
        "data.test_sets=[synthetic_duke]",
        f"paths.data_dir={tmp_path / 'data'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    evaluated = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert 0 < evaluated["test/synthetic_duke/mAP"] < 1 and "test/mAP" in evaluated
    assert "synthetic_duke: rank1=" in result.stdout
