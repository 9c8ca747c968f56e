"""``harness report``: render the static HTML site from the stored results."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from harness.cli.common import EXIT_OK, EXIT_USAGE, add_results_argument, not_a_directory
from harness.report import RUN_TABLES
from harness.terminal import markup_text

#: From this many part files (records of runs not compacted) on, `harness report` says that compacting is faster.
MANY_PART_FILES = 2000


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
                            "history across runs); run-ID.html, each run's records (for each suite's most recent runs, "
                            "see --run-tables), environment and failed and skipped cases.")
    add_results_argument(parser)
    parser.add_argument("--out", default="reports", help="output directory (default: %(default)s)")
    parser.add_argument("--run-tables", type=run_tables_count, default=RUN_TABLES, metavar="N|all",
                        help="table the records of each suite's N most recent runs on their run pages (default: "
                             "%(default)s; `all`: every run's, which takes time in proportion to the store's records); "
                             "the other run pages give the run's summary, environment and problems")
    parser.set_defaults(func=run)


def run_tables_count(text: str) -> int | None:
    """Return the ``--run-tables`` value: a count ≥ 0, or None for ``all``."""
    if text == "all":
        return None
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a number of runs or 'all', got {text!r}")
    return int(text)


def run(args: argparse.Namespace, out: Console, err: Console) -> int:
    """Render the HTML report from the results directory."""
    from harness.report import render_report
    from harness.store import ResultStore, is_compacted

    if not Path(args.results).exists():
        err.print(f"[red]error:[/] no results directory {markup_text(args.results)}; run a suite first", soft_wrap=True)
        return EXIT_USAGE
    if not_a_directory(args.results):
        err.print(f"[red]error:[/] {markup_text(not_a_directory(args.results))}", highlight=False, soft_wrap=True)
        return EXIT_USAGE
    parts = sum(1 for path in ResultStore(args.results).part_files() if not is_compacted(path))
    if parts >= MANY_PART_FILES:
        err.print(f"note: {parts:,} record files of runs not compacted (each read costs a few ms: minutes in all); "
                  f"`harness compact --results {markup_text(args.results)}` merges each finished run's files into one",
                  highlight=False, soft_wrap=True)
    page = render_report(args.results, args.out, run_tables_per_suite=args.run_tables)
    out.print(f"report: {markup_text(page)}", highlight=False, soft_wrap=True)
    return EXIT_OK
