"""``harness list``: the model names a suite can use, or the metric families."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

from harness.cli.common import EXIT_OK, EXIT_USAGE
from harness.terminal import markup_text


def add_parser(sub: Any) -> None:
    """Add the ``list`` command to the sub-command parsers ``sub``."""
    parser = sub.add_parser("list", help="list models or metrics",
                            description="List model names a suite can use (the zoo's and timm's) or metric families.")
    parser.add_argument("what", choices=["models", "metrics"], help="what to list")
    parser.add_argument("pattern", nargs="?", default="*",
                        help="a part of the name (res), or a shell-style pattern when it has *, ? or [ "
                        "('resnet*'); default: every model")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, out: Console, err: Console) -> int:
    """List models (registered in the zoo and timm's) or metric families."""
    if args.what == "metrics":
        from harness.metrics import get_metric, metric_names

        for name in metric_names():
            module = get_metric(name)
            print(f"{name}: {', '.join(module.COLUMNS)}")
        return EXIT_OK
    from harness.zoo import list_models

    found = list_models(args.pattern)
    for name, origin in found:
        print(f"{name}\t{origin}")
    if not found:
        err.print(f"no model matches {markup_text(repr(args.pattern))}", highlight=False, soft_wrap=True)
        return EXIT_USAGE
    return EXIT_OK
