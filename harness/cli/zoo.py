"""``harness zoo``: every timm architecture counted (params, MACs, FLOPs, memory access cost), a record each in the
store, in parallel worker processes."""

from __future__ import annotations

import argparse
import os
from typing import Any

from rich.console import Console

from harness.cli.common import (
    EXIT_FAILED_CASES,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    add_results_argument,
    positive_int,
)
from harness.terminal import markup_text
from harness.zoo_suite import MAX_DEFAULT_JOBS


def add_parser(sub: Any) -> None:
    """Add the ``zoo`` command to the sub-command parsers ``sub``."""
    parser = sub.add_parser(
        "zoo", help="count every timm architecture: params, MACs, FLOPs, memory access cost, into the store",
        description="Count every architecture timm.list_models() names (or those matching PATTERN) at its "
        "pretrained config's input size, batch 1, built on the meta device (no weights: nothing is downloaded, "
        "the largest models take seconds): params, MACs, FLOPs, memory access cost, activations, op coverage and a "
        "breakdown per op. Each architecture is a case of suite 'timm_zoo' in the results store; one that cannot "
        "be built or counted is recorded failed with the reason, and the run goes on. `--report` renders the site, "
        "whose timm_zoo page tables and plots them.")
    parser.add_argument("pattern", nargs="?", default="*",
                        help="an fnmatch pattern of timm names, e.g. 'vit_*' (default: every architecture)")
    parser.add_argument("--jobs", type=positive_int, default=min(os.cpu_count() or 1, MAX_DEFAULT_JOBS), metavar="N",
                        help="worker processes counting at once, each with its own torch and timm (default: this "
                        f"machine's cores, at most {MAX_DEFAULT_JOBS}: %(default)s)")
    add_results_argument(parser)
    parser.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32",
                        help="element size for mac_bytes (default: %(default)s)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the latest zoo run: count only the architectures without a record in it")
    parser.add_argument("--timeout", type=float, metavar="SECONDS",
                        help="record an architecture still counting after SECONDS as failed (default: 600)")
    parser.add_argument("--report", nargs="?", const="reports", default=None, metavar="DIR",
                        help="render the HTML report into DIR afterwards (default DIR: reports)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (one line per case still printed)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, out: Console, err: Console) -> int:
    """Count the zoo's architectures into the store, print the counts and the coverage, optionally render the report;
    exit 1 if one failed."""
    import dataclasses

    from harness.report import render_report
    from harness.runner import run_suite
    from harness.runner.executors import LocalExecutor
    from harness.zoo_suite import coverage_summary, zoo_suite

    executor = LocalExecutor(jobs=args.jobs)
    for worker in executor.workers:
        worker.launch()  # the workers import torch while the zoo is listed here
    try:
        suite = zoo_suite(args.pattern, args.dtype)
        if not suite.cases:
            err.print(f"[red]error:[/] no timm architecture matches {markup_text(repr(args.pattern))}; see "
                      "`harness list models`", highlight=False, soft_wrap=True)
            return EXIT_USAGE
        if args.timeout:
            suite = dataclasses.replace(suite, timeout_s=args.timeout)
        summary = run_suite(suite, args.results, resume=args.resume, console=err, executor=executor,
                            show_progress=not args.no_progress)
    finally:
        executor.stop()
    from harness.store import ResultStore

    records = ResultStore(args.results).read(suite=suite.name, run_id=summary.run_id).to_dict("records")
    out.print(f"{suite.name}: {len(suite.cases)} architecture(s) ({markup_text(suite.path)}): {summary.describe()} in "
              f"{summary.wall_s:.1f} s on {args.jobs} worker(s); in the run, {coverage_summary(records)} → "
              f"{markup_text(summary.results_dir)} (run {markup_text(summary.run_id)})",
              highlight=False, soft_wrap=True)
    if summary.interrupted:
        return EXIT_INTERRUPTED
    if args.report:
        page = render_report(args.results, args.report)
        out.print(f"report: {markup_text(page)}", highlight=False, soft_wrap=True)
    return EXIT_FAILED_CASES if summary.failed else EXIT_OK
