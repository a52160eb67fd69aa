"""Loggers chosen in the config: CSV, TensorBoard and MLflow at once through src/train.py (their files in the
run directory, the MLflow run read back with its params and metrics, a resumed run continuing them), and the
check of the logger entries, which builds nothing."""

import json
import shutil

import pytest
from helpers import PROJECT_ROOT, TINY_TRAIN, assert_one_line_error, run_entry_point
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from lfm.errors import InputError
from lfm.runs.outputs import build_loggers, check_loggers

LOGGED_TRAIN = (
    *(override for override in TINY_TRAIN if not override.startswith("logger.")),
    "logger=[csv,tensorboard,mlflow]",
    "trainer.log_every_n_steps=1",
)
HPARAMS_TAG = "_hparams_/session_start_info"


def logger_config(*overrides: str):
    """The `logger` node of conf/train.yaml composed with these overrides."""
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides)).logger


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory, data_dir):
    """One short training run with CSV, TensorBoard and MLflow loggers."""
    run_dir = tmp_path_factory.mktemp("loggers") / "run"
    result = run_entry_point("train.py", *LOGGED_TRAIN, f"paths.data_dir={data_dir}", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def mlflow_runs(run_dir):
    """The runs in the MLflow store of a run directory, as `mlflow ui --backend-store-uri` would show them."""
    from mlflow import MlflowClient  # a second of import, for these tests only

    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("lfm")
    return client, client.search_runs([experiment.experiment_id])


def tensorboard_hparams(log_dir) -> dict:
    """The hparams TensorBoard's HPARAMS tab shows for a log directory."""
    from google.protobuf.json_format import MessageToDict
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.metadata import parse_session_start_info_plugin_data

    events = EventAccumulator(str(log_dir))
    events.Reload()
    content = events.summary_metadata[HPARAMS_TAG].plugin_data.content
    return MessageToDict(parse_session_start_info_plugin_data(content))["hparams"]


def test_csv_tensorboard_and_mlflow_log_the_run_in_its_directory(logged_run):
    run_dir = logged_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert (run_dir / "csv" / "metrics.csv").is_file()
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    hparams = tensorboard_hparams(run_dir / "tensorboard")
    assert (
        hparams["seed"] == 0 and hparams["data.name"] == "synthetic_market" and hparams["model.lfm.mask_ratio"] == 0.25
    )

    _, runs = mlflow_runs(run_dir)
    assert len(runs) == 1
    run = runs[0]
    assert run.info.run_id == json.loads((run_dir / "run.json").read_text())["mlflow_run_id"]
    assert run.info.status == "FINISHED" and run.info.run_name == "lfm_resnet18_synthetic"
    params = run.data.params
    assert params["seed"] == "0" and params["data.name"] == "synthetic_market" and params["model.lfm.after"] == "layer1"
    assert params["model.lfm.mask_ratio"] == "0.25"
    logged = run.data.metrics
    assert {"train/loss", "val/mAP", "val/mAP_best", "test/rank1", "test/mAP"} <= set(logged)
    assert logged["test/mAP"] == pytest.approx(metrics["test/mAP"])


@pytest.mark.slow
def test_a_resumed_run_continues_its_mlflow_run_and_tensorboard_folder(logged_run, data_dir, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(logged_run, run_dir)
    (run_dir / "metrics.json").unlink()  # an unfinished run: src/train.py resumes it from checkpoints/last.ckpt
    first_id = json.loads((run_dir / "run.json").read_text())["mlflow_run_id"]
    event_files = set((run_dir / "tensorboard").glob("events.out.tfevents.*"))

    result = run_entry_point("train.py", *LOGGED_TRAIN, f"paths.data_dir={data_dir}", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Resuming from {run_dir / 'checkpoints' / 'last.ckpt'}" in result.stdout + result.stderr
    run_info = json.loads((run_dir / "run.json").read_text())
    assert run_info["mlflow_run_id"] == first_id and len(run_info["resumed"]) == 1
    client, runs = mlflow_runs(run_dir)
    assert [run.info.run_id for run in runs] == [first_id] and runs[0].info.status == "FINISHED"
    assert len(client.get_metric_history(first_id, "test/mAP")) == 2  # the first start's test and the resumed one's
    assert event_files < set((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert not [path for path in (run_dir / "tensorboard").iterdir() if path.is_dir()]
    assert (run_dir / "csv" / "resumed_1" / "metrics.csv").is_file()


def test_a_logger_that_is_no_lightning_logger_exits_2_naming_its_key_before_any_data_work(tmp_path):
    result = run_entry_point(
        "train.py",
        *TINY_TRAIN,
        "+logger.mine={_target_:collections.OrderedDict}",
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert_one_line_error(result, "logger.mine._target_=collections.OrderedDict", "is not a lightning.pytorch")
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    "overrides",
    [(), ("logger=csv",), ("logger=[csv,tensorboard,mlflow,wandb]",), ("logger.wandb.mode=online",)],
)
def test_the_logger_configs_pass_the_check_and_it_writes_nothing(overrides, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check_loggers(logger_config(*overrides))
    assert not any(tmp_path.iterdir())


def test_logger_csv_is_the_csv_log_alone():
    assert list(logger_config("logger=csv")) == ["csv"]
    assert list(logger_config()) == ["csv", "wandb"]


@pytest.mark.parametrize(
    ("entries", "fragments"),
    [
        ({"mine": {"_target_": "nowhere.Logger"}}, ("logger.mine._target_=nowhere.Logger", "no module nowhere")),
        ({"mine": {"_target_": "collections.OrderedDict"}}, ("logger.mine._target_=collections.OrderedDict",)),
        ({"csv": {"_target_": "lightning.pytorch.loggers.CSVLogger", "bogus": 1}}, ("logger.csv:", "'bogus'")),
        ({"csv": True}, ("logger.csv=True is not a logger entry", "logger=[csv,")),
        ({"mine": {"project": "lfm"}}, ("logger.mine has no _target_",)),
        (
            {"wb": {"_target_": "lightning.pytorch.loggers.WandbLogger", "mode": "sometimes"}},
            ("logger.wb.mode must be one of", "'sometimes'"),
        ),
    ],
)
def test_check_loggers_names_the_bad_entry(entries, fragments):
    with pytest.raises(InputError) as error:
        check_loggers(OmegaConf.create(entries))
    assert all(fragment in str(error.value) for fragment in fragments), str(error.value)


def test_a_null_entry_or_a_disabled_wandb_entry_is_off(tmp_path):
    entries = OmegaConf.create({"csv": None, "wandb": {"mode": "disabled"}})  # debug=fast with logger=csv
    check_loggers(entries)
    assert build_loggers(entries, tmp_path, "run", {}, {}) == []
