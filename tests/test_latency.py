"""The latency protocol: statistics on known samples, warm-up exclusion, blocking, known durations."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
import torch

from harness.case import Case
from harness.metrics import latency
from harness.stats import median_ci, relative_ci_half_width, summarize


def spin(ms: float) -> None:
    """Busy-wait ``ms`` milliseconds of wall time."""
    end = time.perf_counter_ns() + int(ms * 1e6)
    while time.perf_counter_ns() < end:
        pass


class Spinner(torch.nn.Module):
    """A 'model' whose forward busy-waits the next duration (ms) from ``durations``."""

    def __init__(self, durations):
        super().__init__()
        self.durations = iter(durations)

    def forward(self, x):
        spin(next(self.durations))
        return x


def test_summary_of_known_samples():
    stats = summarize([1, 2, 3, 4, 5, 6, 7, 8, 9])
    assert stats["median"] == 5 and stats["mean"] == 5 and stats["iqr"] == 4
    assert stats["p5"] == pytest.approx(1.4) and stats["p95"] == pytest.approx(8.6)
    assert stats["std"] == pytest.approx(np.std(range(1, 10), ddof=1))
    assert stats["n"] == 9


def test_median_ci_brackets_the_median_and_narrows_with_n():
    rng = np.random.default_rng(0)
    small, large = rng.normal(10, 1, 20), rng.normal(10, 1, 2000)
    for s in (small, large):
        lo, hi = median_ci(s)
        assert lo <= np.median(s) <= hi
    assert relative_ci_half_width(large) < relative_ci_half_width(small)


def test_known_duration_median_within_5_percent():
    opts = latency.Options(min_repeats=20, min_time_s=0.2, max_time_s=2.0, block_min_ms=0)
    out = latency.measure(Spinner(itertools.repeat(4.0)), torch.zeros(2), Case("spin", batch=2), opts)
    assert out["latency_ms_median"] == pytest.approx(4.0, rel=0.05)
    assert out["throughput_samples_per_s"] == pytest.approx(2 / 0.004, rel=0.05)
    assert out["latency_repeats"] == len(out["latency_ms_samples"]) >= 20


def test_warm_up_calls_are_not_samples():
    durations = itertools.chain([50.0, 30.0, 15.0], itertools.repeat(2.0))
    opts = latency.Options(warmup_min=3, min_repeats=10, min_time_s=0.05, max_time_s=1.0, block_min_ms=0)
    out = latency.measure(Spinner(durations), torch.zeros(1), Case("spin"), opts)
    # the output check takes the first (50 ms) call; then two slow, settling calls and three stable ones
    assert out["latency_warmup_iters"] >= 5
    assert max(out["latency_ms_samples"]) < 10


def test_sub_millisecond_work_is_timed_in_blocks():
    opts = latency.Options(min_repeats=5, min_time_s=0.05, max_time_s=0.5, block_min_ms=2.0)
    out = latency.measure(Spinner(itertools.repeat(0.1)), torch.zeros(1), Case("spin"), opts)
    assert out["latency_block"] >= 10
    assert out["latency_ms_median"] == pytest.approx(0.1, rel=0.3)


def test_noisy_flag_follows_the_spread():
    opts = latency.Options(min_repeats=20, min_time_s=0.05, max_time_s=1.0, block_min_ms=0, warmup_min=0,
                           contended_threshold=1.0)  # the spread alone: whatever else the machine runs
    steady = latency.measure(Spinner(itertools.repeat(2.0)), torch.zeros(1), Case("spin"), opts)
    jumpy = latency.measure(Spinner(itertools.cycle([1.0, 3.0])), torch.zeros(1), Case("spin"), opts)
    assert not steady["latency_noisy"] and jumpy["latency_noisy"]


def test_too_few_samples_are_noisy_whatever_their_spread():
    """The time cap ends sampling before min_repeats: 3 steady samples say nothing about the noise."""
    opts = latency.Options(min_repeats=50, min_time_s=0.0, max_time_s=0.02, block_min_ms=0, warmup_min=0,
                           contended_threshold=1.0)
    out = latency.measure(Spinner(itertools.repeat(8.0)), torch.zeros(1), Case("spin"), opts)
    assert out["latency_repeats"] < 50 and out["latency_noisy"]
    assert out["latency_noisy_reason"] == (f"{out['latency_repeats']} samples < min_repeats 50 (the time cap ended "
                                           "sampling)")


def test_noisy_reason_names_the_spread():
    opts = latency.Options(min_repeats=2, noisy_threshold=0.1)
    assert latency.noisy_columns(0.25, 10, opts) == {"latency_noisy": True,
                                                     "latency_noisy_reason": "IQR/median 0.25 > 0.1"}
    assert latency.noisy_columns(0.05, 10, opts) == {"latency_noisy": False, "latency_noisy_reason": None}
