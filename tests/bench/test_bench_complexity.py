"""How fast the complexity counter is, next to fvcore's FlopCountAnalysis (a jit-trace counter).

Run with ``pytest tests/bench/test_bench_complexity.py -m slow --benchmark-enable -s``: pytest-benchmark
times our count (median of ROUNDS after a warm-up round), fvcore is timed the same way in the same
test, and the ratio ours / fvcore is printed and stored in ``benchmark.extra_info``. With benchmarks
disabled (the default addopts) each counter runs once and no ratio is reported.
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
MODELS = {"resnet50": True, "mobilenetv2_100": True, "vit_tiny_patch16_224": False}


def _median_seconds(fn: Callable[[], Any], rounds: int) -> float:
    """Return the median wall time of ``rounds`` calls of ``fn`` after one warm-up call, in seconds."""
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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
    ours_s = benchmark.stats.stats.median
    fvcore_s = _median_seconds(fvcore_count, ROUNDS)
    ratio = ours_s / fvcore_s
    benchmark.extra_info.update(ours_median_s=ours_s, fvcore_median_s=fvcore_s, ratio_ours_over_fvcore=ratio)
    print(f"\n{name}: ours {ours_s * 1e3:.0f} ms, fvcore {fvcore_s * 1e3:.0f} ms, ours/fvcore {ratio:.2f}")
    assert ratio < 2.0  # loose: same run, same machine; the counter should not be slower than a tracer
