"""The ``harness`` command: run suites, validate them, render reports, list models, show the environment."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

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
  harness run suites/smoke.yaml --resume   continue the last run: only its cases without a record
  harness run suites/nightly.yaml --shard 2/4   shard 2 of 4 (run the others on other machines)
  harness report                           render reports/index.html from results/
  harness export --format markdown         the latest results as Markdown tables (also csv, json, pytest-benchmark)
  harness compare RUN_A RUN_B              latency regressions of run B against run A, a verdict per case
  harness validate suites/*.yaml           check suites without running anything
  harness list models 'resnet*'            models the zoo and timm can build
  harness profile resnet50 --by op         params, MACs, FLOPs, memory access cost per op
  harness bench resnet18 --batch 8 --json  latency and throughput of one model
  harness env                              the environment recorded with every result

failure classes of a failed case (column failure_class): exception, oom (retried at half the batch down
to the suite's oom_min_batch), illegal_memory_access, crash (segfault, abort), timeout, nonfinite.

exit status: 0 all cases ok or skipped; 1 some case failed, or results could not be written (a full
disk: what was written is kept); 2 bad usage or invalid suite; 130 interrupted (finished cases are kept).
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
    from harness.errors import HarnessError
    from harness.report import render_report
    from harness.runner import run_suite
    from harness.runner.executors import LocalExecutor, make_executor
    from harness.runner.shard import parse_shard

    try:
        shard = parse_shard(args.shard) if args.shard else None
        executor = make_executor(args.executor, args.address)
    except HarnessError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return EXIT_USAGE
    if isinstance(executor, LocalExecutor):
        executor.worker.launch()  # the worker imports torch while the suites are validated here
    summaries = []
    try:
        suites = _load_suites(args.suites, err)
        if suites is None:
            return EXIT_USAGE
        try:
            if args.metrics:
                suites = [s.with_metrics(args.metrics.split(",")) for s in suites]
        except HarnessError as exc:
            err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            return EXIT_USAGE
        if args.timeout:
            suites = [dataclasses.replace(s, timeout_s=args.timeout, timeouts=()) for s in suites]
        if args.cases:
            wanted = set(args.cases.replace(" ", "").split(","))
            suites = [dataclasses.replace(s, cases=tuple(c for c in s.cases if c.case_id in wanted)) for s in suites]
            unknown = wanted - {c.case_id for s in suites for c in s.cases}
            if unknown:
                err.print(f"[red]error:[/] --cases: no case {', '.join(sorted(unknown))} in the suite(s)",
                          highlight=False, soft_wrap=True)
                return EXIT_USAGE
        status = EXIT_OK
        for suite in suites:
            summary = run_suite(suite, args.results, resume=args.resume, console=err, executor=executor,
                                show_progress=not args.no_progress, shard=shard, run_id=args.run_id,
                                compact=not args.no_compact)
            summaries.append(summary)
            out.print(f"{suite.name}{f' shard {shard}' if shard else ''}: {summary.describe()} in "
                      f"{summary.wall_s:.1f} s → {escape(str(summary.results_dir))} (run {summary.run_id})",
                      highlight=False, soft_wrap=True)
            if suite.claim_pairs:
                _print_claims(out, suite.name, summary.results_dir, summary.run_id)
            if summary.interrupted:
                return EXIT_INTERRUPTED
            if summary.failed:
                status = EXIT_FAILED_CASES
    finally:
        executor.stop()
        if args.summary_json:
            from harness.store import write_text_atomically

            write_text_atomically(args.summary_json, json.dumps([s.as_json() for s in summaries], indent=2) + "\n")
    if args.report:
        page = render_report(args.results, args.report)
        out.print(f"report: {escape(str(page))}", highlight=False, soft_wrap=True)
    return status


def _print_claims(out: Console, suite: str, results_dir: Path, run_id: str) -> None:
    """Print the suite's claims judged on the records of run ``run_id`` (:func:`harness.claims.summary_lines`)."""
    from harness.claims import claim_rows, summary_lines
    from harness.report.tables import latest_per_case
    from harness.store import ResultStore

    records = ResultStore(results_dir).read(suite=suite, run_id=run_id)
    for line in summary_lines(claim_rows(latest_per_case(records))):
        out.print(f"{suite}: {escape(line)}", highlight=False, soft_wrap=True)


def cmd_report(args: argparse.Namespace, out: Console, err: Console) -> int:
    """Render the HTML report from the results directory."""
    from harness.report import render_report

    if not Path(args.results).exists():
        err.print(f"[red]error:[/] no results directory {escape(args.results)!s}; run a suite first", soft_wrap=True)
        return EXIT_USAGE
    page = render_report(args.results, args.out)
    out.print(f"report: {escape(str(page))}", highlight=False, soft_wrap=True)
    return EXIT_OK


def cmd_compact(args: argparse.Namespace, out: Console, err: Console) -> int:
    """Compact every finished run under the results directory; print what was done; exit 2 without a store."""
    from harness.compaction import compact_store

    if not Path(args.results).is_dir():
        err.print(f"[red]error:[/] no results directory {escape(args.results)!s}", soft_wrap=True)
        return EXIT_USAGE
    done = compact_store(args.results, force=args.force)
    merged = [d for d in done if d.path is not None]
    for d in done:
        if d.path is not None:
            out.print(f"{escape(str(d.folder))}: {d.files} file(s), {d.records} record(s) → {escape(d.path.name)}",
                      highlight=False, soft_wrap=True)
        elif d.reason != "already compacted":
            err.print(f"{escape(str(d.folder))}: left as it is: {escape(d.reason)}", highlight=False, soft_wrap=True)
    out.print(f"compacted {len(merged)} of {len(done)} run(s): {sum(d.files for d in merged)} part file(s) → "
              f"{len(merged)} file(s)", highlight=False)
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


def _model_known(name: str, err: Console) -> bool:
    """Return whether ``name`` is a model the zoo or timm can build; print the error when it is not."""
    from harness.zoo import is_known_model

    if is_known_model(name):
        return True
    err.print(f"[red]error:[/] unknown model {escape(name)!r}; see `harness list models`", soft_wrap=True)
    return False


def cmd_export(args: argparse.Namespace, out: Console, err: Console) -> int:
    """Write stored records as CSV, JSON, Markdown or pytest-benchmark JSON, to stdout or --out (atomically)."""
    from harness.errors import HarnessError
    from harness.export import export
    from harness.store import ResultStore, write_text_atomically

    frame = ResultStore(args.results).read()
    if frame.empty:
        err.print(f"[red]error:[/] no results in {escape(args.results)!s}; run a suite first", soft_wrap=True)
        return EXIT_USAGE
    for column, wanted, flag in (("suite", args.suite, "--suite"), ("run_id", args.run, "--run")):
        if wanted:
            known = sorted(frame[column].dropna().unique())
            frame = frame[frame[column].isin(wanted)]
            if frame.empty:
                err.print(f"[red]error:[/] no record matches {flag} {escape(' '.join(wanted))}; "
                          f"there are: {escape(', '.join(map(str, known)))}", highlight=False, soft_wrap=True)
                return EXIT_USAGE
    try:
        text = export(frame, args.format, latest=not args.all)
    except HarnessError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return EXIT_USAGE
    if args.out is None:
        sys.stdout.write(text)
        return EXIT_OK
    path = write_text_atomically(args.out, text)
    which = "every record" if args.all else "latest record per case"
    err.print(f"export: {args.format} ({which}) → {escape(str(path))}", highlight=False, soft_wrap=True)
    return EXIT_OK


def cmd_profile(args: argparse.Namespace, out: Console, err: Console) -> int:
    """Print a model's params, MACs, FLOPs, memory access cost, coverage and a per-layer table."""
    from rich.table import Table

    from harness.profile import profile_model
    if not _model_known(args.model, err):
        return EXIT_USAGE
    prof = profile_model(args.model, args.input, args.dtype, args.by, args.top, args.norm)
    if args.json:
        print(json.dumps(prof.as_json(), indent=2))
        return EXIT_OK
    shape = "x".join(map(str, args.input))
    norm = "" if args.norm == "native" else f" · norm {args.norm}"
    table = Table(title=f"{escape(args.model)} · input {shape} · {args.dtype}{norm}", title_justify="left")
    table.add_column(args.by)
    for header in ("MACs (M)", "FLOPs (M)", "MAC (MB)", "share of MACs"):
        table.add_column(header, justify="right")
    macs_total = prof.totals["macs"] or 1
    for row in prof.rows:
        table.add_row(escape(str(row[args.by])), f"{row['macs'] / 1e6:,.2f}", f"{row['flops'] / 1e6:,.2f}",
                      f"{row['mac_bytes'] / 1e6:,.2f}", f"{row['macs'] / macs_total:.1%}")
    out.print(table)
    t = prof.totals
    out.print(f"params {t['params']:,} ({t['params'] / 1e6:.2f} M) · macs {t['macs'] / 1e9:.4f} G · "
              f"flops {t['flops'] / 1e9:.4f} G · mac_bytes {t['mac_bytes'] / 1e6:.1f} MB · "
              f"activations {t['activations'] / 1e6:.2f} M · coverage {t['coverage']:.1%} ({t['method']})",
              highlight=False, soft_wrap=True)
    if t["uncounted"]:
        out.print(f"[yellow]ops without a formula:[/] {escape(json.dumps(t['uncounted']))}", soft_wrap=True)
    if t["data_dependent"]:
        out.print(f"[yellow]data-dependent ops[/] (output size depends on values; counts after them hold for this "
                  f"input only): {escape(json.dumps(t['data_dependent']))}", soft_wrap=True)
    return EXIT_OK


def cmd_bench(args: argparse.Namespace, out: Console, err: Console) -> int:
    """Measure one case's latency (and complexity) in a worker process, no suite needed."""
    from harness.case import Case
    from harness.metrics import latency
    from harness.runner.process import WorkerProcess
    if not _model_known(args.model, err):
        return EXIT_USAGE
    channels, height, width = args.input
    if height != width:
        err.print(f"[red]error:[/] --input: square inputs only (got {height}x{width})", soft_wrap=True)
        return EXIT_USAGE
    case = Case(args.model, resolution=height, batch=args.batch, device=args.device, dtype=args.dtype,
                channels=channels, threads=args.threads, precision=args.precision, quant=args.quant,
                channels_last=args.channels_last, compile=args.compile, mode=args.mode, norm=args.norm,
                world_size=args.world_size)
    options = latency.Options(min_time_s=args.min_time, max_time_s=max(args.max_time, args.min_time))
    metrics = {"latency": options.model_dump()} | ({"complexity": {}} if args.complexity else {})
    worker = WorkerProcess()
    try:
        outcome = worker.run({"case": case.to_dict(), "metrics": metrics}, args.timeout)
    finally:
        worker.stop()
    if outcome["status"] != "ok":
        err.print(f"[red]{outcome['status']}:[/] {escape(outcome['error'])}", soft_wrap=True)
        return EXIT_FAILED_CASES
    values = outcome["values"]
    result = {"case": case.label, **case.to_dict(), **values,
              "throughput": values["throughput_samples_per_s"], "samples": values["latency_ms_samples"]}
    if args.json:
        print(json.dumps(result, default=str))
        return EXIT_OK
    out.print(f"{escape(case.label)}: median {values['latency_ms_median']:.3f} ms per batch "
              f"(IQR {values['latency_ms_iqr']:.3f}, 95% CI {values['latency_ms_ci_low']:.3f}–"
              f"{values['latency_ms_ci_high']:.3f}), {values['throughput_samples_per_s']:.1f} samples/s, "
              f"{values['latency_repeats']} samples × {values['latency_block']} call(s), "
              f"{values['latency_threads']} thread(s), timer {values['latency_timer']}"
              + (" [yellow](noisy)[/]" if values["latency_noisy"] else ""), highlight=False, soft_wrap=True)
    if args.mode == "train":
        out.print("  forward+loss {latency_ms_forward_median:.3f} ms · backward {latency_ms_backward_median:.3f} ms · "
                  "optimizer {latency_ms_optimizer_median:.3f} ms".format(**values), highlight=False)
    if args.complexity:
        out.print(f"  params {values['params']:,} · macs {values['macs'] / 1e9:.3f} G · "
                  f"mac_bytes {values['mac_bytes'] / 1e6:.1f} MB", highlight=False)
    return EXIT_OK


def cmd_compare(args: argparse.Namespace, out: Console, err: Console) -> int:
    """Compare a candidate's records with a baseline's, case by case; exit 1 on a --fail-on verdict, 2 on bad input."""
    from rich import box
    from rich.table import Table

    from harness.compare import (
        ENV_KEYS,
        PUBLISHED,
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
        err.print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
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
    if args.candidate == PUBLISHED:
        return usage("'published' can only be the baseline (the published values of the candidate's cases)")
    try:
        candidate = load_side(args.candidate, args.results, suite=args.suite)
        baseline = load_side(args.baseline, args.results, candidate=candidate, suite=args.suite)
    except NoSuchRun as exc:
        if args.no_baseline_ok:
            out.print(f"nothing to compare: {escape(str(exc))}", highlight=False, soft_wrap=True)
            return EXIT_OK
        return usage(str(exc))
    except HarnessError as exc:
        return usage(str(exc))
    env_keys = [k for k in ENV_KEYS if k not in ignored]
    comparison = compare(baseline, candidate, args.alpha, args.min_effect, env_keys=env_keys)
    if args.confirm and fail_on and len(cases_with(comparison, fail_on)):
        try:
            candidate = _remeasure(args, cases_with(comparison, fail_on), candidate, err)
        except HarnessError as exc:
            return usage(str(exc))
        first = len(cases_with(comparison, fail_on))
        comparison = compare(baseline, candidate, args.alpha, args.min_effect, env_keys=env_keys)
        err.print(f"confirm: {first} case(s) flagged and measured again; {len(cases_with(comparison, fail_on))} "
                  "still with a verdict in --fail-on", highlight=False, soft_wrap=True)
    rows = comparison_records(comparison)
    summary = (", ".join(f"{n} {v}" for v, n in verdict_counts(comparison).items() if n) or "no cases") + (
        f" (alpha {args.alpha:g}, min effect {args.min_effect * 100:g}%)")
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        err.print(f"compare: {escape(summary)}", highlight=False, soft_wrap=True)
    else:
        colours = {"regressed": "bold red", "improved": "bold green", "changed": "yellow", "inconclusive": "yellow",
                   "not comparable": "magenta", "missing in baseline": "cyan", "missing in candidate": "cyan",
                   "reference": "cyan", "unchanged": "dim"}
        several_suites = len({r["suite"] for r in rows}) > 1
        table = Table(title=f"{escape(args.baseline)} → {escape(args.candidate)}", title_justify="left",
                      box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("case", overflow="fold")
        table.add_column("verdict", no_wrap=True)
        for header in ("baseline\n(ms)", "candidate\n(ms)", "Δ\n(%)", "p", "n"):
            table.add_column(header, justify="right", no_wrap=True)

        def num(value: float | None, fmt: str, scale: float = 1.0) -> str:
            return "" if value is None else fmt.format(value * scale)

        for r in rows:
            p = r["p_value"]
            table.add_row(escape(f"{r['suite']} · {r['label']}" if several_suites else r["label"]),
                          f"[{colours[r['verdict']]}]{r['verdict']}[/]", num(r["baseline_ms"], "{:.3f}"),
                          num(r["candidate_ms"], "{:.3f}"), num(r["delta_rel"], "{:+.1f}", 100),
                          "" if p is None else (f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"),
                          f"{r['n_baseline']}/{r['n_candidate']}" if r["n_baseline"] or r["n_candidate"] else "")
        out.print(table)
        for r in rows:
            if r["verdict"] not in ("unchanged", "reference") or any(m["verdict"] == "changed" for m in r["metrics"]):
                out.print(f"  [{colours[r['verdict']]}]{r['verdict']}[/] {escape(r['label'])}: {escape(r['reason'])}",
                          highlight=False, soft_wrap=True)
        out.print(f"compare: {escape(summary)}", highlight=False, soft_wrap=True)
    if args.html:
        page = render_regressions(comparison, args.html, args.baseline, args.candidate)
        err.print(f"regressions page: {escape(str(page))}", highlight=False, soft_wrap=True)
    failing = cases_with(comparison, fail_on) if fail_on else comparison.iloc[:0]
    if len(failing):
        err.print(f"[red]fail:[/] {len(failing)} case(s) with a verdict in --fail-on ({escape(', '.join(fail_on))})",
                  highlight=False, soft_wrap=True)
        return EXIT_FAILED_CASES
    return EXIT_OK


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
    err.print(f"confirm: measuring {len(cases)} of {len(wanted)} flagged case(s) again (suite {suite.name}, run "
              f"{runs[0]})", highlight=False, soft_wrap=True)
    if cases:
        run_suite(dataclasses.replace(suite, cases=cases), args.results, run_id=runs[0], console=err,
                  show_progress=False)
    return load_side(runs[0], args.results, suite=args.suite)


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


def cmd_coco_eval(args: argparse.Namespace, out: Console, err: Console) -> int:
    """Print COCOeval's 12 box stats of a COCO results file against COCO annotations; exit 2 on bad input."""
    from harness.errors import HarnessError
    from harness.metrics.coco import evaluate, summary_lines

    try:
        stats = evaluate(args.annotations, args.detections, args.evaluator)
    except HarnessError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(stats))
    else:
        for line in summary_lines(stats):
            out.print(escape(line), highlight=False, soft_wrap=True)
    return EXIT_OK


def _input_shape(text: str) -> tuple[int, ...]:
    from harness.profile import parse_input_shape

    try:
        return parse_input_shape(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _chw_shape(text: str) -> tuple[int, ...]:
    shape = _input_shape(text)
    if shape[0] != 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected CxHxW (the batch is --batch)")
    return shape[1:]


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive integer")
    return int(text)


def _add_norm_argument(parser: argparse.ArgumentParser) -> None:
    from harness.case import NORMS

    parser.add_argument("--norm", choices=NORMS, default="native",
                        help="swap every BatchNorm for this normalization (bn, gn = GroupNorm of 32 groups, ln = "
                        "GroupNorm of 1 group, ln2d = channel LayerNorm, in = InstanceNorm, sn = Switchable "
                        "Norm, syncbn = synchronized BatchNorm); native keeps the model's (default)")


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
                     help="continue the latest run of the suite (or --run-id's): run only its cases without a "
                     "record yet (failed cases keep theirs)")
    run.add_argument("--run-id", metavar="ID",
                     help="name the run (default: UTC time + random hex); shards of one night may share one")
    run.add_argument("--shard", metavar="I/N",
                     help="run only shard I of N: a split balanced by estimated cost, the same on every machine; "
                     "merge the machines' results by copying their results directories together")
    run.add_argument("--executor", choices=["local", "ray"], default="local",
                     help="local: one worker process on this machine (default); ray: each case a Ray task "
                     "holding the CPUs and GPUs it needs (needs `pip install ray`)")
    run.add_argument("--address", metavar="ADDR",
                     help="the Ray cluster to join (e.g. auto, or ray://HOST:10001); default: start a local one")
    run.add_argument("--cases", metavar="IDS",
                     help="run only these cases (comma-separated case_ids, as in the results' case_id column)")
    run.add_argument("--timeout", type=float, metavar="SECONDS",
                     help="kill any case still running after SECONDS (replaces the suites' timeout_s and timeouts)")
    run.add_argument("--summary-json", metavar="FILE",
                     help="write each suite's counts (per status and per failure class) to FILE as JSON")
    run.add_argument("--report", nargs="?", const="reports", default=None, metavar="DIR",
                     help="render the HTML report into DIR afterwards (default DIR: reports)")
    run.add_argument("--metrics", metavar="NAMES",
                     help="take only these of the suite's metric families, comma-separated (e.g. complexity)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar (one line per case still printed)")
    run.add_argument("--no-compact", action="store_true",
                     help="keep the run's part files (one per case) instead of merging them into one file when the "
                     "run is finished (`harness compact` merges them later)")
    run.set_defaults(func=cmd_run)

    cmp_ = sub.add_parser("compact", help="merge each finished run's part files into one file per run",
                          description="Merge the part files (one per case) of every finished run under the results "
                          "directory into one Parquet file per run, sorted by case, written atomically beside them and "
                          "then replacing them: a reader sees the part files or the merged file, never both or "
                          "neither, and kill -9 at any point loses nothing. A run still being written (its manifest "
                          "has no finished_utc) is left alone unless --force. `harness run` does this at the end of "
                          "each run; this is for older stores.")
    cmp_.add_argument("--results", default="results", help="results directory (default: %(default)s)")
    cmp_.add_argument("--force", action="store_true",
                      help="also compact runs whose manifest does not say they finished (runs known to be dead)")
    cmp_.set_defaults(func=cmd_compact)

    val = sub.add_parser("validate", help="check suite files without running them",
                         description="Check suites: keys, types, model and metric names, matrix. Prints "
                         "FILE:LINE: what was expected, for every problem; exit status 2 if any.")
    val.add_argument("suites", nargs="+", metavar="SUITE", help="suite YAML file(s)")
    val.set_defaults(func=cmd_validate)

    rep = sub.add_parser("report", help="render the HTML report from stored results",
                         description="Render a static site into OUT, readable from file:// (no server, nothing "
                         "fetched): index.html, the leaderboard (a row per model variant, input, batch, device and "
                         "dtype with its latest values; click a header to sort, filter by text, device, dtype); "
                         "suite-NAME.html, each "
                         "suite's table (best per column in bold, published values beside measured with Δ, the "
                         "protocol in the caption) and plots (accuracy vs latency with the Pareto front, FLOPs vs "
                         "latency with roofline lines, latency distributions, error vs batch per normalization, "
                         "history across runs); run-ID.html, each run's environment and its failed and skipped cases.")
    rep.add_argument("--results", default="results", help="results directory (default: %(default)s)")
    rep.add_argument("--out", default="reports", help="output directory (default: %(default)s)")
    rep.set_defaults(func=cmd_report)

    lst = sub.add_parser("list", help="list models or metrics",
                         description="List model names a suite can use (the zoo's and timm's) or metric families.")
    lst.add_argument("what", choices=["models", "metrics"], help="what to list")
    lst.add_argument("pattern", nargs="?", default="*", help="shell-style pattern for models (default: *)")
    lst.set_defaults(func=cmd_list)

    exp = sub.add_parser(
        "export", help="write stored results as CSV, JSON, Markdown or pytest-benchmark JSON",
        description="Write the stored records (by default the latest per suite and case, as the report shows) "
        "to stdout or a file. csv: a row per record, every column, samples as a JSON array; json: a list of "
        "records, samples as lists; markdown: a GitHub table per suite with units in the headers; "
        "pytest-benchmark: the file `pytest --benchmark-json` writes, one benchmark per ok record with "
        "latency samples, stats in seconds per call of a whole batch (`pytest-benchmark compare A.json B.json`).",
    )
    exp.add_argument("--results", default="results", metavar="DIR", help="results directory (default: %(default)s)")
    exp.add_argument("--format", choices=("csv", "json", "markdown", "pytest-benchmark"), default="csv",
                     help="output format (default: %(default)s)")
    exp.add_argument("--suite", action="append", metavar="NAME", help="only this suite (repeatable)")
    exp.add_argument("--run", action="append", metavar="RUN_ID", help="only this run (repeatable)")
    exp.add_argument("--all", action="store_true",
                     help="every record; by default only each case's latest (an ok record before a failed one)")
    exp.add_argument("--out", metavar="FILE", help="write FILE (atomically) instead of stdout")
    exp.set_defaults(func=cmd_export)

    prof = sub.add_parser(
        "profile", help="params, MACs, FLOPs, memory access cost of one model, per layer",
        description="Count one model on meta tensors (no compute): params, macs (multiply-accumulates of "
        "conv/linear/matmul), flops (2 x macs + other arithmetic), mac_bytes (bytes read + written by every "
        "op, ShuffleNet V2's memory access cost), activations, op coverage, and a per-module or per-op table.",
    )
    prof.add_argument("model", help="a name from `harness list models`")
    prof.add_argument("--input", default="1x3x224x224", type=_input_shape,
                      help="input shape NxCxHxW or CxHxW (default: %(default)s)")
    prof.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32",
                      help="element size for mac_bytes (default: %(default)s)")
    prof.add_argument("--by", choices=["module", "op"], default="module", help="rows per module or per ATen op")
    _add_norm_argument(prof)
    prof.add_argument("--top", type=int, default=0, metavar="N", help="only the N rows with most MACs (0: all)")
    prof.add_argument("--json", action="store_true",
                      help="print one JSON object (params, macs, flops, mac_bytes, coverage, ..., breakdown)")
    prof.set_defaults(func=cmd_profile)

    bench = sub.add_parser(
        "bench", help="time one model (latency, throughput) without a suite",
        description="Measure one case in a worker process with the latency protocol (warm-up, adaptive "
        "repeats, median and IQR), like timm's benchmark.py --model. Nothing is stored.",
    )
    bench.add_argument("model", help="a name from `harness list models`")
    bench.add_argument("--batch", type=int, default=1, help="images per forward pass (default: %(default)s)")
    bench.add_argument("--input", type=_chw_shape, default=(3, 224, 224),
                       help="input CxHxW, square (default: 3x224x224)")
    bench.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="(default: %(default)s)")
    bench.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32", help="(default: %(default)s)")
    bench.add_argument("--precision", choices=["convert", "autocast"], default="convert",
                       help="fp16/bf16 by converting the model, or fp32 weights under autocast")
    bench.add_argument("--quant", choices=["none", "int8"], default="none",
                       help="int8: post-training static quantization, calibrated on real images (CPU)")
    bench.add_argument("--channels-last", action="store_true", help="NHWC memory format for model and input")
    bench.add_argument("--compile", choices=["none", "default", "reduce-overhead", "max-autotune"],
                       default="none", help="torch.compile mode (default: none)")
    bench.add_argument("--mode", choices=["inference", "train"], default="inference",
                       help="time a forward pass, or a training step with its phases")
    _add_norm_argument(bench)
    bench.add_argument("--world-size", type=_positive_int, default=1, metavar="N",
                       help="processes in a torch.distributed group (gloo on cpu, one GPU each on cuda), each "
                       "with --batch images, launched through torchrun (default: %(default)s)")
    bench.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    bench.add_argument("--min-time", type=float, default=1.0, help="least seconds of sampling (default: 1)")
    bench.add_argument("--max-time", type=float, default=10.0, help="most seconds of sampling (default: 10)")
    bench.add_argument("--timeout", type=float, default=900.0, help="kill the case after this many seconds")
    bench.add_argument("--complexity", action="store_true", help="also count params, MACs and memory access cost")
    bench.add_argument("--json", action="store_true",
                       help="print one JSON object (latency_ms_median, latency_ms_iqr, throughput, samples, ...)")
    bench.set_defaults(func=cmd_bench)

    comp = sub.add_parser(
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
  not comparable  the latency protocol, or the CPU, GPU or torch version (env_cpu, env_gpu, env_torch)
                  differ; the reason says which
  missing in baseline / missing in candidate   no ok record of the case on that side
  changed         latency unchanged (or not measured) but a count (params, macs, flops, ...) or the
                  accuracy differs
  reference       against `published`: Δ = (measured − published) / published, nothing tested

Both a test and a minimum effect: a fixed percentage alone flags noise, a test alone flags changes too
small to matter. Exit status: 1 when a case (or one of its metrics) has a verdict named by --fail-on,
2 for bad input, else 0.""",
        epilog="""\
examples:
  harness compare results-main results-pr --fail-on regressed
  harness compare 20261123T183208Z-cbb836 20261124T090000Z-1a2b3c --html reports/regressions.html
  harness compare published 20261124T090000Z-1a2b3c     measured against the suites' published values
  harness compare latest~1 latest --suite nightly --fail-on regressed --no-baseline-ok   tonight against last night""",
    )
    comp.add_argument("baseline", metavar="BASELINE",
                      help="a results directory, a run id in --results (a unique prefix will do), latest~N (the Nth "
                      "run before the latest), or 'published' (the published values of the candidate's cases)")
    comp.add_argument("candidate", metavar="CANDIDATE",
                      help="a results directory, a run id in --results, or latest (the most recent run)")
    comp.add_argument("--results", default="results",
                      help="results directory where run ids are looked up (default: %(default)s)")
    comp.add_argument("--suite", metavar="NAME", help="compare only this suite's records (and count only its runs "
                      "for latest~N)")
    comp.add_argument("--no-baseline-ok", action="store_true",
                      help="exit 0 with a note when a side names no run, e.g. latest~1 on the first night")
    comp.add_argument("--confirm", metavar="SUITE",
                      help="before failing, measure the cases with a --fail-on verdict again (from SUITE, into the "
                      "candidate's run) and judge them on the new records: a regression must show twice")
    comp.add_argument("--alpha", type=float, default=0.01,
                      help="significance level of the Mann-Whitney U test (default: %(default)s)")
    comp.add_argument("--min-effect", type=float, default=0.05, metavar="FRACTION",
                      help="least relative change of the median latency that counts, 0.05 = 5%% (default: %(default)s)")
    comp.add_argument("--fail-on", default="", metavar="VERDICTS",
                      help="comma-separated verdicts that make the exit status 1, e.g. regressed,inconclusive "
                      "(use - for spaces: not-comparable; 'missing' = both missing verdicts; default: none)")
    comp.add_argument("--ignore-env", default="", metavar="KEYS",
                      help="compare timings although these differ: cpu, gpu, torch (e.g. --ignore-env torch to "
                      "measure a torch upgrade)")
    comp.add_argument("--json", action="store_true", help="print the cases as a JSON list instead of the table")
    comp.add_argument("--html", metavar="FILE", help="also write a self-contained regressions page to FILE")
    comp.set_defaults(func=cmd_compare)

    from harness.metrics.coco import EVALUATORS

    coco = sub.add_parser(
        "coco-eval", help="COCO box AP and AR of a detections file against COCO annotations",
        description="Evaluate COCO results (a JSON list of {image_id, category_id, bbox: [x, y, width, height] "
        "in pixels, score}) against COCO instances annotations (images, annotations, categories) with COCOeval: "
        "iouType bbox, IoU 0.50:0.05:0.95, maxDets 1/10/100, areas (px²) small < 32², medium < 96², large ≥ 96². "
        "Prints its 12 summary stats (AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl; fractions "
        "0-1, -1 where no object of that area exists). Exit status 2 for a missing or invalid file.",
    )
    coco.add_argument("annotations", metavar="ANNOTATIONS", help="COCO instances json (e.g. instances_val2017.json)")
    coco.add_argument("detections", metavar="DETECTIONS", help="COCO results json: a list of detections")
    coco.add_argument("--evaluator", choices=list(EVALUATORS), default="faster",
                      help="faster: faster-coco-eval (same numbers, faster); pycocotools: the reference "
                      "(default: %(default)s)")
    coco.add_argument("--json", action="store_true", help="print one JSON object {AP: ..., ..., ARl: ...}")
    coco.set_defaults(func=cmd_coco_eval)

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
