"""The train and eval tasks behind src/train.py and src/eval.py."""

import logging
from contextlib import contextmanager
from pathlib import Path

import lightning as L
import torch
from hydra import compose
from hydra.core.global_hydra import GlobalHydra
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, RichProgressBar
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_only
from omegaconf import DictConfig, OmegaConf

from lfm.attacks.robustness import evaluate_robustness, parse_attack_settings
from lfm.data.cifar import CIFARDataModule
from lfm.data.datamodule import ReIDDataModule
from lfm.errors import InputError
from lfm.files import write_json
from lfm.metrics.features_file import save_features
from lfm.models.classification import ClassificationModule
from lfm.models.optimization import build_optimizer
from lfm.models.reid import RANKING_KEYS, ReIDModule, check_evaluation_settings
from lfm.runs.callbacks import LocalFeatureMaskingCallback
from lfm.runs.outputs import (
    build_loggers,
    check_loggers,
    claim_run_dir,
    finish_loggers,
    read_run_info,
    save_run_info,
    unfinished_run_checkpoint,
)
from lfm.targets import build

# task (config key `task`) -> (DataModule, LightningModule, metric that picks the best checkpoint)
TASKS = {
    "reid": (ReIDDataModule, ReIDModule, "val/mAP"),
    "classification": (CIFARDataModule, ClassificationModule, "val/accuracy"),
}


def task_parts(task: str) -> tuple:
    if task not in TASKS:
        raise InputError(f"task must be one of {list(TASKS)}, got {task!r}")
    return TASKS[task]


def build_datamodule(settings: dict, seed: int, task: str = "reid") -> L.LightningDataModule:
    """The DataModule from `data` settings (`name` labels runs; `seed` comes from the run)."""
    settings = {key: value for key, value in settings.items() if key not in ("name", "seed", "test_sets")}
    try:
        return task_parts(task)[0](**settings, seed=seed)
    except TypeError as error:
        raise InputError(f"unknown data setting ({error}); see conf/data/ for the valid keys") from None


# Data settings src/eval.py may change (conf/eval.yaml `data:`): how the test images are loaded, never which.
DATA_LOADING_KEYS = ("eval_batch_size", "num_workers", "pipeline", "cache_dir", "cache_max_memory", "cache_on_device")
# Settings a test set takes from the run's own data config, so every test set is evaluated alike.
EVALUATION_DATA_KEYS = ("image_size", *DATA_LOADING_KEYS)


def testing_data_settings(trained: dict) -> dict:
    """A checkpoint's data settings for testing: without its batch transforms, which act in training
    only, so evaluating a checkpoint does not need the user's transform module."""
    return {key: value for key, value in trained.items() if key != "batch_transforms"}


def resolve_test_sets(cfg: DictConfig, main_settings: dict) -> dict[str, dict]:
    """The data settings of each name in `data.test_sets` (a conf/data/ config), resolved against this run's
    config (its paths), with the main test set's evaluation settings (image size, batch size, pipeline, workers)."""
    names = list(cfg.data.get("test_sets") or []) if cfg.get("data") else []
    if not names:
        return {}
    if cfg.get("task", "reid") != "reid":
        raise InputError("data.test_sets is for re-ID runs; set data.test_sets=[] for a classification run")
    if not GlobalHydra.instance().is_initialized():
        raise InputError("data.test_sets needs Hydra's config search path: run src/train.py or src/eval.py")
    settings = {}
    for name in names:
        try:
            data = compose(config_name=f"data/{name}").data
        except Exception:  # Hydra's MissingConfigException and its kin for a name that is no config
            raise InputError(
                f"data.test_sets names {name!r}, which is not a data config; use names of "
                f"conf/data/*.yaml, e.g. data.test_sets=[synthetic_duke]"
            ) from None
        root = OmegaConf.merge(OmegaConf.masked_copy(cfg, [key for key in cfg if key != "data"]), {"data": data})
        resolved = OmegaConf.to_container(root.data, resolve=True)
        resolved.update({key: main_settings[key] for key in EVALUATION_DATA_KEYS if key in main_settings})
        resolved.pop("test_sets", None)
        settings[name] = resolved
    return settings


def run_extra_test_sets(
    trainer: L.Trainer, model: L.LightningModule, test_sets: dict[str, dict], seed: int, **test_options
) -> dict[str, tuple[L.LightningDataModule, dict]]:
    """Test `model` on each extra test set: {name: (its DataModule, its metrics as test/<name>/<metric>)}."""
    results = {}
    for name, settings in test_sets.items():
        datamodule = build_datamodule(settings, seed, "reid")
        datamodule.prepare_data()
        datamodule.setup("test")
        model.test_prefix = f"test/{name}"
        try:
            trainer.test(model, datamodule=datamodule, **test_options)
        finally:
            model.test_prefix = "test"
        results[name] = (datamodule, {f"test/{name}/{key}": value for key, value in model.test_results.items()})
    return results


def build_trainer(cfg: DictConfig, run_dir: Path, loggers: list, callbacks: list) -> L.Trainer:
    settings = OmegaConf.to_container(cfg.trainer, resolve=True)
    try:
        return L.Trainer(**settings, logger=loggers, callbacks=callbacks, default_root_dir=str(run_dir))
    except (TypeError, ValueError) as error:
        raise InputError(f"invalid trainer setting: {error}") from None


def build_callbacks(cfg: DictConfig) -> list[Callback]:
    """The callbacks of the `callbacks.<label>` entries that are on (not null), each built from its `_target_`."""
    entries = cfg.get("callbacks") or {}
    return [build(entry, f"callbacks.{label}", Callback) for label, entry in entries.items() if entry is not None]


@contextmanager
def lightning_quiet():
    """Hold back Lightning's info lines (devices, tips), so a check's throwaway Trainer prints nothing."""
    lightning_log = logging.getLogger("lightning.pytorch")
    level = lightning_log.level
    lightning_log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        lightning_log.setLevel(level)


def check_trainer(cfg: DictConfig, run_dir: Path) -> L.Trainer:
    """A throwaway Trainer from `trainer` settings: Lightning checks them when it builds one."""
    with lightning_quiet():
        return build_trainer(cfg, run_dir, [], [])


def check_config(cfg: DictConfig, run_dir: Path, task: str) -> None:
    """Fail on a bad model (backbone, feature regularizers), optimizer, scheduler, callback, logger or
    trainer value at once (a few hundredths of a second), before any data is generated, scanned or decoded.

    The network is built on the meta device (no memory, no initialisation) with a stand-in
    class count; pretrained weights are read for their names and shapes only.
    """
    settings = OmegaConf.to_container(cfg.model, resolve=True)
    with torch.device("meta"):
        try:
            model = task_parts(task)[1](**settings, num_classes=2)
        except TypeError as error:
            raise InputError(f"invalid model setting ({error}); see conf/model/ for the valid keys") from None
        build_optimizer(model.net, settings["optimizer"], settings["scheduler"], cfg.trainer.get("max_epochs") or 1)
    check_loggers(cfg.get("logger"))
    trainer = check_trainer(cfg, run_dir)
    for callback in build_callbacks(cfg):
        if isinstance(callback, LocalFeatureMaskingCallback):  # its insertion points are checked at fit start
            with torch.device("meta"):
                callback.on_fit_start(trainer, model)


def check_checkpoint(path: str | None) -> Path | None:
    if path is None:
        return None
    checkpoint = Path(path).expanduser()
    if not checkpoint.is_file():
        raise InputError(f"ckpt_path={checkpoint} does not exist; pass a .ckpt file from a run's checkpoints/ folder")
    return checkpoint


ARCHITECTURE_KEYS = ("backbone", "last_stride", "embedding_dim")


def check_architecture(checkpoint_path: Path, model_cfg: DictConfig) -> None:
    """Refuse a checkpoint whose network differs from the configured one, naming the key."""
    trained = load_checkpoint(checkpoint_path)["hyper_parameters"]
    for key in ARCHITECTURE_KEYS:
        if trained.get(key) != model_cfg.get(key):
            raise InputError(
                f"checkpoint {checkpoint_path} holds a model with model.{key}={trained.get(key)}, but this run "
                f"has model.{key}={model_cfg.get(key)}; set model.{key}={trained.get(key)} or use another checkpoint"
            )


def train(cfg: DictConfig) -> dict:
    """Fit, then test the best checkpoint; write config, provenance, checkpoints and metrics.

    A run directory holding an unfinished run (checkpoints/last.ckpt, no metrics.json) is
    resumed from its last checkpoint; `ckpt_path` continues from a checkpoint in a new run.
    """
    run_dir = Path(cfg.paths.output_dir)
    task = cfg.get("task", "reid")
    _, module_class, monitor = task_parts(task)
    check_config(cfg, run_dir, task)
    test_sets = resolve_test_sets(cfg, OmegaConf.to_container(cfg.data, resolve=True))
    explicit = check_checkpoint(cfg.get("ckpt_path"))
    unfinished = unfinished_run_checkpoint(run_dir)
    if explicit and unfinished:
        raise InputError(
            f"{run_dir} holds an unfinished run: resume it without ckpt_path, or choose another hydra.run.dir"
        )
    # Under DDP every rank runs this function; rank 0 alone keeps the run's books.
    primary = rank_zero_only.rank == 0
    if primary:
        claim_run_dir(run_dir, resuming=unfinished is not None)
    resume_from = explicit or unfinished
    if resume_from is not None:
        check_architecture(resume_from, cfg.model)
        rank_zero_info(f"Resuming from {resume_from}")
    L.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(OmegaConf.to_container(cfg.data, resolve=True), cfg.seed, task)
    datamodule.prepare_data()
    datamodule.setup("fit")
    datamodule.setup("test")
    model = module_class(**OmegaConf.to_container(cfg.model, resolve=True), num_classes=datamodule.num_classes)
    run_info = save_run_info(run_dir, cfg) if primary else read_run_info(run_dir)
    has_validation = datamodule.val_set is not None
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best",
        monitor=monitor if has_validation else None,
        mode="max",
        save_last=True,
    )
    loggers = build_loggers(cfg.logger, run_dir, cfg.run_name, OmegaConf.to_container(cfg, resolve=True), run_info)
    trainer = build_trainer(cfg, run_dir, loggers, [checkpoint, *build_callbacks(cfg)])
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from)
        metrics = {
            key: float(value)
            for key, value in trainer.callback_metrics.items()
            if key.startswith(("val/", "train/lfm_", "train/images_per_second", "train/epoch_seconds"))
            and not key.endswith(("_step", "_epoch"))
        }
        metrics["seed"] = cfg.seed
        metrics["epochs"] = trainer.current_epoch
        metrics["best_checkpoint"] = checkpoint.best_model_path
        if cfg.get("test", True):
            best = {"ckpt_path": checkpoint.best_model_path or None, "weights_only": True}
            trainer.test(model, datamodule=datamodule, **best)
            metrics.update({f"test/{key}": value for key, value in model.test_results.items()})
            for _, set_metrics in run_extra_test_sets(trainer, model, test_sets, cfg.seed, **best).values():
                metrics.update(set_metrics)
    finally:
        finish_loggers(loggers)
    if primary:
        write_json(run_dir / "metrics.json", metrics)
        report(metrics, run_dir)
    return metrics


def evaluate(cfg: DictConfig) -> dict:
    """Rank query against gallery with a trained checkpoint (and on each of `data.test_sets`); write
    metrics.json, and with `save_features` the feature files.

    Under DDP every rank runs this function and shares the clean test (re-ID: features
    gathered, padding duplicates dropped); rank 0 alone keeps the run's books and runs the
    attacks, on the whole test set, so the table equals the single-process one. The other
    ranks return after the clean test.
    """
    run_dir = Path(cfg.paths.output_dir)
    checkpoint_path = check_checkpoint(cfg.get("ckpt_path"))
    if checkpoint_path is None:
        raise InputError("ckpt_path is not set; pass ckpt_path=/path/to/checkpoints/best.ckpt")
    attack = parse_attack_settings(OmegaConf.to_container(cfg.attack, resolve=True)) if cfg.get("attack") else None
    source_path = Path(attack.source_ckpt_path) if attack and attack.source_ckpt_path else None
    check_loggers(cfg.get("logger"))
    check_trainer(cfg, run_dir)
    primary = rank_zero_only.rank == 0
    if primary:
        claim_run_dir(run_dir)
    checkpoint = load_checkpoint(checkpoint_path)
    task = checkpoint.get("task", "reid")
    overrides = evaluation_overrides(cfg, task)
    if cfg.get("save_features") and task != "reid":
        raise InputError(f"save_features=true writes re-ID features; checkpoint {checkpoint_path} holds a {task} model")
    settings = evaluation_data(cfg, checkpoint["datamodule_hyper_parameters"])
    test_sets = resolve_test_sets(cfg, settings)
    datamodule = build_datamodule(settings, cfg.seed, task)
    datamodule.prepare_data()
    datamodule.setup("test")
    model = load_module(checkpoint_path, checkpoint, overrides=overrides)
    model.keep_test_features = task == "reid" and bool(cfg.get("save_features"))
    source = model if source_path is None else load_module(source_path, load_checkpoint(source_path), task)
    run_info = save_run_info(run_dir, cfg) if primary else read_run_info(run_dir)
    loggers = build_loggers(cfg.logger, run_dir, cfg.run_name, OmegaConf.to_container(cfg, resolve=True), run_info)
    trainer = build_trainer(cfg, run_dir, loggers, [RichProgressBar()])
    feature_files = {}  # file name -> (dataset name, its DataModule, the test's gathered samples)
    try:
        trainer.test(model, datamodule=datamodule)
        metrics = {f"test/{key}": value for key, value in model.test_results.items()}
        if model.keep_test_features:
            feature_files["features.npz"] = (settings.get("name", "test"), datamodule, model.test_features)
        for name, (set_datamodule, set_metrics) in run_extra_test_sets(trainer, model, test_sets, cfg.seed).items():
            metrics.update(set_metrics)
            if model.keep_test_features:
                feature_files[f"features_{name}.npz"] = (name, set_datamodule, model.test_features)
    finally:
        finish_loggers(loggers)
    metrics["checkpoint"] = str(checkpoint_path)
    if not primary:
        return metrics
    for file_name, (name, set_datamodule, samples) in feature_files.items():
        path = write_feature_file(run_dir / file_name, model, set_datamodule, samples, name, checkpoint_path)
        metrics[f"features_file/{name}"] = str(path)
    if attack is not None and attack.enabled:
        metrics.update(
            evaluate_robustness(
                task,
                model,
                source,
                datamodule.test_dataloader(shard=False),
                attack,
                trainer.strategy.root_device,
                run_dir,
                {
                    "preset": attack.name,
                    "checkpoint": str(checkpoint_path),
                    "source_checkpoint": str(source_path or checkpoint_path),
                },
            )
        )
    write_json(run_dir / "metrics.json", metrics)
    report(metrics, run_dir)
    return metrics


# Model settings src/eval.py may change (conf/eval.yaml `model:`); the network itself comes from the checkpoint.
EVALUATION_KEYS = ("rerank", "rerank_settings", "distance", "flip_test", "ap")


def evaluation_overrides(cfg: DictConfig, task: str) -> dict:
    """The evaluation settings given under `model` (those not null), checked against the checkpoint's task."""
    given = {
        key: value
        for key, value in OmegaConf.to_container(cfg.get("model") or {}, resolve=True).items()
        if value is not None
    }
    unknown = sorted(set(given) - set(EVALUATION_KEYS))
    if unknown:
        raise InputError(
            f"model.{unknown[0]} cannot change at evaluation (the network comes from the checkpoint); "
            f"the model keys src/eval.py takes are {', '.join(EVALUATION_KEYS)}"
        )
    if given and task != "reid":
        raise InputError(
            f"model.{next(iter(given))} is a re-ID evaluation setting; the checkpoint holds a {task} model"
        )
    check_evaluation_settings(**given)
    return given


def evaluation_data(cfg: DictConfig, trained: dict) -> dict:
    """The data settings to test on: the chosen data config's, else the checkpoint's (`trained`), with the
    loading settings given under `data` (those not null) in place of theirs."""
    given = OmegaConf.to_container(cfg.data, resolve=True) if cfg.get("data") else {}
    loading = {key: given.pop(key) for key in DATA_LOADING_KEYS if key in given}
    # conf/eval.yaml's data holds no root unless a data config was chosen: then test the checkpoint's data.
    if "root" not in given:
        unknown = sorted(set(given) - {"test_sets"})
        if unknown:
            raise InputError(
                f"data.{unknown[0]} cannot change when testing the checkpoint's own data; the data keys "
                f"src/eval.py takes are test_sets, {', '.join(DATA_LOADING_KEYS)} (or data=<config> for another dataset)"
            )
        given = testing_data_settings(trained)
    return {**given, **{key: value for key, value in loading.items() if value is not None}}


def write_feature_file(
    path: Path,
    model: L.LightningModule,
    datamodule: L.LightningDataModule,
    samples: dict,
    dataset: str,
    checkpoint_path: Path,
) -> Path:
    """The test's features, identities and image paths (lfm.metrics.features_file), beside metrics.json."""
    settings = {
        "distance": model.hparams.distance,
        "ap": model.hparams.ap,
        "rerank_settings": dict(model.hparams.get("rerank_settings") or {}),
        "checkpoint": str(checkpoint_path),
        "dataset": dataset,
    }
    image_paths = [sample.path for sample in datamodule.test_set.samples]
    return save_features(path, samples, image_paths, settings)


def load_module(
    path: Path, checkpoint: dict, expected_task: str | None = None, overrides: dict | None = None
) -> L.LightningModule:
    """The LightningModule of a checkpoint, of the class its task names (re-ID if none), with
    `overrides` replacing some of its settings (evaluation settings)."""
    task = checkpoint.get("task", "reid")
    if expected_task is not None and task != expected_task:
        raise InputError(
            f"attack.source_ckpt_path={path} holds a {task} model; the evaluated checkpoint is {expected_task}"
        )
    # the checkpoint holds the trained weights: the ImageNet start is neither read nor fetched
    return task_parts(task)[1].load_from_checkpoint(
        path, map_location="cpu", weights_only=True, **{**(overrides or {}), "pretrained": False}
    )


def load_checkpoint(path: Path) -> dict:
    """Read a Lightning checkpoint without executing code from it (weights_only)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise InputError(
            f"cannot read checkpoint {path} ({type(error).__name__}); pass a .ckpt written by src/train.py"
        ) from None
    if "hyper_parameters" not in checkpoint or "datamodule_hyper_parameters" not in checkpoint:
        raise InputError(f"checkpoint {path} was not written by src/train.py (no model/data settings inside)")
    return checkpoint


def report(metrics: dict, run_dir: Path) -> None:
    """Print the headline metrics (plain, re-ranked, each extra test set) and where the run's files are."""
    groups = sorted({key.rsplit("/", 1)[0] for key in metrics if key.startswith("test/") and key.count("/") > 1})
    print()
    for group in ("test", *groups):
        parts = [
            f"{key}={metrics[f'{group}/{key}']:.4f}"
            for key in (*RANKING_KEYS, "accuracy")
            if isinstance(metrics.get(f"{group}/{key}"), float)
        ]
        if parts:
            print(f"{'Results' if group == 'test' else group}: {' '.join(parts)}")
    print(f"Run directory: {run_dir}")
