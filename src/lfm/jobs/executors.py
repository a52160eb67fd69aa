"""Where a step's process runs: on this machine, N at once (one GPU each, or a share of the CPU cores), or
as a SLURM job submitted and followed with submitit. Both run the step through `run_process`."""

import os
import platform
import queue
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import submitit

from lfm.errors import InputError

LOCAL, SLURM = "local", "slurm"
# Each job's share of the CPU cores, as the numerical libraries read it (torch reads OMP_NUM_THREADS).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def timestamp() -> str:
    """Now, in UTC, as ISO 8601 (what the state files record)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def run_process(command: list[str], run_dir: Path, env: dict[str, str]) -> dict:
    """Run one step's process (here, or on a cluster node) with its output appended to run_dir/{stdout,stderr}.log.

    Returns the exit code, the start and end time, the seconds it took and the host it ran on.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    started, start = timestamp(), time.perf_counter()
    with (run_dir / "stdout.log").open("a") as stdout, (run_dir / "stderr.log").open("a") as stderr:
        returncode = subprocess.run(command, stdout=stdout, stderr=stderr, env={**os.environ, **env}).returncode
    return {
        "returncode": returncode,
        "started": started,
        "ended": timestamp(),
        "seconds": round(time.perf_counter() - start, 1),
        "host": platform.node(),
    }


class Executor(Protocol):
    """Runs a step's command in its run directory and returns `run_process`'s record plus `where` it ran."""

    jobs: int

    def run(self, command: list[str], run_dir: Path) -> dict: ...

    def cancel(self) -> None:
        """Stop the steps under way (the runner was interrupted)."""


@dataclass(frozen=True)
class Slot:
    """One of the local executor's places to run a job: its environment and how the state file names it."""

    env: dict[str, str]
    where: dict


def visible_gpus() -> list[str]:
    """The GPUs jobs may use: CUDA_VISIBLE_DEVICES when set, else every GPU torch sees (none on a CPU machine)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [gpu.strip() for gpu in listed.split(",") if gpu.strip()]
    import torch  # imported here: a CUDA_VISIBLE_DEVICES list answers without torch's start-up

    return [str(index) for index in range(torch.cuda.device_count())]


def local_slots(jobs: int, gpus: list[str], cores: int, threads: int | None = None) -> list[Slot]:
    """`jobs` slots with the GPUs and the CPU cores split evenly between them: `--jobs` as many as there are GPUs
    gives one GPU each, `--jobs 1` all of them (as a run started by hand); `threads` per job (default: its share
    of the cores, at least one). On the CPU a run's numbers depend on its thread count, so equal `threads` make
    any --jobs give the same numbers."""
    if gpus and jobs > len(gpus):
        raise InputError(
            f"--jobs {jobs} needs {jobs} GPUs (one per job); this machine has {len(gpus)} "
            f"(CUDA_VISIBLE_DEVICES={','.join(gpus)}); pass --jobs {len(gpus)} or fewer"
        )
    if threads is not None and threads < 1:
        raise InputError(f"--threads-per-job must be at least 1, got {threads}")
    threads, per_job = threads or max(1, cores // jobs), len(gpus) // jobs
    slots = []
    for index in range(jobs):
        env = {name: str(threads) for name in THREAD_VARIABLES}
        where = {"threads": threads}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = where["gpu"] = ",".join(gpus[index * per_job : (index + 1) * per_job])
        slots.append(Slot(env, where))
    return slots


class LocalExecutor:
    """Up to `jobs` steps at once on this machine, each in its own slot."""

    def __init__(
        self, jobs: int, threads: int | None = None, gpus: list[str] | None = None, cores: int | None = None
    ) -> None:
        if jobs < 1:
            raise InputError(f"--jobs must be at least 1, got {jobs}")
        self.jobs = jobs
        self.free: queue.Queue[Slot] = queue.Queue()
        for slot in local_slots(
            jobs, visible_gpus() if gpus is None else gpus, cores or len(os.sched_getaffinity(0)), threads
        ):
            self.free.put(slot)

    def run(self, command: list[str], run_dir: Path) -> dict:
        slot = self.free.get()
        try:
            record = run_process(command, run_dir, slot.env)
        finally:
            self.free.put(slot)
        host = record.pop("host")
        return {**record, "where": {"executor": LOCAL, "host": host, **slot.where}}

    def cancel(self) -> None:
        """Nothing to do: Ctrl-C reaches the steps' processes too (one process group), and they stop."""


@dataclass(frozen=True)
class SlurmOptions:
    """What each step asks SLURM for (defaults as conf/hydra/launcher/slurm.yaml: 1 GPU, 8 CPUs, 32 GB, 4 h)."""

    partition: str | None = None
    time_min: int = 240
    gpus_per_job: int = 1
    cpus_per_job: int = 8
    mem_gb: int = 32


class SlurmExecutor:
    """Each step a SLURM job (submitit), up to `jobs` queued or running at once, followed until it ends.

    `cluster="local"` runs the same submission through submitit's local executor (tests, no cluster).
    """

    def __init__(self, jobs: int, folder: Path, options: SlurmOptions, cluster: str = SLURM) -> None:
        if jobs < 1:
            raise InputError(f"--jobs must be at least 1, got {jobs}")
        if cluster == SLURM and shutil.which("sbatch") is None:
            raise InputError(
                "--executor slurm needs SLURM's sbatch on PATH; run from the cluster's login node "
                "(or use --executor local)"
            )
        self.jobs = jobs
        self.submitted: set[submitit.Job] = set()
        self.executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
        self.executor.update_parameters(
            slurm_partition=options.partition,
            timeout_min=options.time_min,
            gpus_per_node=options.gpus_per_job,
            cpus_per_task=options.cpus_per_job,
            mem_gb=options.mem_gb,
            nodes=1,
            tasks_per_node=1,
        )

    def run(self, command: list[str], run_dir: Path) -> dict:
        started, start = timestamp(), time.perf_counter()
        job = self.executor.submit(run_process, command, run_dir, {})
        self.submitted.add(job)
        where = {"executor": SLURM, "cluster": self.executor.cluster, "job_id": job.job_id}
        try:
            record = job.result()
        except submitit.core.utils.UncompletedJobError as error:
            # killed, out of time or lost: the job's own log says why; the step's stderr.log gets one line
            reason = " ".join(str(error).split())[:300]
            run_dir.mkdir(parents=True, exist_ok=True)
            with (run_dir / "stderr.log").open("a") as stderr:
                stderr.write(f"error: job {job.job_id} did not complete ({reason}); see {self.executor.folder}\n")
            record = {
                "returncode": -1,
                "started": started,
                "ended": timestamp(),
                "seconds": round(time.perf_counter() - start, 1),
                "host": None,
            }
        finally:
            self.submitted.discard(job)
        host = record.pop("host")
        return {**record, "where": {**where, "host": host}}

    def cancel(self) -> None:
        """Cancel the jobs still queued or running (scancel); each then ends as a failed step."""
        for job in list(self.submitted):
            job.cancel(check=False)
