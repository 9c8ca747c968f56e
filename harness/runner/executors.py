"""Executors: where a run's cases execute. ``local`` runs them one by one in a worker process of this machine;
``ray`` (:mod:`harness.runner.ray_executor`) runs them as Ray tasks on a cluster. Both yield each case's outcome
as soon as it is done, and the runner stores it before it takes the next.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from harness.errors import HarnessError
from harness.runner.process import WorkerProcess
from harness.runner.tasks import CaseTask, run_task


class Executor(Protocol):
    """Runs case tasks and yields ``(task, outcome)`` as each finishes (see :func:`harness.runner.tasks.run_task`).

    An outcome may carry ``env`` (the environment of the machine that ran it); otherwise the executor's
    :meth:`start` environment is recorded.
    """

    name: str

    def start(self) -> dict[str, Any]:
        """Get ready to run cases; return the environment capture recorded with them."""
        ...

    def run(self, tasks: list[CaseTask]) -> Iterator[tuple[CaseTask, dict[str, Any]]]:
        """Run ``tasks``; yield each with its outcome as it finishes (any order)."""
        ...

    def stop(self) -> None:
        """Release what :meth:`start` took (processes, a cluster connection); safe to call twice."""
        ...


class LocalExecutor:
    """Cases on this machine in ``jobs`` worker processes (default one: the cases one at a time), each restarted
    after a crash or a timeout. Several jobs run several cases at once: for counting, never for timing (each
    case's time would depend on the others)."""

    name = "local"

    def __init__(self, worker: WorkerProcess | None = None, jobs: int = 1) -> None:
        if jobs < 1:
            raise HarnessError(f"jobs {jobs}: expected at least one worker process")
        self.workers = [worker or WorkerProcess(), *(WorkerProcess() for _ in range(jobs - 1))]
        self._stopping = threading.Event()

    @property
    def worker(self) -> WorkerProcess:
        """Return the first worker process (the only one with one job)."""
        return self.workers[0]

    def start(self) -> dict[str, Any]:
        """Start the workers (if not running: all launched at once, so they import torch together) and return the
        first one's environment capture."""
        self._stopping.clear()
        for worker in self.workers:
            worker.launch()
        return next(worker.start() for worker in self.workers)

    def run(self, tasks: list[CaseTask]) -> Iterator[tuple[CaseTask, dict[str, Any]]]:
        """Run the tasks, each worker taking the next one as it is free; yield each with its outcome as it
        finishes (in order with one job)."""
        if len(self.workers) == 1:
            for task in tasks:
                yield task, run_task(self.worker, task)
            return
        todo: queue.SimpleQueue[CaseTask] = queue.SimpleQueue()
        for task in tasks:
            todo.put(task)
        done: queue.SimpleQueue[tuple[CaseTask, dict[str, Any]] | Exception] = queue.SimpleQueue()

        def serve(worker: WorkerProcess) -> None:
            while not self._stopping.is_set():
                try:
                    task = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    done.put((task, run_task(worker, task)))
                except Exception as exc:  # a worker that cannot start: raised in the caller's thread
                    done.put(exc)
                    return

        for i, worker in enumerate(self.workers):
            threading.Thread(target=serve, args=(worker,), daemon=True, name=f"harness-job-{i}").start()
        for _ in tasks:
            item = done.get()
            if isinstance(item, Exception):
                self.stop()
                raise item
            yield item

    def stop(self) -> None:
        """Stop the worker processes (a job in flight gets a failed outcome; no job takes another task)."""
        self._stopping.set()
        for worker in self.workers:
            worker.stop()


def _ray_executor(address: str | None) -> Executor:
    from harness.runner.ray_executor import RayExecutor

    return RayExecutor(address=address)


#: executor name -> factory taking the cluster address (ignored by ``local``).
EXECUTORS: dict[str, Callable[[str | None], Executor]] = {
    "local": lambda _address: LocalExecutor(),
    "ray": _ray_executor,
}


def make_executor(name: str, address: str | None = None) -> Executor:
    """Return a new executor of kind ``name`` (``local`` or ``ray``); raise HarnessError for an unknown name."""
    if name not in EXECUTORS:
        raise HarnessError(f"unknown executor {name!r}; expected one of: {', '.join(EXECUTORS)}")
    if address and name == "local":
        raise HarnessError("--address is for --executor ray (the Ray cluster to connect to)")
    return EXECUTORS[name](address)
