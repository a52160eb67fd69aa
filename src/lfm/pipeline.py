"""The train and eval tasks behind src/train.py and src/eval.py."""

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, RichProgressBar
from omegaconf import DictConfig, OmegaConf

from lfm.callbacks import LocalFeatureMaskingCallback, MaskedFractionMonitor
from lfm.data.datamodule import ReIDDataModule
from lfm.errors import InputError
from lfm.models.reid import RANKING_KEYS, ReIDModule
from lfm.runs import build_loggers, claim_run_dir, finish_loggers, save_run_info, write_json


def build_datamodule(settings: dict, seed: int) -> ReIDDataModule:
    """The DataModule from `data` settings (`name` labels runs; `seed` comes from the run)."""
    settings = {key: value for key, value in settings.items() if key not in ("name", "seed")}
    try:
        return ReIDDataModule(**settings, seed=seed)
    except TypeError as error:
        raise InputError(f"unknown data setting ({error}); see conf/data/ for the valid keys") from None


def build_trainer(cfg: DictConfig, run_dir: Path, loggers: list, callbacks: list) -> L.Trainer:
    settings = OmegaConf.to_container(cfg.trainer, resolve=True)
    try:
        return L.Trainer(**settings, logger=loggers, callbacks=callbacks, default_root_dir=str(run_dir))
    except (TypeError, ValueError) as error:
        raise InputError(f"invalid trainer setting: {error}") from None


def check_checkpoint(path: str | None) -> Path | None:
    if path is None:
        return None
    checkpoint = Path(path).expanduser()
    if not checkpoint.is_file():
        raise InputError(f"ckpt_path={checkpoint} does not exist; pass a .ckpt file from a run's checkpoints/ folder")
    return checkpoint


def train(cfg: DictConfig) -> dict:
    """Fit, then test the best checkpoint; write config, provenance, checkpoints and metrics."""
    run_dir = Path(cfg.paths.output_dir)
    resume_from = check_checkpoint(cfg.get("ckpt_path"))
    claim_run_dir(run_dir)
    L.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(OmegaConf.to_container(cfg.data, resolve=True), cfg.seed)
    datamodule.prepare_data()
    datamodule.setup("fit")
    datamodule.setup("test")
    model = ReIDModule(**OmegaConf.to_container(cfg.model, resolve=True), num_classes=datamodule.num_classes)
    save_run_info(run_dir, cfg)
    has_validation = datamodule.val_set is not None
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best",
        monitor="val/mAP" if has_validation else None,
        mode="max",
        save_last=True,
    )
    loggers = build_loggers(cfg.logger, run_dir, cfg.run_name, OmegaConf.to_container(cfg, resolve=True))
    callbacks = [checkpoint, RichProgressBar(), LearningRateMonitor(logging_interval="epoch"), MaskedFractionMonitor()]
    lfm_callback = cfg.get("callbacks", {}).get("lfm")
    if lfm_callback is not None:
        callbacks.append(LocalFeatureMaskingCallback(**OmegaConf.to_container(lfm_callback, resolve=True)))
    trainer = build_trainer(cfg, run_dir, loggers, callbacks)
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from)
        metrics = {
            key: float(value) for key, value in trainer.callback_metrics.items()
            if key.startswith(("val/", "train/lfm_")) and not key.endswith(("_step", "_epoch"))
        }
        metrics["seed"] = cfg.seed
        metrics["epochs"] = trainer.current_epoch
        metrics["best_checkpoint"] = checkpoint.best_model_path
        if cfg.get("test", True):
            trainer.test(model, datamodule=datamodule, ckpt_path=checkpoint.best_model_path or None, weights_only=True)
            metrics.update({f"test/{key}": value for key, value in model.test_results.items()})
    finally:
        finish_loggers(loggers)
    write_json(run_dir / "metrics.json", metrics)
    report(metrics, run_dir)
    return metrics


def evaluate(cfg: DictConfig) -> dict:
    """Rank query against gallery with a trained checkpoint; write metrics.json."""
    run_dir = Path(cfg.paths.output_dir)
    checkpoint_path = check_checkpoint(cfg.get("ckpt_path"))
    if checkpoint_path is None:
        raise InputError("ckpt_path is not set; pass ckpt_path=/path/to/checkpoints/best.ckpt")
    claim_run_dir(run_dir)
    checkpoint = load_checkpoint(checkpoint_path)
    data = cfg.get("data")
    settings = OmegaConf.to_container(data, resolve=True) if data else dict(checkpoint["datamodule_hyper_parameters"])
    datamodule = build_datamodule(settings, cfg.seed)
    datamodule.prepare_data()
    datamodule.setup("test")
    model = ReIDModule.load_from_checkpoint(checkpoint_path, map_location="cpu", weights_only=True)
    save_run_info(run_dir, cfg)
    loggers = build_loggers(cfg.logger, run_dir, cfg.run_name, OmegaConf.to_container(cfg, resolve=True))
    trainer = build_trainer(cfg, run_dir, loggers, [RichProgressBar()])
    try:
        trainer.test(model, datamodule=datamodule)
    finally:
        finish_loggers(loggers)
    metrics = {f"test/{key}": value for key, value in model.test_results.items()}
    metrics["checkpoint"] = str(checkpoint_path)
    write_json(run_dir / "metrics.json", metrics)
    report(metrics, run_dir)
    return metrics


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
    parts = [f"{key}={metrics[f'test/{key}']:.4f}" for key in RANKING_KEYS if f"test/{key}" in metrics]
    print(f"\nResults: {' '.join(parts)}")
    print(f"Run directory: {run_dir}")
