"""Run tasks through an executor, up to its `jobs` at once, each after the task it needs finished.

The calling process alone writes the state file: the callbacks run in it, one at a time.
"""

from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager

from lfm.jobs.executors import Executor
from lfm.jobs.progress import Progress
from lfm.jobs.steps import Outcome, Task


@contextmanager
def cancelled_when_interrupted(executor: Executor) -> Iterator[None]:
    """On Ctrl-C stop the steps under way, so that the runner does not wait for them to end on their own."""
    try:
        yield
    except KeyboardInterrupt:
        executor.cancel()
        raise


def run_tasks(
    tasks: list[Task],
    executor: Executor,
    done: set[str],
    on_end: Callable[[Outcome, str], None],
    on_blocked: Callable[[Task, str], None],
) -> None:
    """Start each task, in order, once a job is free and the task it needs is in `done` (or finished here);
    a task whose needed task ended unfinished (or will not run) is blocked. Each end is passed to `on_end`
    with the progress line."""
    finished, pending = set(done), list(tasks)
    progress = Progress([task.kind for task in tasks], executor.jobs)
    running: dict[Future, tuple[Task, list[str]]] = {}
    with ThreadPoolExecutor(max_workers=executor.jobs) as pool, cancelled_when_interrupted(executor):
        while pending or running:
            scheduled = {task.key for task in pending} | {task.key for task, _ in running.values()}
            for task in list(pending):
                if task.needs is not None and task.needs not in finished and task.needs not in scheduled:
                    pending.remove(task)
                    on_blocked(task, progress.add(task.kind, finished=False))
                elif len(running) < executor.jobs and (task.needs is None or task.needs in finished):
                    pending.remove(task)
                    command = task.start()
                    running[pool.submit(executor.run, command, task.run_dir)] = (task, command)
            if not running:
                continue
            ended, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in ended:
                task, command = running.pop(future)
                outcome = Outcome(task, command, **future.result())
                if outcome.finished:
                    finished.add(task.key)
                on_end(outcome, progress.add(task.kind, outcome.finished, outcome.seconds))
