"""Tables the notebooks plot, built from run outputs: runs with their robustness, seeds aggregated.

The rows are those of `lfm.analysis.results.collect_runs` (one per run directory). Robustness lives in the
directories of `src/eval.py attack=...` runs (robustness.json); `training_runs` joins it to the
training run whose checkpoint was attacked, so a sweep's table gains robust metrics where they exist.
"""

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lfm.analysis.results import IDENTITY_COLUMNS, collect_runs, read_run
from lfm.errors import InputError

ROBUSTNESS_FILE = "robustness.json"


@dataclass(frozen=True)
class RobustnessRun:
    """One `src/eval.py attack=...` run: its rows (mode, method, loss, eps, metrics) and what it attacked."""

    label: str
    run_dir: Path
    checkpoint: Path
    task: str
    rows: list[dict]

    @property
    def attacks(self) -> list[tuple[str, str]]:
        """(method, loss) of each attack in the table, in order, the clean row left out."""
        return list(dict.fromkeys((row["method"], row["loss"]) for row in self.rows if row["method"] != "clean"))

    def curve(self, method: str, loss: str, metric: str) -> tuple[list[float], list[float]]:
        """(eps, metric) of one attack, sorted by eps."""
        points = sorted(
            (row["eps"], row[metric]) for row in self.rows if (row["method"], row["loss"]) == (method, loss)
        )
        return [eps for eps, _ in points], [value for _, value in points]


def load_robustness_runs(root: Path) -> list[RobustnessRun]:
    """Every run under `root` with a robustness.json, labelled by its path relative to `root`."""
    root = Path(root)
    runs = []
    for path in sorted(root.rglob(ROBUSTNESS_FILE)):
        try:
            table = json.loads(path.read_text())
            rows, checkpoint, task = table["rows"], Path(table["checkpoint"]), table["task"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
            raise InputError(
                f"cannot read {path} ({error!r}); it should be written by src/eval.py attack=..."
            ) from None
        label = str(path.parent.relative_to(root)) if path.parent != root else path.parent.name
        runs.append(RobustnessRun(label, path.parent, checkpoint, task, rows))
    return runs


def training_runs(root: Path) -> list[dict]:
    """The results-table rows of the training runs under `root`, each with the attack metrics
    (attack/<method>/<loss>/eps<eps>/<metric>) of any eval run under `root` that attacked its checkpoint."""
    root = Path(root)
    by_task: dict[str, dict[Path, dict]] = {"train": {}, "eval": {}}
    for row in collect_runs(root):
        run_dir = (root / row["run_dir"]).resolve()
        # The config's task_name, not the row's `task` column: a config key `task` (reid, classification)
        # that differs between the runs collected takes that column's place.
        by_task.get(read_run(run_dir)[0].get("task_name"), {})[run_dir] = row
    by_run_dir, evals = by_task["train"], by_task["eval"]
    for run in load_robustness_runs(root):
        trained = by_run_dir.get(run.checkpoint.resolve().parent.parent)
        evaluated = evals.get(run.run_dir.resolve())
        if trained is not None and evaluated is not None:
            trained.update(
                {key: value for key, value in evaluated.items() if key.startswith("attack/") and value != ""}
            )
    return list(by_run_dir.values())


def first_checkpoint(root: Path) -> Path:
    """The best checkpoint (else the last) of the first training run under `root`, in path order."""
    root = Path(root)
    for row in sorted(training_runs(root), key=lambda row: row["run_dir"]):
        for name in ("best.ckpt", "last.ckpt"):
            path = root / row["run_dir"] / "checkpoints" / name
            if path.is_file():
                return path
    raise InputError(
        f"no training run with a checkpoint under {root}; point RESULTS_DIR at the output of src/train.py runs"
    )


def parameter_columns(rows: Sequence[dict]) -> list[str]:
    """The columns that describe a run's configuration (regularizer and parameters, not the seed or metrics)."""
    columns = dict.fromkeys(column for row in rows for column in row)
    return [
        column
        for column in columns
        if column == "regularizer" or ("/" not in column and column not in IDENTITY_COLUMNS)
    ]


@dataclass(frozen=True)
class SeedSummary:
    """A metric over the seeds of one configuration: mean, sample standard deviation (NaN for one seed)."""

    settings: dict
    mean: float
    std: float
    seeds: tuple

    @property
    def n(self) -> int:
        return len(self.seeds)

    def __str__(self) -> str:
        settings = " ".join(f"{key}={value}" for key, value in self.settings.items() if value != "")
        return f"{settings}: {self.mean:.4f} ± {self.std:.4f} over seeds {list(self.seeds)}"


def summarize_seeds(rows: Sequence[dict], metric: str, by: Sequence[str] | None = None) -> list[SeedSummary]:
    """`metric` aggregated over the runs that share the values of the `by` columns (default: every
    parameter column), in first-seen order; runs without the metric are left out."""
    by = list(parameter_columns(rows) if by is None else by)
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if isinstance(row.get(metric), (int, float)):
            groups.setdefault(tuple(str(row.get(key, "")) for key in by), []).append(row)
    summaries = []
    for members in groups.values():
        values = [float(row[metric]) for row in members]
        std = statistics.stdev(values) if len(values) > 1 else math.nan
        settings = {key: members[0].get(key, "") for key in by}
        summaries.append(SeedSummary(settings, statistics.fmean(values), std, tuple(row["seed"] for row in members)))
    return summaries


def best(summaries: Sequence[SeedSummary]) -> SeedSummary:
    """The configuration with the highest mean."""
    if not summaries:
        raise InputError("no runs hold this metric; check the results directory and the metric name")
    return max(summaries, key=lambda summary: summary.mean)


def grid(
    summaries: Sequence[SeedSummary], row_key: str, column_key: str, frame: Sequence[SeedSummary] = ()
) -> tuple[list, list, list[list[SeedSummary | None]]]:
    """Summaries laid out on a grid of two parameters: (row values, column values, cells; None where no run).
    The values of `frame` are rows and columns too (e.g. the clean metric's summaries, so that a robust
    metric measured on a few runs keeps the same grid)."""
    if not summaries:
        raise InputError(
            f"no runs to lay out over {row_key} x {column_key}; check the results directory and the metric"
        )
    rows = sorted({summary.settings[row_key] for summary in [*summaries, *frame]}, key=str)
    columns = sorted({summary.settings[column_key] for summary in [*summaries, *frame]}, key=str)
    cells: list[list[SeedSummary | None]] = [[None] * len(columns) for _ in rows]
    for summary in summaries:
        cells[rows.index(summary.settings[row_key])][columns.index(summary.settings[column_key])] = summary
    return rows, columns, cells


def best_per_regularizer(rows: Sequence[dict], metric: str) -> list[SeedSummary]:
    """For each regularizer label (none, lfm, dropblock, ...), its best configuration over seeds."""
    by_label: dict[str, list[SeedSummary]] = {}
    for summary in summarize_seeds(rows, metric):
        by_label.setdefault(summary.settings["regularizer"], []).append(summary)
    return [best(summaries) for summaries in by_label.values()]


def strongest_attack_metric(rows: Sequence[dict], metric: str = "mAP") -> str | None:
    """The attack column (attack/<method>/<loss>/eps<eps>/<metric>) at the largest eps with the lowest
    mean over the runs that hold it, the random-noise control left out; None without attack columns."""
    columns = {
        column
        for row in rows
        for column, value in row.items()
        if column.startswith("attack/")
        and column.endswith(f"/{metric}")
        and isinstance(value, (int, float))
        and not column.startswith("attack/noise/")
    }
    if not columns:
        return None
    largest = max(float(column.split("/")[3].removeprefix("eps")) for column in columns)
    candidates = [column for column in columns if float(column.split("/")[3].removeprefix("eps")) == largest]
    return min(
        sorted(candidates),
        key=lambda column: statistics.fmean(row[column] for row in rows if isinstance(row.get(column), (int, float))),
    )
