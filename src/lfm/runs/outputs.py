"""What every run writes: its resolved config, provenance, metrics, and its loggers."""

import json
import os
import platform
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, Logger, MLFlowLogger, TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from lfm.errors import InputError
from lfm.files import flatten, write_json
from lfm.project import PROJECT_ROOT
from lfm.targets import TARGET_KEY, build, check_target, has_target, locate

TRACKED_PACKAGES = (
    "lfm-reid",
    "torch",
    "torchvision",
    "lightning",
    "torchmetrics",
    "hydra-core",
    "omegaconf",
    "wandb",
    "tensorboard",
    "mlflow-skinny",
    "numpy",
)
WANDB_MODES = ("auto", "online", "offline", "disabled")
LOGGER_KEY = "logger"
# the MLflow store and artifacts of a run, inside its directory
MLFLOW_STORE = "mlflow.db"
MLFLOW_ARTIFACTS = "mlartifacts"
RESULT_FILES = ("metrics.json", "checkpoints")
# How long the other ranks wait for rank 0's run.json (rank 0 may first build a dataset's cache).
RUN_INFO_TIMEOUT = 1800.0


def claim_run_dir(run_dir: Path, resuming: bool = False) -> None:
    """Refuse to reuse a directory that already holds a run's results (or, unless resuming
    that run, its checkpoints)."""
    taken = [name for name in RESULT_FILES if (run_dir / name).exists() and not (resuming and name == "checkpoints")]
    if taken:
        raise InputError(
            f"output directory {run_dir} already holds {', '.join(taken)}; choose another hydra.run.dir "
            f"(earlier results are never overwritten)"
        )
    run_dir.mkdir(parents=True, exist_ok=True)


def unfinished_run_checkpoint(run_dir: Path) -> Path | None:
    """`run_dir`'s last checkpoint if it holds a training run that did not finish, else None."""
    last = run_dir / "checkpoints" / "last.ckpt"
    return last if last.is_file() and not (run_dir / "metrics.json").exists() else None


def git_commit() -> str | None:
    """The project's git commit (with '-dirty' when there are uncommitted changes), if any."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("-dirty" if dirty else "")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in TRACKED_PACKAGES:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def save_run_info(run_dir: Path, cfg: DictConfig) -> dict:
    """Write config.yaml (resolved) and run.json (seed, command, commit, versions, W&B id).

    A resumed run keeps its run.json (and so its W&B id) and records the resumption in it.
    The W&B id is WANDB_RUN_ID when set (a `wandb agent` sets it so the run joins its sweep).
    Returns the run.json contents.
    """
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    start = {
        "command": [sys.executable, *sys.argv],
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "host": platform.node(),
    }
    path = run_dir / "run.json"
    if path.is_file():
        info = json.loads(path.read_text())
        info.setdefault("resumed", []).append(start)
    else:
        wandb_id = os.environ.get("WANDB_RUN_ID") or uuid.uuid4().hex[:8]
        info = {"seed": cfg.get("seed"), **start, "versions": package_versions(), "wandb_id": wandb_id}
    write_json(path, info)
    return info


def read_run_info(run_dir: Path, timeout: float = RUN_INFO_TIMEOUT) -> dict:
    """run.json as rank 0 wrote it (for the other DDP ranks). Under an external launcher (torchrun, srun) all
    ranks start at once, so a rank may get here before rank 0 wrote it: wait for it (it appears whole)."""
    path = run_dir / "run.json"
    deadline = time.monotonic() + timeout
    while not path.is_file():
        if time.monotonic() > deadline:
            raise FileNotFoundError(f"{path}: rank 0 did not write it within {timeout:.0f} s (did rank 0 fail?)")
        time.sleep(0.1)
    return json.loads(path.read_text())


def resolve_wandb_mode(mode: str, key: str) -> str:
    """The W&B mode of config key `key`; 'auto': WANDB_MODE if set, else online when WANDB_API_KEY is set, else
    offline."""
    if mode not in WANDB_MODES:
        raise InputError(f"{key} must be one of {WANDB_MODES}, got {mode!r}")
    if mode != "auto":
        return mode
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def _logger_entries(logger_cfg: DictConfig | None) -> dict[str, DictConfig]:
    """The logger config's entries that are on: null, or an entry with `mode: disabled` (W&B's off switch), is off."""
    entries = {}
    for label, entry in (logger_cfg or {}).items():
        if entry is None or (isinstance(entry, DictConfig) and entry.get("mode") == "disabled"):
            continue
        if not isinstance(entry, DictConfig):
            raise InputError(
                f"{LOGGER_KEY}.{label}={entry} is not a logger entry; choose loggers with "
                f"logger=[csv,tensorboard,mlflow,wandb], or give {{{TARGET_KEY}: <Logger class>, <its arguments>}}"
            )
        entries[str(label)] = entry
    return entries


def _run_arguments(
    target: object, entry: DictConfig, run_dir: Path, run_name: str, config: dict, run_info: dict
) -> dict:
    """What the code gives a built-in logger: where it writes in `run_dir` and which run it continues (from
    run.json); the entry's own arguments win. Any other logger gets nothing."""
    if target is CSVLogger:
        resumptions = len(run_info.get("resumed", []))
        # a version of its own for each resumption: Lightning's CSV logger would replace an existing file
        arguments = {
            "save_dir": str(run_dir),
            "name": "csv",
            "version": f"resumed_{resumptions}" if resumptions else "",
        }
    elif target is TensorBoardLogger:
        arguments = {"save_dir": str(run_dir), "name": "tensorboard", "version": ""}
    elif target is WandbLogger:
        arguments = {"name": run_name, "id": run_info.get("wandb_id"), "save_dir": str(run_dir), "config": config}
    elif target is MLFlowLogger:
        arguments = {"run_name": run_name, "run_id": run_info.get("mlflow_run_id")}
        if "tracking_uri" not in entry and not os.environ.get("MLFLOW_TRACKING_URI"):
            # a SQLite store: MLflow 3 refuses its plain file store, and SQLite needs no server
            arguments["tracking_uri"] = f"sqlite:///{run_dir.absolute() / MLFLOW_STORE}"
            arguments["artifact_location"] = str(run_dir.absolute() / MLFLOW_ARTIFACTS)
    else:
        return {}
    return {name: value for name, value in arguments.items() if name not in entry}


def _entry_of(target: object, entry: DictConfig, key: str) -> DictConfig | dict:
    """The entry to build: a W&B logger's with its mode checked and `auto` resolved, any other as it is."""
    if target is not WandbLogger:
        return entry
    resolved = OmegaConf.to_container(entry, resolve=True)
    resolved["mode"] = resolve_wandb_mode(resolved.get("mode", "auto"), f"{key}.mode")
    return resolved


def check_loggers(logger_cfg: DictConfig | None) -> None:
    """Check every logger entry (import path, arguments, a Lightning Logger, W&B mode) without building one:
    no file, no run."""
    for label, entry in _logger_entries(logger_cfg).items():
        key = f"{LOGGER_KEY}.{label}"
        target = locate(entry[TARGET_KEY], key) if has_target(entry) else None
        placeholders = _run_arguments(target, entry, Path("."), "", {}, {})
        check_target(_entry_of(target, entry, key), key, Logger, **placeholders)


def build_loggers(
    logger_cfg: DictConfig | None, run_dir: Path, run_name: str, config: dict, run_info: dict
) -> list[Logger]:
    """The loggers of the `logger.<label>` entries: the built-in ones write in `run_dir` and continue the runs
    that run.json names (W&B, MLflow); any other is built as configured.

    TensorBoard and a new MLflow run also get the resolved config as params (`model.lfm.p`, ...); a new
    MLflow run's id is added to run.json, so that a resumed run logs to the same MLflow run.
    """
    loggers: list[Logger] = []
    for label, entry in _logger_entries(logger_cfg).items():
        key = f"{LOGGER_KEY}.{label}"
        target = locate(entry[TARGET_KEY], key) if has_target(entry) else None
        entry = _entry_of(target, entry, key)
        if target is WandbLogger:
            _prepare_wandb_dirs(run_dir, entry["mode"])
        logger = build(entry, key, Logger, **_run_arguments(target, entry, run_dir, run_name, config, run_info))
        if target is MLFlowLogger and rank_zero_only.rank == 0 and "mlflow_run_id" not in run_info:
            run_info["mlflow_run_id"] = logger.run_id  # creates the run (and the store: seconds, the first time)
            write_json(run_dir / "run.json", run_info)
            logger.log_hyperparams(flatten(config))
        if target is TensorBoardLogger:
            logger.log_hyperparams(flatten(config))
        loggers.append(logger)
    return loggers


def _prepare_wandb_dirs(run_dir: Path, mode: str) -> None:
    """W&B keeps its files (and, offline, its cache and settings) in the run directory."""
    wandb_dir = run_dir / "wandb"
    wandb_dir.mkdir(parents=True, exist_ok=True)
    os.environ["WANDB_DIR"] = str(run_dir)
    os.environ["WANDB_DATA_DIR"] = str(wandb_dir / "data")
    if mode == "offline":
        os.environ["WANDB_CACHE_DIR"] = str(wandb_dir / "cache")
        os.environ["WANDB_CONFIG_DIR"] = str(wandb_dir / "config")


def finish_loggers(loggers: list[Logger]) -> None:
    """Close the W&B run so the next run in the same process (Hydra multirun) starts a new one."""
    if any(isinstance(logger, WandbLogger) for logger in loggers):
        import wandb  # imported here, not at the top: half a second of start-up that CSV-only runs skip

        wandb.finish()
