"""The ``harness`` command: run suites, validate them, render reports, export, compare, list models, show the
environment.

One module per sub-command (:data:`COMMANDS`, in the order ``--help`` lists them), each with ``add_parser(sub)`` (its
arguments, ``func`` set to its handler) and ``run(args, out, err) -> exit status``; what they share is in
:mod:`harness.cli.common`. Every module imports only what its arguments need at the top (torch and the store load
inside ``run``), so ``harness --help`` and a bad suite's errors come without importing torch.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from rich.console import Console

from harness.cli.common import EXIT_FAILED_CASES, EXIT_INTERRUPTED
from harness.terminal import markup_text

#: The sub-commands' modules, in the order of ``harness --help``.
COMMANDS: tuple[str, ...] = ("run", "compact", "validate", "report", "listing", "export", "profile", "zoo", "bench",
                             "compare", "ab", "coco_eval", "env")

DESCRIPTION = """\
Benchmark deep-learning architectures from declarative YAML suites.

A suite (suites/*.yaml) names a matrix of cases (model × batch × resolution × device × dtype) and the
metrics to take; `harness run` measures every case in a separate worker process and appends one
Parquet record per case under results/; `harness report` renders reports/index.html from them.
"""

EPILOG = """\
examples:
  harness run suites/smoke.yaml            measure the smoke suite on this machine
  harness run suites/smoke.yaml --resume   continue the last run: only its cases without a record
  harness run suites/nightly.yaml --shard 2/4   shard 2 of 4 (run the others on other machines)
  harness report                           render reports/index.html from results/
  harness export --format markdown         the latest results as Markdown tables (also csv, json, pytest-benchmark)
  harness compare RUN_A RUN_B              latency regressions of run B against run A, a verdict per case
  harness ab SUITE --candidate-env CMD     SUITE timed alternately in this and another environment (an upgrade)
  harness validate suites/*.yaml           check suites without running anything
  harness list models 'resnet*'            models the zoo and timm can build
  harness profile resnet50 --by op         params, MACs, FLOPs, memory access cost per op
  harness zoo --report                     count every timm architecture into the store and the report
  harness bench resnet18 --batch 8 --json  latency and throughput of one model
  harness env                              the environment recorded with every result

failure classes of a failed case (column failure_class): exception, oom (retried at half the batch down
to the suite's oom_min_batch), illegal_memory_access, crash (segfault, abort), timeout, nonfinite.

exit status: 0 all cases ok or skipped; 1 some case failed, or results could not be written (a full
disk: what was written is kept); 2 bad usage or invalid suite; 130 interrupted (finished cases are kept).
"""


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``harness`` command and its sub-commands (:data:`COMMANDS`)."""
    parser = argparse.ArgumentParser(
        prog="harness", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"harness.cli.{name}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``harness`` command with ``argv`` (default: sys.argv); return its exit status."""
    args = build_parser().parse_args(argv)
    out, err = Console(emoji=False), Console(stderr=True, emoji=False)  # ':name:' in a suite name stays text
    handler: Callable[[argparse.Namespace, Console, Console], int] = args.func
    from harness.errors import HarnessError

    try:
        return handler(args, out, err)
    except HarnessError as exc:
        err.print(f"[red]error:[/] {markup_text(exc)}", highlight=False, soft_wrap=True)
        return EXIT_FAILED_CASES
    except KeyboardInterrupt:
        err.print("[yellow]interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `harness ... | head`: the reader left; say nothing more (Python's advice, signal docs)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED_CASES


def console_main() -> int:
    """The ``harness`` console script: :func:`main`, then freeze the garbage collector's objects so that the
    interpreter's exit does not walk torch's and timm's module graphs (~1 s on 2 cores once torch is imported; the
    records are on disk and the worker stopped by then). Returns the exit status."""
    status = main()
    gc.freeze()
    return status
