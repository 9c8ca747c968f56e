"""``harness profile``: one model counted on meta tensors (params, MACs, FLOPs, MAC bytes), per layer or op."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console

from harness.cli.common import EXIT_FAILED_CASES, EXIT_OK, EXIT_USAGE, add_norm_argument, input_shape, model_known
from harness.terminal import markup_text


def add_parser(sub: Any) -> None:
    """Add the ``profile`` command to the sub-command parsers ``sub``."""
    parser = sub.add_parser(
        "profile", help="params, MACs, FLOPs, memory access cost of one model, per layer",
        description="Count one model on meta tensors (no compute): params, macs (multiply-accumulates of "
        "conv/linear/matmul), flops (2 x macs + other arithmetic), mac_bytes (bytes read + written by every "
        "op, ShuffleNet V2's memory access cost), activations, op coverage, and a per-module or per-op table.",
    )
    parser.add_argument("model", help="a name from `harness list models`")
    parser.add_argument("--input", default="1x3x224x224", type=input_shape,
                        help="input shape NxCxHxW or CxHxW (default: %(default)s)")
    parser.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32",
                        help="element size for mac_bytes (default: %(default)s)")
    parser.add_argument("--by", choices=["module", "op"], default="module", help="rows per module or per ATen op")
    add_norm_argument(parser)
    parser.add_argument("--top", type=int, default=20, metavar="N",
                        help="only the N rows with most MACs (default: %(default)s; 0: all)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object (params, macs, flops, mac_bytes, coverage, ..., breakdown)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, out: Console, err: Console) -> int:
    """Print a model's params, MACs, FLOPs, memory access cost, coverage and a per-layer table."""
    from rich.table import Table

    from harness.profile import profile_model
    if not model_known(args.model, err):
        return EXIT_USAGE
    from harness.metrics.complexity import CountError

    try:
        prof = profile_model(args.model, args.input, args.dtype, args.by, args.top, args.norm)
    except CountError as exc:
        err.print(f"[red]error:[/] counting {markup_text(args.model)} stopped: {markup_text(exc)}", highlight=False,
                  soft_wrap=True)
        return EXIT_FAILED_CASES
    if args.json:
        print(json.dumps(prof.as_json(), indent=2))
        return EXIT_OK
    shape = "x".join(map(str, args.input))
    norm = "" if args.norm == "native" else f" · norm {args.norm}"
    table = Table(title=f"{markup_text(args.model)} · input {shape} · {args.dtype}{norm}", title_justify="left")
    table.add_column(args.by, overflow="fold")  # full names, folded rather than cut on a narrow terminal
    for header in ("MACs (M)", "FLOPs (M)", "Mem. access (MB)", "share of MACs"):
        table.add_column(header, justify="right")
    macs_total = prof.totals["macs"] or 1
    for row in prof.rows:
        table.add_row(markup_text(row[args.by]), f"{row['macs'] / 1e6:,.2f}", f"{row['flops'] / 1e6:,.2f}",
                      f"{row['mac_bytes'] / 1e6:,.2f}", f"{row['macs'] / macs_total:.1%}")
    out.print(table)
    if args.top and len(prof.rows) == args.top:
        out.print(f"(the {args.top} {args.by}s with most MACs; --top 0 lists all)", highlight=False, soft_wrap=True)
    t = prof.totals
    out.print(f"params {t['params']:,} ({t['params'] / 1e6:.2f} M) · macs {t['macs'] / 1e9:.4f} G · "
              f"flops {t['flops'] / 1e9:.4f} G · mac_bytes {t['mac_bytes'] / 1e6:.1f} MB · "
              f"activations {t['activations'] / 1e6:.2f} M · coverage {t['coverage']:.1%} ({t['method']})",
              highlight=False, soft_wrap=True)
    if t["uncounted"]:
        out.print(f"[yellow]ops without a formula:[/] {markup_text(json.dumps(t['uncounted']))}", soft_wrap=True)
    if t["data_dependent"]:
        out.print(f"[yellow]data-dependent ops[/] (output size depends on values; counts after them hold for this "
                  f"input only): {markup_text(json.dumps(t['data_dependent']))}", soft_wrap=True)
    return EXIT_OK
