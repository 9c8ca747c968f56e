"""``harness validate``: check suite files without running them (every problem with its file and line)."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

from harness.cli.common import EXIT_OK, EXIT_USAGE, load_suites
from harness.terminal import markup_text


def add_parser(sub: Any) -> None:
    """Add the ``validate`` command to the sub-command parsers ``sub``."""
    parser = sub.add_parser("validate", help="check suite files without running them",
                            description="Check suites: keys, types, model and metric names, matrix. Prints "
                            "FILE:LINE: what was expected, for every problem; exit status 2 if any.")
    parser.add_argument("suites", nargs="+", metavar="SUITE", help="suite YAML file(s)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, out: Console, err: Console) -> int:
    """Validate suite files; print one line per problem with file and line; exit 2 if any."""
    suites = load_suites(args.suites, err, check_all_names=True)
    if suites is None:
        return EXIT_USAGE
    for suite in suites:
        out.print(f"{markup_text(suite.path)}: ok — suite {markup_text(repr(suite.name))}, {len(suite.cases)} case(s), "
                  f"metrics: {', '.join(suite.metrics)}", highlight=False, soft_wrap=True)
    return EXIT_OK
