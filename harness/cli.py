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
  harness profile resnet50 --by op         params, MACs, FLOPs, memory access cost per op
  harness bench resnet18 --batch 8 --json  latency and throughput of one model
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
    from harness.errors import HarnessError
    from harness.report import render_report
    from harness.runner import run_suite
    from harness.runner.process import WorkerProcess

    worker = WorkerProcess()
    worker.launch()  # the worker imports torch while the suites are validated here
    try:
        suites = _load_suites(args.suites, err)
        if suites is None:
            return EXIT_USAGE
        if args.metrics:
            try:
                suites = [s.with_metrics(args.metrics.split(",")) for s in suites]
            except HarnessError as exc:
                err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
                return EXIT_USAGE
        status = EXIT_OK
        for suite in suites:
            summary = run_suite(suite, args.results, resume=args.resume, console=err,
                                show_progress=not args.no_progress, worker=worker)
            counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.counts.items())) or "no case run"
            if summary.skipped_by_resume:
                counts += f", {summary.skipped_by_resume} already ok (resume)"
            out.print(f"{suite.name}: {counts} in {summary.wall_s:.1f} s → "
                      f"{escape(str(summary.results_dir))} (run {summary.run_id})", highlight=False, soft_wrap=True)
            if summary.interrupted:
                return EXIT_INTERRUPTED
            if summary.failed:
                status = EXIT_FAILED_CASES
    finally:
        worker.stop()
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


def _model_known(name: str, err: Console) -> bool:
    """Return whether ``name`` is a model the zoo or timm can build; print the error when it is not."""
    from harness.zoo import is_known_model

    if is_known_model(name):
        return True
    err.print(f"[red]error:[/] unknown model {escape(name)!r}; see `harness list models`", soft_wrap=True)
    return False


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
                     help="skip cases that already have an ok record for the suite in the results directory")
    run.add_argument("--report", nargs="?", const="reports", default=None, metavar="DIR",
                     help="render the HTML report into DIR afterwards (default DIR: reports)")
    run.add_argument("--metrics", metavar="NAMES",
                     help="take only these of the suite's metric families, comma-separated (e.g. complexity)")
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
