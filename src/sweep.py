"""Run a W&B sweep file offline, with no W&B server:  python src/sweep.py conf/sweep/<name>.yaml [--count N].

Grid and random search run the proposed runs; method bayes searches through Optuna (--storage shares
one search between several runners). --jobs N runs N at once; --executor slurm submits each run to SLURM.
"""

import argparse
import sys
from pathlib import Path

from lfm.jobs.options import add_executor_arguments, executor_from_arguments, exit_status
from lfm.sweeps.command import render_command
from lfm.sweeps.runner import run_sweep
from lfm.sweeps.runs import STATE_FILE, prepare_sweep
from lfm.sweeps.spec import load_sweep


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_file", type=Path, help="a W&B sweep file, e.g. conf/sweep/demo.yaml")
    parser.add_argument(
        "overrides",
        nargs="*",
        help="Hydra overrides every run gets, e.g. trainer.max_epochs=1 "
        "(they change the runs' ids: a new sweep in the same --out)",
    )
    parser.add_argument(
        "--count",
        type=int,
        help="runs in the sweep (random and bayes need it, or the file's run_cap; a grid runs in full)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="output directory (default: outputs/sweeps/<sweep name>); the same directory again resumes the sweep",
    )
    parser.add_argument(
        "--seed",
        type=int,
        help="seed of the random search (same seed, same runs; default 0) or of "
        "this runner's Bayesian sampler (default: unseeded)",
    )
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="run failed runs again when resuming (bayes: "
        "failed runs no longer count toward --count, so new runs take their place)",
    )
    parser.add_argument(
        "--bayes-as-random", action="store_true", help="run a method: bayes file as a random search of the same space"
    )
    parser.add_argument(
        "--storage",
        help="bayes: the Optuna storage that runners share: an SQLite file (.db), a "
        "database URL or a journal file (default: <out>/optuna.db)",
    )
    parser.add_argument(
        "--heartbeat",
        type=int,
        default=60,
        help="bayes with an SQL storage: seconds between a "
        "runner's heartbeats; a run silent for twice as long is marked failed (default 60)",
    )
    parser.add_argument("--dry-run", action="store_true", help="check the sweep file and print each run's command")
    add_executor_arguments(parser)
    args = parser.parse_intermixed_args()
    return exit_status(lambda: run(args), "sweep")


def run(args: argparse.Namespace) -> int:
    """What the options ask for; its exit status (0, or 1 when a run failed)."""
    out_dir = args.out or Path("outputs") / "sweeps" / load_sweep(args.sweep_file).name
    executor = executor_from_arguments(args, out_dir.resolve() / "slurm")  # checks the job options, dry run too
    if args.dry_run:
        sweep = prepare_sweep(args.sweep_file, args.count, args.seed, args.bayes_as_random, tuple(args.overrides))
        if sweep.searched:
            print(
                f"bayes: {sweep.size} runs proposed one at a time by Optuna over "
                f"{', '.join(parameter.key for parameter in sweep.spec.parameters)}"
            )
        for parameters in sweep.points:
            print(" ".join(render_command(sweep.spec, parameters, sys.executable)))
        return 0
    result = run_sweep(
        args.sweep_file,
        out_dir=out_dir,
        count=args.count,
        seed=args.seed,
        retry_failed=args.retry_failed,
        bayes_as_random=args.bayes_as_random,
        overrides=tuple(args.overrides),
        executor=executor,
        storage=args.storage,
        heartbeat=args.heartbeat,
    )
    if result.failed:
        print(f"{len(result.failed)} run(s) failed; see {result.out_dir / STATE_FILE}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
