"""What else the machine did while a timing was taken (harness/machine_load.py), and what the harness makes of it:
contended timings are noisy, the site marks them, harness run warns when it starts on a busy machine."""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from rich.console import Console

from harness.case import Case
from harness.machine_load import MIN_WINDOW_S, CpuSample, WindowLoad, busy_now, cpu_sample, window_load
from harness.metrics import latency

pytestmark = pytest.mark.skipif(cpu_sample() is None, reason="/proc/stat is Linux's: the load cannot be read here")


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


@contextmanager
def _spinners(count: int, seconds: float = 30.0) -> Iterator[list[int]]:
    """Run ``count`` processes that keep a core busy each; yield their pids."""
    ctx = multiprocessing.get_context("spawn")
    processes = [ctx.Process(target=_spin, args=(seconds,), daemon=True) for _ in range(count)]
    for process in processes:
        process.start()
    time.sleep(1.0)  # they are spinning, not still starting
    try:
        yield [p.pid for p in processes]
    finally:
        for process in processes:
            process.terminate()
            process.join()


def test_the_load_of_a_window_is_the_others_cpu_time_over_its_wall_time():
    start, end = CpuSample(10.0, 100.0, 5.0, 2.0), CpuSample(12.0, 104.0, 5.2, 3.0)
    load = window_load(start, end)
    assert load is not None and math.isclose(load.others_cores, 1.5) and math.isclose(load.steal_cores, 0.1)
    assert window_load(start, start) is None and window_load(None, end) is None


def test_a_window_too_short_for_the_tick_counts_is_not_judged():
    start, end = CpuSample(10.0, 100.0, 5.0, 2.0), CpuSample(10.02, 100.17, 5.0, 2.0)  # 17 ticks of others in 20 ms
    assert window_load(start, end) is None
    assert window_load(start, CpuSample(10.0 + 2 * MIN_WINDOW_S, 100.17, 5.0, 2.0)) is not None


def test_a_window_is_contended_when_others_took_more_than_the_threshold_of_the_cores():
    load = WindowLoad(others_cores=0.3, steal_cores=0.05, cores=2, loadavg_1m=1.0, cpu_mhz=None, governor=None)
    assert load.contended(0.2) is None  # 0.35 of 2 cores: not more than 0.4
    assert load.contended(0.1) == "contended: other processes took 0.35 of 2 cores (steal 0.05) > 0.1 of them"


def test_a_busy_process_is_seen_and_a_process_counted_as_ours_is_not():
    with _spinners(1) as (pid,):
        plain, ours = cpu_sample(), cpu_sample([pid])
        time.sleep(1.0)
        seen, excluded = window_load(plain, cpu_sample()), window_load(ours, cpu_sample([pid]))
    assert seen is not None and excluded is not None
    assert seen.others_cores - excluded.others_cores > 0.5  # the spinner's core, counted as others or as ours
    assert seen.others_cores > 0.5 and busy_now(0.2) is not None


def test_a_timing_taken_while_others_spin_is_contended_and_noisy():
    opts = latency.Options(min_repeats=5, min_time_s=0.5, max_time_s=1.0, warmup_min=1, warmup_max_s=0.2)
    model = torch.nn.Linear(64, 64)
    with _spinners(max(1, math.ceil((os.cpu_count() or 1) / 2))):
        out = latency.measure(model, torch.zeros(8, 64), Case("tiny_cnn"), opts)
    assert out["latency_contended"] is True and out["latency_noisy"] is True
    assert out["latency_noisy_reason"].startswith("contended: other processes took ")
    assert out["latency_others_cores"] > 0.5 and out["latency_loadavg"] is not None
    group = latency.load_columns(WindowLoad(2.0, 0.0, 2, None, None, None), Case("tiny_cnn", world_size=2), opts)
    assert group["latency_contended"] is False  # the other ranks of a group take cores by design


def test_harness_run_warns_when_it_starts_on_a_busy_machine():
    from harness.cli.run import _warn_if_busy

    console = Console(record=True, width=300)
    _warn_if_busy(WindowLoad(1.5, 0.0, 2, 2.3, None, None), console)
    text = console.export_text()
    assert text.startswith("warning: the machine is busy: other processes took 1.50 of 2 cores > 0.1 of them as the "
                           "run started (load average 2.3)")
    quiet = Console(record=True)
    _warn_if_busy(WindowLoad(0.05, 0.0, 2, 0.1, None, None), quiet)
    _warn_if_busy(None, quiet)
    assert quiet.export_text() == ""
