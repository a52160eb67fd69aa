"""Start-up time of `src/train.py`: where a training process spends its time before its
first training step, phase by phase.

Each run is the real `src/train.py experiment=lfm_resnet18_synthetic` (default logger: CSV +
W&B offline) in a fresh process, on the already generated dataset; this script's child mode
wraps the package's own functions with timestamps (nothing in the package is instrumented)
and stops the process when the first training batch starts. Imports are split with
`python -X importtime`. With `--before REF` the same runs are made on a git worktree of REF
(alternating with the working tree's, to share out machine noise) and shown side by side.
The table shows medians over `--repeats` runs, after one untimed warm-up run of each side
(compiles .pyc files, generates the dataset if missing, warms the file cache). Other jobs on
the same cores move the numbers: the header line gives the load average.

Run: .venv/bin/python benchmarks/bench_startup.py [--before HEAD] [--repeats 3] [override ...]
     e.g. `--before HEAD~1 logger=csv` (the study's runs log to CSV only)
"""

import argparse
import functools
import json
import os
import re
import runpy
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = "lfm_resnet18_synthetic"
CHILD_FLAG = "--child"
# (mark, phase that ends at the mark), in the order train() reaches them
PHASES = (
    ("imports", "python start + imports (src/train.py, lfm.runs.pipeline)"),
    ("composed", "Hydra compose (config + overrides)"),
    ("checked", "config check (model on meta, optimizer, trainer)"),
    ("data", "data: prepare, scan, header check"),
    ("model", "model build"),
    ("run_info", "run info (config.yaml, run.json: git, versions)"),
    ("loggers", "loggers (CSV, W&B logger objects)"),
    ("trainer", "lightning.Trainer construction"),
    ("first_batch", "fit set-up until the first training batch"),
)
WANDB_ROW = "W&B run start (wandb.init, and import wandb if not yet done)"
# third-party packages whose import time is shown under the imports phase
IMPORT_ROWS = ("torch", "torchvision", "lightning", "wandb", "matplotlib", "hydra")
IMPORTS_DONE = "bench_startup: imports done"


# ---- child: one src/train.py process, timed -----------------------------------------------


def child(train_script: str, overrides: list[str]) -> None:
    """Run `train_script` as `python train_script overrides`, recording when each phase ends."""
    marks = {"start": float(os.environ["BENCH_STARTUP_T0"])}
    wandb_seconds = [0.0]
    sys.argv = [train_script, *overrides]
    sys.path[0] = str(Path(train_script).parent)

    import hydra  # noqa: F401  (what src/train.py imports)
    from omegaconf import DictConfig  # noqa: F401

    import lfm.runs.cli
    import lfm.runs.pipeline

    marks["imports"] = time.time()
    print(IMPORTS_DONE, file=sys.stderr, flush=True)
    pipeline = lfm.runs.pipeline

    def mark_at_entry(owner, name: str, mark: str) -> None:
        function = getattr(owner, name)

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            marks.setdefault(mark, time.time())
            return function(*args, **kwargs)

        setattr(owner, name, wrapper)

    def mark_at_exit(owner, name: str, mark: str, when=lambda: True, then=None) -> None:
        function = getattr(owner, name, None)
        if function is None:  # not in this version of the code
            return

        @functools.wraps(function)  # Lightning reads __init__'s signature to save hyperparameters
        def wrapper(*args, **kwargs):
            result = function(*args, **kwargs)
            if when():
                marks[mark] = time.time()
                if then is not None:
                    then(result)
            return result

        setattr(owner, name, wrapper)

    def time_wandb_start() -> None:
        """Time the W&B run's start: Lightning's WandbLogger imports wandb (if not yet) and calls
        wandb.init when its `experiment` is first used."""
        from lightning.pytorch.loggers import WandbLogger

        experiment = WandbLogger.experiment.fget

        def timed_experiment(self):
            if self._experiment is not None:
                return experiment(self)
            started = time.perf_counter()
            try:
                return experiment(self)
            finally:
                wandb_seconds[0] += time.perf_counter() - started

        WandbLogger.experiment = property(timed_experiment)

    def add_first_batch_stop(trainer) -> None:
        from lightning.pytorch.callbacks import Callback

        class StopAtFirstBatch(Callback):
            def on_train_batch_start(self, *args) -> None:
                marks["first_batch"] = time.time()
                finish()

        trainer.callbacks.append(StopAtFirstBatch())

    def finish() -> None:
        Path(os.environ["BENCH_STARTUP_OUT"]).write_text(json.dumps({"marks": marks, "wandb": wandb_seconds[0]}))
        if "wandb" in sys.modules:
            sys.modules["wandb"].finish()
        os._exit(0)

    before_model = lambda: "model" not in marks  # noqa: E731  (fit calls the data hooks again)
    after_data = lambda: "data" in marks  # noqa: E731  (the config check may build a model first)
    time_wandb_start()
    mark_at_entry(lfm.runs.cli, "run_task", "composed")
    mark_at_exit(pipeline, "check_config", "checked")
    for datamodule_class, module_class, _ in pipeline.TASKS.values():
        mark_at_exit(datamodule_class, "prepare_data", "data", when=before_model)
        mark_at_exit(datamodule_class, "setup", "data", when=before_model)
        mark_at_exit(module_class, "__init__", "model", when=lambda: after_data() and before_model())
    mark_at_exit(pipeline, "save_run_info", "run_info")
    mark_at_exit(pipeline, "build_loggers", "loggers")
    mark_at_exit(pipeline, "build_trainer", "trainer", then=add_first_batch_stop)
    runpy.run_path(train_script, run_name="__main__")
    raise SystemExit("bench_startup: the run ended before its first training batch")


# ---- parent: run children, print the table ------------------------------------------------


def run_once(source_root: Path, run_dir: Path, overrides: list[str]) -> dict[str, float]:
    """Seconds per phase (and per imported package) of one src/train.py process; the data is
    `source_root`/data (the default paths.data_dir), generated by the warm-up run if missing."""
    out = run_dir.with_suffix(".json")
    env = {
        **os.environ,
        "PYTHONPATH": str(source_root / "src"),
        "WANDB_MODE": "offline",
        "NO_COLOR": "1",
        "BENCH_STARTUP_OUT": str(out),
        "BENCH_STARTUP_T0": repr(time.time()),
    }
    env.pop("WANDB_API_KEY", None)
    command = [
        sys.executable,
        "-X",
        "importtime",
        __file__,
        CHILD_FLAG,
        str(source_root / "src" / "train.py"),
        f"experiment={EXPERIMENT}",
        f"paths.data_dir={source_root / 'data'}",
        f"hydra.run.dir={run_dir}",
        *overrides,
    ]
    done = subprocess.run(command, cwd=source_root, env=env, capture_output=True, text=True)
    if done.returncode != 0 or not out.is_file():
        raise SystemExit(
            f"run in {source_root} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        )
    record = json.loads(out.read_text())
    return phase_seconds(record["marks"], record["wandb"]) | import_seconds(done.stderr)


def phase_seconds(marks: dict[str, float], wandb_seconds: float) -> dict[str, float]:
    """Each phase's seconds from the marks (a phase this version lacks takes 0); the W&B run's
    start is taken out of the phase it happened in."""
    seconds, previous = {}, marks["start"]
    for mark, label in PHASES:
        if mark in marks:
            seconds[label], previous = marks[mark] - previous, marks[mark]
        else:
            seconds[label] = 0.0
    seconds[PHASES[-1][1]] -= wandb_seconds
    seconds[WANDB_ROW] = wandb_seconds
    seconds["total"] = marks["first_batch"] - marks["start"]
    return seconds


def import_seconds(importtime_log: str) -> dict[str, float]:
    """Cumulative import seconds of IMPORT_ROWS within the imports phase (from -X importtime)."""
    imports_log = importtime_log.split(IMPORTS_DONE)[0]
    seconds = dict.fromkeys(IMPORT_ROWS, 0.0)
    for line in imports_log.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|\s*(\S+)$", line)
        if match and match.group(2) in seconds:
            seconds[match.group(2)] = max(seconds[match.group(2)], int(match.group(1)) / 1e6)
    return {f"  of which import {package}": value for package, value in seconds.items()}


def table(results: dict[str, list[dict[str, float]]]) -> str:
    labels = list(results)
    rows = [label for _, label in PHASES[:1]] + [f"  of which import {p}" for p in IMPORT_ROWS]
    rows += [label for _, label in PHASES[1:]] + [WANDB_ROW, "total"]
    header = "| phase (median seconds) | " + " | ".join(labels) + (" | change |" if len(labels) == 2 else " |")
    lines = [header, "|" + "---|" * (len(labels) + 1 + (len(labels) == 2))]
    for row in rows:
        medians = [statistics.median(run[row] for run in results[label]) for label in labels]
        cells = [f"{value:.2f}" for value in medians]
        if len(labels) == 2:
            cells.append(f"{medians[1] - medians[0]:+.2f}")
        name = f"**{row}**" if row == "total" else row
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def load_average() -> str:
    return "load average " + " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", metavar="REF", help="also time a git worktree of this commit (e.g. HEAD)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("overrides", nargs="*", help="more src/train.py overrides, e.g. logger=csv (as the study runs)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_startup_") as scratch:
        scratch = Path(scratch)
        sides = {"now": PROJECT_ROOT}
        if args.before:
            worktree = scratch / "before"
            subprocess.run(
                ["git", "worktree", "add", "--detach", str(worktree), args.before],
                cwd=PROJECT_ROOT,
                check=True,
                capture_output=True,
            )
            sides = {f"before ({args.before})": worktree, "now": PROJECT_ROOT}
        try:
            load_at_start = load_average()
            for index, root in enumerate(sides.values()):  # warm-up
                run_once(root, scratch / f"warmup_{index}", args.overrides)
            results = {label: [] for label in sides}
            for repeat in range(args.repeats):
                for index, (label, root) in enumerate(sides.items()):
                    results[label].append(run_once(root, scratch / f"run_{repeat}_{index}", args.overrides))
        finally:
            if args.before:
                subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=PROJECT_ROOT, check=False)
    print(
        f"src/train.py experiment={EXPERIMENT} {' '.join(args.overrides)} (W&B offline unless logger=csv), "
        f"to its first training batch; "
        f"{args.repeats} runs each, {os.cpu_count()} CPUs, {load_at_start} at start, {load_average()} at end\n"
    )
    print(table(results))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == CHILD_FLAG:
        child(sys.argv[2], sys.argv[3:])
    else:
        main()
