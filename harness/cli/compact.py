"""``harness compact``: merge each finished run's part files into one file per run."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from harness.cli.common import EXIT_OK, EXIT_USAGE, add_results_argument
from harness.terminal import markup_text


def add_parser(sub: Any) -> None:
    """Add the ``compact`` command to the sub-command parsers ``sub``."""
    parser = sub.add_parser("compact", help="merge each finished run's part files into one file per run",
                            description="Merge the part files (one per case) of every finished run under the "
                            "results directory into one Parquet file per run, sorted by case, written atomically "
                            "beside them and then replacing them: a reader sees the part files or the merged file, "
                            "never both or neither, and kill -9 at any point loses nothing. A run still being written "
                            "(its manifest has no finished_utc) is left alone unless --force. `harness run` does this "
                            "at the end of each run; this is for older stores.")
    add_results_argument(parser)
    parser.add_argument("--force", action="store_true",
                        help="also compact runs whose manifest does not say they finished (runs known to be dead)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, out: Console, err: Console) -> int:
    """Compact every finished run under the results directory; print what was done; exit 2 without a store."""
    from harness.compaction import compact_store

    if not Path(args.results).is_dir():
        err.print(f"[red]error:[/] no results directory {markup_text(args.results)}", soft_wrap=True)
        return EXIT_USAGE
    done = compact_store(args.results, force=args.force)
    merged = [d for d in done if d.path is not None]
    for d in done:
        if d.path is not None:
            out.print(f"{markup_text(d.folder)}: {d.files} file(s), {d.records} record(s) → {markup_text(d.path.name)}",
                      highlight=False, soft_wrap=True)
        elif d.reason != "already compacted":
            err.print(f"{markup_text(d.folder)}: left as it is: {markup_text(d.reason)}", highlight=False,
                      soft_wrap=True)
    out.print(f"compacted {len(merged)} of {len(done)} run(s): {sum(d.files for d in merged)} part file(s) → "
              f"{len(merged)} file(s)", highlight=False)
    return EXIT_OK
