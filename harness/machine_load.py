"""What else the machine was doing while a timing was taken: CPU time other processes took, time the hypervisor
stole, the load average, the CPU's clock and governor (Linux; None where not readable). A window in which others
took more than a share of the cores is *contended*: its timing says more about the neighbours than the model (as
pyperf's system check warns before a run).

Read from ``/proc/stat`` (every CPU's busy and steal ticks), ``os.times`` (this process's CPU time, all its
threads), ``os.getloadavg`` and ``/sys/devices/system/cpu/cpu0/cpufreq``. No torch.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

#: The ticks per second of ``/proc/stat``.
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
#: The share of the machine's cores other processes may take during a timing before it is contended (the latency
#: protocol's default ``contended_threshold``, and what ``harness run`` warns at).
CONTENDED_SHARE = 0.1
#: The shortest window whose load is judged, seconds: ``/proc/stat`` counts in ticks (10 ms at 100 Hz), so in a
#: shorter window one stray tick of another process reads as a large share of the cores (a 20 ms window read "8.47
#: of 2 cores"). 20 ticks: one tick is then 0.05 of a core.
MIN_WINDOW_S = 20 / CLOCK_TICKS
#: Where the first CPU's clock (kHz) and governor are read.
CPUFREQ = Path("/sys/devices/system/cpu/cpu0/cpufreq")


@dataclass(frozen=True)
class CpuSample:
    """The CPU time spent so far (seconds): by every CPU busy (``busy_s``, steal not included), stolen by the
    hypervisor (``steal_s``) and by this process (``own_s``), at ``wall_s`` (a monotonic clock)."""

    wall_s: float
    busy_s: float
    steal_s: float
    own_s: float


@dataclass(frozen=True)
class WindowLoad:
    """The machine during a window: cores' worth of CPU other processes took (``others_cores``) and the hypervisor
    stole (``steal_cores``) on average, of ``cores``; the load average, CPU clock (MHz) and governor at its end."""

    others_cores: float
    steal_cores: float
    cores: int
    loadavg_1m: float | None
    cpu_mhz: float | None
    governor: str | None

    def contended(self, threshold: float) -> str | None:
        """Return why the window is contended — others and steal took more than ``threshold`` of the cores — or
        None when it is not."""
        taken = self.others_cores + self.steal_cores
        if taken <= threshold * self.cores:
            return None
        steal = f" (steal {self.steal_cores:.2f})" if self.steal_cores >= 0.01 else ""
        return (f"contended: other processes took {taken:.2f} of {self.cores} cores{steal} "
                f"> {threshold:g} of them")


def cpu_sample(pids: Iterable[int | None] = ()) -> CpuSample | None:
    """Return the CPU time spent so far, counting the processes ``pids`` (this one's children, say) as this
    process's own; None where ``/proc/stat`` cannot be read (not Linux)."""
    try:
        first = Path("/proc/stat").read_text(encoding="ascii").splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if first[0] != "cpu" or len(first) < 9:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in first[1:9])
    own = os.times()
    children = sum(_process_cpu_s(pid) for pid in pids if pid is not None)
    return CpuSample(time.monotonic(), (user + nice + system + irq + softirq) / CLOCK_TICKS, steal / CLOCK_TICKS,
                     own.user + own.system + children)


def _process_cpu_s(pid: int) -> float:
    """Return the user + system CPU seconds of process ``pid`` (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime: fields 14 and 15 of stat(5)


def window_load(start: CpuSample | None, end: CpuSample | None) -> WindowLoad | None:
    """Return the machine's load between two samples (None when either is missing or less than
    :data:`MIN_WINDOW_S` passed: too short a window to tell)."""
    if start is None or end is None or end.wall_s - start.wall_s < MIN_WINDOW_S:
        return None
    wall = end.wall_s - start.wall_s
    others = max(0.0, (end.busy_s - start.busy_s) - (end.own_s - start.own_s)) / wall
    return WindowLoad(others, max(0.0, end.steal_s - start.steal_s) / wall, os.cpu_count() or 1, _loadavg(),
                      _cpu_mhz(), _read(CPUFREQ / "scaling_governor"))


def busy_now(seconds: float = 0.5) -> WindowLoad | None:
    """Return the machine's load over the next ``seconds`` while this process sleeps (None off Linux)."""
    start = cpu_sample()
    time.sleep(seconds)
    return window_load(start, cpu_sample())


def _loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


def _cpu_mhz() -> float | None:
    khz = _read(CPUFREQ / "scaling_cur_freq")
    return int(khz) / 1000 if khz and khz.isdigit() else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip() or None
    except (OSError, UnicodeDecodeError):
        return None
