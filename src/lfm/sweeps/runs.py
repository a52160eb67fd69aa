"""A sweep's runs, shared by the runner of proposed runs (lfm.sweeps.runner) and the Bayesian search
(lfm.sweeps.search): the checked sweep, each run's id, command and final metric."""

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from lfm.jobs.steps import RESULT_FILE, set_aside
from lfm.sweeps.command import render_command
from lfm.sweeps.config_check import check_against_config, has_key
from lfm.sweeps.proposals import propose_runs, sweep_size
from lfm.sweeps.spec import SweepSpec, load_sweep, with_overrides

STATE_FILE = "sweep_state.json"
RUN = "run"  # the one kind of step a sweep has (for the progress estimate)


def run_id(parameters: dict, overrides: list[str]) -> str:
    """Readable and deterministic: the values, then a hash of the run's whole override list."""
    slug = "_".join(f"{key.rsplit('.', 1)[-1]}-{value}" for key, value in parameters.items())
    slug = re.sub(r"[^A-Za-z0-9._-]+", "", slug)[:80]
    digest = hashlib.sha1(json.dumps(overrides).encode()).hexdigest()[:8]
    return f"{slug}_{digest}" if slug else digest


def final_metric(run_dir: Path, metric: dict | None):
    """The value of the sweep's metric in a finished run's metrics.json (None when absent or not a number)."""
    if metric is None:
        return None
    value = json.loads((run_dir / RESULT_FILE).read_text()).get(metric["name"])
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class PreparedSweep:
    """A checked sweep file, its runs' parameter values (none for a Bayesian search: Optuna proposes them as it
    goes), the number of runs it makes, and the config its fixed overrides compose."""

    spec: SweepSpec
    points: list[dict]
    size: int | None
    base_config: dict

    @property
    def searched(self) -> bool:
        """A Bayesian search through Optuna, rather than runs proposed before the first one starts."""
        return self.spec.method == "bayes" and not self.points

    def run_overrides(self, run_dir: Path) -> list[str]:
        """What the runner adds to each run's command: its directory and, with a W&B logger, the sweep's group."""
        overrides = [f"hydra.run.dir={run_dir}"]
        if has_key(self.base_config, "logger.wandb.group"):
            overrides.append(f"logger.wandb.group={self.spec.name}")
        return overrides

    def command(self, parameters: dict, run_dir: Path, interpreter: str) -> list[str]:
        return [*render_command(self.spec, parameters, interpreter), *self.run_overrides(run_dir)]


def prepare_sweep(
    sweep_file: Path,
    count: int | None = None,
    seed: int | None = None,
    bayes_as_random: bool = False,
    overrides: tuple[str, ...] = (),
) -> PreparedSweep:
    """Check the sweep file (with `overrides` added to every run) against the program's config and propose its
    runs, before anything runs."""
    spec = with_overrides(load_sweep(sweep_file), list(overrides))
    size = sweep_size(spec, count)
    searched = spec.method == "bayes" and not bayes_as_random
    points = [] if searched else propose_runs(spec, count, seed or 0)
    return PreparedSweep(spec, points, size, check_against_config(spec, points))


def start_run(label: str, run_dir: Path, command: list[str], attempts_dir: Path, console: Console) -> list[str]:
    """Make way for a run (an unfinished attempt is moved aside) and say where it runs; its command."""
    if run_dir.exists():
        set_aside(run_dir, attempts_dir)
    console.print(f"{label}: running in {run_dir}", soft_wrap=True)
    return command


def metric_text(metric: dict | None, value) -> str:
    """': <metric>=<value>' for a run's end line ('' when there is no value)."""
    return f": {metric['name']}={value:.4f}" if value is not None else ""
