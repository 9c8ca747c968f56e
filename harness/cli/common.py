"""What the commands share: exit statuses, loading suites, argument types, path checks."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from harness.terminal import markup_text

EXIT_OK, EXIT_FAILED_CASES, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def load_suites(paths: Sequence[str], err: Console, *, check_all_names: bool = False) -> list | None:
    """Return the suites at ``paths``, each one's warnings printed; None when one is invalid (its problems printed,
    at most MAX_PROBLEMS_SHOWN per file). ``check_all_names``: a file whose shape is wrong also has its model names
    checked, so that every problem is said in one pass: the shape errors first (before torch is imported), then the
    unknown models (the check imports torch)."""
    from harness.suite import SuiteError, load_suite, problem_lines, unknown_models

    def say(problems: Sequence[Any]) -> None:
        for line in problem_lines(problems):
            err.print(f"[red]error:[/] {markup_text(line)}", highlight=False, soft_wrap=True)

    suites, bad = [], False
    for path in paths:
        try:
            suites.append(load_suite(path))
        except SuiteError as exc:
            bad = True
            say(exc.problems)
            if check_all_names and exc.unchecked_models:
                say(unknown_models(exc.unchecked_models))
            continue
        for line in problem_lines(suites[-1].warnings):
            err.print(f"[yellow]warning:[/] {markup_text(line)}", highlight=False, soft_wrap=True)
    return None if bad else suites


def keep_cases(suites: Sequence[Any], ids: str) -> tuple[list[Any], set[str]]:
    """Return ``suites`` holding only the cases whose case_id is among comma-separated ``ids``, and the ids no suite
    holds."""
    import dataclasses

    wanted = set(ids.replace(" ", "").split(","))
    kept = [dataclasses.replace(s, cases=tuple(c for c in s.cases if c.case_id in wanted)) for s in suites]
    return kept, wanted - {c.case_id for s in kept for c in s.cases}


def not_a_directory(results: str) -> str:
    """Return the error for a ``--results`` path that exists but is not a directory ('' when it is none such)."""
    if Path(results).exists() and not Path(results).is_dir():
        return f"--results {results} is not a directory (a results directory holds <suite>/<run>/*.parquet)"
    return ""


def model_known(name: str, err: Console) -> bool:
    """Return whether ``name`` is a model the zoo or timm can build; print the error when it is not."""
    from harness.zoo import is_known_model

    if is_known_model(name):
        return True
    err.print(f"[red]error:[/] unknown model {markup_text(repr(name))}; see `harness list models`", soft_wrap=True)
    return False


def input_shape(text: str) -> tuple[int, ...]:
    from harness.profile import parse_input_shape

    try:
        return parse_input_shape(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def chw_shape(text: str) -> tuple[int, ...]:
    shape = input_shape(text)
    if shape[0] != 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected CxHxW (the batch is --batch)")
    return shape[1:]


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive integer")
    return int(text)


def add_norm_argument(parser: argparse.ArgumentParser) -> None:
    from harness.case import NORMS

    parser.add_argument("--norm", choices=NORMS, default="native",
                        help="swap every BatchNorm for this normalization (bn, gn = GroupNorm of 32 groups, ln = "
                        "GroupNorm of 1 group, ln2d = channel LayerNorm, in = InstanceNorm, sn = Switchable "
                        "Norm, syncbn = synchronized BatchNorm); native keeps the model's (default)")


def add_results_argument(parser: argparse.ArgumentParser, metavar: str | None = None) -> None:
    """Add ``--results`` (the results directory, default ``results``) to a command that reads or writes the store."""
    parser.add_argument("--results", default="results", metavar=metavar,
                        help="results directory (default: %(default)s)")
