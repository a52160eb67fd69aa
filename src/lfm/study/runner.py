"""Run a study's steps as separate processes, resumably, then write its report.

Layout of a study's output directory (default outputs/study/<name>/):
    study_state.json                one record per step: status, exit code, error, seconds, command
    runs/<domain>/<method>/seed<s>/train, cross_<dataset>, attack     each step's run directory
    attempts/...                    unfinished evaluation attempts, moved aside before a rerun
    report.md, tables/*.csv, figures/*.png                             the report (lfm.study.report)

Running the same command again continues where a study stopped: finished steps are skipped, a
training run killed after its first checkpoint resumes from checkpoints/last.ckpt, failed steps run again.
"""

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf
from rich.console import Console
from rich.markup import escape

from lfm.runs import unfinished_run_checkpoint, write_json
from lfm.study.report import write_report
from lfm.study.spec import CROSS, TRAIN, Step, StudySpec, load_study, study_steps
from lfm.sweeps.runner import execute, last_error_line, read_state, set_aside

STATE_FILE = "study_state.json"
FINISHED, FAILED, BLOCKED = "finished", "failed", "blocked"
SCRIPTS = {TRAIN: "src/train.py", CROSS: "src/eval.py", "attack": "src/eval.py"}
PROJECT_ROOT = Path(__file__).resolve().parents[3]


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


def step_command(spec: StudySpec, step: Step, runs_dir: Path, interpreter: str) -> list[str]:
    """The step's command line: its script, the study's overrides for it, and its run directory."""
    run_dir = runs_dir / step.key
    command = [interpreter, str(PROJECT_ROOT / SCRIPTS[step.kind])]
    if step.kind == TRAIN:
        command += [*spec.methods[step.method], f"data={step.domain}", *spec.train_overrides]
    else:
        train_dir = runs_dir / step.train_key
        command += [f"ckpt_path={best_checkpoint(train_dir)}", *spec.eval_overrides]
        if step.kind == CROSS:
            # the target dataset, read at the size the model was trained at
            trained_size = OmegaConf.load(train_dir / "config.yaml").data.image_size
            command += [f"data={step.target}", f"data.image_size=[{trained_size[0]},{trained_size[1]}]",
                        *spec.cross_overrides]
        else:
            command += list(spec.attack_overrides)
    return [*command, f"seed={step.seed}", f"run_name={step.method}", f"hydra.run.dir={run_dir}"]


def load_state(path: Path, spec: StudySpec) -> dict:
    return read_state(path, "study", {"study": spec.name, "study_file": str(spec.path), "steps": {}})


def prepare_run_dir(step: Step, run_dir: Path, attempts_dir: Path) -> str:
    """Make way for the step: resume an unfinished training run in place, set aside anything else."""
    if step.kind == TRAIN and unfinished_run_checkpoint(run_dir) is not None:
        return "resuming from checkpoints/last.ckpt"
    if run_dir.exists():
        set_aside(run_dir, attempts_dir / Path(step.key).parent)
        return "earlier attempt moved aside"
    return ""


def headline(run_dir: Path) -> str:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    parts = [f"{key}={metrics[f'test/{key}']:.4f}" for key in ("mAP", "rank1") if f"test/{key}" in metrics]
    return " ".join(parts)


def remaining_time(state: dict, steps: list[Step], done: set[str]) -> str:
    """Estimated time left: the mean seconds of each step kind so far, times the steps left of that kind."""
    seconds: dict[str, list[float]] = {}
    for step in steps:
        record = state["steps"].get(step.key)
        if record and record["status"] == FINISHED:
            seconds.setdefault(step.kind, []).append(record["seconds"])
    left = [step for step in steps if step.key not in done]
    if not left or not all(step.kind in seconds for step in left):
        return ""
    estimate = sum(sum(seconds[step.kind]) / len(seconds[step.kind]) for step in left)
    return f"; about {estimate / 60:.0f} min left"


def run_study(name_or_path: str, out_dir: Path | None = None, interpreter: str = sys.executable,
              console: Console | None = None) -> StudyResult:
    """Run every step not finished yet, then write the report from all finished steps."""
    console = console or Console(highlight=False, soft_wrap=True)
    spec = load_study(name_or_path)
    steps = study_steps(spec)
    out_dir = Path(out_dir or Path("outputs") / "study" / spec.name).resolve()
    state_path = out_dir / STATE_FILE
    state = load_state(state_path, spec)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs_dir = out_dir / "runs"
    console.print(f"Study {spec.name}: {len(spec.methods)} methods x {len(spec.seeds)} seeds, {len(steps)} steps -> {out_dir}")
    done = {step.key for step in steps if (runs_dir / step.key / "metrics.json").is_file()}
    for index, step in enumerate(steps, start=1):
        label = escape(f"[{index}/{len(steps)}] {step.kind} {step.method} seed {step.seed}"
                       + (f" on {step.target}" if step.kind == CROSS else ""))
        run_dir = runs_dir / step.key
        if step.key in done:
            console.print(f"{label}: finished earlier, skipped")
            continue
        if step.kind != TRAIN and step.train_key not in done:
            state["steps"][step.key] = {"status": BLOCKED, "error": f"training step {step.train_key} did not finish"}
            console.print(f"{label}: [yellow]skipped[/yellow], its training run did not finish")
            continue
        note = prepare_run_dir(step, run_dir, out_dir / "attempts")
        console.print(f"{label}: running in {run_dir}" + (f" ({note})" if note else ""))
        command = step_command(spec, step, runs_dir, interpreter)
        returncode, seconds = execute(command, run_dir)
        finished = returncode == 0 and (run_dir / "metrics.json").is_file()
        state["steps"][step.key] = {
            "status": FINISHED if finished else FAILED, "returncode": returncode, "seconds": round(seconds, 1),
            "error": None if finished else last_error_line(run_dir / "stderr.log"), "command": command,
        }
        write_json(state_path, state)
        if finished:
            done.add(step.key)
            console.print(f"    finished in {seconds:.0f} s: {headline(run_dir)}{remaining_time(state, steps, done)}")
        else:
            console.print(f"    [red]FAILED[/red] (exit {returncode}) in {seconds:.0f} s: "
                          f"{escape(state['steps'][step.key]['error'])}; log: {run_dir / 'stderr.log'}")
    write_json(state_path, state)
    report_path = write_report(spec, out_dir, state)
    console.print(f"Report: {report_path}")
    return StudyResult(out_dir=out_dir, state=state, report_path=report_path)
