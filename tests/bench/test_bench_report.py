"""How long the report site takes to render from stores of 10k, 100k and 1M records.

Run with ``pytest tests/bench/test_bench_report.py -m slow -s`` (or ``tox -e bench``). Each store is synthetic
and written straight with pyarrow in the store's layout (``results/<suite>/<run_id>/<seq>-<name>.parquet``, the
store's column types), compacted: a part file holds up to 100k records of several runs of a suite (a live store
has a file per record, and reading 1M files would cost a file open each, whatever reads them). 5 suites whose
runs and cases both grow as √records (10k: 22 runs × 90 cases per suite; 1M: 224 runs × 892), suites 0-1 and 2-4
sharing their cases (so the leaderboard merges them), 1% failed and 0.5% skipped records with tracebacks, 20
latency samples per record, top-1 accuracy in two suites. The time of each render is printed; 1M records must
render in under 30 s, and growing the store 10× must not grow the time more than 15× (about linear).
"""

from __future__ import annotations

import itertools
import math
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.case import CASE_COLUMNS, Case
from harness.env import ENV_COLUMNS
from harness.report import render_report
from harness.store import BASE_COLUMNS, arrow_schema

pytestmark = pytest.mark.slow

SIZES = (10_000, 100_000, 1_000_000)
SUITES = 5
SAMPLES = 20
#: Records per part file: a compacted store (a live store's one file per record costs a file open per record,
#: which ResultStore.read pays as well).
PART_ROWS = 100_000
METRICS = {"params": "int64", "macs": "int64", "flops": "int64", "latency_ms_median": "float64",
           "latency_ms_iqr": "float64", "latency_ms_samples": "list<float64>", "latency_repeats": "int64",
           "latency_timer": "string", "throughput_samples_per_s": "float64", "acc_top1": "float64",
           "acc_dataset": "string"}
COLUMNS = BASE_COLUMNS | CASE_COLUMNS | ENV_COLUMNS | METRICS
MODELS = [f"net{i:02d}" for i in range(60)]
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
ERROR = "Traceback (most recent call last):\n  File \"worker.py\", line 42, in run\nRuntimeError: out of memory\n" * 3


def _cases(n: int) -> list[Case]:
    grid = itertools.product(MODELS, (1, 8, 32, 64), ("cpu", "cuda"), ("fp32", "fp16"), (224, 160))
    return [Case(model, batch=b, device=d, dtype=t, resolution=r) for model, b, d, t, r in itertools.islice(grid, n)]


def _case_columns(cases: list[Case]) -> dict[str, list]:
    rows = [c.storage_columns() for c in cases]
    return {"case_id": [c.case_id for c in cases], "label": [c.label for c in cases],
            **{k: [r[k] for r in rows] for k in CASE_COLUMNS}}


def _run_table(suite: int, run: int, cases: list[Case], fields: dict[str, list], rng: np.random.Generator) -> pa.Table:
    n = len(cases)
    status = rng.choice(np.array(["ok", "failed", "skipped"]), size=n, p=[0.985, 0.01, 0.005])
    base = np.array([1.0 + 3.0 * (i % 17) * c.batch / 8 for i, c in enumerate(cases)])
    latency = base * (1 + 0.05 * rng.standard_normal(n)) * (1 - 0.001 * run)
    ok = status == "ok"
    samples = (latency[:, None] * (1 + 0.02 * rng.standard_normal((n, SAMPLES)))).ravel()
    start = T0.timestamp() + 86400 * run + 3600 * suite
    macs = np.array([int(1e8 * (1 + i % 23) * c.batch) for i, c in enumerate(cases)])
    name = f"suite{suite}"
    columns = {
        "run_id": [f"{name}-run{run:04d}"] * n, "suite": [name] * n,
        **fields, "status": status,
        "error": np.where(ok, None, ERROR),
        "timestamp_utc": pa.array(((start + np.arange(n)) * 1e6).astype(np.int64), pa.timestamp("us", tz="UTC")),
        "duration_s": np.full(n, 2.0), "metrics_taken": ["complexity,latency,accuracy"] * n,
        "protocol_json": ['{"latency": {"min_time_s": 1.0, "max_time_s": 10.0}}'] * n, "published_json": ["[]"] * n,
        "env_cpu": ["AMD EPYC 7B13"] * n, "env_gpu": ["NVIDIA H100 80GB HBM3"] * n, "env_torch": ["2.14.1"] * n,
        "env_python": ["3.12.3"] * n, "env_torch_threads": np.full(n, 2), "env_git_sha": [f"{run:07x}"] * n,
        "params": macs // 100, "macs": macs, "flops": 2 * macs,
        "latency_ms_median": np.where(ok, latency, np.nan), "latency_ms_iqr": latency * 0.03,
        "latency_ms_samples": pa.ListArray.from_arrays(pa.array(np.arange(0, (n + 1) * SAMPLES, SAMPLES,
                                                                          dtype=np.int32)), pa.array(samples)),
        "latency_repeats": np.full(n, SAMPLES), "latency_timer": ["perf_counter"] * n,
        "throughput_samples_per_s": 1e3 * np.array([c.batch for c in cases]) / latency,
        "acc_top1": (0.5 + 0.4 * rng.random(n)) if suite < 2 else np.full(n, np.nan),
        "acc_dataset": ["digits"] * n,
    }
    schema = arrow_schema(COLUMNS)
    arrays = [pa.array(columns[f.name], type=f.type) if f.name in columns else pa.nulls(n, f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def write_store(root: Path, rows: int, seed: int = 0) -> int:
    """Write a synthetic store of about ``rows`` records under ``root``; return how many were written."""
    rng = np.random.default_rng(seed)
    runs = max(2, round(math.sqrt(rows / SUITES) / 2))
    per_suite = max(1, rows // (SUITES * runs))
    cases = _cases(per_suite * 2)
    written = 0
    for suite in range(SUITES):
        mine = cases[:per_suite] if suite < 2 else cases[per_suite:]  # suites 0 and 1 share their cases, so do 2-4
        fields = _case_columns(mine)
        pending: list[pa.Table] = []
        for run in range(runs):
            pending.append(_run_table(suite, run, mine, fields, rng))
            if sum(t.num_rows for t in pending) >= PART_ROWS or run == runs - 1:
                table = pa.concat_tables(pending)
                folder = root / f"suite{suite}" / f"suite{suite}-run{run:04d}"
                folder.mkdir(parents=True, exist_ok=True)
                pq.write_table(table, folder / "00000-compacted.parquet", row_group_size=64 * 1024)
                written += table.num_rows
                pending = []
    return written


@pytest.fixture(scope="module")
def timings() -> dict[int, float]:
    return {}


@pytest.mark.parametrize("rows", SIZES)
def test_render_time_by_store_size(rows, tmp_path, timings):
    written = write_store(tmp_path / "results", rows)
    start = time.perf_counter()
    page = render_report(tmp_path / "results", tmp_path / "reports")
    seconds = time.perf_counter() - start
    timings[rows] = seconds
    pages = len(list(page.parent.glob("*.html")))
    size_mb = sum(p.stat().st_size for p in page.parent.glob("*.html")) / 1e6
    print(f"\nreport of {written:,} records: {seconds:.1f} s ({pages} pages, {size_mb:.1f} MB)")
    assert "Leaderboard" in page.read_text()
    if rows == 1_000_000:
        assert seconds < 30, f"1M records took {seconds:.1f} s to render (limit 30 s)"
    if rows == 1_000_000 and 100_000 in timings:
        ratio = seconds / timings[100_000]
        print(f"t(1M) / t(100k) = {ratio:.1f}")
        assert ratio < 15, f"rendering grows faster than linearly: t(1M) / t(100k) = {ratio:.1f}"
