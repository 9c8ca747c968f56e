"""Energy per inference on an NVIDIA GPU, from NVML (nvidia-ml-py).

Protocol (recorded with every result): ``warmup_iters`` passes, then passes repeated back to back for
at least ``min_window_s``; the device is synchronised before the energy is read at both ends of the
window. A pass is what :mod:`harness.metrics.memory` runs: a forward under ``torch.inference_mode``,
or a training step for a case in mode ``train``.

- Energy: the difference of NVML's total-energy counter (mJ; Volta and newer). The counter updates
  only every ~20-100 ms, so the difference can be off by up to one update's energy (≤ ~10% of a 1 s
  window): raise ``min_window_s`` for tighter numbers. Where the counter is not
  supported but power is, a thread samples ``nvmlDeviceGetPowerUsage`` every ``power_sample_interval_s``
  and the samples are integrated (trapezoid rule); ``energy_status`` then says so.
- It is the energy of the whole board: idle power and other processes' work on the GPU count too.
- ``energy_j_per_batch`` = joules / passes; ``energy_j_per_image`` = that / batch;
  ``energy_power_w_mean`` = joules / window seconds.

A CPU case, a machine without an NVIDIA driver, a GPU that reports neither energy nor power, or any
other NVML error gives None in every column and ``energy_status`` "n/a: <reason>"; the case stays ok.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any, Protocol

import torch
from pydantic import BaseModel, ConfigDict, Field

from harness import nvml
from harness.case import Case
from harness.metrics.memory import Sampler, run, step_fn

NAME = "energy"

NO_METER = "total energy counter not supported (pre-Volta GPU, MIG or vGPU); power sampling unavailable"


class Options(BaseModel):
    """Options of the energy protocol; every one of them is recorded with the result."""

    model_config = ConfigDict(extra="forbid")
    min_window_s: float = Field(1.0, gt=0)
    warmup_iters: int = Field(3, ge=0)
    power_sample_interval_s: float = Field(0.02, gt=0)


COLUMNS: dict[str, str] = {
    "energy_j_per_batch": "float64",
    "energy_j_per_image": "float64",
    "energy_power_w_mean": "float64",
    "energy_window_s": "float64",
    "energy_iterations": "int64",
    "energy_status": "string",
}


class Meter(Protocol):
    """Measures the energy of a window: start() at its beginning, stop() -> joules at its end."""

    status: str

    def start(self) -> None: ...

    def stop(self) -> float: ...


class CounterMeter:
    """Joules from NVML's total-energy counter (mJ), read at both ends of the window."""

    status = "ok"

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.begin_mj = 0

    def start(self) -> None:
        """Read the counter at the beginning of the window."""
        self.begin_mj = nvml.total_energy_mj(self.handle)

    def stop(self) -> float:
        """Return the joules the counter grew by since start()."""
        return (nvml.total_energy_mj(self.handle) - self.begin_mj) / 1e3


class PowerMeter:
    """Joules from power samples (W) taken by a thread and integrated over the window."""

    status = "ok (integrated power samples)"

    def __init__(self, handle: Any, interval_s: float) -> None:
        self.sampler = Sampler(lambda: nvml.power_w(handle), interval_s)

    def start(self) -> None:
        """Start sampling the power."""
        self.sampler.start()

    def stop(self) -> float:
        """Stop sampling and return the integral of power over time, in joules."""
        self.sampler.stop()
        return trapezoid_j(sorted(self.sampler.samples))


def trapezoid_j(samples: list[tuple[float, float]]) -> float:
    """Return the integral in joules of ``(seconds, watts)`` samples, by the trapezoid rule."""
    return sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in itertools.pairwise(samples))


def choose_meter(handle: Any, opts: Options) -> Meter | None:
    """Return the energy counter's meter, else a power-sampling one, else None (neither is supported)."""
    if nvml.total_energy_mj(handle) is not None:
        return CounterMeter(handle)
    if nvml.power_w(handle) is not None:
        return PowerMeter(handle, opts.power_sample_interval_s)
    return None


def timed_window(step: Callable[[], None], sync: Callable[[], None], meter: Meter,
                 min_window_s: float) -> tuple[float, float, int]:
    """Call ``step`` back to back for at least ``min_window_s`` between synchronised meter readings;
    return (joules, window seconds, calls)."""
    sync()
    meter.start()
    start = time.perf_counter()
    calls = 0
    while calls == 0 or time.perf_counter() - start < min_window_s:
        step()
        calls += 1
    sync()
    joules = meter.stop()
    return joules, time.perf_counter() - start, calls


def na_columns(reason: str) -> dict[str, Any]:
    """Return the columns of a case whose energy cannot be measured: None, and the status with ``reason``."""
    return {column: None for column in COLUMNS} | {"energy_status": f"n/a: {reason}"}


def window_columns(joules: float, window_s: float, calls: int, batch: int, status: str) -> dict[str, Any]:
    """Return the energy columns: joules per batch and per image, mean watts, the window and its status."""
    return {
        "energy_j_per_batch": joules / calls,
        "energy_j_per_image": joules / calls / batch,
        "energy_power_w_mean": joules / window_s,
        "energy_window_s": window_s,
        "energy_iterations": calls,
        "energy_status": status,
    }


def unavailable_reason(case: Case) -> str | None:
    """Return why this case's energy cannot be measured here (CPU case, no NVML), or None."""
    if case.device != "cuda":
        return "CPU case (NVML measures GPUs only)"
    available, reason = nvml.nvml_available()
    return None if available else reason


def measure_on_gpu(step: Callable[[], None], batch: int, options: Options) -> dict[str, Any]:
    """Return the energy columns of ``step`` on the current CUDA device, within an open NVML session."""
    handle = nvml.handle_for_uuid(nvml.cuda_device_uuid(torch.cuda.current_device()))
    meter = choose_meter(handle, options)
    if meter is None:
        return na_columns(NO_METER)
    run(step, options.warmup_iters)
    joules, window_s, calls = timed_window(step, torch.cuda.synchronize, meter, options.min_window_s)
    return window_columns(joules, window_s, calls, batch, meter.status)


def measure(model: torch.nn.Module, inputs: torch.Tensor, case: Case, options: Options) -> dict[str, Any]:
    """Return joules per batch and per image, mean power (W), the window (s, passes) and the status;
    n/a columns, never an exception, where NVML cannot measure this case (an NVML error included, so
    the case's other metrics are kept)."""
    reason = unavailable_reason(case)
    if reason is not None:
        return na_columns(reason)
    with nvml.nvml_session() as nv, step_fn(model, inputs, case.mode) as step:
        try:
            return measure_on_gpu(step, case.batch, options)
        except nv.NVMLError as exc:
            return na_columns(f"NVML error ({type(exc).__name__})")
