"""One case as the executors see it, and its attempts: run it in a worker, and on out-of-memory again at half
the batch, down to the suite's floor.

The outcome of :func:`run_task` is the worker's (``status``, ``error``, ``failure_class``, ``values``,
``duration_s``) plus ``batch_used`` (the batch of the attempt recorded) and ``oom_retries`` (how many times the
batch was halved). A case whose every attempt ran out of memory is recorded failed (``oom``) at the floor's
attempt, its error naming each batch tried.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Protocol

from harness.case import Case


class Worker(Protocol):
    """What runs one task dict and returns its outcome (:class:`harness.runner.process.WorkerProcess`)."""

    def run(self, task: dict[str, Any], timeout_s: float) -> dict[str, Any]: ...


@dataclass(frozen=True)
class CaseTask:
    """A case with what it needs to run: its metrics' options, its timeout and its out-of-memory floor."""

    case: Case
    metrics: dict[str, dict[str, Any]]
    timeout_s: float
    oom_min_batch: int | None = 1

    def message(self, case: Case | None = None) -> dict[str, Any]:
        """Return the worker's task message for ``case`` (default: this task's case)."""
        return {"case": (case or self.case).to_dict(), "metrics": self.metrics}


def run_task(worker: Worker, task: CaseTask) -> dict[str, Any]:
    """Run ``task`` in ``worker``, halving the batch after each out-of-memory failure while it stays at or above
    ``task.oom_min_batch``; return the last attempt's outcome with ``batch_used`` and ``oom_retries``."""
    case, tried = task.case, []
    while True:
        outcome = worker.run(task.message(case), task.timeout_s)
        tried.append(case.batch)
        smaller = case.batch // 2
        if outcome.get("failure_class") != "oom" or task.oom_min_batch is None or smaller < task.oom_min_batch:
            break
        case = dataclasses.replace(case, batch=smaller)
    outcome = outcome | {"batch_used": case.batch, "oom_retries": len(tried) - 1}
    if len(tried) > 1 and outcome["status"] == "failed" and outcome.get("failure_class") == "oom":
        batches = ", ".join(map(str, tried))
        outcome["error"] = f"out of memory at every batch tried ({batches}; floor {task.oom_min_batch})\n" + (
            outcome.get("error") or "")
    return outcome
