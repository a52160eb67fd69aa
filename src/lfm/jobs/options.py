"""What src/sweep.py and src/study.py share: the command-line options that say where their
steps run, and the exit status of a run."""

import argparse
import sys
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

from lfm.errors import InputError
from lfm.jobs.executors import LOCAL, SLURM, Executor, LocalExecutor, SlurmExecutor, SlurmOptions

SLURM_FLAGS = {option.name: "--" + option.name.replace("_", "-") for option in fields(SlurmOptions)}


def add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("where the steps run")
    group.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="steps at once (local: the GPUs, one each with --jobs <number of GPUs>, and the CPU "
        "cores split between the jobs; slurm: jobs queued or running at once); default 1",
    )
    group.add_argument(
        "--threads-per-job",
        type=int,
        help="local: CPU threads of each job (default: its share of the cores); a CPU run's numbers "
        "depend on it, so the same value gives the same numbers whatever --jobs",
    )
    group.add_argument(
        "--executor",
        choices=(LOCAL, SLURM),
        default=LOCAL,
        help="local: processes on this machine; slurm: one SLURM job per step (submitit)",
    )
    defaults = SlurmOptions()
    group.add_argument(SLURM_FLAGS["partition"], help="slurm: the partition (default: the cluster's)")
    for name, text in (
        ("time_min", "minutes per job"),
        ("gpus_per_job", "GPUs per job"),
        ("cpus_per_job", "CPU cores per job"),
        ("mem_gb", "memory per job in GB"),
    ):
        group.add_argument(SLURM_FLAGS[name], type=int, help=f"slurm: {text} (default {getattr(defaults, name)})")


def exit_status(run: Callable[[], int], resumes: str) -> int:
    """`run()`'s exit status; 2 after an InputError (its message, no traceback); 130 after
    Ctrl-C, saying that the same command resumes the `resumes` (a study, a sweep)."""
    try:
        return run()
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"interrupted: the steps under way were stopped; run the same command again to resume the {resumes}",
            file=sys.stderr,
        )
        return 130


def executor_from_arguments(args: argparse.Namespace, folder: Path) -> Executor:
    """The executor the options ask for; SLURM jobs keep submitit's files in `folder`."""
    given = {name: getattr(args, name) for name in SLURM_FLAGS if getattr(args, name) is not None}
    if args.executor == LOCAL:
        if given:
            raise InputError(f"{SLURM_FLAGS[next(iter(given))]} goes with --executor slurm")
        return LocalExecutor(args.jobs, args.threads_per_job)
    if args.threads_per_job is not None:
        raise InputError("--threads-per-job goes with --executor local (a SLURM job's threads: --cpus-per-job)")
    return SlurmExecutor(args.jobs, folder, SlurmOptions(**given))
