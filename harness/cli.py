"""The ``harness`` command: run suites, validate them, render reports, list models, show the environment."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape

EXIT_OK, EXIT_FAILED_CASES, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

DESCRIPTION = """\
Benchmark deep-learning architectures from declarative YAML suites.

A suite (suites/*.yaml) names a matrix of cases (model × batch × resolution × device × dtype) and the
metrics to take; `harness run` measures every case in a separate worker process and appends one
Parquet record per case under results/; `harness report` renders reports/index.html from them.
"""

EPILOG = """\
examples:
  harness run suites/smoke.yaml            measure the smoke suite on this machine
  harness run suites/smoke.yaml --resume   run only the cases without an ok record yet
  harness report                           render reports/index.html from results/
  harness validate suites/*.yaml           check suites without running anything
  harness list models 'resnet*'            models the zoo and timm can build
  harness env                              the environment recorded with every result

exit status: 0 all cases ok or skipped; 1 some case failed; 2 bad usage or invalid suite;
130 interrupted (finished cases are kept).
"""


def _load_suites(paths: Sequence[str], err: Console) -> list | None:
    from harness.suite import SuiteError, load_suite

    suites, bad = [], False
    for path in paths:
        try:
            suites.append(load_suite(path))
        except SuiteError as exc:
            bad = True
            for problem in exc.problems:
                err.print(f"[red]error:[/] {escape(str(problem))}", highlight=False, soft_wrap=True)
    return None if bad else suites


def cmd_validate(args: argparse.Namespace, out: Console, err: Console) -> int:
    """Validate suite files; print one line per problem with file and line; exit 2 if any."""
    suites = _load_suites(args.suites, err)
    if suites is None:
        return EXIT_USAGE
    for suite in suites:
        out.print(f"{escape(suite.path)}: ok — suite {suite.name!r}, {len(suite.cases)} case(s), "
                  f"metrics: {', '.join(suite.metrics)}", highlight=False, soft_wrap=True)
    return EXIT_OK


def cmd_run(args: argparse.Namespace, out: Console, err: Console) -> int:
    """Run suites, store a record per case, optionally render the report; exit 1 if a case failed."""
    from harness.report import render_report
    from harness.runner import run_suite

    suites = _load_suites(args.suites, err)
    if suites is None:
        return EXIT_USAGE
    status = EXIT_OK
    for suite in suites:
        summary = run_suite(suite, args.results, resume=args.resume, console=err, show_progress=not args.no_progress)
        counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.counts.items())) or "no case run"
        if summary.skipped_by_resume:
            counts += f", {summary.skipped_by_resume} already ok (resume)"
        out.print(f"{suite.name}: {counts} in {summary.wall_s:.1f} s → "
                  f"{escape(str(summary.results_dir))} (run {summary.run_id})", highlight=False, soft_wrap=True)
        if summary.interrupted:
            return EXIT_INTERRUPTED
        if summary.failed:
            status = EXIT_FAILED_CASES
    if args.report:
        page = render_report(args.results, args.report)
        out.print(f"report: {escape(str(page))}", highlight=False, soft_wrap=True)
    return status


def cmd_report(args: argparse.Namespace, out: Console, err: Console) -> int:
    """Render the HTML report from the results directory."""
    from harness.report import render_report

    if not Path(args.results).exists():
        err.print(f"[red]error:[/] no results directory {escape(args.results)!s}; run a suite first", soft_wrap=True)
        return EXIT_USAGE
    page = render_report(args.results, args.out)
    out.print(f"report: {escape(str(page))}", highlight=False, soft_wrap=True)
    return EXIT_OK


def cmd_list(args: argparse.Namespace, out: Console, err: Console) -> int:
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
        err.print(f"no model matches {args.pattern!r}")
        return EXIT_USAGE
    return EXIT_OK


def cmd_env(args: argparse.Namespace, out: Console, err: Console) -> int:
    """Print the environment capture recorded with every result."""
    from harness.env import capture

    env = capture()
    if args.json:
        print(json.dumps(env, indent=2))
    else:
        for key, value in env.items():
            out.print(f"{key.removeprefix('env_'):>16}: {value}", highlight=False, soft_wrap=True)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``harness`` command and its sub-commands."""
    parser = argparse.ArgumentParser(
        prog="harness", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run suites and store one Parquet record per case",
                         description="Run every case of each suite in a worker process; each finished case "
                         "is written to the results directory at once, so an interrupted run keeps its work.")
    run.add_argument("suites", nargs="+", metavar="SUITE", help="suite YAML file(s)")
    run.add_argument("--results", default="results", help="results directory (default: %(default)s)")
    run.add_argument("--resume", action="store_true",
                     help="skip cases that already have an ok record for the suite in the results directory")
    run.add_argument("--report", nargs="?", const="reports", default=None, metavar="DIR",
                     help="render the HTML report into DIR afterwards (default DIR: reports)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar (one line per case still printed)")
    run.set_defaults(func=cmd_run)

    val = sub.add_parser("validate", help="check suite files without running them",
                         description="Check suites: keys, types, model and metric names, matrix. Prints "
                         "FILE:LINE: what was expected, for every problem; exit status 2 if any.")
    val.add_argument("suites", nargs="+", metavar="SUITE", help="suite YAML file(s)")
    val.set_defaults(func=cmd_validate)

    rep = sub.add_parser("report", help="render the HTML report from stored results",
                         description="Render OUT/index.html: a table per suite, a row per case (its latest "
                         "record), best value per column in bold, published values beside measured ones.")
    rep.add_argument("--results", default="results", help="results directory (default: %(default)s)")
    rep.add_argument("--out", default="reports", help="output directory (default: %(default)s)")
    rep.set_defaults(func=cmd_report)

    lst = sub.add_parser("list", help="list models or metrics",
                         description="List model names a suite can use (the zoo's and timm's) or metric families.")
    lst.add_argument("what", choices=["models", "metrics"], help="what to list")
    lst.add_argument("pattern", nargs="?", default="*", help="shell-style pattern for models (default: *)")
    lst.set_defaults(func=cmd_list)

    env = sub.add_parser("env", help="print the environment recorded with every result",
                         description="Print versions (Python, torch, timm), CPU, threads, GPU and driver, "
                         "host and git sha.")
    env.add_argument("--json", action="store_true", help="print one JSON object")
    env.set_defaults(func=cmd_env)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``harness`` command with ``argv`` (default: sys.argv); return its exit status."""
    args = build_parser().parse_args(argv)
    out, err = Console(), Console(stderr=True)
    handler: Callable[[argparse.Namespace, Console, Console], int] = args.func
    from harness.errors import HarnessError

    try:
        return handler(args, out, err)
    except HarnessError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return EXIT_FAILED_CASES
    except KeyboardInterrupt:
        err.print("[yellow]interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
