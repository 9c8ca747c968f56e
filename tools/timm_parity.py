"""Throughput of one model by `harness bench` and by timm's benchmark protocol, interleaved, and their ratio.

  python tools/timm_parity.py                         ResNet-50, bf16, channels_last, batch 256 on CUDA
  python tools/timm_parity.py --timm-repo ~/src/pytorch-image-models
      runs that checkout's benchmark.py (timm's wheel does not ship it; nothing is vendored here) as the timm side
  python tools/timm_parity.py --device cpu --model resnet18 --batch 8 --dtype fp32 --rounds 3

Each round runs both sides once, each in a fresh process, the order alternating (harness first in even rounds), so
drift hits both alike; the medians over the rounds and harness ÷ timm are printed (and written with --json FILE).

The harness side: `harness bench MODEL --batch B --dtype D [--channels-last] --device DEV --json` (its latency
protocol: warm-up until steady, adaptive repeats, CUDA events; throughput = batch ÷ median latency).
The timm side without --timm-repo: this file's `loop` sub-command, written to the protocol of timm's benchmark.py
(`InferenceBenchmarkRunner`, huggingface/pytorch-image-models): `timm.create_model`, the model moved to the device
and dtype (`--precision bfloat16` converts model and input) and to channels_last, `torch.backends.cudnn.benchmark`
on, eval and `torch.no_grad()`, a standard-normal input; `--num-warm-iter` (10) untimed steps, then
`--num-bench-iter` (40) steps each timed from `time.perf_counter()` before the forward to after
`torch.cuda.synchronize()`; throughput = batch × steps ÷ the wall time of the timed loop (its `samples_per_sec`).
With --timm-repo: `python REPO/benchmark.py --model M --bench inference -b B --precision P [--channels-last]`, whose
`--result` JSON gives `infer_samples_per_sec`.

Without a CUDA device and --device cuda, it says "no CUDA device" and exits 2.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

#: The harness's dtype names and timm benchmark.py's --precision names.
TIMM_PRECISION = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def loop(args: argparse.Namespace) -> None:
    """Time the model by timm benchmark.py's inference protocol; print {"samples_per_sec": ...} as JSON."""
    import timm
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    torch.backends.cudnn.benchmark = True
    model = timm.create_model(args.model, pretrained=False)
    model.to(device=args.device, dtype=dtype, memory_format=torch.channels_last if args.channels_last else None)
    model.eval()
    size = model.pretrained_cfg.get("input_size", (3, 224, 224))
    x = torch.randn((args.batch, *size), device=args.device, dtype=dtype)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def sync() -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    with torch.no_grad():
        for _ in range(args.warm_iter):
            model(x)
        sync()
        start = time.perf_counter()
        for _ in range(args.bench_iter):
            model(x)
            sync()
        elapsed = time.perf_counter() - start
    print(json.dumps({"samples_per_sec": args.batch * args.bench_iter / elapsed}))


def harness_command(args: argparse.Namespace) -> list[str]:
    """Return the `harness bench` command of the harness side."""
    return [sys.executable, "-m", "harness.cli", "bench", args.model, "--batch", str(args.batch), "--dtype",
            args.dtype, "--device", args.device, "--json", *(["--channels-last"] if args.channels_last else [])]


def timm_command(args: argparse.Namespace) -> list[str]:
    """Return the command of the timm side: the checkout's benchmark.py with --timm-repo, else this file's loop."""
    if args.timm_repo:
        script = Path(args.timm_repo) / "benchmark.py"
        return [sys.executable, str(script), "--model", args.model, "--bench", "inference", "-b", str(args.batch),
                "--precision", TIMM_PRECISION[args.dtype], "--num-warm-iter", str(args.warm_iter),
                "--num-bench-iter", str(args.bench_iter), *(["--channels-last"] if args.channels_last else [])]
    return [sys.executable, __file__, "loop", "--model", args.model, "--batch", str(args.batch), "--dtype", args.dtype,
            "--device", args.device, "--warm-iter", str(args.warm_iter), "--bench-iter", str(args.bench_iter),
            *(["--channels-last"] if args.channels_last else [])]


def throughput(side: str, output: str) -> float:
    """Return the samples per second in a side's standard output: `harness bench --json`'s
    ``throughput_samples_per_s``; benchmark.py's ``infer_samples_per_sec`` after its ``--result`` line; the loop's
    ``samples_per_sec``. ValueError when it is not there."""
    if side == "harness":
        return float(json.loads(output)["throughput_samples_per_s"])
    text = output.split("--result", 1)[1] if "--result" in output else output
    data = json.loads(text)
    value = data.get("infer_samples_per_sec", data.get("samples_per_sec"))
    if value is None:
        raise ValueError(f"no samples per second in the timm side's result: {data.get('error', data)}")
    return float(value)


def run_side(side: str, command: list[str]) -> float:
    """Run one side's command and return its throughput (samples/s); SystemExit naming the side when it fails."""
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"the {side} side failed ({' '.join(command)}):\n{done.stderr[-2000:]}")
    try:
        return throughput(side, done.stdout)
    except (ValueError, KeyError, IndexError) as exc:
        sys.exit(f"the {side} side printed no throughput ({exc}):\n{done.stdout[-2000:]}")


def compare(args: argparse.Namespace) -> None:
    """Run both sides interleaved over --rounds rounds; print each round, the medians and their ratio."""
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            print("no CUDA device: the parity check needs an NVIDIA GPU and driver (or --device cpu)", file=sys.stderr)
            sys.exit(2)
    if args.timm_repo and not (Path(args.timm_repo) / "benchmark.py").is_file():
        print(f"--timm-repo {args.timm_repo}: no benchmark.py there (a pytorch-image-models checkout has it)",
              file=sys.stderr)
        sys.exit(2)
    commands = {"harness": harness_command(args), "timm": timm_command(args)}
    rounds: list[dict[str, float]] = []
    for r in range(args.rounds):
        order = ("harness", "timm") if r % 2 == 0 else ("timm", "harness")
        rounds.append({side: run_side(side, commands[side]) for side in order})
        print(f"round {r + 1}/{args.rounds}: harness {rounds[-1]['harness']:.1f}, timm {rounds[-1]['timm']:.1f} "
              "samples/s", flush=True)
    medians = {side: statistics.median(r[side] for r in rounds) for side in ("harness", "timm")}
    ratio = medians["harness"] / medians["timm"]
    timm_side = f"benchmark.py of {args.timm_repo}" if args.timm_repo else "timm's protocol (tools/timm_parity.py loop)"
    print(f"{args.model} batch {args.batch} {args.dtype}{' channels_last' if args.channels_last else ''} on "
          f"{args.device}: harness bench {medians['harness']:.1f} samples/s, {timm_side} {medians['timm']:.1f} "
          f"samples/s, ratio harness/timm {ratio:.3f} (median of {args.rounds} rounds)")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, "batch": args.batch, "dtype": args.dtype,
                                               "channels_last": args.channels_last, "device": args.device,
                                               "timm_side": timm_side, "rounds": rounds, "medians": medians,
                                               "ratio": ratio}, indent=2))


def main(argv: list[str] | None = None) -> None:
    """Parse the command line (``loop`` runs the timm-protocol side alone) and run."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", choices=["compare", "loop"], default="compare",
                        help="compare (default), or loop: the timm-protocol side alone")
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--dtype", choices=sorted(TIMM_PRECISION), default="bf16")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warm-iter", type=int, default=10, help="timm's --num-warm-iter (default: 10)")
    parser.add_argument("--bench-iter", type=int, default=40, help="timm's --num-bench-iter (default: 40)")
    parser.add_argument("--timm-repo", metavar="PATH", help="a pytorch-image-models checkout whose benchmark.py to run")
    parser.add_argument("--json", metavar="FILE", help="also write the rounds, medians and ratio to FILE")
    args = parser.parse_args(argv)
    (loop if args.mode == "loop" else compare)(args)


if __name__ == "__main__":
    main()
