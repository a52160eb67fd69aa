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

from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from omegaconf import DictConfig, OmegaConf

from lfm.errors import InputError
from lfm.files import write_json
from lfm.project import PROJECT_ROOT

TRACKED_PACKAGES = (
    "lfm-reid",
    "torch",
    "torchvision",
    "lightning",
    "torchmetrics",
    "hydra-core",
    "omegaconf",
    "wandb",
    "numpy",
)
WANDB_MODES = ("auto", "online", "offline", "disabled")
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


def resolve_wandb_mode(mode: str) -> str:
    """'auto': WANDB_MODE if set, else online when WANDB_API_KEY is set, else offline."""
    if mode not in WANDB_MODES:
        raise InputError(f"logger.wandb.mode must be one of {WANDB_MODES}, got {mode!r}")
    if mode != "auto":
        return mode
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def build_loggers(logger_cfg: DictConfig, run_dir: Path, run_name: str, config: dict, run_info: dict) -> list[Logger]:
    """A CSV logger and, unless disabled, a W&B run saved in run_dir/wandb under run.json's id.

    The CSV log is run_dir/csv/metrics.csv; each resumption writes csv/resumed_<n>/metrics.csv
    (Lightning's CSV logger would replace an existing file).
    """
    loggers: list[Logger] = []
    if logger_cfg.get("csv", True):
        resumptions = len(run_info.get("resumed", []))
        version = f"resumed_{resumptions}" if resumptions else ""
        loggers.append(CSVLogger(save_dir=run_dir, name="csv", version=version))
    wandb_cfg = logger_cfg.get("wandb")
    if wandb_cfg is None:
        return loggers
    mode = resolve_wandb_mode(wandb_cfg.get("mode", "auto"))
    if mode == "disabled":
        return loggers
    wandb_dir = run_dir / "wandb"
    wandb_dir.mkdir(parents=True, exist_ok=True)
    os.environ["WANDB_DIR"] = str(run_dir)
    os.environ["WANDB_DATA_DIR"] = str(wandb_dir / "data")
    if mode == "offline":
        os.environ["WANDB_CACHE_DIR"] = str(wandb_dir / "cache")
        os.environ["WANDB_CONFIG_DIR"] = str(wandb_dir / "config")
    loggers.append(
        WandbLogger(
            project=wandb_cfg.get("project", "lfm"),
            name=run_name,
            id=run_info["wandb_id"],
            save_dir=str(run_dir),
            group=wandb_cfg.get("group"),
            tags=list(wandb_cfg.get("tags") or []),
            mode=mode,
            config=config,
        )
    )
    return loggers


def finish_loggers(loggers: list[Logger]) -> None:
    """Close the W&B run so the next run in the same process (Hydra multirun) starts a new one."""
    if any(isinstance(logger, WandbLogger) for logger in loggers):
        import wandb  # imported here, not at the top: half a second of start-up that CSV-only runs skip

        wandb.finish()
