"""Fidelity of the latency protocol: the harness median vs torch.utils.benchmark's adaptive_autorange median.

Run by `tox -e bench`. For each model, the two timers alternate (harness, torch, harness, torch, …) on
the same model and input in one process, so drift of the machine affects both alike; the medians of
their per-round medians are compared as a ratio (within 5%), and both are printed.
"""

from __future__ import annotations

import statistics

import pytest
import torch
import torch.utils.benchmark as tub

from harness.case import Case
from harness.metrics import latency
from harness.zoo.build import build_inputs, build_model

pytestmark = pytest.mark.slow

ROUNDS = 3


@pytest.mark.parametrize("model_name", ["resnet18", "mobilenetv2_100"])
def test_harness_median_agrees_with_torch_utils_benchmark(benchmark, model_name):
    case = Case(model_name, batch=1)
    model, x = build_model(case), build_inputs(case)
    options = latency.Options(min_time_s=2.0, max_time_s=6.0)
    ours, theirs = [], []

    def interleaved() -> None:
        for _ in range(ROUNDS):
            ours.append(latency.measure(model, x, case, options)["latency_ms_median"])
            timer = tub.Timer("with torch.inference_mode(): model(x)", globals={"model": model, "x": x, "torch": torch},
                              num_threads=torch.get_num_threads())  # its default is one thread
            theirs.append(timer.adaptive_autorange(threshold=0.02, min_run_time=2.0).median * 1e3)

    benchmark.pedantic(interleaved, rounds=1, iterations=1)
    ours_ms, theirs_ms = statistics.median(ours), statistics.median(theirs)
    ratio = ours_ms / theirs_ms
    benchmark.extra_info.update(harness_ms=ours_ms, torch_utils_benchmark_ms=theirs_ms, ratio=ratio)
    print(f"\n{model_name} b1 cpu: harness {ours_ms:.3f} ms (rounds {[round(v, 3) for v in ours]}), "
          f"torch.utils.benchmark {theirs_ms:.3f} ms (rounds {[round(v, 3) for v in theirs]}), ratio {ratio:.3f}")
    assert ratio == pytest.approx(1.0, abs=0.05)
