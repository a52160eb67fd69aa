"""Run a W&B sweep file with no W&B server: each run a training process, failures isolated, resumable.

Layout of a sweep's output directory:
    sweep_state.json      one record per run: parameters, status (finished | failed), exit code, error, seconds
    runs/<run_id>/        the run's own directory (config.yaml, metrics.json, checkpoints, wandb/,
                          and the runner's stdout.log, stderr.log)
    attempts/<run_id>-N/  an unfinished earlier attempt, moved aside before the run starts again
    results.csv           the results table of every finished run (lfm.results)
"""

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from lfm.errors import InputError
from lfm.results import collect_runs, print_table, table_console, write_table
from lfm.runs import write_json
from lfm.sweeps.command import hydra_overrides, parameter_overrides, render_command
from lfm.sweeps.config_check import check_against_config, has_key
from lfm.sweeps.proposals import propose_runs
from lfm.sweeps.spec import SweepSpec, load_sweep

STATE_FILE = "sweep_state.json"
RESULTS_FILE = "results.csv"
FINISHED, FAILED = "finished", "failed"


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


def read_state(path: Path, kind: str, fresh: dict) -> dict:
    """The bookkeeping of a sweep or study (`kind`) in `path`, or `fresh` when there is none yet;
    refuses the file of another sweep or study (`fresh[kind]` names this one)."""
    if not path.is_file():
        return fresh
    try:
        state = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise InputError(f"{path} is not valid JSON; delete it to start the {kind}'s bookkeeping afresh") from None
    if state.get(kind) != fresh[kind]:
        raise InputError(f"{path.parent} holds {kind} {state.get(kind)!r}, not {fresh[kind]!r}; pass another --out")
    return state


def load_state(path: Path, spec: SweepSpec) -> dict:
    return read_state(path, "sweep", {"sweep": spec.name, "sweep_file": str(spec.path), "method": spec.method, "runs": {}})


# Hydra's closing hint after a traceback; the line before it names the exception.
HYDRA_HINT = "Set the environment variable HYDRA_FULL_ERROR=1"


def last_error_line(stderr_path: Path) -> str:
    """The run's `error: ...` line if it printed one, else the last line it wrote to stderr (the exception)."""
    lines = [line.strip() for line in stderr_path.read_text(errors="replace").splitlines()
             if line.strip() and not line.startswith(HYDRA_HINT)]
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or ["(no output on stderr)"])[-1]


def set_aside(run_dir: Path, attempts_dir: Path) -> None:
    """Move an unfinished attempt out of the way (the program never reuses a directory with results)."""
    attempts_dir.mkdir(parents=True, exist_ok=True)
    number = 1 + sum(1 for path in attempts_dir.glob(f"{run_dir.name}-*"))
    run_dir.rename(attempts_dir / f"{run_dir.name}-{number}")


def execute(command: list[str], run_dir: Path) -> tuple[int, float]:
    """Run one process with its output appended to run_dir/{stdout,stderr}.log; (exit code, seconds)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with (run_dir / "stdout.log").open("a") as stdout, (run_dir / "stderr.log").open("a") as stderr:
        returncode = subprocess.run(command, stdout=stdout, stderr=stderr, env=os.environ.copy()).returncode
    return returncode, time.perf_counter() - start


def final_metric(run_dir: Path, metric: dict | None) -> str:
    if metric is None:
        return ""
    value = json.loads((run_dir / "metrics.json").read_text()).get(metric["name"])
    return f": {metric['name']}={value:.4f}" if isinstance(value, (int, float)) else ""


@dataclass(frozen=True)
class PreparedSweep:
    """A checked sweep file, its runs' parameter values, and the config its fixed overrides compose."""

    spec: SweepSpec
    points: list[dict]
    base_config: dict

    def run_overrides(self, run_dir: Path) -> list[str]:
        """What the runner adds to each run's command: its directory and, with a W&B logger, the sweep's group."""
        overrides = [f"hydra.run.dir={run_dir}"]
        if has_key(self.base_config, "logger.wandb.group"):
            overrides.append(f"logger.wandb.group={self.spec.name}")
        return overrides


def prepare_sweep(sweep_file: Path, count: int | None = None, seed: int = 0,
                  bayes_as_random: bool = False) -> PreparedSweep:
    """Check the sweep file against the program's config and propose its runs, before anything runs."""
    spec = load_sweep(sweep_file)
    if spec.method == "bayes" and not bayes_as_random:
        raise InputError(f"{spec.path}: method bayes needs the W&B server (wandb sweep + wandb agent); offline, pass "
                         f"--bayes-as-random to search the same space at random")
    points = propose_runs(spec, count, seed)
    return PreparedSweep(spec, points, check_against_config(spec, points))


def run_one(sweep: PreparedSweep, parameters: dict, run_dir: Path, interpreter: str) -> dict:
    """Run one training process in run_dir; its record for the state file."""
    command = [*render_command(sweep.spec, parameters, interpreter), *sweep.run_overrides(run_dir)]
    returncode, seconds = execute(command, run_dir)
    finished = returncode == 0 and (run_dir / "metrics.json").is_file()
    return {
        "parameters": parameters,
        "status": FINISHED if finished else FAILED,
        "returncode": returncode,
        "error": None if finished else last_error_line(run_dir / "stderr.log"),
        "seconds": round(seconds, 1),
        "command": command,
    }


def run_sweep(sweep_file: Path, out_dir: Path | None = None, count: int | None = None, seed: int = 0,
              retry_failed: bool = False, bayes_as_random: bool = False, interpreter: str = sys.executable,
              console: Console | None = None) -> SweepResult:
    """Validate the sweep file, then run each proposed run not finished yet; write and print the results table.

    A run that fails is recorded and the sweep goes on. Running the same command again resumes: finished
    runs (those with metrics.json) are skipped, and failed ones too unless `retry_failed`.
    """
    console = console or table_console()
    sweep = prepare_sweep(sweep_file, count, seed, bayes_as_random)
    spec = sweep.spec
    out_dir = Path(out_dir or Path("outputs") / "sweeps" / spec.name)
    state_path = out_dir / STATE_FILE
    state = load_state(state_path, spec)
    out_dir.mkdir(parents=True, exist_ok=True)
    console.print(f"Sweep {spec.name} ({spec.method}, {len(sweep.points)} runs) -> {out_dir}")
    for index, parameters in enumerate(sweep.points, start=1):
        identifier = run_id(parameters, hydra_overrides(spec, parameters))
        run_dir = out_dir.resolve() / "runs" / identifier
        label = escape(f"[{index}/{len(sweep.points)}] {' '.join(parameter_overrides(parameters))}")
        previous = state["runs"].get(identifier)
        if (run_dir / "metrics.json").is_file():
            console.print(f"{label}: finished earlier, skipped")
            continue
        if previous is not None and previous["status"] == FAILED and not retry_failed:
            console.print(f"{label}: failed earlier ({escape(previous['error'])}), skipped; "
                          f"--retry-failed runs it again")
            continue
        if run_dir.exists():
            set_aside(run_dir, out_dir / "attempts")
        console.print(f"{label}: running in {run_dir}")
        record = state["runs"][identifier] = run_one(sweep, parameters, run_dir, interpreter)
        write_json(state_path, state)
        if record["status"] == FINISHED:
            console.print(f"    finished in {record['seconds']:.0f} s{final_metric(run_dir, spec.metric)}")
        else:
            console.print(f"    [red]FAILED[/red] (exit {record['returncode']}) in {record['seconds']:.0f} s: "
                          f"{escape(record['error'])}; log: {run_dir / 'stderr.log'}")
    rows = collect_runs(out_dir) if (out_dir / "runs").is_dir() else []
    table_path = write_table(rows, out_dir / RESULTS_FILE)
    print_table(rows, title=f"Sweep {spec.name}: {len(rows)} finished runs", console=console)
    console.print(f"Results table: {table_path}")
    return SweepResult(out_dir=out_dir, state=state, rows=rows, table_path=table_path)
