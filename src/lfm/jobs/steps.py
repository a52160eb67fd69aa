"""A step of a sweep or study (one process in its own run directory), its outcome, and the runners' bookkeeping."""

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lfm.errors import InputError

FINISHED, FAILED, BLOCKED = "finished", "failed", "blocked"
# A step finished when its process exited 0 and left this file in its run directory.
RESULT_FILE = "metrics.json"
# Hydra's closing hint after a traceback; the line before it names the exception.
HYDRA_HINT = "Set the environment variable HYDRA_FULL_ERROR=1"


@dataclass(frozen=True)
class Task:
    """One step to run: `start` prepares its run directory and returns its command (built only when the step
    starts, so a study's evaluation can read the training run it `needs`, the key of another task)."""

    key: str
    kind: str
    run_dir: Path
    start: Callable[[], list[str]]
    needs: str | None = None


@dataclass(frozen=True)
class Outcome:
    """How a task's process ended: the executor's record (exit code, times, where it ran) and its command."""

    task: Task
    command: list[str]
    returncode: int
    started: str
    ended: str
    seconds: float
    where: dict

    @property
    def finished(self) -> bool:
        return self.returncode == 0 and (self.task.run_dir / RESULT_FILE).is_file()

    @property
    def error(self) -> str | None:
        return None if self.finished else last_error_line(self.task.run_dir / "stderr.log")

    def record(self) -> dict:
        """The step's entry in the state file."""
        return {
            "status": FINISHED if self.finished else FAILED,
            "returncode": self.returncode,
            "error": self.error,
            "seconds": self.seconds,
            "started": self.started,
            "ended": self.ended,
            "where": self.where,
            "command": self.command,
        }


def last_error_line(stderr_path: Path) -> str:
    """The run's `error: ...` line if it printed one, else the last line it wrote to stderr (the exception)."""
    text = stderr_path.read_text(errors="replace") if stderr_path.is_file() else ""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith(HYDRA_HINT)]
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or ["(no output on stderr)"])[-1]


def in_order(records: dict, keys: list[str]) -> dict:
    """`records` with `keys` first, in that order (then any others), whatever order the steps ended in."""
    return {key: records[key] for key in [*keys, *records] if key in records}


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


def set_aside(run_dir: Path, attempts_dir: Path) -> None:
    """Move an unfinished attempt out of the way (the program never reuses a directory with results)."""
    attempts_dir.mkdir(parents=True, exist_ok=True)
    number = 1 + sum(1 for path in attempts_dir.glob(f"{run_dir.name}-*"))
    run_dir.rename(attempts_dir / f"{run_dir.name}-{number}")
