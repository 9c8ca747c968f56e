"""Running suites in worker processes: crash isolation, timeouts, skips, resume after interruption."""

from __future__ import annotations

import pytest
import torch

from harness.runner import run_suite
from harness.store import ResultStore
from harness.suite import load_suite

FAST_LATENCY = (
    "metrics:\n  latency: {warmup_min: 1, warmup_max_s: 0.2, min_repeats: 3, min_time_s: 0.05, max_time_s: 0.3}\n"
)


def _run(suite, results, **kwargs):
    return run_suite(suite, results, show_progress=False, **kwargs)


def test_failing_and_crashing_models_are_recorded_while_others_complete(write_suite, tmp_path):
    suite = load_suite(write_suite(
        "matrix:\n  model: [tiny_cnn, fault_raise, fault_abort, fault_build, tiny_cnn]\n"
        "  resolution: [32]\ninclude: [{model: tiny_cnn, resolution: 48}]\n" + FAST_LATENCY
    ))
    summary = _run(suite, tmp_path)
    frame = ResultStore(tmp_path).read().set_index("model")
    assert summary.counts == {"ok": 2, "failed": 3}
    assert frame.loc["fault_raise", "status"] == "failed"
    assert frame.loc["fault_raise", "error"].startswith("RuntimeError: fault_raise")
    assert "killed by signal SIGABRT" in frame.loc["fault_abort", "error"]
    assert frame.loc["fault_build", "error"].startswith("ValueError: fault_build")
    ok = frame.loc["tiny_cnn"]
    assert (ok["status"] == "ok").all() and (ok["latency_ms_median"] > 0).all()
    assert ok["env_torch"].iloc[0] == torch.__version__


def test_a_hanging_case_times_out_and_the_run_goes_on(write_suite, tmp_path):
    suite = load_suite(write_suite(
        "timeout_s: 4\nmatrix:\n  model: [fault_hang, tiny_cnn]\n  resolution: [32]\n" + FAST_LATENCY
    ))
    summary = _run(suite, tmp_path)
    frame = ResultStore(tmp_path).read().set_index("model")
    assert summary.counts == {"failed": 1, "ok": 1}
    assert frame.loc["fault_hang", "error"].startswith("Timeout: the case ran longer than 4 s")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the skip on machines without CUDA")
def test_cuda_case_without_a_gpu_is_skipped_with_the_reason(write_suite, tmp_path):
    suite = load_suite(write_suite("matrix:\n  model: [tiny_cnn]\n  device: [cuda]\n" + FAST_LATENCY))
    summary = _run(suite, tmp_path)
    assert summary.counts == {"skipped": 1}
    assert ResultStore(tmp_path).read().iloc[0]["error"] == "no CUDA device on this machine"


def test_resume_after_interruption_runs_only_the_missing_cases(write_suite, tmp_path):
    suite = load_suite(write_suite("matrix:\n  model: [tiny_cnn]\n  resolution: [16, 24, 32, 40, 48]\n"
                                   + FAST_LATENCY))
    seen = []

    def interrupt_after_two(record):
        seen.append(record["case_id"])
        if len(seen) == 2:
            raise KeyboardInterrupt

    first = _run(suite, tmp_path, on_record=interrupt_after_two)
    assert first.interrupted and first.counts == {"ok": 2}
    second_seen = []
    second = _run(suite, tmp_path, resume=True, on_record=lambda r: second_seen.append(r["case_id"]))
    assert second.skipped_by_resume == 2 and second.counts == {"ok": 3}
    assert set(second_seen).isdisjoint(seen)
    frame = ResultStore(tmp_path).read()
    assert sorted(frame["case_id"]) == sorted(c.case_id for c in suite.cases)  # exactly one record per case
    assert _run(suite, tmp_path, resume=True).counts == {}


def test_a_full_disk_stops_the_run_with_a_clear_message_and_keeps_what_was_written(write_suite, tmp_path,
                                                                                   monkeypatch):
    import errno
    import os

    import harness.store

    suite = load_suite(write_suite("matrix:\n  model: [tiny_cnn]\n  resolution: [16, 24, 32, 40]\n" + FAST_LATENCY))
    real_write = harness.store.pq.write_table
    calls = []

    def write_until_full(table, where, *args, **kwargs):
        calls.append(where)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(table, where, *args, **kwargs)

    monkeypatch.setattr(harness.store.pq, "write_table", write_until_full)
    with pytest.raises(harness.store.ResultWriteError, match=r"No space left on device.*2 record\(s\).* kept"):
        _run(suite, tmp_path)
    frame = ResultStore(tmp_path).read()
    assert len(frame) == 2 and (frame["status"] == "ok").all()
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_a_worker_still_starting_is_killed_at_once_and_a_ready_one_exits_cleanly():
    """`harness run` launches the worker before it reads the suites: a bad suite must not wait for torch's import."""
    import signal

    from harness.runner.process import WorkerProcess

    starting = WorkerProcess()
    starting.launch()
    proc = starting._proc
    starting.stop()
    assert proc.exitcode == -signal.SIGKILL
    ready = WorkerProcess()
    assert ready.start()["env_torch"]
    proc = ready._proc
    ready.stop()
    assert proc.exitcode == 0


def test_a_noisy_timing_says_so_and_why_and_the_summary_counts_it():
    from collections import Counter
    from io import StringIO
    from pathlib import Path

    from rich.console import Console

    from harness.runner.run import RunSummary, _report_case

    console = Console(file=StringIO(), width=200)
    _report_case(console, {"status": "ok", "label": "m b1", "latency_ms_median": 5.0, "latency_ms_iqr": 2.0,
                           "latency_noisy": True, "latency_noisy_reason": "IQR/median 0.40 > 0.1", "error": None})
    _report_case(console, {"status": "ok", "label": "q b1", "latency_ms_median": 5.0, "latency_ms_iqr": 0.1,
                           "latency_noisy": False, "latency_noisy_reason": None, "error": None})
    first, second = console.file.getvalue().splitlines()
    assert first.endswith("5.00 ms (IQR 2.00) noisy (IQR/median 0.40 > 0.1)") and "noisy" not in second
    summary = RunSummary("r", "s", Path("."), counts=Counter(ok=3), noisy=2, timed=3)
    assert summary.describe() == "3 ok, 2 of 3 timings noisy"
    assert summary.noisy_advice().startswith("2 of 3 timings are noisy (their lines say why)")
    assert RunSummary("r", "s", Path("."), counts=Counter(ok=3), timed=3).noisy_advice() is None


def test_the_worker_process_module_loads_neither_pandas_nor_the_store_nor_the_report():
    import subprocess
    import sys

    probe = ("import sys\n"
             "import harness.runner.process, harness.runner.worker\n"
             "print([m for m in ('pandas', 'pyarrow', 'jinja2', 'matplotlib', 'harness.store', 'harness.runner.run') "
             "if m in sys.modules])\n"
             "import harness\n"
             "print(harness.run_suite.__module__)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["[]", "harness.runner.run"]  # the public names still load their module on use
