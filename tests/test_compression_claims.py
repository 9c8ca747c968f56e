"""The compression notes' claims, measured by the harness on this machine's CPU (slow tier; run with -s for the tables).

(a) Unstructured pruning is unfriendly to hardware: at 50 % (every layer) it halves the MACs whose weight is
    nonzero, while the dense kernels run the same MACs, so CPU latency does not follow (no speed-up near 2×).
(b) Channel pruning (structured) at ratio r physically shrinks the network: MACs and latency both fall.
(c) Low-rank factorisation pays on a plain network of k×k convolutions (VGG) and far less on one made of 1×1 and
    depth-wise convolutions (MobileNetV2): a smaller share of its latency saved per share of its MACs removed.
(d) Quantization-aware training (Jacob et al. 2018) keeps more top-1 than post-training int8 on MobileNetV2, the
    paper's motivating case, over 3 seeds after the same short training.

Each test runs a small suite through the harness (latency by its protocol, accuracy after its seeded training) and
asserts on the measured records; a latency claim compares two cases of one run as a ratio, judged on the median of
that ratio over three runs (the cases' order alternating) with a stated margin, never on an absolute time.
"""

from __future__ import annotations

import textwrap
from statistics import median

import pandas as pd
import pytest

from harness.report.compression import compression_rows
from harness.report.tables import compression_table
from harness.runner import run_suite
from harness.store import ResultStore
from harness.store_query import latest_per_case
from harness.suite import parse_suite

pytestmark = pytest.mark.slow

#: The latency protocol of the cost cases: enough samples for a median and its IQR on two cores.
LATENCY = "latency: {warmup_max_s: 1.0, min_time_s: 2.0, max_time_s: 5.0}"
#: Runs of each cost suite: a shared 2-core machine drifts by up to 30 % between two cases of one run (resnet18 b1
#: dense: 34.7 ms in one run, 48.4 ms in the next), so a latency claim is judged on the median over the runs.
ROUNDS = 3


def run_rows(results, text: str) -> pd.DataFrame:
    """Run the suite ``text`` into the store ``results``, print its compression table and return its compression
    rows, indexed by model, compress and level."""
    suite = parse_suite(textwrap.dedent(text), "claim.yaml", "claim")
    summary = run_suite(suite, results, show_progress=False)
    assert set(summary.counts) == {"ok"}, summary.counts
    records = latest_per_case(ResultStore(results).read())
    view = compression_table(records)
    print("\n" + " | ".join(view.headers))
    for row in view.rows:
        print(" | ".join(cell.text for cell in row))
    return compression_rows(records).set_index(["model", "compress", "level"])


def cost_rounds(tmp_path, models: list[str], compressed: str) -> list[pd.DataFrame]:
    """Measure each of ``models`` dense and compressed by ``compressed`` (a suite's compress value) at batch 1 on the
    CPU, ``ROUNDS`` times, the compressed case first in every other run so that a drift within a run falls on each
    side in turn; return each run's compression rows (see ``run_rows``)."""
    rounds = []
    for i in range(ROUNDS):
        order = ["none", compressed] if i % 2 == 0 else [compressed, "none"]
        rounds.append(run_rows(tmp_path / f"run{i}", f"""
            defaults: {{device: cpu, batch: 1, resolution: 224, model_kwargs: {{num_classes: 10}}, threads: 2}}
            matrix:
              model: [{", ".join(models)}]
              compress: [{", ".join(order)}]
            metrics: {{complexity: {{}}, compression: {{}}, {LATENCY}}}
            """))
    return rounds


def test_a_unstructured_pruning_halves_nonzero_macs_not_latency(tmp_path):
    rounds = cost_rounds(tmp_path, ["resnet18"], "{magnitude_prune: {sparsity: 0.5, scope: layer}}")
    speedups = []
    for rows in rounds:
        dense, pruned = rows.loc[("resnet18", "none", "")], rows.loc[("resnet18", "magnitude_prune",
                                                                       "scope=layer, sparsity=0.5")]
        assert pruned["macs"] == dense["macs"] and dense["macs_nonzero"] == dense["macs"]
        assert pruned["macs_nonzero"] / dense["macs"] == pytest.approx(0.5, abs=0.01)
        speedups.append(pruned["speedup"])
    print(f"(a) nonzero MACs × 0.5; latency speed-ups {', '.join(f'{s:.3f}' for s in speedups)}")
    # dense kernels run every MAC: nowhere near the 2× that halving the work would give (single runs measured here:
    # 0.95, 1.27, 0.85, 0.98 — the 1.27 a drift of the machine between the two cases)
    assert median(speedups) < 1.3


def test_b_channel_pruning_cuts_macs_and_latency(tmp_path):
    rounds = cost_rounds(tmp_path, ["resnet18"], "{channel_prune: {ratio: 0.5}}")
    speedups = []
    for rows in rounds:
        dense, pruned = rows.loc[("resnet18", "none", "")], rows.loc[("resnet18", "channel_prune", "ratio=0.5")]
        macs_ratio = pruned["macs"] / dense["macs"]
        assert macs_ratio < 0.4  # half the channels of both sides of most convs: about a quarter of the MACs
        speedups.append(pruned["speedup"])
        print(f"(b) MACs × {macs_ratio:.3f}, params × {pruned['param_ratio']:.3f}, speed-up {pruned['speedup']:.2f}")
    assert median(speedups) > 1.3


def test_c_low_rank_saves_less_latency_per_mac_on_mobilenet_v2_than_on_vgg(tmp_path):
    rounds = cost_rounds(tmp_path, ["vgg11_bn_gap", "mobilenetv2_100"], "{low_rank: {rank_fraction: 0.25}}")
    yield_per_mac: dict[str, list[float]] = {"vgg11_bn_gap": [], "mobilenetv2_100": []}
    for rows in rounds:
        for model, yields in yield_per_mac.items():
            dense, low = rows.loc[(model, "none", "")], rows.loc[(model, "low_rank", "rank_fraction=0.25")]
            macs_removed = 1 - low["macs"] / dense["macs"]
            yields.append((1 - low["latency_ms_median"] / dense["latency_ms_median"]) / macs_removed)
            print(f"(c) {model}: MACs × {low['macs'] / dense['macs']:.3f}, speed-up {low['speedup']:.2f}, "
                  f"share of latency saved per share of MACs removed {yields[-1]:.2f}")
    # Judged as shares of each network's own latency and MACs, not per GMAC: MobileNetV2 loses only 0.2 GMACs, so a
    # per-GMAC figure swings with a 2 ms drift between two cases. Single runs measured here: VGG 0.81, 0.65, 0.74,
    # 0.75 (MACs × 0.125); MobileNetV2 −0.02, 0.20, −0.03, 0.39 (MACs × 0.35; speed-ups 0.98 to 1.34).
    vgg, mobilenet = median(yield_per_mac["vgg11_bn_gap"]), median(yield_per_mac["mobilenetv2_100"])
    assert vgg > 0.5
    assert mobilenet < 0.7 * vgg


def test_d_quantization_aware_training_keeps_more_top1_than_post_training_int8(tmp_path):
    suite_text = """
        defaults: {device: cpu, batch: 8, resolution: 32, model_kwargs: {num_classes: 10}}
        matrix:
          model: [mobilenetv2_100]
        include:
          - {model: mobilenetv2_100, quant: int8}
          - {model: mobilenetv2_100, compress: qat_int8}
        repeats: {seeds: [0, 1, 2]}
        baseline: {quant: none, compress: none}
        metrics:
          accuracy: {dataset: digits, split: test, limit: 359, train_images: 2876}
        """
    suite = parse_suite(textwrap.dedent(suite_text), "claim.yaml", "claim")
    summary = run_suite(suite, tmp_path / "results", show_progress=False)
    assert summary.counts == {"ok": 9}, summary.counts
    records = latest_per_case(ResultStore(tmp_path / "results").read())
    top1 = records.groupby(["quant", "compress"])["acc_top1"].agg(list)
    fp32, ptq, qat = top1[("none", "none")], top1[("int8", "none")], top1[("none", "qat_int8")]
    mean = {name: sum(v) / len(v) for name, v in (("fp32", fp32), ("ptq", ptq), ("qat", qat))}
    print(f"(d) MobileNetV2 top-1 over 3 seeds: fp32 {fp32}, post-training int8 {ptq}, QAT int8 {qat}; means {mean}")
    assert mean["qat"] > mean["ptq"]
