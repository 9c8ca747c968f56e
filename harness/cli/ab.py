"""``harness ab``: a suite's cases measured alternately in two environments, a verdict per case."""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from typing import Any

from rich.console import Console

from harness.ab import PAIRS, ROUNDS, WINDOW_S
from harness.cli.common import EXIT_FAILED_CASES, EXIT_OK, EXIT_USAGE, keep_cases, load_suites, positive_int
from harness.terminal import markup_text


def add_parser(sub: Any) -> None:
    """Add the ``ab`` command to the sub-command parsers ``sub``."""
    parser = sub.add_parser(
        "ab", help="A/B: measure a suite's cases alternately in two environments, a verdict per case",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Judge a change of environment (a torch or timm upgrade in another venv, another checkout, an environment
variable) before it merges: each case of SUITE is measured alternately in the baseline and the candidate
environment, in one sitting, so the machine's drift hits both sides alike. Each environment is a command
that starts a Python interpreter able to import this harness. The sitting is --pairs pairs of fresh
workers (one per side, started together: a process keeps a speed offset of its own for its life, which
many pairs average out); each pair measures every case in --rounds rounds (AB, BA, …: latency windows
of --window-s seconds).

Per case: d_j = the median over pair j's rounds of log(candidate / baseline); the change is
exp(mean d_j) − 1 with the 95% t-interval over the pairs and a one-sample t-test. Verdicts as in
`harness compare`: regressed / improved when p < --alpha and the change is at least --min-effect,
unchanged when the interval lies within ±min-effect, else inconclusive; a round in which other processes
took the cores is dropped (too noisy when fewer than 5 pairs remain). With --max-pairs, the cases
still inconclusive go on alone in more pairs, judged again each time the pairs double (each of the K
looks at alpha/K, its interval at 1 − 0.05/K). Nothing is stored.

Exit status: 1 when a case has a verdict named by --fail-on (or failed), 2 for bad input, else 0.""",
        epilog="""\
examples:
  harness ab suites/smoke.yaml                                  the same environment twice (an A/A check)
  harness ab suites/smoke.yaml --candidate-env ../venv-torch-next/bin/python --fail-on regressed
  harness ab suites/smoke.yaml --candidate-env "env HARNESS_INJECT_SLOWDOWN=resnet18=0.1 python"
  harness ab suites/nightly.yaml --model 'resnet*' --pairs 20 --json ab.json
  harness ab suites/smoke.yaml --max-pairs 80          until decided: the noisy cases get up to 80 pairs""",
    )
    parser.add_argument("suite", metavar="SUITE", help="suite YAML file whose cases (and latency options) are measured")
    parser.add_argument("--baseline-env", metavar="CMD", default=sys.executable,
                        help="command starting the baseline's Python interpreter (default: this one, %(default)s)")
    parser.add_argument("--candidate-env", metavar="CMD", default=sys.executable,
                        help="command starting the candidate's Python interpreter (default: this one)")
    parser.add_argument("--pairs", type=positive_int, default=PAIRS,
                        help="fresh worker pairs, each measuring every case (default: %(default)s)")
    parser.add_argument("--max-pairs", type=positive_int, metavar="N",
                        help="go on with the cases still inconclusive after --pairs pairs, judging them again each "
                        "time the pairs double, up to N pairs; each of the K looks tests at alpha/K with a "
                        "(1 - 0.05/K) interval, so looking more often does not raise the false-alarm rate (default: "
                        "--pairs, one look)")
    parser.add_argument("--rounds", type=positive_int, default=ROUNDS,
                        help="rounds per case and pair, each a window on either side (default: %(default)s)")
    parser.add_argument("--window-s", type=float, default=WINDOW_S, metavar="SECONDS",
                        help="seconds of sampling per window (default: %(default)s)")
    parser.add_argument("--cases", metavar="IDS", help="only these cases (comma-separated case_ids)")
    parser.add_argument("--model", metavar="PATTERN", help="only the cases of models matching PATTERN (shell-style)")
    parser.add_argument("--alpha", type=float, default=0.01,
                        help="significance level of the Wilcoxon test (default: %(default)s)")
    parser.add_argument("--min-effect", type=float, default=0.05, metavar="FRACTION",
                        help="least relative change that counts, 0.05 = 5%% (default: %(default)s)")
    parser.add_argument("--fail-on", default="", metavar="VERDICTS",
                        help="comma-separated verdicts that make the exit status 1, e.g. regressed,inconclusive")
    parser.add_argument("--json", metavar="FILE", help="also write the verdicts, rounds and environments to FILE")
    parser.set_defaults(func=run)


def _versions(env: dict[str, Any]) -> str:
    return ", ".join(f"{key.removeprefix('env_')} {env.get(key) or '?'}" for key in ("env_torch", "env_timm",
                                                                                       "env_git_sha"))


def run(args: argparse.Namespace, out: Console, err: Console) -> int:
    """Measure the suite's cases interleaved in both environments; exit 1 on a --fail-on verdict, 2 on bad input."""
    from dataclasses import asdict

    from rich import box
    from rich.table import Table

    from harness.ab import look_levels, run_ab
    from harness.compare import parse_verdicts
    from harness.errors import HarnessError
    from harness.store import write_text_atomically

    def usage(message: str) -> int:
        err.print(f"[red]error:[/] {markup_text(message)}", highlight=False, soft_wrap=True)
        return EXIT_USAGE

    if not 0 < args.alpha < 1:
        return usage(f"--alpha must lie between 0 and 1, got {args.alpha}")
    if args.min_effect < 0 or args.window_s <= 0:
        return usage("--min-effect must be ≥ 0 and --window-s > 0")
    try:
        fail_on = parse_verdicts(args.fail_on)
    except ValueError as exc:
        return usage(f"--fail-on: {exc}")
    suites = load_suites([args.suite], err)
    if suites is None:
        return EXIT_USAGE
    if args.cases:
        suites, unknown = keep_cases(suites, args.cases)
        if unknown:
            return usage(f"--cases: no case {', '.join(sorted(unknown))} in {args.suite}")
    suite = suites[0]
    if "latency" not in suite.metrics:
        return usage(f"{args.suite} takes no latency metric: there is nothing to time")
    cases = [c for c in suite.cases if not args.model or fnmatch.fnmatchcase(c.model, args.model)]
    if not cases:
        return usage(f"no case of {args.suite} matches" + (f" --model {args.model!r}" if args.model else ""))
    most = max(args.max_pairs or args.pairs, args.pairs)
    more = f" (then up to {most} for the cases undecided)" if most > args.pairs else ""
    err.print(f"ab: {args.pairs} worker pairs{more} × {len(cases)} case(s) × {args.rounds} rounds × 2 windows of "
              f"{args.window_s:g} s\n"
              f"  baseline:  {markup_text(args.baseline_env)}\n  candidate: {markup_text(args.candidate_env)}",
              highlight=False, soft_wrap=True)

    def progress(j: int, measured: int) -> None:
        which = "every case" if measured == len(cases) else f"the {measured} undecided case(s)"
        err.print(f"  pair {j + 1}/{args.pairs if j < args.pairs else most} measured {which}", highlight=False)

    try:
        results, envs = run_ab(cases, args.baseline_env, args.candidate_env, suite.metrics["latency"].model_dump(),
                               pairs=args.pairs, max_pairs=most, rounds=args.rounds, window_s=args.window_s,
                               alpha=args.alpha, min_effect=args.min_effect, progress=progress)
    except HarnessError as exc:
        return usage(str(exc))
    table = Table(title=f"{markup_text(suite.name)}: candidate against baseline, interleaved", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    level = f"{look_levels(args.pairs, most, args.alpha)[1] * 100:.4g}% CI\n(%)"
    for header in ("case", "verdict", "baseline\n(ms)", "candidate\n(ms)", "Δ\n(%)", level, "p", "pairs"):
        table.add_column(header, justify="left" if header in ("case", "verdict") else "right")
    for result in results:
        j = result.judgement
        ci = "" if j.ci_low is None else f"{j.ci_low * 100:+.1f} to {j.ci_high * 100:+.1f}"
        table.add_row(markup_text(result.label), j.verdict, "" if j.baseline_ms is None else f"{j.baseline_ms:.3f}",
                      "" if j.candidate_ms is None else f"{j.candidate_ms:.3f}",
                      "" if j.delta_rel is None else f"{j.delta_rel * 100:+.1f}", ci,
                      "" if j.p_value is None else f"{j.p_value:.1e}", str(result.pairs))
    out.print(table)
    for result in results:
        out.print(f"  {result.judgement.verdict} {markup_text(result.label)}: {markup_text(result.judgement.reason)}",
                  highlight=False, soft_wrap=True)
    out.print(f"baseline: {markup_text(_versions(envs['baseline']))}; candidate: "
              f"{markup_text(_versions(envs['candidate']))}", highlight=False, soft_wrap=True)
    if args.json:
        payload = {"suite": suite.name, "baseline_env": args.baseline_env, "candidate_env": args.candidate_env,
                   "pairs": args.pairs, "max_pairs": most, "rounds": args.rounds, "window_s": args.window_s,
                   "alpha": args.alpha, "min_effect": args.min_effect, "environments": envs,
                   "cases": [asdict(r) for r in results]}
        write_text_atomically(args.json, json.dumps(payload, indent=2, default=str))
    failing = [r for r in results if r.judgement.verdict in fail_on or r.judgement.verdict == "failed"]
    if failing:
        err.print(f"[red]fail:[/] {len(failing)} case(s) with a verdict in --fail-on or failed", highlight=False)
        return EXIT_FAILED_CASES
    return EXIT_OK
