"""The embedded demo outputs the notebooks read: a small set of real runs, made once on first use.

    python -m lfm.analysis.demo        # make them now (2 CPU cores: about 2 to 4 min); a notebook does it otherwise

Layout of outputs/notebook_demo/:
    sweeps/notebook_demo/               LFM mask ratio x insertion depth x 2 seeds (conf/sweep/notebook_demo.yaml)
    sweeps/notebook_demo_regularizers/  no regularizer and DropBlock x 2 seeds (conf/sweep/notebook_demo_regularizers.yaml)
    robustness/baseline/, robustness/lfm/
                                        src/eval.py attack runs on a baseline and an LFM checkpoint of those sweeps
    logs/                               each step's console output
    figures/                            what the notebooks export
    demo.json                           written last: the outputs are complete

The two sweeps run side by side, then the two eval runs. Every step keeps what already finished
(the sweep runner resumes; an eval run with metrics.json is kept), so a creation that was
interrupted continues where it stopped.
"""

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from lfm.analysis.results import collect_runs
from lfm.errors import InputError
from lfm.files import write_json
from lfm.project import CONF_DIR, PROJECT_ROOT

DEMO_DIR = PROJECT_ROOT / "outputs" / "notebook_demo"
COMPLETE_FILE = "demo.json"
SWEEP_FILES = (
    CONF_DIR / "sweep" / "notebook_demo.yaml",
    CONF_DIR / "sweep" / "notebook_demo_regularizers.yaml",
)
# Eval run name -> the results-table values that pick the training run whose checkpoint it attacks.
ROBUSTNESS_MODELS = {
    "baseline": {"regularizer": "none", "seed": 0},
    "lfm": {"regularizer": "lfm", "model.lfm.after": "conv1", "model.lfm.mask_ratio": 0.5, "seed": 0},
}
# A light version of attack=literature that fits the demo's time budget: 3 I-FGSM steps (step 2.5 eps / 3).
ATTACK_OVERRIDES = (
    "attack=literature",
    "attack.eps=[0,2,4,8]",
    "attack.methods=[noise,fgsm,ifgsm]",
    "attack.losses=[metric]",
    "attack.steps=3",
    "attack.alpha=null",
    "logger=csv",
)


def results_dir(path: str | Path | None) -> Path:
    """The directory a notebook reads: `path` when set, else the demo outputs (made on first use)."""
    if path is None:
        return ensure_demo_outputs()
    root = Path(path).expanduser()
    if not root.is_dir():
        raise InputError(
            f"RESULTS_DIR={root} is not a directory; set it to a directory of runs (a sweep's "
            f"output, outputs/) or to None for the embedded demo outputs"
        )
    return root


def ensure_demo_outputs(root: Path = DEMO_DIR) -> Path:
    """Make the demo runs under `root` unless they are complete already; return `root`."""
    root = Path(root)
    if (root / COMPLETE_FILE).is_file():
        return root
    print(f"Making the notebooks' demo outputs in {root} (once; 2 CPU cores: about 2 to 4 min)", flush=True)
    start = time.perf_counter()
    two_at_a_time(
        [
            partial(make_sweep, sweep_file, root / "sweeps" / sweep_file.stem, root / "logs" / f"{sweep_file.stem}.log")
            for sweep_file in SWEEP_FILES
        ]
    )
    runs = collect_runs(root / "sweeps")
    checkpoints = {
        name: root / "sweeps" / find_run(runs, wanted)["run_dir"] / "checkpoints" / "best.ckpt"
        for name, wanted in ROBUSTNESS_MODELS.items()
    }
    two_at_a_time(
        [
            partial(make_eval, checkpoint, root / "robustness" / name, root / "logs" / f"robustness_{name}.log")
            for name, checkpoint in checkpoints.items()
        ]
    )
    seconds = round(time.perf_counter() - start, 1)
    write_json(
        root / COMPLETE_FILE,
        {
            "made": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": seconds,
            "sweeps": [str(path.relative_to(PROJECT_ROOT)) for path in SWEEP_FILES],
            "robustness": {name: dict(wanted) for name, wanted in ROBUSTNESS_MODELS.items()},
            "attack_overrides": list(ATTACK_OVERRIDES),
        },
    )
    print(f"Demo outputs complete in {seconds:.0f} s: {root}", flush=True)
    return root


def two_at_a_time(steps: Sequence[Callable[[], None]]) -> None:
    """Run the steps two at a time (each is a process of its own; the demo is sized for 2 cores)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(step) for step in steps]:
            future.result()


def make_sweep(sweep_file: Path, out_dir: Path, log_path: Path) -> None:
    """Run (or resume) one sweep with the offline runner (src/sweep.py), its output in `log_path`."""
    print(f"  sweep {sweep_file.name} -> {out_dir} (log: {log_path})", flush=True)
    run_logged([sys.executable, "src/sweep.py", str(sweep_file), "--out", str(out_dir), "--retry-failed"], log_path)


def make_eval(checkpoint: Path, run_dir: Path, log_path: Path) -> None:
    """Attack `checkpoint` with src/eval.py into `run_dir`, unless a finished run is there."""
    if (run_dir / "metrics.json").is_file():
        return
    print(f"  robustness of {checkpoint} -> {run_dir} (log: {log_path})", flush=True)
    shutil.rmtree(run_dir, ignore_errors=True)  # an interrupted attempt
    command = [sys.executable, "src/eval.py", f"ckpt_path={checkpoint}", *ATTACK_OVERRIDES, f"hydra.run.dir={run_dir}"]
    run_logged(command, log_path)


def run_logged(command: Sequence[str], log_path: Path) -> None:
    """Run `command` from the project root with its output in `log_path`; an error names the log."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # One thread per process: two run side by side on the 2 cores (the sweep runner passes it on to its runs).
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with log_path.open("w") as log:
        returncode = subprocess.run(command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    if returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed (exit {returncode}); see {log_path}")


def find_run(runs: list[dict], wanted: Mapping) -> dict:
    """The first results-table row whose columns hold all of `wanted`'s values."""
    for row in runs:
        if all(row.get(key) == value for key, value in wanted.items()):
            return row
    raise RuntimeError(f"no run with {dict(wanted)} among {len(runs)} runs; the demo sweep files changed?")


def main() -> int:
    try:
        ensure_demo_outputs()
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
