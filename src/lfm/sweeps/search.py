"""Bayesian search with no W&B server: a sweep file's parameters as an Optuna search, one Optuna trial per run.

Optuna's TPE sampler proposes each run from the results so far and is told each run's metric (a failed run
as TrialState.FAIL). The search lives in an Optuna storage that several runners, on several machines, can
share: each asks for its own trials, so no trial runs twice. With an SQL storage (the default SQLite file,
or a database URL) each running trial has a heartbeat: when a runner is killed, the next runner to start a
trial marks the silent trial failed (Optuna's fail_stale_trials) and the search goes on.
"""

import json
import threading
import warnings
from functools import partial
from pathlib import Path

import optuna
from optuna.trial import TrialState
from rich.console import Console
from rich.markup import escape
from sqlalchemy.exc import SQLAlchemyError

from lfm.errors import InputError
from lfm.files import write_json
from lfm.jobs.executors import Executor
from lfm.jobs.progress import Progress, end_line
from lfm.jobs.schedule import cancelled_when_interrupted
from lfm.jobs.steps import FAILED, FINISHED, Outcome, Task
from lfm.sweeps.command import hydra_overrides, parameter_overrides
from lfm.sweeps.runs import RUN, STATE_FILE, PreparedSweep, final_metric, metric_text, run_id, start_run
from lfm.sweeps.spec import Parameter

DEFAULT_STORAGE = "optuna.db"
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
STATUS = {TrialState.COMPLETE: FINISHED, TrialState.FAIL: FAILED, TrialState.RUNNING: "running"}
KILLED = "its runner stopped before the run ended (marked failed by Optuna's heartbeat)"


class RunFailed(Exception):
    """A run that did not finish: Optuna records its trial as failed and the search goes on."""


def choice_label(value):
    """What Optuna stores for a categorical value: the value itself, or JSON text for a list or mapping."""
    return value if value is None or isinstance(value, (bool, int, float, str)) else json.dumps(value)


def suggest(trial: optuna.Trial, parameter: Parameter):
    """The trial's value of one parameter, from the Optuna distribution that matches the sweep file's."""
    key = parameter.key
    if parameter.is_discrete:
        labels = [choice_label(value) for value in parameter.values]
        return parameter.values[labels.index(trial.suggest_categorical(key, labels))]
    if parameter.distribution == "int_uniform":
        return trial.suggest_int(key, parameter.low, parameter.high)
    if parameter.distribution == "q_uniform":
        # rounding keeps 0.1 * 3 from printing as 0.30000000000000004 on the command line
        return round(trial.suggest_float(key, parameter.low, parameter.high, step=parameter.q), 10)
    return trial.suggest_float(key, parameter.low, parameter.high, log=parameter.distribution == "log_uniform_values")


def storage_location(storage: str | None, out_dir: Path) -> str:
    """--storage as given, or the default SQLite file in the sweep's output directory."""
    return storage or str(out_dir / DEFAULT_STORAGE)


def open_storage(location: str, heartbeat: int) -> optuna.storages.BaseStorage:
    """An Optuna storage: a database URL, an SQLite file (.db, .sqlite, .sqlite3), any other path a journal file.
    SQL storages get a heartbeat every `heartbeat` seconds."""
    if heartbeat < 1:
        raise InputError(f"--heartbeat must be at least 1 second, got {heartbeat}")
    try:
        if "://" not in location and Path(location).suffix not in SQLITE_SUFFIXES:
            Path(location).parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(location))
        url = location if "://" in location else f"sqlite:///{Path(location).resolve()}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, heartbeat_interval=heartbeat)
    except (ImportError, OSError, ValueError, RuntimeError, SQLAlchemyError) as error:
        message = " ".join(str(error).split())[:300]
        raise InputError(
            f"--storage {location}: cannot open it ({message}); pass an SQLite file (.db), a database "
            f"URL (postgresql://...) or a journal file"
        ) from None


def search_state(study: optuna.Study, state: dict) -> dict:
    """The state file's runs, rebuilt from the storage: every trial of the search, whichever runner ran it."""
    runs = {}
    for trial in study.get_trials(deepcopy=False):
        if "run_id" not in trial.user_attrs:
            continue
        record = {
            "trial": trial.number,
            "parameters": trial.user_attrs["parameters"],
            **trial.user_attrs.get("record", {"error": KILLED if trial.state == TrialState.FAIL else None}),
        }
        runs[trial.user_attrs["run_id"]] = {**record, "status": STATUS.get(trial.state, trial.state.name.lower())}
    return {**state, "runs": runs}


class Search:
    """One runner's part of the search: each trial a run through the executor; the state file written by this
    process (one thread at a time) from the storage."""

    def __init__(
        self,
        sweep: PreparedSweep,
        out_dir: Path,
        study: optuna.Study,
        state: dict,
        executor: Executor,
        progress: Progress,
        interpreter: str,
        console: Console,
    ) -> None:
        self.sweep, self.out_dir, self.study, self.state = sweep, out_dir, study, state
        self.executor, self.progress, self.interpreter, self.console = executor, progress, interpreter, console
        self.lock = threading.Lock()

    def write_state(self) -> None:
        with self.lock:
            self.state = search_state(self.study, self.state)
            write_json(self.out_dir / STATE_FILE, self.state)

    def objective(self, trial: optuna.Trial) -> float:
        spec = self.sweep.spec
        parameters = {parameter.key: suggest(trial, parameter) for parameter in spec.parameters}
        identifier = f"trial{trial.number:04d}_{run_id(parameters, hydra_overrides(spec, parameters))}"
        run_dir = self.out_dir / "runs" / identifier
        trial.set_user_attr("run_id", identifier)
        trial.set_user_attr("parameters", parameters)
        label = escape(f"[trial {trial.number}] {' '.join(parameter_overrides(parameters))}")
        task = Task(
            identifier,
            RUN,
            run_dir,
            partial(
                start_run,
                label,
                run_dir,
                self.sweep.command(parameters, run_dir, self.interpreter),
                self.out_dir / "attempts",
                self.console,
            ),
        )
        with self.lock:
            command = task.start()
        outcome = Outcome(task, command, **self.executor.run(command, run_dir))
        record = outcome.record()
        value = final_metric(run_dir, spec.metric) if outcome.finished else None
        if outcome.finished and value is None:
            record = {**record, "status": FAILED, "error": f"metrics.json has no number {spec.metric['name']}"}
        trial.set_user_attr("record", record)
        with self.lock:
            self.progress.add(RUN, value is not None, outcome.seconds)
            states = [other.state for other in self.study.get_trials(deepcopy=False) if other.number != trial.number]
            done = states.count(TrialState.COMPLETE) + (value is not None)
            failed = states.count(TrialState.FAIL) + (value is None)
            progress = self.progress.set_counts(done, failed, max(0, self.sweep.size - done - failed), RUN)
            self.console.print(
                end_line(label, record, run_dir, metric_text(spec.metric, value), progress), soft_wrap=True
            )
        if value is None:
            raise RunFailed(record["error"])
        return value


def run_search(
    sweep: PreparedSweep,
    out_dir: Path,
    state: dict,
    executor: Executor,
    storage: str | None,
    heartbeat: int,
    seed: int | None,
    retry_failed: bool,
    interpreter: str,
    console: Console,
) -> dict:
    """Run trials until the search holds `sweep.size` of them (failed ones not counted with `retry_failed`,
    so new runs take their place); the state."""
    spec = sweep.spec
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the runner prints one line per run instead
    location = storage_location(storage, out_dir)
    study = optuna.create_study(
        storage=open_storage(location, heartbeat),
        study_name=spec.name,
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=seed, constant_liar=True),
        direction=spec.metric["goal"],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # a killed runner's trial, before counting the trials
    counted = (TrialState.COMPLETE, TrialState.RUNNING, *(() if retry_failed else (TrialState.FAIL,)))
    left = sweep.size - len(study.get_trials(deepcopy=False, states=counted))
    search = Search(
        sweep, out_dir, study, state, executor, Progress([RUN] * max(left, 0), executor.jobs), interpreter, console
    )
    console.print(
        f"Optuna study {spec.name} in {location}: {len(study.trials)} trials so far, {max(left, 0)} to run here"
    )
    if left > 0:
        # the callback stops this runner when the search (all its runners together) holds enough trials
        with cancelled_when_interrupted(executor):
            study.optimize(
                search.objective,
                n_trials=left,
                n_jobs=executor.jobs,
                catch=(RunFailed,),
                callbacks=[
                    optuna.study.MaxTrialsCallback(sweep.size, states=counted),
                    lambda study, trial: search.write_state(),
                ],
            )
    search.write_state()
    return search.state
