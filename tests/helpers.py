"""Helpers shared by the tests (importable because pytest puts tests/ on sys.path)."""

import os
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TINY_SCALE = 0.15
# one short LFM training run on a tiny generated dataset through src/train.py
TINY_TRAIN = (
    "experiment=lfm_resnet18_synthetic",
    "debug=fast",
    f"data.synthetic.scale={TINY_SCALE}",
    "data.image_size=[64,32]",
    "data.val_ids=3",
    "logger.wandb.mode=offline",
    "model.lfm.after=layer1",
    "model.lfm.mask_ratio=0.25",
)


def entry_point(script: str, *overrides: str) -> tuple[list[str], dict[str, str]]:
    """The command line and environment to run src/<script> as a user would, W&B offline."""
    env = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "0", "NO_COLOR": "1"}
    env.pop("WANDB_API_KEY", None)
    return [sys.executable, str(PROJECT_ROOT / "src" / script), *overrides], env


# a lab's own methods, in a module outside the package (tests/plugins/lab_methods.py)
LAB_METHODS = PROJECT_ROOT / "tests" / "plugins"


def with_lab_methods(env: dict[str, str]) -> dict[str, str]:
    """`env` with tests/plugins first on PYTHONPATH, as a user's own module folder."""
    return {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(LAB_METHODS), env.get("PYTHONPATH")]))}


def run_entry_point(script: str, *overrides: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run src/<script> with Hydra overrides in a subprocess and wait for it."""
    command, env = entry_point(script, *overrides)
    return subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """The entry point failed on bad input: exit code 2, one `error:` line holding each fragment, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
