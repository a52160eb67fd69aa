"""Run a task from a Hydra entry point: bad input becomes one line on stderr and exit code 2."""

import os
import re
import sys
from collections.abc import Callable

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from lfm.errors import InputError

# A DataLoader worker re-raises our error wrapped in its traceback; keep only our message.
WORKER_PREFIX = re.compile(r"^.*?InputError: ")


def one_line(error: InputError) -> str:
    last_line = str(error).strip().splitlines()[-1]
    return WORKER_PREFIX.sub("", last_line)


def run_task(task: Callable[[DictConfig], dict], cfg: DictConfig) -> float | None:
    """Run `task(cfg)` and return its `cfg.optimized_metric` (for sweepers), if it has one.

    In a multirun a failed job prints its error and returns NaN so the sweep goes on.
    Set HYDRA_FULL_ERROR=1 to see the traceback instead.
    """
    try:
        metrics = task(cfg)
    except InputError as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {one_line(error)}", file=sys.stderr)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            return float("nan")
        sys.exit(2)
    name = cfg.get("optimized_metric")
    if name is None:
        return None
    if name not in metrics:
        print(f"warning: optimized_metric={name} is not among this run's metrics {sorted(metrics)}", file=sys.stderr)
        return None
    return metrics[name]
