"""``harness env``: the environment recorded with every result."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console

from harness.cli.common import EXIT_OK
from harness.terminal import markup_text


def add_parser(sub: Any) -> None:
    """Add the ``env`` command to the sub-command parsers ``sub``."""
    parser = sub.add_parser("env", help="print the environment recorded with every result",
                            description="Print versions (Python, torch, timm), CPU, threads, GPU and driver, "
                            "host and git sha.")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, out: Console, err: Console) -> int:
    """Print the environment capture recorded with every result."""
    from harness.env import capture

    env = capture()
    if args.json:
        print(json.dumps(env, indent=2))
    else:
        for key, value in env.items():
            out.print(f"{key.removeprefix('env_'):>16}: {markup_text(value)}", highlight=False, soft_wrap=True)
    return EXIT_OK
