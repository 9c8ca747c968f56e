"""Cases in a torch.distributed group: launched through torchrun by the worker, gloo on the CPU."""

from __future__ import annotations

import subprocess
import time

import pytest

from harness.runner import run_suite
from harness.store import ResultStore
from harness.suite import load_suite

pytestmark = pytest.mark.slow  # torchrun groups of real processes (55 s)

LATENCY = "latency: {warmup_min: 1, warmup_max_s: 0.2, min_repeats: 3, min_time_s: 0.05, max_time_s: 0.3}"


def _records(write_suite, tmp_path, text):
    summary = run_suite(load_suite(write_suite(text)), tmp_path / "results", show_progress=False)
    frame = ResultStore(tmp_path / "results").read()
    return summary, frame.set_index("label")


def test_two_process_cases_train_measure_and_fail_cleanly(write_suite, tmp_path):
    summary, frame = _records(write_suite, tmp_path, f"""
        defaults: {{resolution: 8, batch: 4}}
        matrix:
          model: [tiny_cnn]
          norm: [syncbn]
          world_size: [2]
          mode: [train]
        include:
          - {{model: fault_raise, world_size: 2}}
          - {{model: tiny_cnn, norm: bn, world_size: 2}}
        metrics:
          complexity: {{}}
          {LATENCY}
          accuracy: {{train_images: 64, limit: 40, where: {{mode: inference}}}}
        """)
    assert summary.counts == {"ok": 2, "failed": 1}
    train = frame.loc["tiny_cnn b4 8px cpu fp32 train norm=syncbn world=2"]
    assert train["status"] == "ok", train["error"]
    assert train["latency_repeats"] >= 3
    # throughput counts the images of both processes: 2 × batch 4 per step
    assert abs(train["throughput_samples_per_s"] - 8 / (train["latency_ms_median"] / 1e3)) < 1e-6
    assert train["macs"] > 0
    assert train["metrics_taken"] == "complexity,latency"  # accuracy's `where` keeps it to inference cases
    inference = frame.loc["tiny_cnn b4 8px cpu fp32 norm=bn world=2"]
    assert inference["status"] == "ok", inference["error"]
    assert inference["acc_train_steps"] == 64 // (4 * 2)  # every step takes 8 images over the 2 processes
    assert inference["acc_images"] == 40
    failed = frame.loc["fault_raise b4 8px cpu fp32 world=2"]
    assert failed["error"].startswith("process 0 of 2: CountError: RuntimeError: fault_raise: this model raises on "
                                      "purpose (in module _Fault)")


def test_a_timed_out_group_leaves_no_process_behind(write_suite, tmp_path):
    _, frame = _records(write_suite, tmp_path, f"""
        timeout_s: 10
        matrix:
          model: [fault_hang]
          world_size: [2]
        metrics:
          {LATENCY}
        """)
    assert frame.iloc[0]["error"].startswith("Timeout: the case ran longer than 10 s")
    time.sleep(1)
    left = subprocess.run(["pgrep", "-f", "harness.runner.rank"], capture_output=True, text=True)
    assert left.stdout.strip() == "", f"torchrun processes left behind: {left.stdout}"
