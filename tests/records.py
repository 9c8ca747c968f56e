"""Synthetic records for store and report tests (no worker, no torch)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from harness.case import CASE_COLUMNS, Case
from harness.env import ENV_COLUMNS
from harness.store import BASE_COLUMNS

METRIC_COLUMNS = {"params": "int64", "macs": "int64", "latency_ms_median": "float64",
                  "latency_ms_iqr": "float64", "latency_ms_samples": "list<float64>",
                  "throughput_samples_per_s": "float64"}
COLUMNS = BASE_COLUMNS | CASE_COLUMNS | ENV_COLUMNS | METRIC_COLUMNS
T0 = datetime(2026, 11, 23, tzinfo=timezone.utc)


def make_record(case: Case, *, run_id: str = "run-a", suite: str = "demo", status: str = "ok",
                minutes: int = 0, **values: Any) -> dict[str, Any]:
    """Return a full record of ``case`` with the given metric ``values`` (others null)."""
    return {
        "run_id": run_id, "suite": suite, "case_id": case.case_id, "label": case.label, "status": status,
        "error": values.pop("error", None), "timestamp_utc": T0 + timedelta(minutes=minutes), "duration_s": 1.0,
        "metrics_taken": "latency", "protocol_json": "{}", "published_json": values.pop("published_json", "[]"),
        **case.storage_columns(), "env_cpu": "test cpu", "env_torch": "2.x", **values,
    }
