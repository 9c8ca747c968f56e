"""Latency and throughput of one forward pass per batch, with warm-up, adaptive repeats and spread.

Protocol (recorded with every result):

1. **Warm-up**: at least ``warmup_min`` calls, then more until the last three calls agree within
   ``warmup_tolerance`` of their median, or ``warmup_max_s`` is spent. Warm-up calls are never samples.
2. **Blocking**: when one call is shorter than ``block_min_ms``, a sample times a block of k calls and
   is divided by k (as torch.utils.benchmark's blocked_autorange), so clock resolution and call
   overhead do not dominate.
3. **Adaptive repeats**: samples are taken until, with at least ``min_repeats`` samples and
   ``min_time_s`` of measuring, the 95% confidence interval of the median is within ±``target_rel_ci``,
   or until ``max_time_s`` / ``max_repeats`` is reached.
4. **Clock**: ``time.perf_counter_ns`` on CPU; on CUDA, the device is synchronised and CUDA events
   bracket each sample.

``latency_ms_*`` are milliseconds per batch; ``throughput_samples_per_s`` = batch / median seconds;
``latency_noisy`` is true when IQR / median exceeds ``noisy_threshold``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from harness.case import Case
from harness.stats import relative_ci_half_width, summarize

NAME = "latency"


class Options(BaseModel):
    """Options of the latency protocol; every one of them is recorded with the result."""

    model_config = ConfigDict(extra="forbid")
    warmup_min: int = Field(3, ge=0)
    warmup_max_s: float = Field(5.0, gt=0)
    warmup_tolerance: float = Field(0.1, gt=0)
    min_repeats: int = Field(10, ge=2)
    max_repeats: int = Field(10_000, ge=2)
    min_time_s: float = Field(1.0, ge=0)
    max_time_s: float = Field(10.0, gt=0)
    target_rel_ci: float = Field(0.02, gt=0)
    block_min_ms: float = Field(1.0, ge=0)
    noisy_threshold: float = Field(0.1, gt=0)


COLUMNS: dict[str, str] = {
    "latency_ms_median": "float64",
    "latency_ms_mean": "float64",
    "latency_ms_std": "float64",
    "latency_ms_iqr": "float64",
    "latency_ms_p5": "float64",
    "latency_ms_p95": "float64",
    "latency_ms_p99": "float64",
    "latency_ms_ci_low": "float64",
    "latency_ms_ci_high": "float64",
    "latency_ms_samples": "list<float64>",
    "latency_repeats": "int64",
    "latency_warmup_iters": "int64",
    "latency_block": "int64",
    "latency_window_s": "float64",
    "latency_timer": "string",
    "latency_noisy": "bool",
    "throughput_samples_per_s": "float64",
}


def cpu_time_ms(fn: Callable[[], Any], calls: int) -> float:
    """Return the wall milliseconds of ``calls`` back-to-back calls of ``fn``, by perf_counter_ns."""
    start = time.perf_counter_ns()
    for _ in range(calls):
        fn()
    return (time.perf_counter_ns() - start) / 1e6


def cuda_time_ms(fn: Callable[[], Any], calls: int) -> float:
    """Return the device milliseconds of ``calls`` calls of ``fn`` between CUDA events, after a sync."""
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    begin.record()
    for _ in range(calls):
        fn()
    end.record()
    end.synchronize()
    return float(begin.elapsed_time(end))


TIMERS: dict[str, Callable[[Callable[[], Any], int], float]] = {"cpu": cpu_time_ms, "cuda": cuda_time_ms}


def warm_up(fn: Callable[[], Any], timer: Callable[[Callable[[], Any], int], float], opts: Options) -> list[float]:
    """Call ``fn`` until warm (see module doc) and return the warm-up call times in milliseconds."""
    times: list[float] = []
    deadline = time.perf_counter() + opts.warmup_max_s
    while time.perf_counter() < deadline:
        times.append(timer(fn, 1))
        if len(times) >= max(opts.warmup_min, 3):
            last = np.asarray(times[-3:])
            if np.all(np.abs(last - np.median(last)) <= opts.warmup_tolerance * np.median(last)):
                break
    if not times:
        times.append(timer(fn, 1))
    return times


def time_samples(fn: Callable[[], Any], timer_name: str, opts: Options) -> dict[str, Any]:
    """Warm up, then take adaptive samples of ``fn``; return raw per-call samples (ms) and the protocol."""
    timer = TIMERS[timer_name]
    warm = warm_up(fn, timer, opts)
    per_call_ms = max(float(np.median(warm[-3:])), 1e-6)
    block = max(1, int(np.ceil(opts.block_min_ms / per_call_ms)))
    samples: list[float] = []
    window_start = time.perf_counter()
    while True:
        samples.append(timer(fn, block) / block)
        elapsed = time.perf_counter() - window_start
        enough = len(samples) >= opts.min_repeats and elapsed >= opts.min_time_s
        if enough and relative_ci_half_width(samples) <= opts.target_rel_ci:
            break
        if (elapsed >= opts.max_time_s and len(samples) >= 2) or len(samples) >= opts.max_repeats:
            break
    return {
        "samples_ms": samples,
        "warmup_iters": len(warm),
        "block": block,
        "window_s": time.perf_counter() - window_start,
    }


def measure(model: torch.nn.Module, inputs: torch.Tensor, case: Case, options: Options) -> dict[str, Any]:
    """Return latency statistics (ms per batch), raw samples, throughput (samples/s) and the protocol."""
    timer_name = "cuda" if case.device == "cuda" else "cpu"

    def forward() -> None:
        with torch.inference_mode():
            model(inputs)

    timed = time_samples(forward, timer_name, options)
    stats = summarize(timed["samples_ms"])
    out: dict[str, Any] = {f"latency_ms_{k}": v for k, v in stats.items() if k != "n"}
    out |= {
        "latency_ms_samples": timed["samples_ms"],
        "latency_repeats": len(timed["samples_ms"]),
        "latency_warmup_iters": timed["warmup_iters"],
        "latency_block": timed["block"],
        "latency_window_s": timed["window_s"],
        "latency_timer": "cuda-event" if timer_name == "cuda" else "perf_counter_ns",
        "latency_noisy": stats["iqr"] / stats["median"] > options.noisy_threshold,
        "throughput_samples_per_s": case.batch / (stats["median"] / 1e3),
    }
    return out
