"""The ``ray`` executor: each case a Ray task, so a suite spreads over a Ray cluster's CPUs and GPUs.

How it works: every case becomes one Ray task (:func:`_run_remote`, never retried by Ray). The task starts a
:class:`~harness.runner.process.WorkerProcess` on the node Ray chose and runs the case in it with
:func:`~harness.runner.tasks.run_task`, exactly as the local executor does: a crash or an abort takes only that
worker down, a case past its timeout is killed, out-of-memory failures are retried at half the batch. The task
returns the outcome with the environment capture of the worker that ran it (its node's CPU, GPU, versions), and
the runner records that one. Outcomes are yielded as the tasks finish, in any order. A task that Ray itself
loses (its node died, its Ray worker was killed) is recorded failed with failure class ``crash``. Each case
pays one worker start (torch imported) on its node, as the local executor does only after a crash.

Resources (:func:`task_resources`): each process of a case holds ``threads`` CPUs (1 without ``threads``) and, on
CUDA, a whole GPU; a case has ``world_size`` processes. Ray gives each task only the GPUs it holds
(``CUDA_VISIBLE_DEVICES``), so two cases never share a GPU and a case's timings are not disturbed by another case's
kernels; CPU cases may run side by side on one node, one per CPU they hold. Ray sets ``OMP_NUM_THREADS`` to a
task's CPUs where it is not set already, so a CPU case without ``threads`` runs with 1 thread here where the local
executor gives it all the cores: set ``threads`` in suites meant for Ray (the ``env_torch_threads`` column records
what each case had). A case that needs more than any node of the cluster has (a CUDA case on a cluster without
GPUs, a ``world_size`` 4 case where the largest node has 2 GPUs) would wait for ever, so it is recorded ``skipped``
at once, its reason naming what the cluster has. The check looks at the nodes alive when the run starts: an
autoscaling cluster whose GPU nodes are not up yet has its CUDA cases skipped; start them first.

Use::

    harness run SUITE --executor ray                      # a local Ray instance on this machine
    harness run SUITE --executor ray --address auto       # the cluster this machine belongs to (`ray start`)
    harness run SUITE --executor ray --address ray://HEAD:10001

Every node needs the harness and its models installed (same versions as the driver); results are written by
the driver, into its results directory. Ctrl-C cancels the cases still queued or running on the cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import Any

from harness.case import Case
from harness.errors import HarnessError
from harness.runner.tasks import CaseTask


def task_resources(case: Case) -> dict[str, float]:
    """Return the Ray resources one case holds while it runs: ``{"num_cpus": (threads or 1) × world_size,
    "num_gpus": world_size on CUDA, else 0}``. Each process of a group holds its CPUs, and on CUDA a whole GPU."""
    return {"num_cpus": (case.threads or 1) * case.world_size,
            "num_gpus": case.world_size if case.device == "cuda" else 0}


def unschedulable_reason(case: Case, nodes: list[dict[str, float]]) -> str | None:
    """Return why no node of ``nodes`` (each node's total resources, as in ``ray.nodes()``) can run ``case``,
    or None when one can. A case that no node can hold would wait for ever in Ray's queue."""
    need = task_resources(case)
    cpus, gpus = need["num_cpus"], need["num_gpus"]
    if any(node.get("CPU", 0) >= cpus and node.get("GPU", 0) >= gpus for node in nodes):
        return None
    total_cpus, total_gpus = (sum(node.get(key, 0) for node in nodes) for key in ("CPU", "GPU"))
    cluster = f"{_amount(total_cpus, 'CPU')} and {_amount(total_gpus, 'GPU')} on {_amount(len(nodes), 'node')}"
    if gpus and not total_gpus:
        return f"no GPU in the Ray cluster (it has {cluster}); this CUDA case needs {_amount(gpus, 'GPU')}"
    most_gpus, most_cpus = (max((node.get(key, 0) for node in nodes), default=0) for key in ("GPU", "CPU"))
    if gpus > most_gpus:
        return (f"no node of the Ray cluster has {_amount(gpus, 'GPU')} for this case (world_size "
                f"{case.world_size}); the largest has {most_gpus:g} (the cluster: {cluster})")
    if cpus > most_cpus:
        why = f" (threads {case.threads})" if case.threads else ""
        return (f"no node of the Ray cluster has {_amount(cpus, 'CPU')} for this case{why}; the largest has "
                f"{most_cpus:g} (the cluster: {cluster})")
    return (f"no node of the Ray cluster has both {_amount(cpus, 'CPU')} and {_amount(gpus, 'GPU')} for this case "
            f"(the cluster: {cluster})")


def _amount(count: float, noun: str) -> str:
    """Return ``count noun`` with the noun in the plural unless the count is 1, e.g. ``2 CPUs``, ``1 GPU``."""
    return f"{count:g} {noun}" + ("" if count == 1 else "s")


def _ray() -> ModuleType:
    """Return the ``ray`` module; raise HarnessError saying how to install it where it is missing."""
    try:
        import ray
    except ImportError:
        raise HarnessError("--executor ray needs Ray: pip install 'ray>=2.9'") from None
    return ray


def _run_remote(task: CaseTask) -> dict[str, Any]:
    """Run ``task`` in a fresh worker process on this Ray node; return its outcome (:func:`run_task`) with
    ``env``, the worker's environment capture (empty if the worker never started)."""
    from harness.runner.process import WorkerProcess
    from harness.runner.tasks import run_task

    worker = WorkerProcess()
    try:
        outcome = run_task(worker, task)
    finally:
        worker.stop()
    return outcome | {"env": worker.env}


def _outcome(status: str, error: str, failure_class: str | None, duration_s: float | None) -> dict[str, Any]:
    return {"status": status, "error": error, "failure_class": failure_class, "values": {}, "duration_s": duration_s}


class RayExecutor:
    """Each case a Ray task holding :func:`task_resources` on a Ray cluster (see the module doc)."""

    name = "ray"

    def __init__(self, address: str | None = None, **init_kwargs: Any) -> None:
        """Prepare to run on the cluster at ``address`` ("auto", "HOST:6379", "ray://HOST:10001"), or on a new
        local Ray instance when None; ``init_kwargs`` go to ``ray.init`` (e.g. ``num_cpus``). Raise
        HarnessError if Ray is not installed."""
        _ray()
        self.address = address
        self.init_kwargs = init_kwargs
        self._started_ray = False
        self._pending: dict[Any, CaseTask] = {}

    def start(self) -> dict[str, Any]:
        """Connect to the cluster (start the local instance) unless Ray is initialised already; return the
        driver's environment capture (the cases record their own node's)."""
        from harness.env import capture

        ray = _ray()
        if not ray.is_initialized():
            ray.init(address=self.address or "local", **self.init_kwargs)
            self._started_ray = True
        return capture()

    def run(self, tasks: list[CaseTask]) -> Iterator[tuple[CaseTask, dict[str, Any]]]:
        """Submit every task the cluster can hold, yield the others at once as skipped (the reason naming the
        cluster's resources), then yield each submitted task with its outcome as it finishes. Tasks still
        queued or running when the iteration ends early (an exception, Ctrl-C) are cancelled."""
        ray = _ray()
        nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
        remote = ray.remote(_run_remote)
        unschedulable = []
        try:
            for task in tasks:
                reason = unschedulable_reason(task.case, nodes)
                if reason:
                    unschedulable.append((task, _outcome("skipped", reason, None, 0.0)))
                    continue
                options = task_resources(task.case) | {"max_retries": 0, "name": task.case.label}
                self._pending[remote.options(**options).remote(task)] = task
            yield from unschedulable
            while self._pending:
                ready, _ = ray.wait(list(self._pending), num_returns=1)
                task = self._pending.pop(ready[0])
                try:
                    outcome = ray.get(ready[0])
                except ray.exceptions.RayError as exc:
                    outcome = _outcome("failed", f"{type(exc).__name__}: the Ray task failed: {exc}", "crash", None)
                yield task, outcome
        finally:
            self._cancel_pending()

    def stop(self) -> None:
        """Cancel the tasks still pending and shut Ray down if :meth:`start` started it; safe to call twice."""
        self._cancel_pending()
        if self._started_ray:
            _ray().shutdown()
            self._started_ray = False

    def _cancel_pending(self) -> None:
        """Force-cancel every task submitted and not yet yielded (killing the Ray workers running them)."""
        if not self._pending:
            return
        ray = _ray()
        refs, self._pending = list(self._pending), {}
        for ref in refs:
            ray.cancel(ref, force=True)
