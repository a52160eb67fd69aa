"""The train and eval tasks behind src/train.py and src/eval.py."""

import logging
from contextlib import contextmanager
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, RichProgressBar
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_only
from omegaconf import DictConfig, OmegaConf

from lfm.callbacks import LocalFeatureMaskingCallback, MaskedFractionMonitor, TrainingSpeedMonitor
from lfm.data.cifar import CIFARDataModule
from lfm.data.datamodule import ReIDDataModule
from lfm.errors import InputError
from lfm.models.classification import ClassificationModule
from lfm.models.reid import RANKING_KEYS, ReIDModule, build_optimizer
from lfm.randomness import RandomStateCallback
from lfm.robustness import evaluate_robustness, parse_attack_settings
from lfm.runs import (
    build_loggers,
    claim_run_dir,
    finish_loggers,
    read_run_info,
    save_run_info,
    unfinished_run_checkpoint,
    write_json,
)

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
    settings = {key: value for key, value in settings.items() if key not in ("name", "seed")}
    try:
        return task_parts(task)[0](**settings, seed=seed)
    except TypeError as error:
        raise InputError(f"unknown data setting ({error}); see conf/data/ for the valid keys") from None


def build_trainer(cfg: DictConfig, run_dir: Path, loggers: list, callbacks: list) -> L.Trainer:
    settings = OmegaConf.to_container(cfg.trainer, resolve=True)
    try:
        return L.Trainer(**settings, logger=loggers, callbacks=callbacks, default_root_dir=str(run_dir))
    except (TypeError, ValueError) as error:
        raise InputError(f"invalid trainer setting: {error}") from None


def build_lfm_callback(cfg: DictConfig) -> LocalFeatureMaskingCallback | None:
    """The LFM callback of `callbacks.lfm`, if the config has one."""
    settings = cfg.get("callbacks", {}).get("lfm")
    if settings is None:
        return None
    return LocalFeatureMaskingCallback(**OmegaConf.to_container(settings, resolve=True))


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
    """Fail on a bad model, LFM, optimizer, scheduler, LFM callback or trainer value at once
    (a few hundredths of a second), before any data is generated, scanned or decoded.

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
    trainer = check_trainer(cfg, run_dir)
    lfm_callback = build_lfm_callback(cfg)
    if lfm_callback is not None:
        with torch.device("meta"):
            lfm_callback.on_fit_start(trainer, model)


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
    callbacks = [
        checkpoint, RichProgressBar(), LearningRateMonitor(logging_interval="epoch"), MaskedFractionMonitor(),
        TrainingSpeedMonitor(),
        RandomStateCallback(cfg.seed),
    ]
    lfm_callback = build_lfm_callback(cfg)
    if lfm_callback is not None:
        callbacks.append(lfm_callback)
    trainer = build_trainer(cfg, run_dir, loggers, callbacks)
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from)
        metrics = {
            key: float(value) for key, value in trainer.callback_metrics.items()
            if key.startswith(("val/", "train/lfm_", "train/images_per_second", "train/epoch_seconds"))
            and not key.endswith(("_step", "_epoch"))
        }
        metrics["seed"] = cfg.seed
        metrics["epochs"] = trainer.current_epoch
        metrics["best_checkpoint"] = checkpoint.best_model_path
        if cfg.get("test", True):
            trainer.test(model, datamodule=datamodule, ckpt_path=checkpoint.best_model_path or None, weights_only=True)
            metrics.update({f"test/{key}": value for key, value in model.test_results.items()})
    finally:
        finish_loggers(loggers)
    if primary:
        write_json(run_dir / "metrics.json", metrics)
        report(metrics, run_dir)
    return metrics


def evaluate(cfg: DictConfig) -> dict:
    """Rank query against gallery with a trained checkpoint; write metrics.json.

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
    check_trainer(cfg, run_dir)
    primary = rank_zero_only.rank == 0
    if primary:
        claim_run_dir(run_dir)
    checkpoint = load_checkpoint(checkpoint_path)
    task = checkpoint.get("task", "reid")
    data = cfg.get("data")
    settings = OmegaConf.to_container(data, resolve=True) if data else dict(checkpoint["datamodule_hyper_parameters"])
    datamodule = build_datamodule(settings, cfg.seed, task)
    datamodule.prepare_data()
    datamodule.setup("test")
    model = load_module(checkpoint_path, checkpoint)
    source = model if source_path is None else load_module(source_path, load_checkpoint(source_path), task)
    run_info = save_run_info(run_dir, cfg) if primary else read_run_info(run_dir)
    loggers = build_loggers(cfg.logger, run_dir, cfg.run_name, OmegaConf.to_container(cfg, resolve=True), run_info)
    trainer = build_trainer(cfg, run_dir, loggers, [RichProgressBar()])
    try:
        trainer.test(model, datamodule=datamodule)
    finally:
        finish_loggers(loggers)
    metrics = {f"test/{key}": value for key, value in model.test_results.items()}
    metrics["checkpoint"] = str(checkpoint_path)
    if not primary:
        return metrics
    if attack is not None and attack.enabled:
        metrics.update(evaluate_robustness(
            task, model, source, datamodule.test_dataloader(shard=False), attack, trainer.strategy.root_device, run_dir,
            {"preset": attack.name, "checkpoint": str(checkpoint_path), "source_checkpoint": str(source_path or checkpoint_path)},
        ))
    write_json(run_dir / "metrics.json", metrics)
    report(metrics, run_dir)
    return metrics


def load_module(path: Path, checkpoint: dict, expected_task: str | None = None) -> L.LightningModule:
    """The LightningModule of a checkpoint, of the class its task names (re-ID if none)."""
    task = checkpoint.get("task", "reid")
    if expected_task is not None and task != expected_task:
        raise InputError(f"attack.source_ckpt_path={path} holds a {task} model; the evaluated checkpoint is {expected_task}")
    return task_parts(task)[1].load_from_checkpoint(path, map_location="cpu", weights_only=True)


def load_checkpoint(path: Path) -> dict:
    """Read a Lightning checkpoint without executing code from it (weights_only)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise InputError(f"cannot read checkpoint {path} ({type(error).__name__}); pass a .ckpt written by src/train.py") from None
    if "hyper_parameters" not in checkpoint or "datamodule_hyper_parameters" not in checkpoint:
        raise InputError(f"checkpoint {path} was not written by src/train.py (no model/data settings inside)")
    return checkpoint


def report(metrics: dict, run_dir: Path) -> None:
    """Print the headline metrics and where the run's files are."""
    parts = [f"{key}={metrics[f'test/{key}']:.4f}" for key in (*RANKING_KEYS, "accuracy") if f"test/{key}" in metrics]
    print(f"\nResults: {' '.join(parts)}")
    print(f"Run directory: {run_dir}")
