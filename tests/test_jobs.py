"""The executor layer: slots (a GPU each, or a share of the cores), dependencies, overlap, progress, SLURM via
submitit; and one writer of a run's books when an external launcher (torchrun) starts its processes."""

import argparse
import json
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
import submitit
from helpers import PROJECT_ROOT, TINY_SCALE, entry_point

from lfm.errors import InputError
from lfm.files import write_json
from lfm.jobs.executors import LocalExecutor, SlurmExecutor, SlurmOptions, local_slots
from lfm.jobs.options import add_executor_arguments, executor_from_arguments
from lfm.jobs.progress import Progress
from lfm.jobs.schedule import run_tasks
from lfm.jobs.steps import Task
from lfm.runs.outputs import read_run_info


def step(run_dir: Path, seconds: float, exit_code: int = 0) -> list[str]:
    """A process that takes `seconds`, then writes metrics.json (exit 0) or fails with an error line."""
    return [
        sys.executable,
        "-c",
        f"import sys, time; time.sleep({seconds}); "
        f"sys.exit(print('error: step failed', file=sys.stderr) or {exit_code}) if {exit_code} else "
        f"open(r'{run_dir / 'metrics.json'}', 'w').write('{{}}')",
    ]


def task(
    tmp_path: Path,
    key: str,
    seconds: float = 0.0,
    exit_code: int = 0,
    needs: str | None = None,
    started: list | None = None,
) -> Task:
    run_dir = tmp_path / key

    def start() -> list[str]:
        if started is not None:
            started.append(key)
        return step(run_dir, seconds, exit_code)

    return Task(key, "train" if needs is None else "eval", run_dir, start, needs=needs)


def run(tasks: list[Task], executor, done: set[str] = frozenset()) -> tuple[dict, list[str], list[str]]:
    """Run the tasks; (outcome by key, blocked keys, progress lines)."""
    outcomes, blocked, lines = {}, [], []

    def on_end(outcome, progress):
        outcomes[outcome.task.key] = outcome
        lines.append(progress)

    def on_blocked(task, progress):
        blocked.append(task.key)
        lines.append(progress)

    run_tasks(tasks, executor, set(done), on_end, on_blocked)
    return outcomes, blocked, lines


def time_of(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


def test_each_local_slot_gets_one_gpu_or_a_share_of_the_cores():
    gpu_slots = local_slots(3, gpus=["3", "5", "7"], cores=48)
    assert [slot.env["CUDA_VISIBLE_DEVICES"] for slot in gpu_slots] == ["3", "5", "7"]
    assert [slot.where for slot in gpu_slots] == [{"threads": 16, "gpu": gpu} for gpu in ("3", "5", "7")]
    assert [slot.where["gpu"] for slot in local_slots(4, gpus=[str(gpu) for gpu in range(8)], cores=64)] == [
        "0,1",
        "2,3",
        "4,5",
        "6,7",
    ]
    assert local_slots(1, gpus=["0", "1"], cores=16)[0].env["CUDA_VISIBLE_DEVICES"] == "0,1", "one job: every GPU"
    cpu_slots = local_slots(3, gpus=[], cores=8)
    assert all(slot.env == {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"} for slot in cpu_slots)
    assert local_slots(4, gpus=[], cores=2)[0].env["OMP_NUM_THREADS"] == "1"
    assert local_slots(2, gpus=[], cores=2, threads=3)[1].env == {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3"}
    with pytest.raises(InputError, match="--threads-per-job must be at least 1"):
        local_slots(2, gpus=[], cores=2, threads=0)
    with pytest.raises(InputError, match=r"--jobs 8 needs 8 GPUs \(one per job\); this machine has 2 .*--jobs 2"):
        local_slots(8, gpus=["0", "1"], cores=16)
    with pytest.raises(InputError, match="--jobs must be at least 1"):
        LocalExecutor(0, gpus=[])


def test_two_jobs_overlap_and_an_evaluation_waits_for_its_training(tmp_path):
    started = []
    tasks = [
        task(tmp_path, "a/train", 1.0, started=started),
        task(tmp_path, "a/eval", needs="a/train", started=started),
        task(tmp_path, "b/train", 1.0, started=started),
        task(tmp_path, "b/eval", needs="b/train", started=started),
    ]
    outcomes, blocked, lines = run(tasks, LocalExecutor(2, gpus=[]))
    assert not blocked and all(outcome.finished for outcome in outcomes.values())
    a, b = outcomes["a/train"], outcomes["b/train"]
    assert time_of(a.started) < time_of(b.ended) and time_of(b.started) < time_of(a.ended), "the trainings overlap"
    for name in ("a", "b"):
        assert time_of(outcomes[f"{name}/eval"].started) >= time_of(outcomes[f"{name}/train"].ended)
    assert started.index("b/train") < started.index("a/eval"), "a free job does not wait on another's dependency"
    assert {outcome.where["executor"] for outcome in outcomes.values()} == {"local"}
    assert all(outcome.where["threads"] >= 1 and outcome.where["host"] for outcome in outcomes.values())
    assert lines[-1] == "4 done, 0 failed, 0 left"


def test_a_failed_training_blocks_its_evaluations_and_the_rest_goes_on(tmp_path):
    tasks = [
        task(tmp_path, "a/train", exit_code=3),
        task(tmp_path, "a/eval", needs="a/train"),
        task(tmp_path, "b/train"),
        task(tmp_path, "b/eval", needs="b/train"),
        task(tmp_path, "c/eval", needs="c/train"),
    ]
    outcomes, blocked, lines = run(tasks, LocalExecutor(1, gpus=[]), done={"c/train"})
    assert blocked == ["a/eval"]
    assert outcomes["a/train"].returncode == 3 and outcomes["a/train"].error == "error: step failed"
    assert outcomes["a/train"].record()["status"] == "failed"
    assert outcomes["b/eval"].finished and outcomes["c/eval"].finished, "a step whose training finished earlier runs"
    assert lines[-1] == "3 done, 2 failed, 0 left"


def test_the_progress_line_counts_and_estimates_from_each_kind_of_step():
    progress = Progress(["train", "train", "train", "eval", "eval"], jobs=1)
    assert progress.add("train", True, 600.0).startswith("1 done, 0 failed, 4 left; ETA ")
    line = progress.add("eval", True, 60.0)
    assert line.startswith("2 done, 0 failed, 3 left; ETA ") and line.endswith("UTC, about 21 min")  # 2 x 600 + 60
    assert progress.add("train", False).startswith("2 done, 1 failed, 2 left")
    assert Progress(["train"] * 4, jobs=2).add("train", True, 120.0).endswith("about 3 min")  # 3 x 2 min on 2 jobs


def test_the_slurm_path_runs_through_submitits_local_executor(tmp_path):
    executor = SlurmExecutor(
        2,
        tmp_path / "slurm",
        SlurmOptions(partition="gpu", time_min=5, gpus_per_job=0, cpus_per_job=1, mem_gb=1),
        cluster="local",
    )
    tasks = [
        task(tmp_path, "a/train", 0.5),
        task(tmp_path, "a/eval", needs="a/train"),
        task(tmp_path, "b/train", 0.5),
        task(tmp_path, "c/train", exit_code=4),
    ]
    outcomes, blocked, _ = run(tasks, executor)
    assert not blocked and [key for key, outcome in outcomes.items() if not outcome.finished] == ["c/train"]
    assert outcomes["c/train"].returncode == 4 and outcomes["c/train"].error == "error: step failed"
    job_ids = {outcome.where["job_id"] for outcome in outcomes.values()}
    assert len(job_ids) == 4 and all(outcome.where["executor"] == "slurm" for outcome in outcomes.values())
    assert time_of(outcomes["a/eval"].started) >= time_of(outcomes["a/train"].ended)
    assert all((tmp_path / "slurm" / f"{job_id}_0_log.out").is_file() for job_id in job_ids), "submitit's own logs"


def arguments(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_executor_arguments(parser)
    return parser.parse_args(list(argv))


def test_the_options_choose_the_executor_and_refuse_slurm_options_without_slurm(tmp_path, monkeypatch):
    executor = executor_from_arguments(arguments("--jobs", "2"), tmp_path)
    assert isinstance(executor, LocalExecutor) and executor.jobs == 2
    with pytest.raises(InputError, match="--partition goes with --executor slurm"):
        executor_from_arguments(arguments("--partition", "gpu"), tmp_path)
    with pytest.raises(InputError, match="--threads-per-job goes with --executor local"):
        executor_from_arguments(arguments("--executor", "slurm", "--threads-per-job", "2"), tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(InputError, match="--executor slurm needs SLURM's sbatch on PATH"):
        executor_from_arguments(arguments("--executor", "slurm", "--partition", "gpu"), tmp_path)


def test_the_other_ranks_wait_for_rank_zeros_run_json(tmp_path):
    threading.Timer(0.3, lambda: write_json(tmp_path / "run.json", {"wandb_id": "abc"})).start()
    assert read_run_info(tmp_path) == {"wandb_id": "abc"}
    with pytest.raises(FileNotFoundError, match="rank 0 did not write it within 0 s"):
        read_run_info(tmp_path / "missing", timeout=0.2)


@pytest.mark.slow
def test_under_torchrun_exactly_one_process_writes_the_runs_books(tmp_path):
    """An external launcher starts both ranks at once (no Lightning launcher): rank 0 alone writes."""
    run_dir = tmp_path / "run"
    command, env = entry_point(
        "train.py",
        "experiment=lfm_resnet18_synthetic",
        "trainer=ddp_sim",
        "debug=fast",
        f"data.synthetic.scale={TINY_SCALE}",
        "data.image_size=[64,32]",
        "data.val_ids=3",
        "model.lfm.after=layer1",
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.run.dir={run_dir}",
    )
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *command[1:]]
    result = subprocess.run(torchrun, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("run.json", "metrics.json"):
        assert list(run_dir.rglob(name)) == [run_dir / name], name
    assert "resumed" not in json.loads((run_dir / "run.json").read_text()), "a second rank wrote run.json again"
    assert 0.0 <= json.loads((run_dir / "metrics.json").read_text())["test/mAP"] <= 1.0
    assert result.stdout.count("Run directory:") == 1


def test_an_interrupted_runner_cancels_its_slurm_jobs(tmp_path, monkeypatch, request):
    # submitit waits up to 15 s for a result file that a cancelled job never writes (slow shared file systems)
    monkeypatch.setattr(submitit.core.core.Job, "_results_timeout_s", 1)
    # submitit's local cluster cancels with SIGINT, which a job cannot receive when it inherits an ignored SIGINT
    # (something earlier in the test session, or a shell's background job, ignores it); SLURM's scancel is not affected
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous))
    executor = SlurmExecutor(
        1, tmp_path / "slurm", SlurmOptions(gpus_per_job=0, cpus_per_job=1, mem_gb=1), cluster="local"
    )
    records = []
    waiting = threading.Thread(target=lambda: records.append(executor.run(step(tmp_path, 60), tmp_path / "step")))
    waiting.start()
    # cancel once the step's process runs: a SIGINT during submitit's local controller start-up can orphan the
    # task it is starting (a local-cluster race; scancel on SLURM stops the whole job)
    deadline = time.monotonic() + 30
    while not (executor.submitted and (tmp_path / "step" / "stdout.log").exists()) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    executor.cancel()
    waiting.join(timeout=30)
    assert not waiting.is_alive() and records[0]["returncode"] == -1
    assert "did not complete" in (tmp_path / "step" / "stderr.log").read_text()
