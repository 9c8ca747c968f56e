"""Compare ``harness zoo``'s MAC counts with fvcore's, architecture by architecture, and print the largest
disagreements with what each counter saw per op.

fvcore (``pip install fvcore``; not a dependency of the harness) traces a real forward pass with torch.jit, so each
architecture is built here with random weights on the CPU at the zoo record's input; ``--max-params`` keeps the
giants out (their forward takes minutes on a laptop). fvcore's total counts one "flop" per multiply-accumulate of
convolutions, matmuls and linear layers, plus one per element of batch/group/layer/instance norms and upsampling;
ops it has no formula for (attention's ``scaled_dot_product_attention`` among them) count zero, and it lists them.
Here fvcore is also given a formula for ``scaled_dot_product_attention`` (:func:`attention_macs`: the two matmuls,
as our count takes them), kept apart, so each architecture gets fvcore's total as timm's tables show it and a
like-for-like total: with attention, without fvcore's normalization, pooling and upsampling counts.

    python tools/zoo_vs_fvcore.py --results results --sample 300 --out fvcore.jsonl

Each compared architecture is appended to ``--out`` as one JSON line as soon as it is done (a second run skips
those already there); the summary is read from that file.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

#: Operator names of both counters grouped alike (fvcore names a bias-free linear layer ``linear`` where our count
#: sees ``aten.mm``), for the per-operator comparison; names outside the table stand for themselves.
GROUPS: dict[str, str] = {
    **dict.fromkeys(("aten.convolution", "aten._convolution", "conv"), "conv"),
    **dict.fromkeys(("aten.addmm", "aten.mm", "aten.bmm", "aten.baddbmm", "aten.matmul", "aten.linear", "addmm",
                     "linear", "matmul", "mm", "bmm"), "linear/matmul"),
    **dict.fromkeys(("aten._scaled_dot_product_flash_attention_for_cpu", "aten._scaled_dot_product_efficient_attention",
                     "aten._scaled_dot_product_flash_attention", "scaled_dot_product_attention"), "attention"),
    **dict.fromkeys(("aten.einsum", "einsum"), "einsum"),
}


def grouped(counts: dict[str, int]) -> dict[str, int]:
    """Return ``counts`` (per op or operator name) summed per :data:`GROUPS` group."""
    out: dict[str, int] = {}
    for name, value in counts.items():
        if value:
            key = GROUPS.get(name, name)
            out[key] = out.get(key, 0) + int(value)
    return out


class Timeout(Exception):
    """An architecture took longer than ``--timeout`` seconds."""


#: fvcore's counts that are not multiply-accumulates (norms, pooling, upsampling): left out of the like-for-like total.
FVCORE_NOT_MACS = ("batch_norm", "group_norm", "layer_norm", "instance_norm", "upsample_nearest2d",
                   "upsample_bilinear2d", "adaptive_avg_pool2d", "grid_sampler")


def attention_macs(inputs: list[Any], outputs: list[Any]) -> int:
    """Return the MACs of ``scaled_dot_product_attention(q, k, v)`` from its traced inputs' shapes: q·kᵀ and the
    product with v, ``batch · L · S · (E + Ev)`` (an fvcore op handle)."""
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(inputs[i]) for i in range(3))
    batch = math.prod(q[:-2])
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


def zoo_records(results: str) -> list[dict[str, Any]]:
    """Return the latest ok record of each architecture of the zoo suite in ``results`` (model, input, counts,
    breakdown per op)."""
    from harness.store import ResultStore
    from harness.store_query import latest_per_case
    from harness.zoo_suite import ZOO_SUITE

    frame = latest_per_case(ResultStore(results).read(suite=ZOO_SUITE))
    frame = frame[frame["status"] == "ok"]
    columns = ["model", "resolution", "width", "channels", "params", "macs", "complexity_coverage",
               "complexity_breakdown"]
    return frame[[c for c in columns if c in frame]].to_dict("records")


def ours_by_op(breakdown: str | None) -> dict[str, int]:
    """Return our MACs per ATen op from a record's ``complexity_breakdown`` (ops without MACs left out)."""
    return {op: int(row["macs"]) for op, row in json.loads(breakdown or "{}").items() if row.get("macs")}


def fvcore_count(record: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """Return fvcore's total, per-operator counts and unsupported ops for the record's architecture and input."""
    import timm
    import torch
    from fvcore.nn import FlopCountAnalysis

    def expire(*_: Any) -> None:
        raise Timeout(f"longer than {timeout_s:g} s")

    height = int(record["resolution"])
    width = int(record["width"]) if record.get("width") and not math.isnan(record["width"]) else height
    channels = int(record.get("channels") or 3)
    signal.signal(signal.SIGALRM, expire)
    signal.alarm(int(timeout_s))
    try:
        torch.manual_seed(0)
        model = timm.create_model(record["model"]).eval()
        x = torch.randn(1, channels, height, width)
        analysis = FlopCountAnalysis(model, x).set_op_handle("aten::scaled_dot_product_attention", attention_macs)
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        analysis.tracer_warnings("none")
        with torch.no_grad():
            by_operator = {k: int(v) for k, v in analysis.by_operator().items()}
        attention = by_operator.pop("scaled_dot_product_attention", 0)
        return {"fvcore_total": sum(by_operator.values()), "fvcore_by_operator": by_operator,
                "fvcore_attention": attention, "fvcore_unsupported": dict(analysis.unsupported_ops())}
    finally:
        signal.alarm(0)


def compare(args: argparse.Namespace) -> None:
    """Count the chosen architectures with fvcore, appending each to ``args.out``."""
    import torch

    torch.set_num_threads(args.threads)
    records = [r for r in zoo_records(args.results) if r["params"] <= args.max_params]
    if args.pattern:
        import fnmatch

        records = [r for r in records if fnmatch.fnmatchcase(r["model"], args.pattern)]
    if args.sample and args.sample < len(records):
        records = random.Random(args.seed).sample(records, args.sample)
    out = Path(args.out)
    done = {json.loads(line)["model"] for line in out.read_text().splitlines()} if out.exists() else set()
    todo = [r for r in records if r["model"] not in done]
    print(f"{len(records)} architecture(s) with at most {args.max_params:g} params; {len(todo)} to count with fvcore",
          file=sys.stderr)
    with out.open("a") as f:
        for k, record in enumerate(todo, 1):
            start = time.perf_counter()
            row = {"model": record["model"], "ours_macs": int(record["macs"]), "params": int(record["params"]),
                   "coverage": record["complexity_coverage"], "ours_by_op": ours_by_op(
                       record.get("complexity_breakdown"))}
            try:
                row |= fvcore_count(record, args.timeout)
            except Exception as exc:  # fvcore cannot trace some architectures: said, and the next one taken
                row["fvcore_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
            row["fvcore_s"] = round(time.perf_counter() - start, 2)
            f.write(json.dumps(row) + "\n")
            f.flush()
            print(f"[{k}/{len(todo)}] {record['model']}: ours {row['ours_macs'] / 1e9:.3f} G, fvcore "
                  + (f"{row['fvcore_total'] / 1e9:.3f} G" if "fvcore_total" in row else row["fvcore_error"]),
                  file=sys.stderr)


def summarize(out: str, top: int) -> str:
    """Return the summary of the comparison in ``out`` as Markdown: how many agree within 1%, and the ``top``
    largest disagreements (by |log ratio|) with each counter's MACs per operator group where they differ — once
    against our MACs, once against our MACs less attention's (which fvcore counts zero)."""
    rows = [json.loads(line) for line in Path(out).read_text().splitlines()]
    counted = [r for r in rows if r.get("fvcore_total") and r["ours_macs"]]
    failed = [r for r in rows if "fvcore_error" in r]
    for r in counted:
        r["ours"] = grouped(r["ours_by_op"])
        r["ratio"] = r["fvcore_total"] / r["ours_macs"]
        like = {k: v for k, v in r["fvcore_by_operator"].items() if k not in FVCORE_NOT_MACS}
        like["scaled_dot_product_attention"] = r.get("fvcore_attention", 0)
        r["like"] = grouped(like)
        r["ratio_like"] = sum(r["like"].values()) / r["ours_macs"]
    lines = [f"{len(rows)} architecture(s) compared: {len(counted)} counted by both, {len(failed)} fvcore could not "
             f"trace."]
    for key, theirs_key, what in (("ratio", "fvcore_by_operator", "fvcore's total as timm's tables give it"),
                                  ("ratio_like", "like", "fvcore given attention, without its norm, pooling and "
                                   "upsampling counts")):
        within = sum(abs(r[key] - 1) <= 0.01 for r in counted)
        lines += ["", f"{what}, against our MACs: within 1% for {within} of {len(counted)}; the {top} largest "
                  "disagreements:", "",
                  "| architecture | our GMACs | fvcore G | fvcore / ours | where they differ (G, ours → fvcore) | "
                  "fvcore skipped (calls) |", "|---|---|---|---|---|---|"]
        for r in sorted(counted, key=lambda r, key=key: -abs(math.log(r[key])) if r[key] > 0 else -math.inf)[:top]:
            ours, theirs = r["ours"], grouped(r[theirs_key])
            names = sorted(set(ours) | set(theirs), key=lambda k: (-abs(theirs.get(k, 0) - ours.get(k, 0)), k))
            diffs = [f"{k} {ours.get(k, 0) / 1e9:.3g} → {theirs.get(k, 0) / 1e9:.3g}" for k in names
                     if abs(theirs.get(k, 0) - ours.get(k, 0)) > 0.005 * r["ours_macs"]][:4]
            skipped = ", ".join(f"{k} ×{v}" for k, v in sorted(r["fvcore_unsupported"].items(),
                                                                key=lambda kv: -kv[1])[:3])
            lines.append(f"| {r['model']} | {r['ours_macs'] / 1e9:.3f} | {sum(theirs.values()) / 1e9:.3f} | "
                         f"{r[key]:.3f} | {'; '.join(diffs)} | {skipped} |")
    if failed:
        lines += ["", "fvcore could not trace: " + "; ".join(f"{r['model']} ({r['fvcore_error'][:80]})"
                                                            for r in failed[:10])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, compare (unless ``--summary-only``), print the summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default="results", help="the store `harness zoo` wrote (default: %(default)s)")
    parser.add_argument("--out", default="fvcore.jsonl", help="JSON lines, one per architecture (default: %(default)s)")
    parser.add_argument("--max-params", type=float, default=100e6, help="leave out larger models (default: 100e6)")
    parser.add_argument("--pattern", help="only architectures matching this fnmatch pattern")
    parser.add_argument("--sample", type=int, help="a seeded random sample of this many architectures")
    parser.add_argument("--seed", type=int, default=0, help="the sample's seed (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds per architecture (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    parser.add_argument("--top", type=int, default=10, help="disagreements listed (default: %(default)s)")
    parser.add_argument("--summary-only", action="store_true", help="only summarize --out")
    args = parser.parse_args(argv)
    if not args.summary_only:
        compare(args)
    print(summarize(args.out, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
