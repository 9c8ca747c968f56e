"""``harness bench``: one model timed in a worker process by the latency protocol, without a suite."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console

from harness.cli.common import (
    EXIT_FAILED_CASES,
    EXIT_OK,
    EXIT_USAGE,
    add_norm_argument,
    chw_shape,
    model_known,
    positive_int,
)
from harness.terminal import markup_text


def add_parser(sub: Any) -> None:
    """Add the ``bench`` command to the sub-command parsers ``sub``."""
    parser = sub.add_parser(
        "bench", help="time one model (latency, throughput) without a suite",
        description="Measure one case in a worker process with the latency protocol (warm-up, adaptive "
        "repeats, median and IQR), like timm's benchmark.py --model. Nothing is stored.",
    )
    parser.add_argument("model", help="a name from `harness list models`")
    parser.add_argument("--batch", type=int, default=1, help="images per forward pass (default: %(default)s)")
    parser.add_argument("--input", type=chw_shape, default=(3, 224, 224),
                        help="input CxHxW, square (default: 3x224x224)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="(default: %(default)s)")
    parser.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32", help="(default: %(default)s)")
    parser.add_argument("--precision", choices=["convert", "autocast"], default="convert",
                        help="fp16/bf16 by converting the model, or fp32 weights under autocast")
    parser.add_argument("--quant", choices=["none", "int8"], default="none",
                        help="int8: post-training static quantization, calibrated on real images (CPU)")
    parser.add_argument("--channels-last", action="store_true", help="NHWC memory format for model and input")
    parser.add_argument("--compile", choices=["none", "default", "reduce-overhead", "max-autotune"],
                        default="none", help="torch.compile mode (default: none)")
    parser.add_argument("--mode", choices=["inference", "train"], default="inference",
                        help="time a forward pass, or a training step with its phases")
    add_norm_argument(parser)
    parser.add_argument("--world-size", type=positive_int, default=1, metavar="N",
                        help="processes in a torch.distributed group (gloo on cpu, one GPU each on cuda), each "
                        "with --batch images, launched through torchrun (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--min-time", type=float, default=1.0, help="least seconds of sampling (default: 1)")
    parser.add_argument("--max-time", type=float, default=10.0, help="most seconds of sampling (default: 10)")
    parser.add_argument("--timeout", type=float, default=900.0, help="kill the case after this many seconds")
    parser.add_argument("--complexity", action="store_true", help="also count params, MACs and memory access cost")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object, keys as the record's columns (latency_ms_median, latency_ms_iqr, "
                        "throughput_samples_per_s, latency_ms_samples, ...)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, out: Console, err: Console) -> int:
    """Measure one case's latency (and complexity) in a worker process, no suite needed."""
    from harness.case import Case
    from harness.metrics import latency
    from harness.runner.process import WorkerProcess
    if not model_known(args.model, err):
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
        err.print(f"[red]{outcome['status']}:[/] {markup_text(outcome['error'])}", soft_wrap=True)
        return EXIT_FAILED_CASES
    values = outcome["values"]
    result = {"case": case.label, **case.to_dict(), **values}  # one key per value, named as the record's columns
    if args.json:
        print(json.dumps(result, default=str))
        return EXIT_OK
    out.print(f"{markup_text(case.label)}: median {values['latency_ms_median']:.3f} ms per batch "
              f"(IQR {values['latency_ms_iqr']:.3f}, 95% CI {values['latency_ms_ci_low']:.3f}–"
              f"{values['latency_ms_ci_high']:.3f}), {values['throughput_samples_per_s']:.1f} samples/s, "
              f"{values['latency_repeats']} samples × {values['latency_block']} call(s), "
              f"{values['latency_threads']} thread(s), timer {values['latency_timer']}"
              + (f" [yellow]noisy[/] ({markup_text(values['latency_noisy_reason'])})" if values["latency_noisy"]
                 else ""), highlight=False, soft_wrap=True)
    if args.mode == "train":
        out.print("  forward+loss {latency_ms_forward_median:.3f} ms · backward {latency_ms_backward_median:.3f} ms · "
                  "optimizer {latency_ms_optimizer_median:.3f} ms".format(**values), highlight=False)
    if args.complexity:
        out.print(f"  params {values['params']:,} · macs {values['macs'] / 1e9:.3f} G · "
                  f"mac_bytes {values['mac_bytes'] / 1e6:.1f} MB", highlight=False)
    return EXIT_OK
