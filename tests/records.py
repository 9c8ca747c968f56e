"""Synthetic records for store and report tests (no worker, no torch)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from harness.case import CASE_COLUMNS, Case
from harness.env import ENV_COLUMNS
from harness.runner.run import RUN_COLUMNS
from harness.store import BASE_COLUMNS, ResultStore

METRIC_COLUMNS = {"params": "int64", "macs": "int64", "latency_ms_median": "float64",
                  "latency_ms_iqr": "float64", "latency_ms_samples": "list<float64>",
                  "throughput_samples_per_s": "float64"}
COLUMNS = BASE_COLUMNS | RUN_COLUMNS | CASE_COLUMNS | ENV_COLUMNS | METRIC_COLUMNS
T0 = datetime(2026, 11, 23, tzinfo=timezone.utc)
EVIL = "<script>alert(1)</script>"
RICH_COLUMNS = COLUMNS | {"acc_top1": "float64", "flops": "int64", "latency_timer": "string",
                          "latency_threads": "int64", "env_gpu": "string"}


def make_record(case: Case, *, run_id: str = "run-a", suite: str = "demo", status: str = "ok",
                minutes: int = 0, **values: Any) -> dict[str, Any]:
    """Return a full record of ``case`` with the given metric ``values`` (others null)."""
    return {
        "run_id": run_id, "suite": suite, "case_id": case.case_id, "group_id": case.group_id, "label": case.label,
        "status": status,
        "error": values.pop("error", None), "timestamp_utc": T0 + timedelta(minutes=minutes), "duration_s": 1.0,
        "metrics_taken": "latency", "protocol_json": "{}", "published_json": values.pop("published_json", "[]"),
        **case.storage_columns(), "env_cpu": "test cpu", "env_torch": "2.x", **values,
    }


def rich_store(root: Path) -> ResultStore:
    """Two runs of a CNN suite (accuracy, MACs, FLOPs, samples; a failure, a skip), a GPU suite on a known GPU,
    a suite measuring the same case as the CNN suite later, and a normalization suite (norms × batches)."""
    published = json.dumps([{"metric": "params", "value": 11.7e6, "convention": "",
                             "source": "He et al. 2016, https://arxiv.org/abs/1512.03385"}])
    timed = {"latency_timer": "perf_counter", "latency_threads": 2}
    r18, mnv2, r50 = Case("resnet18"), Case("mobilenetv2_100"), Case("resnet50")
    records = [
        make_record(r18, run_id="r1", suite="cnn", latency_ms_median=9.0, latency_ms_samples=[9.0, 9.4, 8.8, 12.0],
                    acc_top1=0.70, macs=1_800_000_000, flops=3_700_000_000, params=11_700_000,
                    published_json=published, **timed),
        make_record(mnv2, run_id="r1", suite="cnn", latency_ms_median=4.0, latency_ms_samples=[4.0, 4.1, 3.9],
                    acc_top1=0.72, macs=300_000_000, **timed),
        make_record(r50, run_id="r1", suite="cnn", latency_ms_median=20.0, latency_ms_samples=[20.0, 21.0],
                    acc_top1=0.76, macs=4_100_000_000, **timed),
        make_record(Case("resnet18", batch=8), run_id="r1", suite="cnn", latency_ms_median=50.0,
                    latency_ms_samples=[50.0, 52.0], acc_top1=0.70, macs=14_400_000_000, **timed),
        make_record(Case(EVIL), run_id="r1", suite="cnn", latency_ms_median=1.0, latency_ms_samples=[1.0, 1.1],
                    acc_top1=0.10, macs=10_000_000, **timed),
        make_record(r18, run_id="r2", suite="cnn", minutes=60, latency_ms_median=8.0,
                    latency_ms_samples=[8.0, 8.1], params=11_700_000, published_json=published, **timed),
        make_record(mnv2, run_id="r2", suite="cnn", minutes=61, status="failed", error="RuntimeError: flaky"),
        make_record(Case("vgg16"), run_id="r2", suite="cnn", minutes=61, status="failed", failure_class="oom",
                    error=f"RuntimeError: boom {EVIL}\nTraceback line 2"),
        make_record(Case("resnet50", device="cuda"), run_id="r2", suite="cnn", minutes=62, status="skipped",
                    error="no CUDA device"),
        make_record(Case("resnet50", device="cuda", dtype="fp16"), run_id="g1", suite="gpu", minutes=30,
                    latency_ms_median=2.0, flops=8_200_000_000, env_gpu="NVIDIA H100 80GB HBM3"),
        make_record(r18, run_id="x1", suite="extra", minutes=90, latency_ms_median=7.5),
    ]
    records += [make_record(Case("resnet50", batch=b, norm=n, resolution=32), run_id="n1", suite="norms",
                            acc_top1=acc) for n, b, acc in
                [("bn", 32, 0.98), ("bn", 2, 0.40), ("gn", 32, 0.76), ("gn", 2, 0.83)]]
    store = ResultStore(root)
    for record in records:
        store.append(record, RICH_COLUMNS)
    return store
