"""Executors: where a run's cases execute. ``local`` runs them one by one in a worker process of this machine;
``ray`` (:mod:`harness.runner.ray_executor`) runs them as Ray tasks on a cluster. Both yield each case's outcome
as soon as it is done, and the runner stores it before it takes the next.
"""

from __future__ import annotations

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
    """Cases one at a time in a worker process on this machine (restarted after a crash or a timeout)."""

    name = "local"

    def __init__(self, worker: WorkerProcess | None = None) -> None:
        self.worker = worker or WorkerProcess()

    def start(self) -> dict[str, Any]:
        """Start the worker (if it is not running) and return its environment capture."""
        return self.worker.start()

    def run(self, tasks: list[CaseTask]) -> Iterator[tuple[CaseTask, dict[str, Any]]]:
        """Run each task in turn in the worker; yield it with its outcome."""
        for task in tasks:
            yield task, run_task(self.worker, task)

    def stop(self) -> None:
        """Stop the worker process."""
        self.worker.stop()


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
