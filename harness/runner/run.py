"""Running a suite: an executor runs the cases (:mod:`harness.runner.executors`); each finished case is stored
before the next is taken, so a run that dies (Ctrl-C, ``kill -9``, a lost machine) loses at most the cases in flight.

A run writes its manifest (``_run.json``, or ``_run.shard-I-of-N.json`` for a shard) when it starts: the suite,
the environment, the shard and the case_ids it plans; and again when it ends, with what happened to them.
``--resume`` continues the latest run of the suite (and shard) under the same run id: it runs exactly the
planned cases that have no record in that run yet. A failed case keeps its record; run without ``--resume`` to
measure it again. A run that ends (not interrupted) with every manifest of its folder finished is compacted: its
part files merged into one file (:mod:`harness.compaction`). Ctrl-C stops the executor, keeps every record
already written and returns a summary marked interrupted.

While a process runs a run (a shard of it), it holds the run folder's lock (:meth:`ResultStore.claim_run`): a second
process running or resuming the same run at the same time is refused (:class:`harness.store.RunBusy`) instead of
measuring every case again, and a resume reads which cases are recorded only once it holds the lock. The lock dies
with its process, so ``kill -9`` leaves nothing to clean up.
"""

from __future__ import annotations

import contextlib
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
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from harness.case import CASE_COLUMNS, Case
from harness.claims import claims_json
from harness.env import ENV_COLUMNS
from harness.metrics import metric_columns
from harness.runner.executors import Executor, LocalExecutor
from harness.runner.faults import FAILURE_CLASSES
from harness.runner.process import WorkerProcess
from harness.runner.shard import Shard, estimate_cost_s, select_shard
from harness.runner.tasks import CaseTask
from harness.store import BASE_COLUMNS, ResultStore
from harness.suite import Suite
from harness.terminal import markup_text, visible_controls

#: Columns the runner adds to every record: how the case ended and under which limits.
RUN_COLUMNS: dict[str, str] = {
    "failure_class": "string",  # harness.runner.faults.FAILURE_CLASSES; empty unless failed
    "batch_used": "int64",  # the batch of the attempt recorded (smaller than `batch` after out-of-memory retries)
    "oom_retries": "int64",  # how many times the batch was halved after running out of memory
    "timeout_s": "float64",  # the case's timeout
    "executor": "string",  # local or ray
    "shard": "string",  # I/N, empty when the suite ran whole
    "group_id": "string",  # the case_id at seed 0: shared by the records of one case's seeds
    "deterministic": "bool",  # the seeded metrics ran with torch's deterministic algorithms, exactly repeatable
    "baseline_json": "string",  # the suite's baseline fields (JSON), e.g. {"norm": "bn"}; empty: none
    "alpha": "float64",  # the suite's significance level for the t-tests against the baseline
    "claims_json": "string",  # the claims this case is the candidate of, with their baseline case (harness.claims)
}


def record_columns() -> dict[str, str]:
    """Return ``{column: type}`` of a full record: base, run, case fields, environment and every metric."""
    return BASE_COLUMNS | RUN_COLUMNS | CASE_COLUMNS | ENV_COLUMNS | metric_columns()


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
    #: failed cases by failure class (harness.runner.faults)
    failure_classes: Counter = field(default_factory=Counter)
    skipped_by_resume: int = 0
    interrupted: bool = False
    wall_s: float = 0.0
    measured_window_s: float = 0.0
    #: records whose latency is flagged noisy (``latency_noisy``) / records with a latency at all.
    noisy: int = 0
    timed: int = 0

    @property
    def failed(self) -> int:
        """Return the number of cases recorded as failed."""
        return self.counts.get("failed", 0)

    def describe(self) -> str:
        """Return the counts as text, e.g. ``3 ok, 2 failed (1 oom, 1 timeout), 1 skipped``."""
        parts = []
        for status in ("ok", "failed", "skipped"):
            if self.counts.get(status):
                text = f"{self.counts[status]} {status}"
                if status == "failed" and self.failure_classes:
                    text += " (" + ", ".join(f"{self.failure_classes[c]} {c}" for c in FAILURE_CLASSES
                                             if self.failure_classes.get(c)) + ")"
                parts.append(text)
        if self.skipped_by_resume:
            parts.append(f"{self.skipped_by_resume} already recorded (resume)")
        if self.noisy:
            parts.append(f"{self.noisy} of {self.timed} timings noisy")
        return ", ".join(parts) or "no case run"

    def noisy_advice(self) -> str | None:
        """Return what to do about noisy timings when some were (None when none was)."""
        if not self.noisy:
            return None
        return (f"{self.noisy} of {self.timed} timings are noisy (their lines say why): their medians move between "
                "runs more than within one. A longer latency max_time_s, a fixed `threads`, or a quiet machine "
                "(no other load, fixed CPU frequency) steadies them; compare them with care.")

    def as_json(self) -> dict[str, Any]:
        """Return the summary as JSON-able data: counts per status and per failure class, wall seconds."""
        return {"run_id": self.run_id, "suite": self.suite, "results_dir": str(self.results_dir),
                "counts": dict(self.counts), "failure_classes": dict(self.failure_classes),
                "skipped_by_resume": self.skipped_by_resume, "interrupted": self.interrupted, "wall_s": self.wall_s,
                "noisy": self.noisy, "timed": self.timed}


def build_record(
    suite: Suite, case: Case, run_id: str, env: dict[str, Any], outcome: dict[str, Any]
) -> dict[str, Any]:
    """Return the store record of one case's outcome: identity, status, protocol, values, environment."""
    metrics = suite.metrics_for(case)
    failed = outcome["status"] == "failed"
    return {
        "run_id": run_id,
        "suite": suite.name,
        "case_id": case.case_id,
        "label": case.label,
        "status": outcome["status"],
        "error": visible_controls(outcome["error"]) or None,  # an escape sequence is stored shown, not obeyed
        "timestamp_utc": datetime.now(timezone.utc),
        "duration_s": outcome["duration_s"],
        "metrics_taken": ",".join(metrics),
        "protocol_json": json.dumps({k: v.model_dump() for k, v in metrics.items()}, sort_keys=True),
        "published_json": json.dumps(suite.published_for(case)),
        "claims_json": claims_json(suite.claims_for(case)),
        "failure_class": (outcome.get("failure_class") or "exception") if failed else None,
        "batch_used": outcome.get("batch_used", case.batch),
        "oom_retries": outcome.get("oom_retries", 0),
        "timeout_s": suite.timeout_for(case),
        "group_id": case.group_id,
        "baseline_json": json.dumps(suite.baseline, sort_keys=True, default=str) if suite.baseline else None,
        "alpha": suite.alpha,
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
    executor: Executor | None = None,
    shard: Shard | None = None,
    run_id: str | None = None,
    compact: bool = True,
) -> RunSummary:
    """Run the cases of ``suite`` (of ``shard`` only, when given) on ``executor`` (default: a local worker
    process), storing each record as soon as it is done; return the run's summary.

    ``run_id`` names the run (default: a new one; shards of one night may share one). ``resume`` continues the
    run ``run_id``, or the latest of this suite and shard, running only its cases without a record. Raises
    :class:`harness.store.RunBusy` when another process runs that run (and shard) now, HarnessError when its folder
    holds another suite's or run's manifest.
    ``on_record`` is called with each stored record (tests use it). A ``worker`` passed in (already launched,
    e.g. while suites were validated) is used and left running for the caller to stop; an executor passed in
    is started here and left for the caller to stop. ``compact``: once the run is finished (every shard's
    manifest says so), merge its part files into one file (:mod:`harness.compaction`).
    """
    console = console or Console(stderr=True, emoji=False)
    store = ResultStore(results_dir)
    cases = list(suite.cases)
    if shard is not None:
        cases = select_shard(cases, lambda c: estimate_cost_s(c, _metric_options(suite, c)), shard)
    if resume:
        run_id = run_id or _latest_run_id(store, suite.name, shard)
        if run_id is None:
            console.print(f"resume: no earlier run of {markup_text(suite.name)}{_shard_text(shard)} in "
                          f"{markup_text(results_dir)}; a new run", highlight=False, soft_wrap=True, emoji=False)
    resumed = resume and run_id is not None
    run_id = run_id or new_run_id()
    lock = f"_run.{shard.slug}.lock" if shard else "_run.lock"
    with store.claim_run(suite.name, run_id, lock) if cases else contextlib.nullcontext():
        return _run_cases(suite, store, cases, run_id, resumed, console=console, show_progress=show_progress,
                          on_record=on_record, worker=worker, executor=executor, shard=shard, compact=compact,
                          resume=resume)


def _run_cases(suite: Suite, store: ResultStore, cases: list[Case], run_id: str, resumed: bool, *,
               console: Console, show_progress: bool, on_record: Callable[[dict[str, Any]], None] | None,
               worker: WorkerProcess | None, executor: Executor | None, shard: Shard | None, compact: bool,
               resume: bool) -> RunSummary:
    """Run ``cases`` as run ``run_id`` (claimed by :func:`run_suite`; ``resumed``: only those without a record in
    it, read now that no other process runs it), storing each record as it is done; return the run's summary."""
    planned = len(cases)
    if resumed:
        done = store.case_ids_in_run(suite.name, run_id)
        cases = [c for c in cases if c.case_id not in done]
        console.print(f"resume: run {markup_text(run_id)}: {planned - len(cases)} case(s) already recorded, "
                      f"{len(cases)} to run", highlight=False, soft_wrap=True, emoji=False)
    summary = RunSummary(run_id=run_id, suite=suite.name, results_dir=store.root,
                         skipped_by_resume=planned - len(cases))
    columns = record_columns()
    owns_worker = executor is None and worker is None
    executor = executor or LocalExecutor(worker)
    manifest = {"run_id": summary.run_id, "suite": suite.name, "suite_path": suite.path, "resumed": resume,
                "shard": str(shard) if shard else None, "executor": executor.name,
                "planned_case_ids": [c.case_id for c in cases]}
    manifest_name = f"_run.{shard.slug}.json" if shard else "_run.json"
    started = time.perf_counter()
    progress = Progress(
        TextColumn("{task.description}", style="bold", markup=False),  # suite names and labels: plain text
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=not show_progress,
    )
    tasks = [CaseTask(case, _metric_options(suite, case), suite.timeout_for(case), suite.oom_min_batch)
             for case in cases]
    try:
        with progress:
            bar = progress.add_task(visible_controls(suite.name), total=len(cases))
            if cases:
                progress.update(bar, description=f"{visible_controls(suite.name)}: starting the "
                                                 f"{executor.name} executor")
                env = executor.start()
                manifest |= {"started_utc": datetime.now(timezone.utc).isoformat(), "env": env}
                store.write_manifest(suite.name, summary.run_id, manifest, name=manifest_name)
                progress.update(bar, description=visible_controls(f"{suite.name}: {cases[0].label}"))
            for task, outcome in executor.run(tasks):
                record = build_record(suite, task.case, summary.run_id, outcome.get("env") or env, outcome)
                record |= {"executor": executor.name, "shard": str(shard) if shard else None}
                store.append(record, columns)
                summary.counts[record["status"]] += 1
                if record["failure_class"]:
                    summary.failure_classes[record["failure_class"]] += 1
                summary.measured_window_s += record.get("latency_window_s") or 0.0
                summary.timed += record.get("latency_ms_median") is not None
                summary.noisy += bool(record.get("latency_noisy"))
                _report_case(console, record)
                if on_record is not None:
                    on_record(record)
                progress.advance(bar)
                done = sum(summary.counts.values())
                if done < len(tasks):
                    progress.update(bar, description=visible_controls(f"{suite.name}: {tasks[done].case.label}"))
    except KeyboardInterrupt:
        summary.interrupted = True
        console.print("[yellow]interrupted: the cases in flight were dropped; finished cases are kept "
                      "(--resume runs the rest)")
        executor.stop()
    finally:
        if owns_worker:
            executor.stop()
        summary.wall_s = time.perf_counter() - started
    if cases:
        manifest |= {"finished_utc": datetime.now(timezone.utc).isoformat(), "summary": summary.as_json()}
        store.write_manifest(suite.name, summary.run_id, manifest, name=manifest_name)
    if compact and not summary.interrupted:
        from harness.compaction import compact_run

        done = compact_run(store.run_dir(suite.name, summary.run_id))
        if done.path is not None:
            console.print(f"{markup_text(suite.name)}: {done.records} record(s) of run {markup_text(summary.run_id)} "
                          f"compacted into {markup_text(done.path.name)}", highlight=False, soft_wrap=True,
                          emoji=False)
    return summary


def _metric_options(suite: Suite, case: Case) -> dict[str, dict[str, Any]]:
    return {name: options.model_dump() for name, options in suite.metrics_for(case).items()}


def _shard_text(shard: Shard | None) -> str:
    return f" shard {shard}" if shard else ""


def _latest_run_id(store: ResultStore, suite: str, shard: Shard | None) -> str | None:
    """Return the run id of the latest run of ``suite`` (and ``shard``: None = a whole-suite run), or None."""
    wanted = str(shard) if shard else None
    runs = [m for _path, m in store.run_manifests(suite) if m.get("shard") == wanted and m.get("run_id")]
    return runs[-1]["run_id"] if runs else None


def _report_case(console: Console, record: dict[str, Any]) -> None:
    style = {"ok": "green", "failed": "red", "skipped": "yellow"}[record["status"]]
    line = f"[{style}]{record['status']:>7}[/] {markup_text(record['label'])}"
    if record.get("latency_ms_median") is not None:
        line += f"  {record['latency_ms_median']:.2f} ms (IQR {record['latency_ms_iqr']:.2f})"
        if record.get("latency_noisy"):
            line += f" [yellow]noisy[/] ({markup_text(record.get('latency_noisy_reason') or 'IQR/median')})"
    if record.get("macs") is not None:
        line += f"  {record['macs'] / 1e9:.3f} GMACs"
    if record.get("det_fps") is not None:
        line += f"  {record['det_fps']:.1f} FPS"
    if record.get("acc_ap") is not None:
        line += f"  AP {record['acc_ap'] * 100:.1f}"
    if record.get("acc_top1") is not None:
        line += f"  top-1 {record['acc_top1'] * 100:.1f}%"
    if record["error"]:
        line += f"  [dim]{markup_text(record['error'].splitlines()[0])}"
    console.print(line, highlight=False, soft_wrap=True, emoji=False)
