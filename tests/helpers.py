"""Helpers shared by the tests (importable because pytest puts tests/ on sys.path)."""

import os
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TINY_SCALE = 0.15


def entry_point(script: str, *overrides: str) -> tuple[list[str], dict[str, str]]:
    """The command line and environment to run src/<script> as a user would, W&B offline."""
    env = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "0", "NO_COLOR": "1"}
    env.pop("WANDB_API_KEY", None)
    return [sys.executable, str(PROJECT_ROOT / "src" / script), *overrides], env


def run_entry_point(script: str, *overrides: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run src/<script> with Hydra overrides in a subprocess and wait for it."""
    command, env = entry_point(script, *overrides)
    return subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
