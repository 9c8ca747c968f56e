"""A synthetic results store of about N records with the real schema (every column a record of `harness run` has),
laid out as `harness run` leaves it: a folder per run with its finished manifest and either the one compacted file
:func:`harness.compaction.write_compacted` writes (``layout="compacted"``, what every finished run becomes) or one
part file per record named as :meth:`harness.store.ResultStore.append` names them (``layout="parts"``: a run kept
with ``--no-compact``, or a store from before compaction; written without the per-record fsync and hard link, which
only make a live run durable and would take most of the generation's time).

The shape grows as √N: 5 suites, each with ``runs`` runs of ``cases`` cases (10k: 22 × 90; 100k: 71 × 281; 1M:
224 × 892), suites 0-1 and 2-4 sharing their cases (so the leaderboard merges them), 1% failed and 0.5% skipped
records with tracebacks, 20 latency samples per record, top-1 accuracy in two suites.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from harness.case import CASE_COLUMNS, Case
from harness.compaction import write_compacted
from harness.runner.run import record_columns
from harness.store import arrow_schema, folder_name, safe_name

SUITES = 5
SAMPLES = 20
MODELS = [f"net{i:02d}" for i in range(60)]
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
ERROR = "Traceback (most recent call last):\n  File \"worker.py\", line 42, in run\nRuntimeError: out of memory\n" * 3


@dataclass(frozen=True)
class StoreShape:
    """What :func:`write_store` wrote: ``records`` in all, ``runs`` runs of ``cases`` cases in each of ``suites``."""

    records: int
    suites: int
    runs: int
    cases: int

    def run_id(self, suite: int, run: int) -> str:
        """Return the run id of run ``run`` of suite ``suite``."""
        return f"suite{suite}-run{run:04d}"


def shape_for(rows: int) -> tuple[int, int]:
    """Return (runs per suite, cases per run) for a store of about ``rows`` records."""
    runs = max(2, round(math.sqrt(rows / SUITES) / 2))
    return runs, max(1, rows // (SUITES * runs))


def _cases(n: int) -> list[Case]:
    grid = itertools.product(MODELS, (1, 8, 32, 64), ("cpu", "cuda"), ("fp32", "fp16"), (224, 160))
    return [Case(model, batch=b, device=d, dtype=t, resolution=r) for model, b, d, t, r in itertools.islice(grid, n)]


def _case_columns(cases: list[Case]) -> dict[str, list]:
    rows = [c.storage_columns() for c in cases]
    return {"case_id": [c.case_id for c in cases], "group_id": [c.group_id for c in cases],
            "label": [c.label for c in cases], **{k: [r[k] for r in rows] for k in CASE_COLUMNS}}


def run_table(shape: StoreShape, suite: int, run: int, cases: list[Case], fields: dict[str, list],
              rng: np.random.Generator, schema: pa.Schema) -> pa.Table:
    """Return the records of one run of ``cases`` with the store's ``schema`` (columns not generated are null)."""
    n = len(cases)
    status = rng.choice(np.array(["ok", "failed", "skipped"]), size=n, p=[0.985, 0.01, 0.005])
    base = np.array([1.0 + 3.0 * (i % 17) * c.batch / 8 for i, c in enumerate(cases)])
    latency = base * (1 + 0.05 * rng.standard_normal(n)) * (1 - 0.001 * run)
    ok = status == "ok"
    samples = (latency[:, None] * (1 + 0.02 * rng.standard_normal((n, SAMPLES)))).ravel()
    start = T0.timestamp() + 86400 * run + 3600 * suite
    macs = np.array([int(1e8 * (1 + i % 23) * c.batch) for i, c in enumerate(cases)])
    columns = {
        "run_id": [shape.run_id(suite, run)] * n, "suite": [f"suite{suite}"] * n,
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
        "latency_noisy": np.zeros(n, dtype=bool),
        "throughput_samples_per_s": 1e3 * np.array([c.batch for c in cases]) / latency,
        "acc_top1": (0.5 + 0.4 * rng.random(n)) if suite < 2 else np.full(n, np.nan),
        "acc_dataset": ["digits"] * n,
    }
    arrays = [pa.array(columns[f.name], type=f.type) if f.name in columns else pa.nulls(n, f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def _manifest(folder: Path, shape: StoreShape, suite: int, run: int, cases: list[Case]) -> None:
    started = T0 + timedelta(days=run, hours=suite)
    manifest = {"suite": f"suite{suite}", "run_id": shape.run_id(suite, run), "resumed": False, "shard": None,
                "executor": "local", "planned_case_ids": [c.case_id for c in cases],
                "started_utc": started.isoformat(), "finished_utc": (started + timedelta(hours=1)).isoformat()}
    (folder / "_run.json").write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")


def _write_parts(folder: Path, table: pa.Table) -> None:
    for i, case_id in enumerate(table.column("case_id").to_pylist()):
        pq.write_table(table.slice(i, 1), folder / f"{i:05d}-{safe_name(case_id)}.parquet")


def runs_of(rows: int, seed: int = 0) -> Iterator[tuple[StoreShape, int, int, list[Case], pa.Table]]:
    """Yield ``(shape, suite, run, cases, table)`` for every run of a store of about ``rows`` records."""
    rng = np.random.default_rng(seed)
    runs, per_suite = shape_for(rows)
    shape = StoreShape(SUITES * runs * per_suite, SUITES, runs, per_suite)
    cases = _cases(per_suite * 2)
    schema = arrow_schema(record_columns())
    for suite in range(SUITES):
        mine = cases[:per_suite] if suite < 2 else cases[per_suite:]  # suites 0 and 1 share their cases, so do 2-4
        fields = _case_columns(mine)
        for run in range(runs):
            yield shape, suite, run, mine, run_table(shape, suite, run, mine, fields, rng, schema)


def write_store(root: Path, rows: int, *, layout: str = "compacted", seed: int = 0) -> StoreShape:
    """Write a synthetic store of about ``rows`` records under ``root`` in ``layout`` (``compacted`` or ``parts``);
    return its shape."""
    if layout not in ("compacted", "parts"):
        raise ValueError(f"layout is 'compacted' or 'parts', got {layout!r}")
    shape = None
    for shape, suite, run, cases, table in runs_of(rows, seed):
        folder = root / folder_name(f"suite{suite}") / folder_name(shape.run_id(suite, run))
        folder.mkdir(parents=True, exist_ok=True)
        if layout == "compacted":
            write_compacted(folder, table, (), seq=len(cases) - 1)
        else:
            _write_parts(folder, table)
        _manifest(folder, shape, suite, run, cases)
    assert shape is not None
    return shape
