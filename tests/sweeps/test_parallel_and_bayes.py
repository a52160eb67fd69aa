"""Sweeps that outgrow one process: --jobs 2, the SLURM path (submitit's local executor) and the Bayesian
search through Optuna, on a stand-in program that takes a second per run (tests/sweeps/fake_program)."""

import csv
import io
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import optuna
import pytest
from helpers import PROJECT_ROOT
from rich.console import Console

from lfm.jobs.executors import LocalExecutor, SlurmExecutor, SlurmOptions
from lfm.sweeps.runner import run_sweep
from lfm.sweeps.runs import STATE_FILE
from lfm.sweeps.search import suggest
from lfm.sweeps.spec import load_sweep

FAKE_PROGRAM = Path(__file__).parent / "fake_program" / "src" / "fake_train.py"
COMMAND = """command:
  - ${env}
  - ${interpreter}
  - ${program}
  - sleep=${envvar:FAKE_SLEEP}
  - fail_above=0.3
  - ${args_no_hyphens}
"""


def write_sweep(directory: Path, name: str, method: str, parameters: str) -> Path:
    """A sweep of the stand-in program: x > 0.3 fails, val/mAP_best = 1 - (x - 0.3)^2."""
    path = directory / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nprogram: {FAKE_PROGRAM}\nmethod: {method}\n"
        f"metric: {{name: val/mAP_best, goal: maximize}}\nparameters:\n{parameters}{COMMAND}"
    )
    return path


GRID = "  x: {values: [0.1, 0.2, 0.9, 0.25]}\n"
BAYES = """  x: {distribution: uniform, min: 0.0, max: 1.0}
  n: {distribution: int_uniform, min: 1, max: 8}
  area: {values: [[0.02, 0.2], [0.1, 0.4]]}
"""


def sweep_command(sweep_file: Path, *options: str) -> list[str]:
    return [sys.executable, str(PROJECT_ROOT / "src" / "sweep.py"), str(sweep_file), *options]


def environment(sleep: float) -> dict[str, str]:
    return {**os.environ, "FAKE_SLEEP": str(sleep), "NO_COLOR": "1"}


def read_table(path: Path) -> list[dict]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def overlap(first: dict, second: dict) -> bool:
    start = max(datetime.fromisoformat(first["started"]), datetime.fromisoformat(second["started"]))
    return start < min(datetime.fromisoformat(first["ended"]), datetime.fromisoformat(second["ended"]))


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    """The grid run one at a time (the reference the parallel runs must equal)."""
    base = tmp_path_factory.mktemp("sequential")
    sweep_file = write_sweep(base, "grid", "grid", GRID)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FAKE_SLEEP", "1")
        result = run_sweep(
            sweep_file, out_dir=base / "out", executor=LocalExecutor(1, gpus=[]), console=Console(file=io.StringIO())
        )
    return sweep_file, result


def test_two_jobs_overlap_in_time_and_give_the_sequential_results(sequential, tmp_path):
    sweep_file, reference = sequential
    out_dir = tmp_path / "parallel"
    ran = subprocess.run(
        sweep_command(sweep_file, "--jobs", "2", "--out", str(out_dir)),
        cwd=PROJECT_ROOT,
        env=environment(1),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 1, ran.stderr[-2000:]  # x = 0.9 fails, in both
    assert read_table(out_dir / "results.csv") == read_table(reference.table_path)
    state = json.loads((out_dir / STATE_FILE).read_text())
    assert list(state["runs"]) == list(reference.state["runs"]), "the state lists the runs in the sweep's order"
    assert [record["status"] for record in state["runs"].values()] == ["finished", "finished", "failed", "finished"]
    records = list(state["runs"].values())
    assert overlap(records[0], records[1]), "the first two runs ran at the same time"
    assert all(record["where"]["executor"] == "local" and record["where"]["host"] for record in records)
    cores = len(os.sched_getaffinity(0))
    for run_dir in (out_dir / "runs").iterdir():
        assert json.loads((run_dir / "env.json").read_text())["OMP_NUM_THREADS"] == str(max(1, cores // 2))
    progress = [line for line in ran.stdout.splitlines() if " left" in line]
    assert len(progress) == 4 and "4 done" not in ran.stdout and progress[-1].endswith("3 done, 1 failed, 0 left")


def test_the_slurm_path_through_submitits_local_executor_gives_the_same_results(sequential, tmp_path):
    sweep_file, reference = sequential
    executor = SlurmExecutor(
        2, tmp_path / "slurm", SlurmOptions(gpus_per_job=0, cpus_per_job=1, mem_gb=1), cluster="local"
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FAKE_SLEEP", "1")
        result = run_sweep(sweep_file, out_dir=tmp_path / "out", executor=executor, console=Console(file=io.StringIO()))
    assert read_table(result.table_path) == read_table(reference.table_path)
    assert [record["status"] for record in result.state["runs"].values()] == [
        "finished",
        "finished",
        "failed",
        "finished",
    ]
    where = [record["where"] for record in result.state["runs"].values()]
    assert all(place["executor"] == "slurm" for place in where) and len({place["job_id"] for place in where}) == 4


def test_bayesian_proposals_follow_the_files_distributions(tmp_path):
    spec = load_sweep(
        write_sweep(
            tmp_path,
            "space",
            "bayes",
            """  p: {distribution: uniform, min: 0.1, max: 0.9}
  ratio: {distribution: log_uniform_values, min: 0.01, max: 1.0}
  epochs: {distribution: int_uniform, min: 2, max: 5}
  step: {distribution: q_uniform, min: 0.0, max: 1.0, q: 0.1}
  area: {values: [[0.02, 0.2], [0.1, 0.4]]}
  after: {value: conv1}
""",
        )
    )
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=200))
    points = []
    for _ in range(200):
        trial = study.ask()
        points.append({parameter.key: suggest(trial, parameter) for parameter in spec.parameters})
        study.tell(trial, 0.0)
    assert all(0.1 <= point["p"] <= 0.9 and 0.01 <= point["ratio"] <= 1.0 for point in points)
    assert {point["epochs"] for point in points} == {2, 3, 4, 5}
    assert {point["step"] for point in points} <= {round(0.1 * index, 10) for index in range(11)}
    assert {json.dumps(point["area"]) for point in points} == {"[0.02, 0.2]", "[0.1, 0.4]"}
    assert {point["after"] for point in points} == {"conv1"}
    # log-uniform: the mean log is the middle of the log range
    assert math.isclose(sum(math.log(point["ratio"]) for point in points) / 200, math.log(0.1), abs_tol=0.35)


def trials_by_process(*outputs: str) -> list[set[int]]:
    """The trial numbers each runner started, from its '[trial N] ...: running in' lines."""
    return [
        {
            int(line.split("]")[0].removeprefix("[trial "))
            for line in output.splitlines()
            if line.startswith("[trial ") and ": running in " in line
        }
        for output in outputs
    ]


def test_two_runners_on_one_storage_share_the_search_and_never_run_a_trial_twice(tmp_path):
    sweep_file = write_sweep(tmp_path, "shared", "bayes", BAYES)
    storage = tmp_path / "search.journal"
    options = ("--count", "6", "--storage", str(storage), "--out")  # a journal file (the killed test: SQLite)
    # the first runner's runs take 4 s, so it is still at work when the second (0.5 s runs) has started
    first = subprocess.Popen(
        sweep_command(sweep_file, *options, str(tmp_path / "first"), "--seed", "1"),
        cwd=PROJECT_ROOT,
        env=environment(4),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not list((tmp_path / "first").glob("runs/trial*")) and time.monotonic() < deadline:
        time.sleep(0.2)
    second = subprocess.run(
        sweep_command(sweep_file, *options, str(tmp_path / "second"), "--seed", "2"),
        cwd=PROJECT_ROOT,
        env=environment(0.5),
        capture_output=True,
        text=True,
        timeout=120,
    )
    first_out, first_err = first.communicate(timeout=120)
    assert first.returncode in (0, 1) and second.returncode in (0, 1), first_err[-2000:] + second.stderr[-2000:]
    joined = re.search(r"search.journal: (\d+) trials so far", second.stdout)
    assert joined and 1 <= int(joined.group(1)) < 6, "the second runner joined the search under way"
    by_first, by_second = trials_by_process(first_out, second.stdout)
    assert by_first and by_second and not by_first & by_second
    assert by_first | by_second == set(range(6))
    study = optuna.load_study(
        study_name="shared",
        storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(storage))),
    )
    assert len(study.trials) == 6
    assert {trial.state.name for trial in study.trials} == {"COMPLETE", "FAIL"}
    for trial in study.trials:
        run_dir = tmp_path / ("first" if trial.number in by_first else "second") / "runs" / trial.user_attrs["run_id"]
        if trial.params["x"] > 0.3:
            assert trial.state == optuna.trial.TrialState.FAIL and not (run_dir / "metrics.json").exists()
        else:
            assert trial.value == json.loads((run_dir / "metrics.json").read_text())["val/mAP_best"]
    # each runner's state file is the whole search, read from the storage; its table holds the runs it ran
    states = [json.loads((tmp_path / name / STATE_FILE).read_text()) for name in ("first", "second")]
    assert sorted(record["trial"] for record in states[1]["runs"].values()) == list(range(6))
    finished_here = [trial for trial in by_second if study.trials[trial].state == optuna.trial.TrialState.COMPLETE]
    assert len(read_table(tmp_path / "second" / "results.csv")) == len(finished_here)


@pytest.mark.slow
def test_a_killed_runners_trial_is_marked_failed_and_the_search_goes_on(tmp_path):
    sweep_file = write_sweep(tmp_path, "killed", "bayes", "  x: {distribution: uniform, min: 0.0, max: 0.3}\n")
    command = sweep_command(sweep_file, "--count", "3", "--heartbeat", "1", "--out", str(tmp_path / "out"))
    killed = subprocess.Popen(
        command,
        cwd=PROJECT_ROOT,
        env=environment(60),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not list((tmp_path / "out").glob("runs/trial0000*")) and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(killed.pid, signal.SIGKILL)  # the runner and its run, as a lost node would
    killed.wait(timeout=10)
    time.sleep(2.5)  # past the grace period (two heartbeats)
    resumed = subprocess.run(command, cwd=PROJECT_ROOT, env=environment(0), capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 1, resumed.stderr[-2000:]  # the killed run counts as failed
    assert "1 trials so far, 2 to run here" in resumed.stdout
    # the progress counts the whole search, the killed runner's trial too
    assert "| 1 done, 1 failed, 1 left" in resumed.stdout and "| 2 done, 1 failed, 0 left" in resumed.stdout
    state = json.loads((tmp_path / "out" / STATE_FILE).read_text())
    records = sorted(state["runs"].values(), key=lambda record: record["trial"])
    assert [record["status"] for record in records] == ["failed", "finished", "finished"]
    assert "runner stopped" in records[0]["error"]
    assert len(read_table(tmp_path / "out" / "results.csv")) == 2
    study = optuna.load_study(study_name="killed", storage=f"sqlite:///{tmp_path / 'out' / 'optuna.db'}")
    assert [trial.state.name for trial in study.trials] == ["FAIL", "COMPLETE", "COMPLETE"]
