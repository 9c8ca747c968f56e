"""Fault injection: every failure class recorded as such among good cases, out-of-memory retries at half the batch,
per-case timeouts, and the summary's counts per class."""

from __future__ import annotations

import errno
import signal

import pytest
import torch

from harness.case import Case
from harness.errors import NonFiniteOutput
from harness.runner import run_suite
from harness.runner.faults import classify_exception, classify_exit
from harness.runner.tasks import CaseTask, run_task
from harness.store import ResultStore
from harness.suite import load_suite

FAST_LATENCY = (
    "metrics:\n  latency: {warmup_min: 1, warmup_max_s: 0.2, min_repeats: 3, min_time_s: 0.05, max_time_s: 0.3}\n"
)


@pytest.mark.parametrize(("exc", "expected"), [
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "oom"),
    (MemoryError(), "oom"),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory"), "oom"),
    (RuntimeError("CUDA error: an illegal memory access was encountered"), "illegal_memory_access"),
    (RuntimeError("CUDA error: misaligned address"), "illegal_memory_access"),
    (NonFiniteOutput("the model's output is not finite"), "nonfinite"),
    (ValueError("bad option"), "exception"),
    (OSError(errno.EIO, "Input/output error"), "exception"),
])
def test_exceptions_are_classified(exc, expected):
    assert classify_exception(exc) == expected


def test_an_exception_raised_from_another_is_classified_by_both():
    from harness.metrics.complexity import CountError

    def raised(cause: BaseException) -> BaseException:
        try:
            raise CountError(f"{type(cause).__name__}: {cause}", "module fc") from cause
        except CountError as exc:
            return exc

    assert classify_exception(raised(MemoryError())) == "oom"  # by the cause's type: its text is empty
    assert classify_exception(raised(NonFiniteOutput("nan"))) == "nonfinite"
    assert classify_exception(raised(ValueError("bad shape"))) == "exception"


def test_process_exits_are_classified():
    assert classify_exit(-signal.SIGKILL) == "oom"  # what the out-of-memory killer sends
    assert classify_exit(-signal.SIGSEGV) == classify_exit(-signal.SIGABRT) == classify_exit(3) == "crash"


class FakeWorker:
    """Answers out-of-memory above ``fits`` and ok at or below it; remembers the batches it was given."""

    def __init__(self, fits: int) -> None:
        self.fits, self.batches = fits, []

    def run(self, task, timeout_s):
        batch = task["case"]["batch"]
        self.batches.append(batch)
        if batch > self.fits:
            return {"status": "failed", "error": "OutOfMemoryError: ...", "failure_class": "oom", "values": {},
                    "duration_s": 0.1}
        return {"status": "ok", "error": "", "failure_class": None, "values": {"x": batch}, "duration_s": 0.1}


def test_out_of_memory_halves_the_batch_until_it_fits():
    worker = FakeWorker(fits=3)
    outcome = run_task(worker, CaseTask(Case("m", batch=16), {}, 10.0, oom_min_batch=1))
    assert worker.batches == [16, 8, 4, 2]
    assert (outcome["status"], outcome["batch_used"], outcome["oom_retries"]) == ("ok", 2, 3)
    assert outcome["values"] == {"x": 2}


def test_out_of_memory_stops_at_the_floor_and_names_every_batch_tried():
    worker = FakeWorker(fits=3)
    outcome = run_task(worker, CaseTask(Case("m", batch=16), {}, 10.0, oom_min_batch=4))
    assert worker.batches == [16, 8, 4]
    assert (outcome["status"], outcome["failure_class"], outcome["batch_used"]) == ("failed", "oom", 4)
    assert outcome["error"].startswith("out of memory at every batch tried (16, 8, 4; floor 4)")


def test_no_retry_when_the_suite_disables_it():
    worker = FakeWorker(fits=3)
    outcome = run_task(worker, CaseTask(Case("m", batch=16), {}, 10.0, oom_min_batch=None))
    assert worker.batches == [16] and outcome["oom_retries"] == 0 and outcome["failure_class"] == "oom"


@pytest.mark.slow  # a real run through every fault (35 s); each class is also checked alone above
def test_a_suite_of_faults_among_good_cases_records_each_in_its_class(write_suite, tmp_path):
    suite = load_suite(write_suite(
        "defaults: {resolution: 16}\n"
        "matrix:\n  model: [tiny_cnn, fault_raise, fault_abort, fault_segfault, fault_hang, fault_nan]\n"
        "include:\n"
        "  - {model: tiny_cnn, resolution: 24}\n"
        "  - {model: fault_oom, batch: 8, model_kwargs: {fits_batch: 2}}\n"
        "  - {model: fault_oom, batch: 4, model_kwargs: {fits_batch: 1, killed: true}}\n"
        "  - {model: fault_oom, batch: 2, model_kwargs: {fits_batch: 0}}\n"
        "  - {model: fault_illegal_memory}\n"
        "timeout_s: 600\n"
        "timeouts: [{match: {model: fault_hang}, timeout_s: 3}]\n" + FAST_LATENCY
    ))
    summary = run_suite(suite, tmp_path, show_progress=False)
    frame = ResultStore(tmp_path).read()
    assert len(frame) == len(suite.cases) == 11 and frame["case_id"].is_unique
    by_model = frame.set_index("model")
    good = by_model.loc["tiny_cnn"]
    assert (good["status"] == "ok").all() and good["failure_class"].isna().all()
    expected = {"fault_raise": "exception", "fault_abort": "crash", "fault_segfault": "crash",
                "fault_hang": "timeout", "fault_nan": "nonfinite"}
    for model, failure_class in expected.items():
        assert (by_model.loc[model, "status"], by_model.loc[model, "failure_class"]) == ("failed", failure_class), model
    assert "SIGSEGV" in by_model.loc["fault_segfault", "error"] and "NaN" in by_model.loc["fault_nan", "error"]
    assert by_model.loc["fault_hang", "timeout_s"] == 3 and "longer than 3 s" in by_model.loc["fault_hang", "error"]
    oom = frame[frame["model"] == "fault_oom"].set_index("batch")
    assert (oom.loc[8, "status"], oom.loc[8, "batch_used"], oom.loc[8, "oom_retries"]) == ("ok", 2, 2)
    assert oom.loc[8, "latency_ms_median"] > 0 and oom.loc[8, "throughput_samples_per_s"] > 0
    killed = oom.loc[4]  # SIGKILLed at batch 4 and 2, as by the out-of-memory killer
    assert (killed["status"], killed["batch_used"], killed["oom_retries"]) == ("ok", 1, 2)
    assert (oom.loc[2, "status"], oom.loc[2, "failure_class"], oom.loc[2, "batch_used"]) == ("failed", "oom", 1)
    assert by_model.loc["fault_illegal_memory", "status"] == "skipped"  # needs CUDA; tests/gpu runs it
    assert summary.counts == {"ok": 4, "failed": 6, "skipped": 1}
    assert summary.failure_classes == {"exception": 1, "crash": 2, "timeout": 1, "nonfinite": 1, "oom": 1}
    noisy = f", {summary.noisy} of {summary.timed} timings noisy" if summary.noisy else ""  # short windows here
    assert summary.describe() == ("4 ok, 6 failed (1 exception, 1 oom, 2 crash, 1 timeout, 1 nonfinite), 1 skipped"
                                  + noisy)
