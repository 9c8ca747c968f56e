"""Running a suite: cases go one by one to a worker process; each finished case is stored at once.

``--resume`` skips the cases that already have an ``ok`` record for the suite in the results
directory. Ctrl-C kills the worker, keeps every record already written and returns a summary marked
interrupted; the case in flight is not recorded.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from harness.case import CASE_COLUMNS, Case
from harness.env import ENV_COLUMNS
from harness.metrics import metric_columns
from harness.runner.process import WorkerProcess
from harness.store import BASE_COLUMNS, ResultStore
from harness.suite import Suite


def record_columns() -> dict[str, str]:
    """Return ``{column: type}`` of a full record: base, case fields, environment and every metric."""
    return BASE_COLUMNS | CASE_COLUMNS | ENV_COLUMNS | metric_columns()


def new_run_id() -> str:
    """Return a run id: UTC start time plus 6 random hex digits, e.g. ``20261123T170501Z-3fa2c1``."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


@dataclass
class RunSummary:
    """What a run did: its id, how many cases ended in each status, and whether it was interrupted."""

    run_id: str
    suite: str
    results_dir: Path
    counts: Counter = field(default_factory=Counter)
    skipped_by_resume: int = 0
    interrupted: bool = False
    wall_s: float = 0.0
    measured_window_s: float = 0.0

    @property
    def failed(self) -> int:
        """Return the number of cases recorded as failed."""
        return self.counts.get("failed", 0)


def build_record(
    suite: Suite, case: Case, run_id: str, env: dict[str, Any], outcome: dict[str, Any]
) -> dict[str, Any]:
    """Return the store record of one case's outcome: identity, status, protocol, values, environment."""
    metrics = suite.metrics_for(case)
    return {
        "run_id": run_id,
        "suite": suite.name,
        "case_id": case.case_id,
        "label": case.label,
        "status": outcome["status"],
        "error": outcome["error"] or None,
        "timestamp_utc": datetime.now(timezone.utc),
        "duration_s": outcome["duration_s"],
        "metrics_taken": ",".join(metrics),
        "protocol_json": json.dumps({k: v.model_dump() for k, v in metrics.items()}, sort_keys=True),
        "published_json": json.dumps(suite.published_for(case)),
        **case.storage_columns(),
        **env,
        **outcome["values"],
    }


def run_suite(
    suite: Suite,
    results_dir: str | Path = "results",
    *,
    resume: bool = False,
    console: Console | None = None,
    show_progress: bool = True,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    worker: WorkerProcess | None = None,
) -> RunSummary:
    """Run every case of ``suite`` in a worker process, storing each record as soon as it is done.

    Returns the run's summary. ``on_record`` is called with each stored record (tests use it). A
    ``worker`` passed in (already launched, e.g. while suites were validated) is used and left running
    for the caller to stop; otherwise one is started and stopped here.
    """
    console = console or Console(stderr=True)
    store = ResultStore(results_dir)
    summary = RunSummary(run_id=new_run_id(), suite=suite.name, results_dir=Path(results_dir))
    cases = list(suite.cases)
    if resume:
        done = store.ok_case_ids(suite.name)
        cases = [c for c in cases if c.case_id not in done]
        summary.skipped_by_resume = len(suite.cases) - len(cases)
        if summary.skipped_by_resume:
            console.print(f"resume: {summary.skipped_by_resume} case(s) already ok, {len(cases)} to run")
    columns = record_columns()
    owns_worker = worker is None
    worker = worker or WorkerProcess()
    started = time.perf_counter()
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=not show_progress,
    )
    try:
        with progress:
            task = progress.add_task(suite.name, total=len(cases))
            if cases:
                progress.update(task, description=f"{suite.name}: starting the worker")
                env = worker.start()
                store.write_manifest(
                    suite.name,
                    summary.run_id,
                    {"run_id": summary.run_id, "suite": suite.name, "suite_path": suite.path,
                     "started_utc": datetime.now(timezone.utc).isoformat(), "cases": len(cases),
                     "resumed": resume, "env": env},
                )
            for case in cases:
                progress.update(task, description=f"{suite.name}: {case.label}")
                metrics = {name: options.model_dump() for name, options in suite.metrics_for(case).items()}
                outcome = worker.run({"case": case.to_dict(), "metrics": metrics}, suite.timeout_s)
                record = build_record(suite, case, summary.run_id, worker.env, outcome)
                store.append(record, columns)
                summary.counts[record["status"]] += 1
                summary.measured_window_s += record.get("latency_window_s") or 0.0
                _report_case(console, record)
                if on_record is not None:
                    on_record(record)
                progress.advance(task)
    except KeyboardInterrupt:
        summary.interrupted = True
        console.print("[yellow]interrupted: the case in flight was dropped; finished cases are kept")
        worker.stop()
    finally:
        if owns_worker:
            worker.stop()
        summary.wall_s = time.perf_counter() - started
    return summary


def _report_case(console: Console, record: dict[str, Any]) -> None:
    style = {"ok": "green", "failed": "red", "skipped": "yellow"}[record["status"]]
    line = f"[{style}]{record['status']:>7}[/] {escape(record['label'])}"
    if record.get("latency_ms_median") is not None:
        line += f"  {record['latency_ms_median']:.2f} ms (IQR {record['latency_ms_iqr']:.2f})"
    if record.get("macs") is not None:
        line += f"  {record['macs'] / 1e9:.3f} GMACs"
    if record.get("det_fps") is not None:
        line += f"  {record['det_fps']:.1f} FPS"
    if record.get("acc_ap") is not None:
        line += f"  AP {record['acc_ap'] * 100:.1f}"
    if record.get("acc_top1") is not None:
        line += f"  top-1 {record['acc_top1'] * 100:.1f}%"
    if record["error"]:
        line += f"  [dim]{escape(record['error'].splitlines()[0])}"
    console.print(line, highlight=False, soft_wrap=True)
