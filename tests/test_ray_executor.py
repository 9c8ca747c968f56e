"""The Ray executor on a local Ray instance of 2 CPUs and no GPU: resources, a suite end to end, skips of cases
the cluster cannot hold, cases side by side, cancellation of the rest when a run stops early."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from harness.case import Case
from harness.errors import HarnessError
from harness.runner import run_suite
from harness.runner.ray_executor import RayExecutor, task_resources, unschedulable_reason
from harness.runner.tasks import CaseTask
from harness.store import ResultStore
from harness.suite import load_suite

FAST_LATENCY = (
    "metrics:\n  latency: {warmup_min: 1, warmup_max_s: 0.2, min_repeats: 3, min_time_s: 0.05, max_time_s: 0.3}\n"
)
#: Longest a test waits for Ray before it fails instead of hanging.
GUARD_S = 180.0

T = TypeVar("T")


def _within(seconds: float, fn: Callable[[], T]) -> T:
    """Return ``fn()`` run in a daemon thread; fail the test if it is still running after ``seconds``."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds:g} s: it hangs"
    if "error" in box:
        raise box["error"]
    return box["value"]


class _BrokenTask(CaseTask):
    """A task whose worker message cannot be built, so the Ray task itself raises (no worker process starts)."""

    def message(self, case: Case | None = None) -> dict[str, Any]:
        """Raise RuntimeError: it never returns."""
        raise RuntimeError("broken on purpose")


@pytest.fixture(scope="module")
def executor() -> Iterator[RayExecutor]:
    """Return a started RayExecutor on a local Ray instance of 2 CPUs and no GPU, shut down after the module."""
    ex = RayExecutor(num_cpus=2, num_gpus=0, include_dashboard=False, object_store_memory=100 * 2**20)
    ex.start()
    yield ex
    ex.stop()
    ex.stop()  # safe twice
    import ray

    assert not ray.is_initialized()


@pytest.mark.parametrize(("case", "expected"), [
    (Case(model="m"), {"num_cpus": 1, "num_gpus": 0}),
    (Case(model="m", threads=2), {"num_cpus": 2, "num_gpus": 0}),
    (Case(model="m", device="cuda"), {"num_cpus": 1, "num_gpus": 1}),
    (Case(model="m", device="cuda", world_size=2), {"num_cpus": 2, "num_gpus": 2}),
    (Case(model="m", world_size=2, threads=3), {"num_cpus": 6, "num_gpus": 0}),
])
def test_task_resources(case, expected):
    assert task_resources(case) == expected


def test_unschedulable_reason_names_what_the_cluster_has():
    one_gpu_nodes = [{"CPU": 8.0, "GPU": 1.0}, {"CPU": 8.0, "GPU": 1.0}]
    assert unschedulable_reason(Case(model="m", device="cuda"), one_gpu_nodes) is None
    assert unschedulable_reason(Case(model="m", device="cuda"), [{"CPU": 4.0}]) == (
        "no GPU in the Ray cluster (it has 4 CPUs and 0 GPUs on 1 node); this CUDA case needs 1 GPU")
    assert unschedulable_reason(Case(model="m", device="cuda", world_size=2), one_gpu_nodes) == (
        "no node of the Ray cluster has 2 GPUs for this case (world_size 2); the largest has 1 "
        "(the cluster: 16 CPUs and 2 GPUs on 2 nodes)")
    assert unschedulable_reason(Case(model="m", threads=16), one_gpu_nodes).startswith(
        "no node of the Ray cluster has 16 CPUs for this case (threads 16); the largest has 8")
    split = [{"CPU": 8.0}, {"CPU": 2.0, "GPU": 1.0}]
    assert unschedulable_reason(Case(model="m", device="cuda", threads=8), split) == (
        "no node of the Ray cluster has both 8 CPUs and 1 GPU for this case "
        "(the cluster: 10 CPUs and 1 GPU on 2 nodes)")


def test_without_ray_installed_the_executor_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(HarnessError, match=r"--executor ray needs Ray: pip install 'ray>=2.9'"):
        RayExecutor()


@pytest.mark.slow  # a whole suite on a local Ray cluster (20 s)
def test_a_suite_runs_end_to_end_with_failures_isolated(executor, write_suite, tmp_path):
    suite = load_suite(write_suite(
        "matrix:\n  model: [tiny_cnn]\n  resolution: [16, 24, 32]\n"
        "include: [{model: fault_raise, resolution: 32}, {model: fault_abort, resolution: 32}]\n" + FAST_LATENCY
    ))
    summary = _within(GUARD_S, lambda: run_suite(suite, tmp_path, executor=executor, show_progress=False))
    assert summary.counts == {"ok": 3, "failed": 2}
    frame = ResultStore(tmp_path).read()
    assert sorted(frame["case_id"]) == sorted(c.case_id for c in suite.cases)  # exactly one record per case
    by_model = frame.set_index("model")
    assert by_model.loc["fault_raise", "failure_class"] == "exception"
    assert by_model.loc["fault_raise", "error"].startswith("RuntimeError: fault_raise")
    assert by_model.loc["fault_abort", "failure_class"] == "crash"
    assert "killed by signal SIGABRT" in by_model.loc["fault_abort", "error"]
    ok = by_model.loc["tiny_cnn"]
    assert (ok["status"] == "ok").all() and (ok["latency_ms_median"] > 0).all()
    assert (frame["executor"] == "ray").all()


def test_a_task_that_fails_in_ray_is_recorded_as_a_crash(executor):
    from ray import cloudpickle

    broken = _BrokenTask(Case(model="tiny_cnn"), {"complexity": {}}, timeout_s=60.0)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import this test module
    try:
        [(task, outcome)] = _within(GUARD_S, lambda: list(executor.run([broken])))
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert task is broken
    assert outcome["status"] == "failed" and outcome["failure_class"] == "crash"
    assert outcome["error"].startswith("RayTaskError")
    assert "RuntimeError: broken on purpose" in outcome["error"]


def test_cases_the_cluster_cannot_hold_are_skipped_at_once(executor, write_suite, tmp_path):
    suite = load_suite(write_suite(
        "matrix:\n  model: [tiny_cnn]\n  device: [cuda]\ninclude: [{model: tiny_cnn, threads: 3}]\n" + FAST_LATENCY
    ))
    started = time.perf_counter()
    summary = _within(GUARD_S, lambda: run_suite(suite, tmp_path, executor=executor, show_progress=False))
    assert time.perf_counter() - started < 20  # nothing was queued waiting for resources that will never come
    assert summary.counts == {"skipped": 2}
    frame = ResultStore(tmp_path).read()
    assert list(frame.loc[frame["device"] == "cuda", "error"]) == [
        "no GPU in the Ray cluster (it has 2 CPUs and 0 GPUs on 1 node); this CUDA case needs 1 GPU"]
    assert list(frame.loc[frame["threads"] == 3, "error"]) == [
        "no node of the Ray cluster has 3 CPUs for this case (threads 3); the largest has 2 "
        "(the cluster: 2 CPUs and 0 GPUs on 1 node)"]


def test_cases_run_side_by_side_and_stopping_early_cancels_the_rest(executor):
    import ray

    hang = CaseTask(Case(model="fault_hang", resolution=16), {"latency": {}}, timeout_s=600.0)
    quick = CaseTask(Case(model="tiny_cnn", resolution=16), {"complexity": {}}, timeout_s=600.0)
    outcomes = executor.run([hang, quick])
    # The hanging case, submitted first, holds one CPU for 10 minutes: the quick one can only come back first
    # if it ran on the other CPU meanwhile.
    task, outcome = _within(GUARD_S, lambda: next(outcomes))
    assert task is quick and outcome["status"] == "ok", outcome["error"]
    assert outcome["env"]["env_torch"]  # the environment of the worker that ran it
    outcomes.close()  # the runner stops iterating (Ctrl-C, an error): the hanging case is cancelled
    deadline = time.monotonic() + 30
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray.available_resources().get("CPU", 0) == 2, "the hanging case still holds its CPU"
