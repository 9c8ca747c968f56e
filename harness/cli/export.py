"""``harness export``: stored records as CSV, JSON, Markdown or pytest-benchmark JSON."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console

from harness.cli.common import EXIT_OK, EXIT_USAGE, add_results_argument
from harness.terminal import markup_text

if TYPE_CHECKING:
    from harness.run_index import RunEntry


def add_parser(sub: Any) -> None:
    """Add the ``export`` command to the sub-command parsers ``sub``."""
    parser = sub.add_parser(
        "export", help="write stored results as CSV, JSON, Markdown or pytest-benchmark JSON",
        description="Write the stored records (by default the latest per suite and case, as the report shows) "
        "to stdout or a file. csv: a row per record, every column, samples as a JSON array; json: a list of "
        "records, samples as lists; markdown: a GitHub table per suite with units in the headers; "
        "pytest-benchmark: the file `pytest --benchmark-json` writes, one benchmark per ok record with "
        "latency samples, stats in seconds per call of a whole batch (`pytest-benchmark compare A.json B.json`).",
    )
    add_results_argument(parser, metavar="DIR")
    parser.add_argument("--format", choices=("csv", "json", "markdown", "pytest-benchmark"), default="csv",
                        help="output format (default: %(default)s)")
    parser.add_argument("--suite", action="append", metavar="NAME", help="only this suite (repeatable)")
    parser.add_argument("--run", action="append", metavar="RUN_ID", help="only this run (repeatable)")
    parser.add_argument("--all", action="store_true",
                        help="every record; by default only each case's latest (an ok record before a failed one)")
    parser.add_argument("--out", metavar="FILE", help="write FILE (atomically) instead of stdout")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, out: Console, err: Console) -> int:
    """Write stored records as CSV, JSON, Markdown or pytest-benchmark JSON, to stdout or --out (atomically)."""
    from harness.errors import HarnessError
    from harness.export import export
    from harness.run_index import run_entries
    from harness.store import ResultStore, write_text_atomically
    from harness.store_reader import read_selected

    store = ResultStore(args.results)
    try:
        frame = read_selected(store, suites=args.suite, runs=args.run, latest=not args.all)
    except HarnessError as exc:
        err.print(f"[red]error:[/] {markup_text(exc)}", highlight=False, soft_wrap=True)
        return EXIT_USAGE
    if frame.empty:
        entries = run_entries(store)
        if not entries:
            err.print(f"[red]error:[/] no results in {markup_text(args.results)}; run a suite first", soft_wrap=True)
            return EXIT_USAGE
        err.print(f"[red]error:[/] {markup_text(_no_match(args.suite, args.run, entries))}", highlight=False,
                  soft_wrap=True)
        return EXIT_USAGE
    try:
        text = export(frame, args.format, latest=not args.all)
    except HarnessError as exc:
        err.print(f"[red]error:[/] {markup_text(exc)}", highlight=False, soft_wrap=True)
        return EXIT_USAGE
    if args.out is None:
        sys.stdout.write(text)
        return EXIT_OK
    path = write_text_atomically(args.out, text)
    which = "every record" if args.all else "latest record per case"
    err.print(f"export: {args.format} ({which}) → {markup_text(path)}", highlight=False, soft_wrap=True)
    return EXIT_OK


def _no_match(suites: list[str] | None, runs: list[str] | None, entries: list[RunEntry]) -> str:
    """Return what to say when ``--suite`` / ``--run`` matched no record: which of them, and what there is."""
    known_suites = sorted({e.suite for e in entries})
    if suites and not set(suites) & set(known_suites):
        return f"no record matches --suite {' '.join(suites)}; there are: {', '.join(known_suites)}"
    in_suites = sorted({e.run_id for e in entries if not suites or e.suite in suites})
    where = f" of suite {', '.join(suites)}" if suites else ""
    return f"no record matches --run {' '.join(runs or [])}{where}; there are: {', '.join(in_suites)}"
