"""Run the comparison study and write its report:  python src/study.py [embedded | full | path/to/study.yaml].

Running the same command again continues a stopped study; --report-only rewrites the report from
the steps finished so far. --jobs N runs N steps at once; --executor slurm submits each step to SLURM.
"""

import argparse
import sys
from pathlib import Path

from lfm.jobs.options import add_executor_arguments, executor_from_arguments, exit_status
from lfm.study.config_check import check_training_runs
from lfm.study.report import write_report
from lfm.study.runner import STATE_FILE, load_state, run_study
from lfm.study.spec import load_study, study_steps, tuning_steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "study",
        nargs="?",
        default="embedded",
        help="a study name (conf/study/<name>.yaml) or a study file (default: embedded)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="output directory (default: outputs/study/<name>); the same directory again resumes the study",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check the study file and its training runs' configs, and list its steps",
    )
    parser.add_argument("--report-only", action="store_true", help="write the report from the finished steps")
    add_executor_arguments(parser)
    args = parser.parse_args()
    return exit_status(lambda: run(args), "study")


def run(args: argparse.Namespace) -> int:
    """What the options ask for; its exit status (0, or 1 when a step failed)."""
    spec = load_study(args.study)
    out_dir = (args.out or Path("outputs") / "study" / spec.name).resolve()
    executor = executor_from_arguments(args, out_dir / "slurm")  # checks the job options, dry run too
    if args.dry_run:
        checked = check_training_runs(spec)
        for step in [*tuning_steps(spec), *study_steps(spec)]:
            print(step.key)
        print(
            f"the configs of its {checked} distinct training runs compose and pass src/train.py's checks",
            file=sys.stderr,
        )
        return 0
    if args.report_only:
        print(f"Report: {write_report(spec, out_dir, load_state(out_dir / STATE_FILE, spec))}")
        return 0
    result = run_study(args.study, out_dir=out_dir, executor=executor)
    if result.failed:
        print(
            f"{len(result.failed)} step(s) did not finish; see {result.out_dir / STATE_FILE}; "
            f"run the same command again to retry them",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
