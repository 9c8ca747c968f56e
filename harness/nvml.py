"""A small wrapper over NVIDIA's NVML bindings (nvidia-ml-py, module ``pynvml``), torch-free.

NVML numbers devices in PCI order, CUDA (by default) fastest first, so a CUDA device is found through
its UUID: :func:`cuda_device_uuid` (imports torch) then :func:`handle_for_uuid`. Queries a device or
driver does not support (``NVMLError_NotSupported``, or ``NVMLError_FunctionNotFound`` from an older
driver) return None instead of raising; every other NVML error propagates. ``pynvml`` is imported on
first use, so importing this module costs nothing and works without the bindings.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

Query = Callable[[ModuleType, Any], Any]

#: Why NVML cannot start, by the class name of the error nvmlInit raised; others read "NVML unavailable".
INIT_FAILURES: dict[str, str] = {
    "NVMLError_LibraryNotFound": "no NVIDIA driver",
    "NVMLError_DriverNotLoaded": "NVIDIA driver not loaded",
    "NVMLError_NoPermission": "no permission to use NVML",
}

#: gpu_state field -> its query; clocks in MHz, temperature in °C, power in W (NVML reports mW; on
#: Ampere and newer, except GA100, a 1-second average, instantaneous before), performance state as
#: NVML's number (0 = P0, the highest; 32 = unknown).
STATE_QUERIES: dict[str, Query] = {
    "sm_clock_mhz": lambda nv, h: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM),
    "mem_clock_mhz": lambda nv, h: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM),
    "temperature_c": lambda nv, h: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU),
    "power_w": lambda nv, h: nv.nvmlDeviceGetPowerUsage(h) / 1e3,
    "pstate": lambda nv, h: nv.nvmlDeviceGetPerformanceState(h),
    "clock_limits": lambda nv, h: clock_limit_names(nv.nvmlDeviceGetCurrentClocksEventReasons(h)),
}
#: NVML's clock event reasons ("throttle reasons" before driver 535), by bit: why the clocks are below their
#: maximum while a timing is taken (``nvmlClocksEventReason*``).
CLOCK_EVENT_REASONS: dict[int, str] = {
    0x1: "gpu_idle", 0x2: "applications_clocks", 0x4: "sw_power_cap", 0x8: "hw_slowdown", 0x10: "sync_boost",
    0x20: "sw_thermal", 0x40: "hw_thermal", 0x80: "hw_power_brake", 0x100: "display_clocks",
}


def clock_limit_names(mask: int) -> list[str]:
    """Return the names of the clock event reasons set in NVML's bit ``mask`` (unknown bits as hex)."""
    names = [name for bit, name in CLOCK_EVENT_REASONS.items() if mask & bit]
    rest = mask & ~sum(CLOCK_EVENT_REASONS)
    return names + ([hex(rest)] if rest else [])


def _pynvml() -> ModuleType:
    """Return the ``pynvml`` module (nvidia-ml-py), imported on first use; ImportError without it."""
    return importlib.import_module("pynvml")


def nvml_available() -> tuple[bool, str]:
    """Return ``(True, "")`` when NVML initialises here, else ``(False, reason)``, e.g.
    ``"no NVIDIA driver (NVMLError_LibraryNotFound)"``. Never raises."""
    try:
        nv = _pynvml()
    except ImportError:
        return False, "nvidia-ml-py not installed"
    try:
        nv.nvmlInit()
    except nv.NVMLError as exc:
        name = type(exc).__name__
        return False, f"{INIT_FAILURES.get(name, 'NVML unavailable')} ({name})"
    nv.nvmlShutdown()
    return True, ""


@contextlib.contextmanager
def nvml_session() -> Iterator[ModuleType]:
    """Initialise NVML for the ``with`` block and shut it down after (NVML counts nested sessions);
    yield the ``pynvml`` module. Raises ``pynvml.NVMLError`` where NVML cannot start."""
    nv = _pynvml()
    nv.nvmlInit()
    try:
        yield nv
    finally:
        nv.nvmlShutdown()


def cuda_device_uuid(index: int) -> str:
    """Return the UUID of CUDA device ``index`` as torch reports it (no ``GPU-`` prefix). Imports torch."""
    import torch

    return str(torch.cuda.get_device_properties(index).uuid)


def handle_for_uuid(uuid: str) -> Any:
    """Return the NVML handle of the device with this UUID, with or without NVML's ``GPU-``/``MIG-``
    prefix (a bare UUID is tried as a GPU, then as a MIG instance). Needs an open :func:`nvml_session`."""
    nv = _pynvml()
    bare = uuid.removeprefix("GPU-").removeprefix("MIG-")
    try:
        return nv.nvmlDeviceGetHandleByUUID(f"GPU-{bare}")
    except nv.NVMLError_NotFound:
        return nv.nvmlDeviceGetHandleByUUID(f"MIG-{bare}")


def _query(query: Query, handle: Any) -> Any:
    """Return ``query(pynvml, handle)``, or None where the device or driver does not support it."""
    nv = _pynvml()
    try:
        return query(nv, handle)
    except (nv.NVMLError_NotSupported, nv.NVMLError_FunctionNotFound):
        return None


def gpu_state(handle: Any) -> dict[str, Any]:
    """Return the device's SM and memory clocks (MHz), temperature (°C), power (W), performance state and what
    limits its clocks (:data:`CLOCK_EVENT_REASONS`), None for each field the device does not report."""
    return {name: _query(query, handle) for name, query in STATE_QUERIES.items()}


def power_w(handle: Any) -> float | None:
    """Return the device's power draw in watts (see STATE_QUERIES), None where not supported."""
    return _query(STATE_QUERIES["power_w"], handle)


def total_energy_mj(handle: Any) -> int | None:
    """Return the device's energy counter in millijoules since the driver was loaded (Volta and newer;
    updated every ~20-100 ms), None where not supported (older GPUs, some MIG and vGPU setups)."""
    return _query(lambda nv, h: nv.nvmlDeviceGetTotalEnergyConsumption(h), handle)
