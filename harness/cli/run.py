"""``harness run``: measure every case of suites in a worker process, a record per case in the store."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from rich.console import Console

from harness.cli.common import (
    EXIT_FAILED_CASES,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    add_results_argument,
    keep_cases,
    load_suites,
)
from harness.machine_load import CONTENDED_SHARE, WindowLoad, cpu_sample, window_load
from harness.terminal import markup_text


def add_parser(sub: Any) -> None:
    """Add the ``run`` command to the sub-command parsers ``sub``."""
    parser = sub.add_parser("run", help="run suites and store one Parquet record per case",
                            description="Run every case of each suite in a worker process; each finished case "
                            "is written to the results directory at once, so an interrupted run keeps its work.")
    parser.add_argument("suites", nargs="+", metavar="SUITE", help="suite YAML file(s)")
    add_results_argument(parser)
    parser.add_argument("--resume", action="store_true",
                        help="continue the latest run of the suite (or --run-id's): run only its cases without a "
                        "record yet (failed cases keep theirs)")
    parser.add_argument("--run-id", metavar="ID",
                        help="name the run (default: UTC time + random hex); shards of one night may share one")
    parser.add_argument("--shard", metavar="I/N",
                        help="run only shard I of N: a split balanced by estimated cost, the same on every machine; "
                        "merge the machines' results by copying their results directories together")
    parser.add_argument("--executor", choices=["local", "ray"], default="local",
                        help="local: one worker process on this machine (default); ray: each case a Ray task "
                        "holding the CPUs and GPUs it needs (needs `pip install ray`)")
    parser.add_argument("--address", metavar="ADDR",
                        help="the Ray cluster to join (e.g. auto, or ray://HOST:10001); default: start a local one")
    parser.add_argument("--cases", metavar="IDS",
                        help="run only these cases (comma-separated case_ids, as in the results' case_id column)")
    parser.add_argument("--timeout", type=float, metavar="SECONDS",
                        help="kill any case still running after SECONDS (replaces the suites' timeout_s and timeouts)")
    parser.add_argument("--summary-json", metavar="FILE",
                        help="write each suite's counts (per status and per failure class) to FILE as JSON")
    parser.add_argument("--report", nargs="?", const="reports", default=None, metavar="DIR",
                        help="render the HTML report into DIR afterwards (default DIR: reports)")
    parser.add_argument("--metrics", metavar="NAMES",
                        help="take only these of the suite's metric families, comma-separated (e.g. complexity)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (one line per case still printed)")
    parser.add_argument("--no-compact", action="store_true",
                        help="keep the run's part files (one per case) instead of merging them into one file when the "
                        "run is finished (`harness compact` merges them later)")
    parser.set_defaults(func=run)


def _warn_if_busy(load: WindowLoad | None, err: Console) -> None:
    """Warn when other processes took more than :data:`CONTENDED_SHARE` of the cores while the suites were checked
    (the worker importing torch meanwhile is this run's own)."""
    why = load.contended(CONTENDED_SHARE) if load is not None else None
    if why is None:
        return
    average = f" (load average {load.loadavg_1m:.1f})" if load.loadavg_1m is not None else ""
    err.print(f"[yellow]warning:[/] the machine is busy: {why.removeprefix('contended: ')} as the run started"
              f"{average}; timings taken meanwhile are marked contended and noisy — a quiet machine steadies them",
              highlight=False, soft_wrap=True)


def run(args: argparse.Namespace, out: Console, err: Console) -> int:
    """Run suites, store a record per case, optionally render the report; exit 1 if a case failed."""
    from harness.errors import HarnessError
    from harness.report import render_report
    from harness.runner import run_suite
    from harness.runner.executors import LocalExecutor, make_executor
    from harness.runner.shard import parse_shard

    try:
        shard = parse_shard(args.shard) if args.shard else None
        executor = make_executor(args.executor, args.address)
    except HarnessError as exc:
        err.print(f"[red]error:[/] {markup_text(exc)}", highlight=False, soft_wrap=True)
        return EXIT_USAGE
    before = cpu_sample()
    if isinstance(executor, LocalExecutor):
        executor.worker.launch()  # the worker imports torch while the suites are validated here
    summaries = []
    try:
        suites = load_suites(args.suites, err)
        if suites is None:
            return EXIT_USAGE
        worker = executor.worker.pid if isinstance(executor, LocalExecutor) else None
        _warn_if_busy(window_load(before, cpu_sample([worker])), err)
        try:
            if args.metrics:
                suites = [s.with_metrics(args.metrics.split(",")) for s in suites]
        except HarnessError as exc:
            err.print(f"[red]error:[/] {markup_text(exc)}", highlight=False, soft_wrap=True)
            return EXIT_USAGE
        if args.timeout:
            suites = [dataclasses.replace(s, timeout_s=args.timeout, timeouts=()) for s in suites]
        if args.cases:
            suites, unknown = keep_cases(suites, args.cases)
            if unknown:
                err.print(f"[red]error:[/] --cases: no case {markup_text(', '.join(sorted(unknown)))} in the suite(s)",
                          highlight=False, soft_wrap=True)
                return EXIT_USAGE
        status = EXIT_OK
        for suite in suites:
            summary = run_suite(suite, args.results, resume=args.resume, console=err, executor=executor,
                                show_progress=not args.no_progress, shard=shard, run_id=args.run_id,
                                compact=not args.no_compact)
            summaries.append(summary)
            out.print(f"{markup_text(suite.name)}{f' shard {shard}' if shard else ''}: {summary.describe()} in "
                      f"{summary.wall_s:.1f} s → {markup_text(summary.results_dir)} "
                      f"(run {markup_text(summary.run_id)})",
                      highlight=False, soft_wrap=True)
            if summary.noisy_advice():
                err.print(f"[yellow]note:[/] {summary.noisy_advice()}", highlight=False, soft_wrap=True)
            if suite.claim_pairs:
                _print_claims(out, suite.name, summary.results_dir, summary.run_id)
            if summary.interrupted:
                return EXIT_INTERRUPTED
            if summary.failed:
                status = EXIT_FAILED_CASES
    finally:
        executor.stop()
        # an error in flight (a full disk) stays the message the user sees; a summary not written is one more line
        summary_written = _write_summary(args.summary_json, summaries, err) if args.summary_json else True
    if not summary_written:
        status = max(status, EXIT_FAILED_CASES)
    if args.report:
        page = render_report(args.results, args.report)
        out.print(f"report: {markup_text(page)}", highlight=False, soft_wrap=True)
    return status


def _write_summary(path: str, summaries: list, err: Console) -> bool:
    """Write the runs' summaries (``--summary-json``) to ``path`` atomically; return whether it was written, printing
    why not (a full disk: no traceback, and the records already written are kept)."""
    from harness.store import write_error, write_text_atomically

    try:
        write_text_atomically(path, json.dumps([s.as_json() for s in summaries], indent=2) + "\n")
    except OSError as exc:
        error = write_error(Path(path), exc, "no run summary (--summary-json) is written; the records already "
                            "written are kept")
        err.print(f"[red]error:[/] {markup_text(error)}", highlight=False, soft_wrap=True)
        return False
    return True


def _print_claims(out: Console, suite: str, results_dir: Path, run_id: str) -> None:
    """Print the suite's claims judged on the records of run ``run_id`` (:func:`harness.claims.summary_lines`)."""
    from harness.claims import claim_rows, summary_lines
    from harness.store import ResultStore
    from harness.store_query import latest_per_case

    records = ResultStore(results_dir).read(suite=suite, run_id=run_id)
    for line in summary_lines(claim_rows(latest_per_case(records))):
        out.print(f"{markup_text(suite)}: {markup_text(line)}", highlight=False, soft_wrap=True)
