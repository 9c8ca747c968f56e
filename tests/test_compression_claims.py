"""The compression notes' claims, measured by the harness on this machine's CPU (slow tier; run with -s for the tables).

(a) Unstructured pruning is unfriendly to hardware: at 50 % (every layer) it halves the MACs whose weight is
    nonzero, while the dense kernels run the same MACs, so CPU latency does not follow (no speed-up near 2×).
(b) Channel pruning (structured) at ratio r physically shrinks the network: MACs and latency both fall.
(c) Low-rank factorisation pays on a plain network of k×k convolutions (VGG) and far less on one made of 1×1 and
    depth-wise convolutions (MobileNetV2): less latency saved per MAC removed.
(d) Quantization-aware training (Jacob et al. 2018) keeps more top-1 than post-training int8 on MobileNetV2, the
    paper's motivating case, over 3 seeds after the same short training.

Each test runs a small suite through the harness (latency by its protocol, accuracy after its seeded training) and
asserts on the measured records; a latency claim compares two cases of one run as a ratio, with the noise taken
within a stated margin, never an absolute time.
"""

from __future__ import annotations

import textwrap

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


def run_rows(tmp_path, text: str) -> pd.DataFrame:
    """Run the suite ``text`` into ``tmp_path``, print its compression table and return its compression rows."""
    suite = parse_suite(textwrap.dedent(text), "claim.yaml", "claim")
    summary = run_suite(suite, tmp_path / "results", show_progress=False)
    assert set(summary.counts) == {"ok"}, summary.counts
    records = latest_per_case(ResultStore(tmp_path / "results").read())
    view = compression_table(records)
    print("\n" + " | ".join(view.headers))
    for row in view.rows:
        print(" | ".join(cell.text for cell in row))
    return compression_rows(records).set_index(["model", "compress", "level"])


def test_a_unstructured_pruning_halves_nonzero_macs_not_latency(tmp_path):
    rows = run_rows(tmp_path, f"""
        defaults: {{device: cpu, batch: 1, resolution: 224, model_kwargs: {{num_classes: 10}}, threads: 2}}
        matrix:
          model: [resnet18]
          compress: [none, {{magnitude_prune: {{sparsity: 0.5, scope: layer}}}}]
        metrics: {{complexity: {{}}, compression: {{}}, {LATENCY}}}
        """)
    dense, pruned = rows.loc[("resnet18", "none", "")], rows.loc[("resnet18", "magnitude_prune",
                                                                   "scope=layer, sparsity=0.5")]
    assert pruned["macs"] == dense["macs"] and dense["macs_nonzero"] == dense["macs"]
    assert pruned["macs_nonzero"] / dense["macs"] == pytest.approx(0.5, abs=0.01)
    print(f"(a) nonzero MACs × {pruned['macs_nonzero'] / dense['macs']:.3f}; latency speed-up "
          f"{pruned['speedup']:.3f}")
    # dense kernels run every MAC: nowhere near the 2× that halving the work would give (the bound leaves room for a
    # shared machine's drift between two cases; measured here: 0.95)
    assert pruned["speedup"] < 1.25


def test_b_channel_pruning_cuts_macs_and_latency(tmp_path):
    rows = run_rows(tmp_path, f"""
        defaults: {{device: cpu, batch: 1, resolution: 224, model_kwargs: {{num_classes: 10}}, threads: 2}}
        matrix:
          model: [resnet18]
          compress: [none, {{channel_prune: {{ratio: 0.5}}}}]
        metrics: {{complexity: {{}}, compression: {{}}, {LATENCY}}}
        """)
    dense, pruned = rows.loc[("resnet18", "none", "")], rows.loc[("resnet18", "channel_prune", "ratio=0.5")]
    macs_ratio = pruned["macs"] / dense["macs"]
    print(f"(b) MACs × {macs_ratio:.3f}, params × {pruned['param_ratio']:.3f}, speed-up {pruned['speedup']:.2f}")
    assert macs_ratio < 0.4  # half the channels of both sides of most convs: about a quarter of the MACs
    assert pruned["speedup"] > 1.3


def test_c_low_rank_saves_less_latency_per_mac_on_mobilenet_v2_than_on_vgg(tmp_path):
    rows = run_rows(tmp_path, f"""
        defaults: {{device: cpu, batch: 1, resolution: 224, model_kwargs: {{num_classes: 10}}, threads: 2}}
        matrix:
          model: [vgg11_bn_gap, mobilenetv2_100]
          compress: [none, {{low_rank: {{rank_fraction: 0.25}}}}]
        metrics: {{complexity: {{}}, compression: {{}}, {LATENCY}}}
        """)
    saved = {}
    for model in ("vgg11_bn_gap", "mobilenetv2_100"):
        dense, low = rows.loc[(model, "none", "")], rows.loc[(model, "low_rank", "rank_fraction=0.25")]
        macs_removed = dense["macs"] - low["macs"]
        saved[model] = (dense["latency_ms_median"] - low["latency_ms_median"]) / (macs_removed / 1e9)
        print(f"(c) {model}: MACs × {low['macs'] / dense['macs']:.3f}, speed-up {low['speedup']:.2f}, "
              f"latency saved per G MACs removed {saved[model]:.2f} ms")
    # Judged on the speed-ups, not on the per-GMAC figure printed above: MobileNetV2 loses only 0.2 GMACs, so a 2 ms
    # drift between two cases on a shared 2-core machine moves its per-GMAC saving by 10 ms (measured: −0.6 in one
    # run, 12.8 in another, against VGG's 15.9 and 10.7). Its speed-ups were 0.99, 1.15 and 0.98 for 65 % of its
    # MACs removed; VGG's 3.47, 2.32 and 2.87 for 87.5 %.
    assert rows.loc[("vgg11_bn_gap", "low_rank", "rank_fraction=0.25"), "speedup"] > 1.5
    assert rows.loc[("mobilenetv2_100", "low_rank", "rank_fraction=0.25"), "speedup"] < 1.3


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
