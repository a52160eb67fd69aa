"""Run a W&B sweep file with no W&B server: each run a training process, failures isolated, resumable.

Layout of a sweep's output directory:
    sweep_state.json      one record per run: parameters, status (finished | failed), exit code, error, seconds,
                          start and end time, where it ran (host, executor, GPU or threads, SLURM job id)
    runs/<run_id>/        the run's own directory (config.yaml, metrics.json, checkpoints, wandb/,
                          and the runner's stdout.log, stderr.log)
    attempts/<run_id>-N/  an unfinished earlier attempt, moved aside before the run starts again
    results.csv           the results table of every finished run (lfm.analysis.results)
    optuna.db             method bayes: the Optuna search (unless --storage names another)
    slurm/                --executor slurm: submitit's job files and logs
"""

import hashlib
import json
import re
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from lfm.analysis.results import collect_runs, print_table, table_console, write_table
from lfm.errors import InputError
from lfm.jobs.executors import Executor, LocalExecutor
from lfm.jobs.progress import end_line
from lfm.jobs.schedule import run_tasks
from lfm.jobs.steps import FAILED, RESULT_FILE, Outcome, Task, in_order, read_state, set_aside
from lfm.runs.outputs import write_json
from lfm.sweeps.command import hydra_overrides, parameter_overrides, render_command
from lfm.sweeps.config_check import check_against_config, has_key
from lfm.sweeps.proposals import propose_runs, sweep_size
from lfm.sweeps.spec import SweepSpec, load_sweep, with_overrides

STATE_FILE = "sweep_state.json"
RESULTS_FILE = "results.csv"
RUN = "run"  # the one kind of step a sweep has (for the progress estimate)


@dataclass(frozen=True)
class SweepResult:
    out_dir: Path
    state: dict
    rows: list[dict]
    table_path: Path

    @property
    def failed(self) -> list[str]:
        return [run_id for run_id, record in self.state["runs"].items() if record["status"] == FAILED]


def run_id(parameters: dict, overrides: list[str]) -> str:
    """Readable and deterministic: the values, then a hash of the run's whole override list."""
    slug = "_".join(f"{key.rsplit('.', 1)[-1]}-{value}" for key, value in parameters.items())
    slug = re.sub(r"[^A-Za-z0-9._-]+", "", slug)[:80]
    digest = hashlib.sha1(json.dumps(overrides).encode()).hexdigest()[:8]
    return f"{slug}_{digest}" if slug else digest


def load_state(path: Path, spec: SweepSpec) -> dict:
    return read_state(
        path, "sweep", {"sweep": spec.name, "sweep_file": str(spec.path), "method": spec.method, "runs": {}}
    )


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


def run_points(
    sweep: PreparedSweep,
    out_dir: Path,
    state: dict,
    executor: Executor,
    retry_failed: bool,
    interpreter: str,
    console: Console,
) -> dict:
    """Run each proposed run not finished yet (failed ones again only if `retry_failed`); the state."""
    spec, state_path = sweep.spec, out_dir / STATE_FILE
    order, labels, parameters_of, tasks = [], {}, {}, []
    for index, parameters in enumerate(sweep.points, start=1):
        identifier = run_id(parameters, hydra_overrides(spec, parameters))
        run_dir = out_dir / "runs" / identifier
        order.append(identifier)
        labels[identifier] = label = escape(
            f"[{index}/{len(sweep.points)}] {' '.join(parameter_overrides(parameters))}"
        )
        parameters_of[identifier] = parameters
        previous = state["runs"].get(identifier)
        if (run_dir / RESULT_FILE).is_file():
            console.print(f"{label}: finished earlier, skipped", soft_wrap=True)
        elif previous is not None and previous["status"] == FAILED and not retry_failed:
            console.print(
                f"{label}: failed earlier ({escape(previous['error'])}), skipped; --retry-failed runs it again",
                soft_wrap=True,
            )
        else:
            command = sweep.command(parameters, run_dir, interpreter)
            tasks.append(
                Task(
                    identifier, RUN, run_dir, partial(start_run, label, run_dir, command, out_dir / "attempts", console)
                )
            )

    def on_end(outcome: Outcome, progress: str) -> None:
        key = outcome.task.key
        record = state["runs"][key] = {"parameters": parameters_of[key], **outcome.record()}
        state["runs"] = in_order(state["runs"], order)
        write_json(state_path, state)
        value = final_metric(outcome.task.run_dir, spec.metric) if outcome.finished else None
        console.print(
            end_line(labels[key], record, outcome.task.run_dir, metric_text(spec.metric, value), progress),
            soft_wrap=True,
        )

    run_tasks(tasks, executor, done=set(), on_end=on_end, on_blocked=lambda task, progress: None)
    return state


def run_sweep(
    sweep_file: Path,
    out_dir: Path | None = None,
    count: int | None = None,
    seed: int | None = None,
    retry_failed: bool = False,
    bayes_as_random: bool = False,
    overrides: tuple[str, ...] = (),
    executor: Executor | None = None,
    storage: str | None = None,
    heartbeat: int = 60,
    interpreter: str = sys.executable,
    console: Console | None = None,
) -> SweepResult:
    """Validate the sweep file, then run each run not finished yet; write and print the results table.

    Runs go through `executor` (default: one at a time on this machine). A run that fails is recorded and
    the sweep goes on. Running the same command again resumes: finished runs (those with metrics.json) are
    skipped, and failed ones too unless `retry_failed`. Method bayes searches through Optuna (lfm.sweeps.search)
    in `storage` (default: <out>/optuna.db).
    """
    console = console or table_console()
    sweep = prepare_sweep(sweep_file, count, seed, bayes_as_random, overrides)
    spec = sweep.spec
    if storage is not None and not sweep.searched:
        raise InputError(
            f"--storage goes with a Bayesian search (method bayes without --bayes-as-random); "
            f"{spec.path} proposes its runs beforehand"
        )
    out_dir = Path(out_dir or Path("outputs") / "sweeps" / spec.name).resolve()
    state = load_state(out_dir / STATE_FILE, spec)
    executor = executor or LocalExecutor(1)
    out_dir.mkdir(parents=True, exist_ok=True)
    if sweep.searched:
        from lfm.sweeps.search import run_search  # imported here: Optuna's start-up only for a Bayesian search

        console.print(
            f"Sweep {spec.name} (bayes through Optuna, {sweep.size} runs, {executor.jobs} at once) -> {out_dir}"
        )
        state = run_search(
            sweep, out_dir, state, executor, storage, heartbeat, seed, retry_failed, interpreter, console
        )
    else:
        console.print(
            f"Sweep {spec.name} ({spec.method}, {len(sweep.points)} runs, {executor.jobs} at once) -> {out_dir}"
        )
        state = run_points(sweep, out_dir, state, executor, retry_failed, interpreter, console)
    rows = collect_runs(out_dir) if (out_dir / "runs").is_dir() else []
    table_path = write_table(rows, out_dir / RESULTS_FILE)
    print_table(rows, title=f"Sweep {spec.name}: {len(rows)} finished runs", console=console)
    console.print(f"Results table: {table_path}")
    return SweepResult(out_dir=out_dir, state=state, rows=rows, table_path=table_path)
