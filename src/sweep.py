"""Run a W&B sweep file offline, with no W&B server:  python src/sweep.py conf/sweep/<name>.yaml [--count N]."""

import argparse
import sys
from pathlib import Path

from lfm.errors import InputError
from lfm.sweeps.command import render_command
from lfm.sweeps.runner import prepare_sweep, run_sweep


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("sweep_file", type=Path, help="a W&B sweep file, e.g. conf/sweep/demo.yaml")
    parser.add_argument("--count", type=int, help="runs in the sweep (random search needs it; a grid runs in full)")
    parser.add_argument("--out", type=Path, help="output directory (default: outputs/sweeps/<sweep name>); "
                        "the same directory again resumes the sweep")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random search (same seed, same runs)")
    parser.add_argument("--retry-failed", action="store_true", help="run failed runs again when resuming")
    parser.add_argument("--bayes-as-random", action="store_true",
                        help="run a method: bayes file as random search (Bayesian search needs the W&B server)")
    parser.add_argument("--dry-run", action="store_true", help="check the sweep file and print each run's command")
    args = parser.parse_args()
    try:
        if args.dry_run:
            sweep = prepare_sweep(args.sweep_file, args.count, args.seed, args.bayes_as_random)
            for parameters in sweep.points:
                print(" ".join(render_command(sweep.spec, parameters, sys.executable)))
            return 0
        result = run_sweep(args.sweep_file, out_dir=args.out, count=args.count, seed=args.seed,
                           retry_failed=args.retry_failed, bayes_as_random=args.bayes_as_random)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if result.failed:
        print(f"{len(result.failed)} run(s) failed; see {result.out_dir / 'sweep_state.json'}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
