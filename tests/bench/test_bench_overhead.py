"""Benchmark of the harness's own overhead: the wall time of `harness run suites/smoke.yaml --report`, timed from the
shell as a user meets it, ÷ the time its cases spent in their measurement windows.

Run by `tox -e bench`. The figures are printed and stored in the benchmark's extra_info; the target is ≤ 1.5 on a
quiet machine (the rest is the CLI's and the worker's imports, model builds, complexity counting, warm-up, storage,
the report and the exit).
"""

from __future__ import annotations

import subprocess
import sys
import time

import pandas as pd
import pytest

from harness.suite import load_suite

pytestmark = pytest.mark.slow


def test_smoke_suite_overhead_ratio(benchmark, tmp_path):
    outcome = {}
    harness = [sys.executable, "-m", "harness.cli"]

    def run_smoke() -> None:
        start = time.perf_counter()
        subprocess.run([*harness, "run", "suites/smoke.yaml", "--results", str(tmp_path / "results"),
                        "--report", str(tmp_path / "reports"), "--no-progress"], check=True)
        outcome["wall_s"] = time.perf_counter() - start

    benchmark.pedantic(run_smoke, rounds=1, iterations=1)
    records = pd.read_parquet(tmp_path / "results")
    wall_s, window_s, worker_s = outcome["wall_s"], records["latency_window_s"].sum(), records["duration_s"].sum()
    ratio = wall_s / window_s
    benchmark.extra_info.update(wall_s=wall_s, measured_window_s=window_s, worker_duration_s=worker_s,
                                overhead_ratio=ratio)
    print(f"\nsmoke suite from the shell: wall {wall_s:.1f} s, measuring {window_s:.1f} s, the worker's cases "
          f"{worker_s:.1f} s, overhead ratio {ratio:.2f} (target <= 1.5)")
    assert (records["status"] == "ok").sum() == len(load_suite("suites/smoke.yaml").cases)
    assert (tmp_path / "reports" / "index.html").is_file()
