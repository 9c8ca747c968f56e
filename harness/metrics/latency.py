"""Latency and throughput of a forward pass (or a training step) per batch, with warm-up, adaptive
repeats and spread.

Protocol (recorded with every result):

1. **Warm-up**: at least ``warmup_min`` calls, then more until the last three calls agree within
   ``warmup_tolerance`` of their median, or ``warmup_max_s`` is spent. Warm-up calls are never samples.
2. **Blocking**: when one call is shorter than ``block_min_ms``, a sample times a block of k calls and
   is divided by k (as torch.utils.benchmark's blocked_autorange), so clock resolution and call
   overhead do not dominate. Training steps are never blocked.
3. **Adaptive repeats**: samples are taken until, with at least ``min_repeats`` samples and
   ``min_time_s`` of measuring, the 95% confidence interval of the median is within ±``target_rel_ci``,
   or until ``max_time_s`` / ``max_repeats`` is reached.
4. **Clock**: ``time.perf_counter_ns`` on CPU. On CUDA the device is synchronised and CUDA events
   bracket each sample; with ``cuda_graph`` the forward is captured once and replayed;
   ``torch.backends.cudnn.benchmark`` is set from ``cudnn_benchmark``; the GPU's clocks, temperature,
   power, P-state and what limits its clocks (power cap, thermal slowdown…) are read through NVML before and after
   the samples.
5. **Inference** runs under ``torch.inference_mode``. A **training step** (case mode ``train``) is
   forward + cross-entropy loss against fixed random labels (or the mean of a non-logit output),
   backward, SGD step (lr 0.01, momentum 0.9), each phase timed separately.
6. The timer's own overhead is measured on an empty region (median of ``timer_overhead_samples``).
7. **The rest of the machine**: the CPU time other processes took during the sampling window and the time the
   hypervisor stole (in cores' worth), the load average, the CPU's clock and governor are recorded
   (:mod:`harness.machine_load`); a window in which they took more than ``contended_threshold`` of the cores is
   ``latency_contended``, and its timing noisy whatever its spread (in a group of processes, never: the other
   ranks take cores by design).

In a group of ``world_size`` processes (:mod:`harness.distributed`), every process times its own
per-device batch, a training step goes through DistributedDataParallel, process 0 decides when warm-up
and sampling stop, and process 0's samples are recorded.

``latency_ms_*`` are milliseconds per batch; ``throughput_samples_per_s`` = batch × world_size / median
seconds; ``latency_noisy`` is true when IQR / median exceeds ``noisy_threshold`` or when the time cap ended
sampling with fewer than ``min_repeats`` samples (too few to say how noisy they are); ``latency_noisy_reason`` says
which, in words.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from harness.case import Case
from harness.distributed import agree, for_training
from harness.machine_load import CONTENDED_SHARE, WindowLoad, cpu_sample, window_load
from harness.metrics.finite import assert_finite
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
    contended_threshold: float = Field(CONTENDED_SHARE, gt=0, le=1)
    cuda_graph: bool = False
    cudnn_benchmark: bool = True
    timer_overhead_samples: int = Field(200, ge=1)


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
    "latency_ms_forward_median": "float64",
    "latency_ms_backward_median": "float64",
    "latency_ms_optimizer_median": "float64",
    "latency_repeats": "int64",
    "latency_warmup_iters": "int64",
    "latency_block": "int64",
    "latency_window_s": "float64",
    "latency_timer": "string",
    "latency_timer_overhead_ms": "float64",
    "latency_threads": "int64",
    "latency_interop_threads": "int64",
    "latency_cudnn_benchmark": "bool",
    "latency_cuda_graph": "bool",
    "latency_gpu_state_start": "string",
    "latency_gpu_state_end": "string",
    "latency_noisy": "bool",
    "latency_noisy_reason": "string",
    "latency_contended": "bool",
    "latency_others_cores": "float64",
    "latency_steal_cores": "float64",
    "latency_loadavg": "float64",
    "latency_cpu_mhz": "float64",
    "latency_cpu_governor": "string",
    "throughput_samples_per_s": "float64",
}

Timer = Callable[[Callable[[], Any], int], float]


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


TIMERS: dict[str, tuple[Timer, str]] = {"cpu": (cpu_time_ms, "perf_counter_ns"), "cuda": (cuda_time_ms, "cuda-event")}


class PhaseClock:
    """Marks points in time within one sample (CUDA events or perf_counter_ns); returns phase lengths."""

    def __init__(self, device: str) -> None:
        self.cuda = device == "cuda"
        self.points: list[Any] = []

    def mark(self) -> None:
        """Record the current point in time (on CUDA: an event on the current stream)."""
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.points.append(event)
        else:
            self.points.append(time.perf_counter_ns())

    def phases_ms(self) -> list[float]:
        """Return the milliseconds between consecutive marks, then forget them."""
        points, self.points = self.points, []
        if self.cuda:
            points[-1].synchronize()
            return [float(a.elapsed_time(b)) for a, b in itertools.pairwise(points)]
        return [(b - a) / 1e6 for a, b in itertools.pairwise(points)]


def warm_up(fn: Callable[[], Any], timer: Timer, opts: Options) -> list[float]:
    """Call ``fn`` until warm (see module doc) and return the warm-up call times in milliseconds."""
    times: list[float] = []
    deadline = time.perf_counter() + opts.warmup_max_s
    while True:
        times.append(timer(fn, 1))
        last = np.asarray(times[-3:])
        steady = len(times) >= max(opts.warmup_min, 3) and bool(
            np.all(np.abs(last - np.median(last)) <= opts.warmup_tolerance * np.median(last))
        )
        if agree(steady or time.perf_counter() >= deadline):
            return times


def adaptive_samples(sample: Callable[[], float], opts: Options) -> tuple[list[float], float, WindowLoad | None]:
    """Call ``sample`` (returns ms) until the stopping rule of the module doc; return the samples, the window's
    seconds and what the rest of the machine did meanwhile (None where it cannot be read)."""
    samples: list[float] = []
    load_start = cpu_sample()
    window_start = time.perf_counter()
    while True:
        samples.append(sample())
        elapsed = time.perf_counter() - window_start
        enough = len(samples) >= opts.min_repeats and elapsed >= opts.min_time_s
        converged = enough and relative_ci_half_width(samples) <= opts.target_rel_ci
        exhausted = (elapsed >= opts.max_time_s and len(samples) >= 2) or len(samples) >= opts.max_repeats
        if agree(converged or exhausted):
            window_s = time.perf_counter() - window_start
            return samples, window_s, window_load(load_start, cpu_sample())


def time_samples(fn: Callable[[], Any], timer_name: str, opts: Options) -> dict[str, Any]:
    """Warm up, then take adaptive samples of ``fn``; return raw per-call samples (ms) and the protocol."""
    timer = TIMERS[timer_name][0]
    warm = warm_up(fn, timer, opts)
    per_call_ms = max(float(np.median(warm[-3:])), 1e-6)
    block = max(1, int(np.ceil(opts.block_min_ms / per_call_ms)))
    samples, window_s, load = adaptive_samples(lambda: timer(fn, block) / block, opts)
    return {"samples_ms": samples, "warmup_iters": len(warm), "block": block, "window_s": window_s, "load": load}


def timer_overhead_ms(timer_name: str, samples: int) -> float:
    """Return the median milliseconds the timer reports for an empty region (its own overhead)."""
    timer = TIMERS[timer_name][0]
    return float(np.median([timer(lambda: None, 1) for _ in range(samples)]))


def inference_fn(model: torch.nn.Module, inputs: torch.Tensor, case: Case, opts: Options) -> Callable[[], Any]:
    """Return the function timed for inference: a forward under inference_mode, or a CUDA-graph replay."""
    if case.device == "cuda" and opts.cuda_graph:
        with torch.inference_mode():
            static = inputs.clone()
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):
                    model(static)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                model(static)
        return graph.replay

    def forward() -> None:
        with torch.inference_mode():
            model(inputs)

    with torch.inference_mode():
        assert_finite(model(inputs), "the model's output")
    return forward


def _loss(output: Any, labels: torch.Tensor) -> torch.Tensor:
    if isinstance(output, torch.Tensor) and output.dim() == 2:
        return F.cross_entropy(output.float(), labels % output.shape[1])
    leaves = [t for t in torch.utils._pytree.tree_leaves(output) if isinstance(t, torch.Tensor)]
    return sum(t.float().mean() for t in leaves)


def time_training(model: torch.nn.Module, inputs: torch.Tensor, case: Case, opts: Options) -> dict[str, Any]:
    """Time training steps (forward+loss, backward, optimizer step); return step samples and phase medians."""
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    trained = for_training(model)
    labels = torch.randint(0, 1000, (case.batch,), generator=torch.Generator().manual_seed(0)).to(case.device)
    clock = PhaseClock(case.device)
    phases: list[list[float]] = []

    def step() -> float:
        clock.mark()
        loss = _loss(trained(inputs), labels)
        clock.mark()
        if not phases:  # the first step's loss; later ones are not read back, which would add a sync
            assert_finite(loss.detach(), "the training loss")
        loss.backward()
        clock.mark()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        clock.mark()
        phases.append(clock.phases_ms())
        return sum(phases[-1])

    try:
        warm = warm_up(step, lambda fn, _calls: fn(), opts)
        phases.clear()
        samples, window_s, load = adaptive_samples(step, opts)
    finally:
        model.eval()
    forward, backward, opt_step = np.median(np.asarray(phases), axis=0)
    return {"samples_ms": samples, "warmup_iters": len(warm), "block": 1, "window_s": window_s, "load": load,
            "phases": {"latency_ms_forward_median": float(forward), "latency_ms_backward_median": float(backward),
                       "latency_ms_optimizer_median": float(opt_step)}}


def gpu_state_json(case: Case) -> str | None:
    """Return the GPU's clocks (MHz), temperature (°C), power (W) and P-state as JSON; None off CUDA or NVML."""
    from harness.nvml import cuda_device_uuid, gpu_state, handle_for_uuid, nvml_available, nvml_session

    if case.device != "cuda" or not nvml_available()[0]:
        return None
    with nvml_session():
        return json.dumps(gpu_state(handle_for_uuid(cuda_device_uuid(torch.cuda.current_device()))))


def noisy_columns(relative_iqr: float, samples: int, options: Options, contended: str | None = None) -> dict[str, Any]:
    """Return ``latency_noisy`` and ``latency_noisy_reason`` (None when not noisy) of a measurement whose IQR /
    median is ``relative_iqr`` over ``samples`` samples, taken in a window ``contended`` says was contended (why;
    None when it was not): a contended timing is noisy whatever its spread."""
    reasons = [contended] if contended else []
    if samples < options.min_repeats:
        reasons.append(f"{samples} samples < min_repeats {options.min_repeats} (the time cap ended sampling)")
    if relative_iqr > options.noisy_threshold:
        reasons.append(f"IQR/median {relative_iqr:.2f} > {options.noisy_threshold:g}")
    return {"latency_noisy": bool(reasons), "latency_noisy_reason": "; ".join(reasons) or None}


def measure(model: torch.nn.Module, inputs: torch.Tensor, case: Case, options: Options) -> dict[str, Any]:
    """Return latency statistics (ms per batch), raw samples, throughput (samples/s) and the protocol."""
    timer_name = "cuda" if case.device == "cuda" else "cpu"
    if case.device == "cuda":
        torch.backends.cudnn.benchmark = options.cudnn_benchmark
    state_start = gpu_state_json(case)
    if case.mode == "train":
        timed = time_training(model, inputs, case, options)
    else:
        timed = time_samples(inference_fn(model, inputs, case, options), timer_name, options)
    stats = summarize(timed["samples_ms"])
    out: dict[str, Any] = {f"latency_ms_{k}": v for k, v in stats.items() if k != "n"}
    out |= timed.get("phases", {})
    out |= {
        "latency_ms_samples": timed["samples_ms"],
        "latency_repeats": len(timed["samples_ms"]),
        "latency_warmup_iters": timed["warmup_iters"],
        "latency_block": timed["block"],
        "latency_window_s": timed["window_s"],
        "latency_timer": TIMERS[timer_name][1],
        "latency_timer_overhead_ms": timer_overhead_ms(timer_name, options.timer_overhead_samples),
        "latency_threads": torch.get_num_threads(),
        "latency_interop_threads": torch.get_num_interop_threads(),
        "latency_cudnn_benchmark": options.cudnn_benchmark if case.device == "cuda" else None,
        "latency_cuda_graph": options.cuda_graph if case.device == "cuda" else None,
        "latency_gpu_state_start": state_start,
        "latency_gpu_state_end": gpu_state_json(case),
        **load_columns(timed["load"], case, options),
        "throughput_samples_per_s": case.batch * case.world_size / (stats["median"] / 1e3),
    }
    out |= noisy_columns(stats["iqr"] / stats["median"], len(timed["samples_ms"]), options,
                         _contended(timed["load"], case, options))
    return out


def _contended(load: WindowLoad | None, case: Case, options: Options) -> str | None:
    """Return why the window was contended, None when it was not or cannot be told: in a group of processes the
    other ranks are expected to take cores."""
    return load.contended(options.contended_threshold) if load is not None and case.world_size == 1 else None


def load_columns(load: WindowLoad | None, case: Case, options: Options) -> dict[str, Any]:
    """Return the ``latency_*`` columns of the machine's load during the sampling window (None where unread)."""
    if load is None:
        return {"latency_contended": None}
    return {"latency_contended": _contended(load, case, options) is not None,
            "latency_others_cores": load.others_cores, "latency_steal_cores": load.steal_cores,
            "latency_loadavg": load.loadavg_1m, "latency_cpu_mhz": load.cpu_mhz, "latency_cpu_governor": load.governor}
