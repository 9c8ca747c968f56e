"""Benchmark of the harness's own overhead: wall time of the smoke suite ÷ the time it spent measuring.

Run by `tox -e bench`. The figure is printed and stored in the benchmark's extra_info; the target is
≤ 1.5 (the rest is worker start-up, model builds, complexity counting, warm-up and storage).
"""

from __future__ import annotations

import time

import pytest

from harness.runner import run_suite
from harness.suite import load_suite

pytestmark = pytest.mark.slow


def test_smoke_suite_overhead_ratio(benchmark, tmp_path):
    outcome = {}

    def run_smoke() -> None:
        start = time.perf_counter()
        summary = run_suite(load_suite("suites/smoke.yaml"), tmp_path / "results", show_progress=False)
        outcome.update(summary=summary, wall_s=time.perf_counter() - start)

    benchmark.pedantic(run_smoke, rounds=1, iterations=1)
    summary, wall_s = outcome["summary"], outcome["wall_s"]
    ratio = wall_s / summary.measured_window_s
    benchmark.extra_info.update(wall_s=wall_s, measured_window_s=summary.measured_window_s, overhead_ratio=ratio)
    print(f"\nsmoke suite: wall {wall_s:.1f} s, measuring {summary.measured_window_s:.1f} s, "
          f"overhead ratio {ratio:.2f} (target <= 1.5)")
    assert summary.counts == {"ok": len(load_suite("suites/smoke.yaml").cases)}
