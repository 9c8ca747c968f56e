"""A wide suite for the site's layout tests: many metric columns, options that wrap, enough rows to scroll."""

from __future__ import annotations

from harness.case import Case
from harness.store import ResultStore
from tests.records import RICH_COLUMNS, make_record

WIDE_COLUMNS = RICH_COLUMNS | {"mac_bytes": "int64", "model_bytes": "int64", "activations": "int64",
                               "complexity_coverage": "float64", "latency_repeats": "int64", "acc_top5": "float64",
                               "compress_sparsity": "float64"}
#: The wide suite's compressions: method, options.
WIDE_COMPRESSIONS = (("none", ()), ("magnitude_prune", (("sparsity", 0.5),)), ("channel_prune", (("ratio", 0.3),)),
                     ("low_rank", (("rank_fraction", 0.25), ("min_channels", 8))))


def add_wide_suite(store: ResultStore, run_id: str = "w1") -> list[Case]:
    """Append to ``store`` one run of suite ``wide``: two models × four compressions × three seeds, each with every
    cost, latency and accuracy column the layout must place (the same device, dtype, batch and input in every row);
    return its cases."""
    cases = [Case(model, compress=method, compress_kwargs=options, seed=seed)
             for model in ("resnet18", "mobilenetv2_100") for method, options in WIDE_COMPRESSIONS for seed in range(3)]
    for i, case in enumerate(cases):
        store.append(make_record(
            case, run_id=run_id, suite="wide", minutes=120 + i, params=11_700_000 - 1000 * i, macs=1_800_000_000 + i,
            flops=3_600_000_000 + i, mac_bytes=160_000_000 + i, model_bytes=46_000_000 - i, activations=2_300_000 + i,
            complexity_coverage=1.0, latency_ms_median=10.0 + i, latency_ms_iqr=0.5, latency_ms_samples=[10.0 + i],
            throughput_samples_per_s=100.0 - i, latency_repeats=50, acc_top1=0.6 + i / 100, acc_top5=0.9,
            compress_sparsity=0.5, latency_timer="perf_counter", latency_threads=2), WIDE_COLUMNS)
    return cases
