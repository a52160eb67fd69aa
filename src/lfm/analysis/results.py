"""The one reader of run outputs: every run under a directory -> one tidy table (CSV).

A run is a directory holding `metrics.json` (written by src/train.py or src/eval.py) next to
its resolved `config.yaml`. One row per run: where it is, its parameters (the important ones,
plus any other config key that differs between the runs collected, which is what a sweep
varies), its seed and its scalar metrics: clean (test/*, val/*), LFM's masked fractions, and
robustness under attack (attack/<method>/<loss>/eps<eps>/<metric>, from src/eval.py attack=...).

    python -m lfm.analysis.results outputs/sweeps/demo [--out table.csv]
"""

import argparse
import csv
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

from lfm.errors import InputError
from lfm.files import flatten

METRICS_FILE = "metrics.json"
CONFIG_FILE = "config.yaml"
PARAMETER_KEYS = (
    "model.backbone",
    "model.lfm.after",
    "model.lfm.p",
    "model.lfm.mask_ratio",
    "model.lfm.area",
    "model.lfm.fill",
    "model.lfm.selection",
    "model.lfm.region",
    "model.dropout2d.p",
    "model.dropblock.p",
    "data.random_erasing.p",
    "data.cutout.p",
    "data.name",
    "data.image_size",
    "trainer.max_epochs",
)
# Feature and input regularizers, by the config key that turns each on.
REGULARIZER_KEYS = {
    "lfm": "model.lfm",
    "dropout2d": "model.dropout2d",
    "dropblock": "model.dropblock",
    "random_erasing": "data.random_erasing",
    "cutout": "data.cutout",
}
# Mappings of a user's own regularizers, label -> entry.
USER_REGULARIZER_KEYS = ("model.regularizers", "data.batch_transforms")
HEADLINE_METRICS = ("test/rank1", "test/mAP", "val/mAP_best")
# Config keys that differ between any two runs without being parameters of the experiment.
BOOKKEEPING_PREFIXES = ("paths.", "run_name", "ckpt_path", "data.root")
IDENTITY_COLUMNS = ("run_dir", "run_name", "task", "seed", "regularizer")
# Width of the printed table when the output is a file or a pipe (no terminal to fit).
FILE_WIDTH = 200


def scalar_metrics(tree: dict, prefix: str = "") -> dict[str, float]:
    """The numbers of a metrics file (nested dicts joined with '/'); lists and strings are left out."""
    metrics = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            metrics.update(scalar_metrics(value, f"{name}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics[name] = value
    return metrics


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"cannot read {path} ({error}); delete or repair the file") from None
    if not isinstance(data, dict):
        raise InputError(f"{path} does not hold a JSON object of metrics")
    return data


def read_run(run_dir: Path) -> tuple[dict, dict]:
    """(flattened config, scalar metrics) of one run directory."""
    config_path = run_dir / CONFIG_FILE
    config = OmegaConf.to_container(OmegaConf.load(config_path)) if config_path.is_file() else {}
    return flatten(config or {}), scalar_metrics(read_json(run_dir / METRICS_FILE))


def regularizer_label(config: dict) -> str:
    """The regularizers a run used, e.g. 'lfm', 'lfm+random_erasing', 'lfm+mine' (a user's entry in
    model.regularizers or data.batch_transforms, by its label), or 'none'."""
    active = [
        name for name, key in REGULARIZER_KEYS.items() if any(flat_key.startswith(f"{key}.") for flat_key in config)
    ]
    for mapping in USER_REGULARIZER_KEYS:
        entries = [flat_key.removeprefix(f"{mapping}.") for flat_key in config if flat_key.startswith(f"{mapping}.")]
        active += dict.fromkeys(entry.split(".")[0] for entry in entries if "." in entry)  # null entries are off
    return "+".join(active) or "none"


def run_directories(root: Path) -> list[Path]:
    """Every directory under `root` (or `root` itself) that holds a metrics.json, sorted."""
    if not root.is_dir():
        raise InputError(f"{root} is not a directory; pass the output directory of a sweep or of runs")
    return sorted(path.parent for path in root.rglob(METRICS_FILE))


def cell(value) -> str | int | float:
    """CSV-friendly: lists as JSON, None as empty."""
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return value


def collect_runs(root: Path) -> list[dict]:
    """One row per run under `root`: run_dir (relative), run_name, task, seed, regularizer, parameters, metrics."""
    root = Path(root)
    runs = [(run_dir, *read_run(run_dir)) for run_dir in run_directories(root)]
    parameters = [key for key in PARAMETER_KEYS if any(key in config for _, config, _ in runs)]
    parameters += varying_keys([config for _, config, _ in runs], exclude=set(parameters))
    metric_names = ordered_metric_names(metrics for _, _, metrics in runs)
    rows = []
    for run_dir, config, metrics in runs:
        row = {
            "run_dir": str(run_dir.relative_to(root)) if run_dir != root else ".",
            "run_name": config.get("run_name", ""),
            "task": config.get("task_name", ""),
            "seed": config.get("seed", metrics.get("seed", "")),
            "regularizer": regularizer_label(config),
        }
        row.update({key: cell(config.get(key)) for key in parameters})
        row.update({name: metrics.get(name, "") for name in metric_names})
        rows.append(row)
    return rows


def varying_keys(configs: list[dict], exclude: set[str]) -> list[str]:
    """Config keys whose value is not the same in every run (what a sweep varied), in first-seen order."""
    keys = list(dict.fromkeys(key for config in configs for key in config))
    return [
        key
        for key in keys
        if key not in exclude
        and key not in ("seed", "task_name")
        and not key.startswith(BOOKKEEPING_PREFIXES)
        and len({json.dumps(config.get(key), sort_keys=True) for config in configs}) > 1
    ]


def ordered_metric_names(all_metrics: Iterable[dict]) -> list[str]:
    names = {name for metrics in all_metrics for name in metrics if name != "seed"}
    return [name for name in HEADLINE_METRICS if name in names] + sorted(names - set(HEADLINE_METRICS))


def write_table(rows: list[dict], path: Path) -> Path:
    """Write the rows as CSV (the union of their columns, in first-seen order)."""
    columns = list(dict.fromkeys(column for row in rows for column in row)) or list(IDENTITY_COLUMNS)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path


def summary_columns(rows: list[dict]) -> list[str]:
    """What fits on a terminal: the run, its seed, the parameters that vary, and the headline metrics."""
    if not rows:
        return list(IDENTITY_COLUMNS)
    candidates = [column for column in rows[0] if column not in IDENTITY_COLUMNS and "/" not in column]
    varying = [column for column in candidates if len({str(row.get(column)) for row in rows}) > 1]
    metrics = [column for column in HEADLINE_METRICS if column in rows[0]]
    return ["run_dir", "seed", *varying, *metrics]


def format_cell(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def table_console() -> Console:
    """A console that fits the terminal, or is wide enough not to wrap the table in a log file."""
    console = Console()
    return console if console.is_terminal else Console(width=FILE_WIDTH)


def print_table(rows: list[dict], title: str, console: Console | None = None) -> None:
    table = Table(title=title)
    columns = summary_columns(rows)
    for column in columns:
        table.add_column(column, justify="right" if column in HEADLINE_METRICS else "left")
    for row in rows:
        table.add_row(*(format_cell(row.get(column, "")) for column in columns))
    (console or table_console()).print(table)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lfm.analysis.results", description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="a directory of runs (a sweep's output, outputs/, multirun/)")
    parser.add_argument("--out", type=Path, help="CSV path (default: <root>/results.csv)")
    args = parser.parse_args(argv)
    try:
        rows = collect_runs(args.root)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    path = write_table(rows, args.out or args.root / "results.csv")
    print_table(rows, title=f"{len(rows)} runs under {args.root}")
    print(f"Results table: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
