"""Memory of a forward pass (or a training step): the weights, the CUDA allocator's peak, and the CPU
worker's peak resident-set growth.

Protocol (recorded with every result): ``warmup_iters`` passes that are not measured (lazy
initialisation, cuDNN/oneDNN caches), then ``iterations`` measured passes. A pass is a forward under
``torch.inference_mode``; for a case in mode ``train`` it is a training step: forward, backward of the
output's float sum, gradients dropped after (no optimizer, so no optimizer state).

- ``mem_weight_bytes``: bytes of the model's state: parameters, buffers and the packed weights of
  int8-quantized modules (1 byte an element), each tensor once.
- ``mem_peak_cuda_bytes`` (CUDA cases): ``torch.cuda.max_memory_allocated`` over the measured passes,
  after ``torch.cuda.reset_peak_memory_stats``: the peak of live tensors on the device, weights and
  inputs included; not what the caching allocator reserves.
- ``mem_peak_rss_delta_bytes`` (CPU cases): the worker's peak resident set during the measured passes
  minus its resident set just before them. Garbage is collected and freed heap handed back to the OS
  first (glibc ``malloc_trim``), so memory an earlier pass or case freed does not hide the growth. The
  kernel's peak (``VmHWM``) is reset by writing ``5`` to ``/proc/self/clear_refs``; where that is
  refused, a thread samples ``VmRSS`` every ``sample_interval_s`` (a shorter peak can be missed).
- ``mem_method``: which of these was used.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from harness.case import Case

NAME = "memory"

PROC_STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


class Options(BaseModel):
    """Options of the memory protocol; every one of them is recorded with the result."""

    model_config = ConfigDict(extra="forbid")
    iterations: int = Field(3, ge=1)
    warmup_iters: int = Field(1, ge=0)
    sample_interval_s: float = Field(0.001, gt=0)


COLUMNS: dict[str, str] = {
    "mem_weight_bytes": "int64",
    "mem_peak_cuda_bytes": "int64",
    "mem_peak_rss_delta_bytes": "int64",
    "mem_method": "string",
}


def _state_tensors(values: Any) -> Iterator[torch.Tensor]:
    for value in values:
        if isinstance(value, torch.Tensor):
            yield value
        elif isinstance(value, (tuple, list)):
            yield from _state_tensors(value)


def weight_bytes(model: torch.nn.Module) -> int:
    """Return the bytes of the model's state (parameters, buffers and the packed weights of int8
    modules, which are neither), each tensor counted once."""
    tensors = {id(t): t for t in _state_tensors(model.state_dict(keep_vars=True).values())}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def forward(model: torch.nn.Module, inputs: torch.Tensor) -> None:
    """Run one forward pass under ``torch.inference_mode``."""
    with torch.inference_mode():
        model(inputs)


def training_step(model: torch.nn.Module, inputs: torch.Tensor) -> None:
    """Run forward, backward of the output's float sum, then drop the gradients (no optimizer)."""
    model(inputs).float().sum().backward()
    model.zero_grad(set_to_none=True)


STEPS: dict[str, Callable[[torch.nn.Module, torch.Tensor], None]] = {"inference": forward, "train": training_step}


@contextlib.contextmanager
def step_fn(model: torch.nn.Module, inputs: torch.Tensor, mode: str) -> Iterator[Callable[[], None]]:
    """Yield a function running one pass of case mode ``mode`` on ``inputs``; for ``train`` the model
    is in training mode inside the block, and it is in eval mode after."""
    model.train(mode == "train")
    try:
        yield functools.partial(STEPS[mode], model, inputs)
    finally:
        model.eval()


def run(step: Callable[[], None], times: int) -> None:
    """Call ``step`` ``times`` times."""
    for _ in range(times):
        step()


class Sampler:
    """Calls ``read`` at start, every ``interval_s`` on a thread, and at stop; ``samples`` holds
    ``(time.perf_counter() seconds, value)`` pairs. Use with ``with`` or through start() and stop()."""

    def __init__(self, read: Callable[[], float], interval_s: float) -> None:
        self.read = read
        self.interval_s = interval_s
        self.samples: list[tuple[float, float]] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="harness-sampler", daemon=True)

    def _take(self) -> None:
        self.samples.append((time.perf_counter(), self.read()))

    def _loop(self) -> None:
        while not self._done.wait(self.interval_s):
            self._take()

    def start(self) -> None:
        """Start the sampling thread (its first sample comes after ``interval_s``) and take the first sample."""
        self._thread.start()
        self._take()

    def stop(self) -> None:
        """Stop the sampling thread and take the last sample."""
        self._done.set()
        self._thread.join()
        self._take()

    def __enter__(self) -> Sampler:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def proc_status_bytes() -> dict[str, int]:
    """Return the kB fields of ``/proc/self/status`` (``VmRSS``, ``VmHWM``, …) in bytes."""
    rows = (line.split() for line in PROC_STATUS.read_text().splitlines())
    return {row[0].rstrip(":"): int(row[1]) * 1024 for row in rows if row[-1] == "kB"}


def current_rss_bytes() -> int:
    """Return this process's resident set size in bytes."""
    return proc_status_bytes()["VmRSS"]


def release_free_heap() -> bool:
    """Collect garbage and hand freed heap pages back to the OS; return whether malloc_trim (glibc) ran."""
    gc.collect()
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    if trim is None:
        return False
    trim(0)
    return True


def hwm_growth(step: Callable[[], None], iterations: int) -> int:
    """Return VmHWM after the calls minus VmRSS before them, in bytes; VmHWM must have just been reset."""
    before = current_rss_bytes()
    run(step, iterations)
    return proc_status_bytes()["VmHWM"] - before


def sampled_growth(step: Callable[[], None], iterations: int, interval_s: float) -> int:
    """Return the peak of VmRSS sampled every ``interval_s`` during the calls minus VmRSS before, in bytes."""
    before = current_rss_bytes()
    with Sampler(current_rss_bytes, interval_s) as sampler:
        run(step, iterations)
    return int(max(value for _, value in sampler.samples)) - before


def rss_growth(step: Callable[[], None], opts: Options) -> tuple[int | None, str]:
    """Return the peak resident-set growth in bytes over ``opts.iterations`` calls of ``step`` (None
    without /proc) and how it was measured."""
    if not PROC_STATUS.exists():
        return None, "n/a: no /proc/self/status on this platform"
    trim = ", malloc_trim" if release_free_heap() else ""
    try:
        CLEAR_REFS.write_text("5")
    except OSError as exc:
        growth = sampled_growth(step, opts.iterations, opts.sample_interval_s)
        interval_ms = opts.sample_interval_s * 1e3
        return growth, f"VmRSS sampled every {interval_ms:g} ms (peak reset refused: {type(exc).__name__}){trim}"
    return hwm_growth(step, opts.iterations), f"VmHWM reset by /proc/self/clear_refs{trim}"


def cuda_peak_bytes(step: Callable[[], None], iterations: int) -> int:
    """Return torch.cuda.max_memory_allocated (bytes) over the calls, after resetting the peak."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    run(step, iterations)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated()


def cpu_columns(step: Callable[[], None], opts: Options) -> dict[str, Any]:
    """Return the peak RSS growth column (bytes) and the method, for a CPU case."""
    growth, method = rss_growth(step, opts)
    return {"mem_peak_rss_delta_bytes": growth, "mem_method": method}


def cuda_columns(step: Callable[[], None], opts: Options) -> dict[str, Any]:
    """Return the peak CUDA allocation column (bytes) and the method, for a CUDA case."""
    return {"mem_peak_cuda_bytes": cuda_peak_bytes(step, opts.iterations),
            "mem_method": "torch.cuda.max_memory_allocated"}


PEAKS: dict[str, Callable[[Callable[[], None], Options], dict[str, Any]]] = {"cpu": cpu_columns, "cuda": cuda_columns}


def measure(model: torch.nn.Module, inputs: torch.Tensor, case: Case, options: Options) -> dict[str, Any]:
    """Return weight bytes, the peak CUDA allocation (bytes, CUDA cases) or the peak RSS growth (bytes,
    CPU cases), and the method; the column that does not apply is None."""
    out: dict[str, Any] = {"mem_weight_bytes": weight_bytes(model), "mem_peak_cuda_bytes": None,
                           "mem_peak_rss_delta_bytes": None}
    with step_fn(model, inputs, case.mode) as step:
        run(step, options.warmup_iters)
        out |= PEAKS[case.device](step, options)
    return out
