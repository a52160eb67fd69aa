"""The runners' progress line: steps done, failed and left, and when the rest should be done."""

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.markup import escape

from lfm.jobs.steps import FINISHED


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Progress:
    """Counts over the steps of one invocation; the estimate is each step kind's mean time so far, times
    the steps of that kind left, spread over the jobs that run at once."""

    def __init__(self, kinds: list[str], jobs: int) -> None:
        self.left = Counter(kinds)
        self.jobs = jobs
        self.done = self.failed = 0
        self.seconds: dict[str, list[float]] = {}

    def add(self, kind: str, finished: bool, seconds: float | None = None) -> str:
        """Count one step that ended (`finished` or not; a blocked step has no seconds); the progress line."""
        self.left[kind] -= 1
        if finished:
            self.done += 1
            self.seconds.setdefault(kind, []).append(seconds)
        else:
            self.failed += 1
        return self.line()

    def set_counts(self, done: int, failed: int, left: int, kind: str) -> str:
        """Counts known better elsewhere (a search shared by several runners: its storage); the progress line."""
        self.done, self.failed, self.left = done, failed, Counter({kind: left})
        return self.line()

    def remaining_seconds(self) -> float | None:
        left = sum(self.left.values())
        if not left or not self.seconds:
            return None
        everything = [seconds for kind in self.seconds.values() for seconds in kind]
        mean = {kind: sum(values) / len(values) for kind, values in self.seconds.items()}
        total = sum(count * mean.get(kind, sum(everything) / len(everything)) for kind, count in self.left.items())
        return total / min(self.jobs, left)

    def line(self) -> str:
        text = f"{self.done} done, {self.failed} failed, {sum(self.left.values())} left"
        seconds = self.remaining_seconds()
        if seconds is None:
            return text
        end = datetime.now(UTC) + timedelta(seconds=seconds)
        return f"{text}; ETA {end:%H:%M} UTC, about {duration(seconds)}"


def end_line(label: str, record: dict, run_dir: Path, numbers: str, progress: str) -> str:
    """The one line printed when a step ends: finished with its `numbers`, or failed with its error and log;
    then the progress line."""
    if record["status"] == FINISHED:
        return f"{label}: finished in {record['seconds']:.0f} s{numbers} | {progress}"
    return (
        f"{label}: [red]FAILED[/red] (exit {record['returncode']}) in {record['seconds']:.0f} s: "
        f"{escape(record['error'])}; log: {run_dir / 'stderr.log'} | {progress}"
    )
