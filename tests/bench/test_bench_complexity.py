"""How fast the complexity counter is, next to fvcore's FlopCountAnalysis (a jit-trace counter).

Run by `tox -e bench` (or ``pytest tests/bench/test_bench_complexity.py -m slow --benchmark-enable -s``): after a
warm-up call of each, our count and fvcore's alternate for ROUNDS rounds (each count a cold one: our replay cache
lives for one count), the medians and the ratio ours / fvcore are printed and stored in ``benchmark.extra_info``,
with the issue's target (≤ 0.3) said met or not. With benchmarks disabled (the default addopts) each counter runs
once and no ratio is reported.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import pytest
import timm
import torch

from harness.metrics.complexity import count

pytestmark = pytest.mark.slow

ROUNDS = 5

#: timm model -> whether fvcore sees all its MACs (it skips scaled_dot_product_attention).
MODELS = {"resnet50": True, "mobilenetv2_100": True, "convnext_tiny": True, "vit_small_patch16_224": False}
#: The time of our count ÷ fvcore's aimed at.
TARGET_RATIO = 0.3


def _interleaved_medians(first: Callable[[], Any], second: Callable[[], Any], rounds: int) -> tuple[float, float]:
    """Return the median wall times (s) of ``first`` and ``second`` called alternately ``rounds`` times each,
    after one warm-up call of each."""
    first(), second()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(rounds):
        for fn, kept in ((first, times[0]), (second, times[1])):
            start = time.perf_counter()
            fn()
            kept.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


@pytest.mark.parametrize("name", list(MODELS))
def test_count_speed_vs_fvcore(benchmark: Any, name: str) -> None:
    fvcore_nn = pytest.importorskip("fvcore.nn", reason="fvcore is the reference counter: pip install fvcore")
    model = timm.create_model(name, pretrained=False).eval()
    x = torch.randn(1, 3, 224, 224)

    def fvcore_count() -> Any:
        analysis = fvcore_nn.FlopCountAnalysis(model, x)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        analysis.total()
        return analysis

    benchmark.group = "complexity vs fvcore"
    result = benchmark.pedantic(count, args=(model, x), rounds=ROUNDS, warmup_rounds=1)
    by_operator = fvcore_count().by_operator()
    fvcore_dense = sum(by_operator.get(op, 0) for op in ("conv", "linear", "matmul", "bmm", "einsum"))
    benchmark.extra_info.update(model=name, macs=result.total.macs, fvcore_dense_macs=fvcore_dense,
                                fvcore_total=sum(by_operator.values()))
    if MODELS[name]:
        assert fvcore_dense == result.total.macs
    if benchmark.disabled:
        return
    ours_s, fvcore_s = _interleaved_medians(lambda: count(model, x), fvcore_count, ROUNDS)
    ratio = ours_s / fvcore_s
    benchmark.extra_info.update(ours_median_s=ours_s, fvcore_median_s=fvcore_s, ratio_ours_over_fvcore=ratio,
                                method=result.method)
    met = "met" if ratio <= TARGET_RATIO else "NOT met"
    print(f"\n{name} ({result.method}): ours {ours_s * 1e3:.0f} ms, fvcore {fvcore_s * 1e3:.0f} ms, ours/fvcore "
          f"{ratio:.2f} (target ≤ {TARGET_RATIO}: {met})")
    assert ratio < 2.0  # loose: same run, same machine; the counter should not be slower than a tracer
