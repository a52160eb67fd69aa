"""Run a study's steps as separate processes, resumably, then write its report.

First the tuning runs (when the study tunes strengths), then the comparison with the chosen strengths.
Layout of a study's output directory (default outputs/study/<name>/):
    study_state.json                one record per step: status, exit code, error, seconds, start and end time,
                                    where it ran (host, executor, GPU or threads, SLURM job id), command
    runs/tune/<method>/candidate<i>                                     each tuning run
    runs/<domain>/<method>/seed<s>/train, cross_<dataset>, attack     each step's run directory
    attempts/...                    unfinished evaluation attempts, moved aside before a rerun
    report.md, tables/*.csv, figures/*.png                             the report (lfm.study.report)

Running the same command again continues where a study stopped: finished steps are skipped, a
training run killed after its first checkpoint resumes from checkpoints/last.ckpt, failed steps run again.
Steps run through an executor (lfm.jobs: N at once on this machine, or SLURM jobs); a model's cross-domain
and attack steps start once its training finished.
"""

import json
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from omegaconf import OmegaConf
from rich.console import Console
from rich.markup import escape

from lfm.files import write_json
from lfm.jobs.executors import Executor, LocalExecutor
from lfm.jobs.progress import end_line
from lfm.jobs.schedule import run_tasks
from lfm.jobs.steps import BLOCKED, FINISHED, RESULT_FILE, Outcome, Task, in_order, read_state, set_aside
from lfm.project import PROJECT_ROOT
from lfm.runs.outputs import unfinished_run_checkpoint
from lfm.study.report import write_report
from lfm.study.spec import CROSS, TRAIN, TUNE, TUNED, Step, StudySpec, load_study, study_steps, tuning_steps
from lfm.study.tuning import SCORE, Choice, choose_strengths, same_as_paper, untuned

STATE_FILE = "study_state.json"
SCRIPTS = {TUNE: "src/train.py", TRAIN: "src/train.py", CROSS: "src/eval.py", "attack": "src/eval.py"}


@dataclass(frozen=True)
class StudyResult:
    out_dir: Path
    state: dict
    report_path: Path

    @property
    def failed(self) -> list[str]:
        return [key for key, record in self.state["steps"].items() if record["status"] != FINISHED]


def best_checkpoint(train_dir: Path) -> Path:
    """The checkpoint a finished training run tested (best on validation, else its last)."""
    recorded = json.loads((train_dir / "metrics.json").read_text()).get("best_checkpoint")
    return Path(recorded) if recorded else train_dir / "checkpoints" / "last.ckpt"


def method_overrides(spec: StudySpec, method: str, choices: dict[str, Choice]) -> list[str]:
    """A method's src/train.py overrides; a tuned method's include the strength its tuning chose."""
    tuned = method.removesuffix(TUNED) if method.endswith(TUNED) else None
    return [*spec.methods[method], *(choices[tuned].overrides if tuned else ())]


def training_overrides(spec: StudySpec, step: Step, choices: dict[str, Choice] | None = None) -> list[str]:
    """The src/train.py overrides of a tuning or training step (before its seed, run name and run directory)."""
    if step.kind == TUNE:
        return [
            *spec.methods[step.method],
            *spec.candidates(step.method)[step.candidate],
            f"data={step.domain}",
            *spec.train_overrides,
            *spec.tuning.train_overrides,
            "test=false",  # a tuning run is scored on the validation identities only
        ]
    return [*method_overrides(spec, step.method, choices or {}), f"data={step.domain}", *spec.train_overrides]


def step_command(
    spec: StudySpec, step: Step, runs_dir: Path, interpreter: str, choices: dict[str, Choice] | None = None
) -> list[str]:
    """The step's command line: its script, the study's overrides for it, and its run directory."""
    run_dir = runs_dir / step.key
    command = [interpreter, str(PROJECT_ROOT / SCRIPTS[step.kind])]
    if step.kind in (TUNE, TRAIN):
        command += training_overrides(spec, step, choices)
    else:
        train_dir = runs_dir / step.train_key
        command += [f"ckpt_path={best_checkpoint(train_dir)}", *spec.eval_overrides]
        if step.kind == CROSS:
            # the target dataset, read at the size the model was trained at
            trained_size = OmegaConf.load(train_dir / "config.yaml").data.image_size
            command += [
                f"data={step.target}",
                f"data.image_size=[{trained_size[0]},{trained_size[1]}]",
                *spec.cross_overrides,
            ]
        else:
            command += list(spec.attack_overrides)
    return [*command, f"seed={step.seed}", f"run_name={step.method}", f"hydra.run.dir={run_dir}"]


def load_state(path: Path, spec: StudySpec) -> dict:
    return read_state(path, "study", {"study": spec.name, "study_file": str(spec.path), "steps": {}})


def prepare_run_dir(step: Step, run_dir: Path, attempts_dir: Path) -> str:
    """Make way for the step: resume an unfinished training run in place, set aside anything else."""
    if step.kind in (TRAIN, TUNE) and unfinished_run_checkpoint(run_dir) is not None:
        return "resuming from checkpoints/last.ckpt"
    if run_dir.exists():
        set_aside(run_dir, attempts_dir / Path(step.key).parent)
        return "earlier attempt moved aside"
    return ""


def headline(run_dir: Path) -> str:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    parts = [f"{key}={metrics[f'test/{key}']:.4f}" for key in ("mAP", "rank1") if f"test/{key}" in metrics]
    return " ".join(parts) or (f"{SCORE}={metrics[SCORE]:.4f}" if SCORE in metrics else "")


def start_step(
    spec: StudySpec,
    step: Step,
    runs_dir: Path,
    attempts_dir: Path,
    label: str,
    interpreter: str,
    console: Console,
    choices: dict[str, Choice],
) -> list[str]:
    """Make way for the step and say where it runs; its command (an evaluation's reads its training run)."""
    run_dir = runs_dir / step.key
    note = prepare_run_dir(step, run_dir, attempts_dir)
    console.print(f"{label}: running in {run_dir}" + (f" ({note})" if note else ""))
    return step_command(spec, step, runs_dir, interpreter, choices)


def run_study(
    name_or_path: str,
    out_dir: Path | None = None,
    executor: Executor | None = None,
    interpreter: str = sys.executable,
    console: Console | None = None,
) -> StudyResult:
    """Run every step not finished yet through `executor` (default: one at a time on this machine): the tuning
    runs, then the comparison with the strengths they chose; then write the report from all finished steps."""
    console = console or Console(highlight=False, soft_wrap=True)
    spec = load_study(name_or_path)
    out_dir = Path(out_dir or Path("outputs") / "study" / spec.name).resolve()
    state_path = out_dir / STATE_FILE
    state = load_state(state_path, spec)
    executor = executor or LocalExecutor(1)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs_dir = out_dir / "runs"
    tuning = tuning_steps(spec)
    planned = len(tuning) + len(study_steps(spec))
    console.print(
        f"Study {spec.name}: {len(spec.methods)} methods, up to {planned} steps ({len(tuning)} tuning runs), "
        f"{executor.jobs} at once -> {out_dir}"
    )
    order: list[str] = []

    def record(key: str, entry: dict) -> None:
        """One step's entry (the steps in study order); the file rewritten atomically."""
        state["steps"][key] = entry
        state["steps"] = in_order(state["steps"], order)
        write_json(state_path, state)

    def run_phase(steps: list[Step], first: int, total: int, choices: dict[str, Choice], blocked: dict) -> None:
        """Run the unfinished `steps` (numbered from `first` of `total`); `blocked`: key -> why it cannot run."""
        order.extend(step.key for step in steps)
        done = {step.key for step in steps if (runs_dir / step.key / RESULT_FILE).is_file()}
        labels, tasks = {}, []
        for index, step in enumerate(steps, start=first):
            labels[step.key] = label = escape(
                f"[{index}/{total}] {step.kind} {step.method}"
                + (f" candidate {step.candidate}" if step.kind == TUNE else f" seed {step.seed}")
                + (f" on {step.target}" if step.kind == CROSS else "")
            )
            if step.key in done:
                console.print(f"{label}: finished earlier, skipped")
            elif step.key in blocked:
                record(step.key, {"status": BLOCKED, "error": blocked[step.key]})
                console.print(f"{label}: [yellow]skipped[/yellow], {blocked[step.key]}")
            else:
                start = partial(
                    start_step, spec, step, runs_dir, out_dir / "attempts", label, interpreter, console, choices
                )
                needs = step.train_key if step.kind in (CROSS, "attack") else None
                tasks.append(Task(step.key, step.kind, runs_dir / step.key, start, needs=needs))

        def on_end(outcome: Outcome, progress: str) -> None:
            record(outcome.task.key, outcome.record())
            entry, run_dir = state["steps"][outcome.task.key], outcome.task.run_dir
            numbers = f": {headline(run_dir)}" if outcome.finished else ""
            console.print(end_line(labels[outcome.task.key], entry, run_dir, numbers, progress))

        def on_blocked(task: Task, progress: str) -> None:
            record(task.key, {"status": BLOCKED, "error": f"training step {task.needs} did not finish"})
            console.print(f"{labels[task.key]}: [yellow]skipped[/yellow], its training run did not finish | {progress}")

        run_tasks(tasks, executor, done, on_end, on_blocked)

    choices = choose_strengths(spec, runs_dir)
    steps = study_steps(spec, same_as_paper(choices))
    total = len(tuning) + len(steps)
    if tuning:
        run_phase(tuning, 1, total, choices, {})
        choices = choose_strengths(spec, runs_dir)
        for method, choice in choices.items():
            if choice.complete:
                console.print(
                    f"Tuning {method}: candidate {choice.winner} won ({' '.join(choice.overrides) or 'its own strength'})"
                )
        steps = study_steps(spec, same_as_paper(choices))
        total = len(tuning) + len(steps)
    not_tuned = untuned(choices)
    blocked = {
        step.key: f"the tuning of {step.method.removesuffix(TUNED)} did not finish"
        for step in steps
        if step.method in not_tuned
    }
    run_phase(steps, len(tuning) + 1, total, choices, blocked)
    write_json(state_path, state)
    report_path = write_report(spec, out_dir, state)
    console.print(f"Report: {report_path}")
    return StudyResult(out_dir=out_dir, state=state, report_path=report_path)
