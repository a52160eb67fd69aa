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

import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from lfm.analysis.results import collect_runs, print_table, table_console, write_table
from lfm.errors import InputError
from lfm.files import write_json
from lfm.jobs.executors import Executor, LocalExecutor
from lfm.jobs.progress import end_line
from lfm.jobs.schedule import run_tasks
from lfm.jobs.steps import FAILED, RESULT_FILE, Outcome, Task, in_order, read_state
from lfm.sweeps.command import hydra_overrides, parameter_overrides
from lfm.sweeps.runs import RUN, STATE_FILE, PreparedSweep, final_metric, metric_text, prepare_sweep, run_id, start_run
from lfm.sweeps.spec import SweepSpec

RESULTS_FILE = "results.csv"


@dataclass(frozen=True)
class SweepResult:
    out_dir: Path
    state: dict
    rows: list[dict]
    table_path: Path

    @property
    def failed(self) -> list[str]:
        return [run_id for run_id, record in self.state["runs"].items() if record["status"] == FAILED]


def load_state(path: Path, spec: SweepSpec) -> dict:
    return read_state(
        path, "sweep", {"sweep": spec.name, "sweep_file": str(spec.path), "method": spec.method, "runs": {}}
    )


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
