"""``harness compare``: two sets of records judged case by case (regressed, improved, unchanged, ...)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from rich.console import Console

from harness.cli.common import EXIT_FAILED_CASES, EXIT_OK, EXIT_USAGE, not_a_directory
from harness.terminal import markup_text


def add_parser(sub: Any) -> None:
    """Add the ``compare`` command to the sub-command parsers ``sub``."""
    parser = sub.add_parser(
        "compare", help="compare two runs: regressed, improved or unchanged, per case",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Compare two sets of records case by case (paired by suite and case_id, the latest ok record of each side)
and give each case a verdict from the raw latency samples (ms per batch, lower is better):

  regressed       the two-sided Mann-Whitney U test is significant at --alpha AND the median latency
                  is at least --min-effect slower (relative to the baseline median)
  improved        significant AND at least --min-effect faster
  unchanged       the 95% interval of the relative change of medians (percentile bootstrap, 2000
                  seeded resamples) lies within ±min-effect
  inconclusive    anything else: fewer than 5 samples a side, or too noisy to tell
  too noisy       either record's timing is flagged noisy (IQR/median beyond the protocol's threshold,
                  or fewer samples than its min_repeats): no verdict is drawn from a busy machine's
                  samples; the change and the test are still shown
  not comparable  the latency protocol, or the CPU, GPU or torch version (env_cpu, env_gpu, env_torch)
                  differ; the reason says which
  missing in baseline / missing in candidate   no ok record of the case on that side
  changed         latency unchanged (or not measured) but a count (params, macs, flops, ...) or the
                  accuracy differs
  reference       against `published`: Δ = (measured − published) / published, nothing tested

Both a test and a minimum effect: a fixed percentage alone flags noise, a test alone flags changes too
small to matter. Between two runs on a shared machine the medians drift by more than either run's samples
spread, so a nightly gate should judge by the history: with --history N each case's latency is judged
against its series over the last N runs of --results (a change point held two nights, or a one-night
excursion beyond 5 σ of the series' own noise, and at least --min-effect; see harness.history); a case
with fewer than 6 usable nights keeps the two-run verdict.

Exit status: 1 when a case (or one of its metrics) has a verdict named by --fail-on, 2 for bad input,
else 0.""",
        epilog="""\
examples:
  harness compare results-main results-pr --fail-on regressed
  harness compare 20261123T183208Z-cbb836 20261124T090000Z-1a2b3c --html reports/regressions.html
  harness compare published 20261124T090000Z-1a2b3c     measured against the suites' published values
  harness compare latest~1 latest --suite nightly --fail-on regressed --no-baseline-ok   tonight against last night
  harness compare latest~1 latest --suite nightly --history 30 --fail-on regressed   tonight against 30 nights""",
    )
    parser.add_argument("baseline", metavar="BASELINE",
                        help="a results directory, a run id in --results (a unique prefix will do), latest~N (the Nth "
                        "run before the latest), or 'published' (the published values of the candidate's cases)")
    parser.add_argument("candidate", metavar="CANDIDATE",
                        help="a results directory, a run id in --results, or latest (the most recent run)")
    parser.add_argument("--results", default="results",
                        help="results directory where run ids are looked up (default: %(default)s)")
    parser.add_argument("--suite", metavar="NAME", help="compare only this suite's records (and count only its runs "
                        "for latest~N)")
    parser.add_argument("--no-baseline-ok", action="store_true",
                        help="exit 0 with a note when a side names no run, e.g. latest~1 on the first night")
    parser.add_argument("--confirm", metavar="SUITE",
                        help="before failing, measure the cases with a --fail-on verdict, and those too noisy to "
                        "judge, again (from SUITE, into the candidate's run) and judge them on the new records: a "
                        "regression must show twice")
    parser.add_argument("--history", type=int, nargs="?", const=30, metavar="N",
                        help="judge each case's latency against its series over the last N runs of the candidate's "
                        "suite in --results (N: 30 when omitted), not against the baseline run alone; the candidate "
                        "must be a run (an id or latest)")
    parser.add_argument("--alpha", type=float, default=0.01,
                        help="significance level of the Mann-Whitney U test (default: %(default)s)")
    parser.add_argument("--min-effect", type=float, default=0.05, metavar="FRACTION",
                        help="least relative change of the median latency that counts, 0.05 = 5%% "
                        "(default: %(default)s)")
    parser.add_argument("--fail-on", default="", metavar="VERDICTS",
                        help="comma-separated verdicts that make the exit status 1, e.g. regressed,inconclusive "
                        "(use - for spaces: not-comparable; 'missing' = both missing verdicts; default: none)")
    parser.add_argument("--ignore-env", default="", metavar="KEYS",
                        help="compare timings although these differ: cpu, gpu, torch (e.g. --ignore-env torch to "
                        "measure a torch upgrade)")
    parser.add_argument("--json", action="store_true", help="print the cases as a JSON list instead of the table")
    parser.add_argument("--html", metavar="FILE", help="also write a self-contained regressions page to FILE")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, out: Console, err: Console) -> int:
    """Compare a candidate's records with a baseline's, case by case; exit 1 on a --fail-on verdict, 2 on bad input."""
    from rich import box
    from rich.table import Table

    from harness.compare import (
        ENV_KEYS,
        PUBLISHED,
        TOO_NOISY,
        NoSuchRun,
        cases_with,
        compare,
        comparison_records,
        load_side,
        parse_verdicts,
        verdict_counts,
    )
    from harness.errors import HarnessError
    from harness.report.regressions import render_regressions

    def usage(message: str) -> int:
        err.print(f"[red]error:[/] {markup_text(message)}", highlight=False, soft_wrap=True)
        return EXIT_USAGE

    if not 0 < args.alpha < 1:
        return usage(f"--alpha must lie between 0 and 1, got {args.alpha}")
    if args.min_effect < 0:
        return usage(f"--min-effect must be ≥ 0 (0.05 = 5%), got {args.min_effect}")
    try:
        fail_on = parse_verdicts(args.fail_on)
    except ValueError as exc:
        return usage(f"--fail-on: {exc}")
    ignored = {k if k.startswith("env_") else f"env_{k}" for k in args.ignore_env.replace(" ", "").split(",") if k}
    if ignored - set(ENV_KEYS):
        return usage(f"--ignore-env: unknown key(s) {', '.join(sorted(ignored - set(ENV_KEYS)))}; "
                     f"known: {', '.join(ENV_KEYS)}")
    if args.history is not None and args.history < 2:
        return usage(f"--history N needs N ≥ 2 runs, got {args.history}")
    if args.candidate == PUBLISHED:
        return usage("'published' can only be the baseline (the published values of the candidate's cases)")
    if not_a_directory(args.results):
        return usage(not_a_directory(args.results))
    try:
        candidate = load_side(args.candidate, args.results, suite=args.suite)
        baseline = load_side(args.baseline, args.results, candidate=candidate, suite=args.suite)
    except NoSuchRun as exc:
        if args.no_baseline_ok:
            out.print(f"nothing to compare: {markup_text(exc)}", highlight=False, soft_wrap=True)
            return EXIT_OK
        return usage(str(exc))
    except HarnessError as exc:
        return usage(str(exc))
    env_keys = [k for k in ENV_KEYS if k not in ignored]
    try:
        history = _history(args, candidate, env_keys)
    except HarnessError as exc:
        return usage(str(exc))
    comparison = compare(baseline, candidate, args.alpha, args.min_effect, env_keys=env_keys, history=history)
    second_look = [*fail_on, TOO_NOISY]
    if args.confirm and fail_on and len(cases_with(comparison, second_look)):
        try:
            candidate = _remeasure(args, cases_with(comparison, second_look), candidate, err)
        except HarnessError as exc:
            return usage(str(exc))
        first = len(cases_with(comparison, second_look))
        history = _history(args, candidate, env_keys)
        comparison = compare(baseline, candidate, args.alpha, args.min_effect, env_keys=env_keys, history=history)
        err.print(f"confirm: {first} case(s) flagged or too noisy and measured again; "
                  f"{len(cases_with(comparison, fail_on))} still with a verdict in --fail-on, "
                  f"{len(cases_with(comparison, [TOO_NOISY]))} still too noisy", highlight=False, soft_wrap=True)
    rows = comparison_records(comparison)
    summary = (", ".join(f"{n} {v}" for v, n in verdict_counts(comparison).items() if n) or "no cases") + (
        f" (alpha {args.alpha:g}, min effect {args.min_effect * 100:g}%)")
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        err.print(f"compare: {markup_text(summary)}", highlight=False, soft_wrap=True)
    else:
        colours = {"regressed": "bold red", "improved": "bold green", "changed": "yellow", "inconclusive": "yellow",
                   "too noisy": "yellow", "not comparable": "magenta", "missing in baseline": "cyan",
                   "missing in candidate": "cyan", "reference": "cyan", "unchanged": "dim"}
        several_suites = len({r["suite"] for r in rows}) > 1
        table = Table(title=f"{markup_text(args.baseline)} → {markup_text(args.candidate)}", title_justify="left",
                      box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("case", overflow="fold")
        table.add_column("verdict", no_wrap=True)
        for header in ("baseline\n(ms)", "candidate\n(ms)", "Δ\n(%)", "p", "n"):
            table.add_column(header, justify="right", no_wrap=True)

        def num(value: float | None, fmt: str, scale: float = 1.0) -> str:
            return "" if value is None else fmt.format(value * scale)

        for r in rows:
            p = r["p_value"]
            table.add_row(markup_text(f"{r['suite']} · {r['label']}" if several_suites else r["label"]),
                          f"[{colours[r['verdict']]}]{r['verdict']}[/]", num(r["baseline_ms"], "{:.3f}"),
                          num(r["candidate_ms"], "{:.3f}"), num(r["delta_rel"], "{:+.1f}", 100),
                          "" if p is None else (f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"),
                          f"{r['n_baseline']}/{r['n_candidate']}" if r["n_baseline"] or r["n_candidate"] else "")
        out.print(table)
        for r in rows:
            if r["verdict"] not in ("unchanged", "reference") or any(m["verdict"] == "changed" for m in r["metrics"]):
                out.print(f"  [{colours[r['verdict']]}]{r['verdict']}[/] {markup_text(r['label'])}: "
                          f"{markup_text(r['reason'])}",
                          highlight=False, soft_wrap=True)
        out.print(f"compare: {markup_text(summary)}", highlight=False, soft_wrap=True)
    if args.html:
        page = render_regressions(comparison, args.html, args.baseline, args.candidate)
        err.print(f"regressions page: {markup_text(page)}", highlight=False, soft_wrap=True)
    failing = cases_with(comparison, fail_on) if fail_on else comparison.iloc[:0]
    if len(failing):
        err.print(f"[red]fail:[/] {len(failing)} case(s) with a verdict in --fail-on "
                  f"({markup_text(', '.join(fail_on))})",
                  highlight=False, soft_wrap=True)
        return EXIT_FAILED_CASES
    return EXIT_OK


def _history(args: argparse.Namespace, candidate: Any, env_keys: list[str]) -> Any:
    """Return the history judgements of the candidate's cases (``harness.history.judge_history``) when --history is
    given, else None. Raises HarnessError when the candidate is not one run of --results."""
    from harness.errors import HarnessError
    from harness.history import judge_history, read_history

    if args.history is None:
        return None
    runs = sorted(set(candidate["run_id"].dropna()))
    if len(runs) != 1:
        raise HarnessError(f"--history judges one run against the runs before it: the candidate holds {len(runs)}")
    chosen, records = read_history(args.results, args.suite, runs[0], args.history)
    return judge_history(records, chosen, env_keys, args.min_effect)


def _remeasure(args: argparse.Namespace, flagged: Any, candidate: Any, err: Console) -> Any:
    """Measure the ``flagged`` cases (rows of a comparison) of the suite ``args.confirm`` again, appending their
    records to the candidate's run; return the candidate's records read anew (its latest record of each case is
    the new one). Raises HarnessError when the candidate is not one run or the suite cannot be loaded."""
    from harness.compare import load_side
    from harness.errors import HarnessError
    from harness.runner import run_suite
    from harness.suite import SuiteError, load_suite

    runs = sorted(set(candidate["run_id"]))
    if len(runs) != 1:
        raise HarnessError(f"--confirm measures again into the candidate's run, so the candidate must be one run "
                           f"(a run id or latest); it holds {len(runs)}")
    try:
        suite = load_suite(args.confirm)
    except SuiteError as exc:
        raise HarnessError(f"--confirm {args.confirm}: {exc}") from None
    wanted = set(zip(flagged["suite"], flagged["case_id"], strict=True))
    cases = tuple(c for c in suite.cases if (suite.name, c.case_id) in wanted)
    err.print(f"confirm: measuring {len(cases)} of {len(wanted)} flagged case(s) again "
              f"(suite {markup_text(suite.name)}, run {markup_text(runs[0])})", highlight=False, soft_wrap=True)
    if cases:
        run_suite(dataclasses.replace(suite, cases=cases), args.results, run_id=runs[0], console=err,
                  show_progress=False)
    return load_side(runs[0], args.results, suite=args.suite)
