"""``harness report``: render the static HTML site from the stored results."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from harness.cli.common import EXIT_OK, EXIT_USAGE, add_results_argument, not_a_directory
from harness.terminal import markup_text


def add_parser(sub: Any) -> None:
    """Add the ``report`` command to the sub-command parsers ``sub``."""
    parser = sub.add_parser("report", help="render the HTML report from stored results",
                            description="Render a static site into OUT, readable from file:// (no server, nothing "
                            "fetched): index.html, the leaderboard (a row per model variant, input, batch, device and "
                            "dtype with its latest values; click a header to sort, filter by text, device, dtype); "
                            "suite-NAME.html, each "
                            "suite's table (best per column in bold, published values beside measured with Δ, the "
                            "protocol in the caption) and plots (accuracy vs latency with the Pareto front, FLOPs vs "
                            "latency with roofline lines, latency distributions, error vs batch per normalization, "
                            "history across runs); run-ID.html, each run's environment and its failed and skipped "
                            "cases.")
    add_results_argument(parser)
    parser.add_argument("--out", default="reports", help="output directory (default: %(default)s)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, out: Console, err: Console) -> int:
    """Render the HTML report from the results directory."""
    from harness.report import render_report

    if not Path(args.results).exists():
        err.print(f"[red]error:[/] no results directory {markup_text(args.results)}; run a suite first", soft_wrap=True)
        return EXIT_USAGE
    if not_a_directory(args.results):
        err.print(f"[red]error:[/] {markup_text(not_a_directory(args.results))}", highlight=False, soft_wrap=True)
        return EXIT_USAGE
    page = render_report(args.results, args.out)
    out.print(f"report: {markup_text(page)}", highlight=False, soft_wrap=True)
    return EXIT_OK
