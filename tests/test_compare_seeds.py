"""`harness compare` on cases run at several seeds: accuracy judged by a t-test over each case's seed group."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from harness.case import Case
from harness.compare import CHANGED, IMPROVED, INCONCLUSIVE, REGRESSED, UNCHANGED, cases_with, compare
from tests.records import make_record

NOISY = [0.912, 0.897, 0.905, 0.889, 0.901]  # 0.90 ± 0.01 over seeds 0..4
DROPPED = [0.806, 0.793, 0.811, 0.797, 0.789]  # 0.80 ± 0.01


def _latency(seed: int, median_ms: float = 10.0) -> dict[str, Any]:
    """Latency columns: 30 lognormal samples (1% spread) around ``median_ms``."""
    samples = list(median_ms * np.exp(np.random.default_rng(seed).normal(0.0, 0.01, 30)))
    return {"latency_ms_samples": samples, "latency_ms_median": float(np.median(samples))}


def _group(values: Sequence[float], *, run_id: str, minutes: int = 0, metric: str = "acc_top1",
           seeds: Sequence[int] | None = None, latency_seed: int = 0) -> list[dict[str, Any]]:
    """Return the records of one case run at ``seeds`` (default 0, 1, …): the seed-0 record with latency and
    accuracy, the others accuracy only (as a suite's ``repeats: {seeds: …}`` writes them)."""
    records = []
    for seed, value in zip(seeds if seeds is not None else range(len(values)), values, strict=True):
        case = Case("resnet18", seed=seed)
        extra = _latency(latency_seed) if seed == 0 else {}
        records.append(make_record(case, run_id=run_id, minutes=minutes, group_id=case.group_id,
                                   **{metric: value}, **extra))
    return records


def _sides(base: Sequence[float], cand: Sequence[float], *, metric: str = "acc_top1",
           base_seeds: Sequence[int] | None = None,
           cand_seeds: Sequence[int] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (baseline, candidate) frames of one case over seeds: latency alike, ``metric`` ``base``/``cand``."""
    return (pd.DataFrame(_group(base, run_id="base", metric=metric, seeds=base_seeds)),
            pd.DataFrame(_group(cand, run_id="cand", minutes=1, metric=metric, seeds=cand_seeds, latency_seed=1)))


def _by_seed(result: pd.DataFrame) -> dict[int, dict[str, Any]]:
    """Return the comparison's rows by the seed in their label (0 when none)."""
    out = {}
    for row in result.to_dict(orient="records"):
        seed = int(row["label"].split("seed=")[1]) if "seed=" in row["label"] else 0
        out[seed] = row
    return out


def _metric(row: dict[str, Any], name: str = "acc_top1") -> dict[str, Any]:
    (entry,) = [m for m in row["metrics"] if m["metric"] == name]
    return entry


@pytest.mark.parametrize("metric", ["acc_top1", "acc_ap"])
def test_a_clear_drop_over_five_seeds_is_regressed_by_the_paired_t_test(metric):
    result = compare(*_sides(NOISY, DROPPED, metric=metric))
    rows = _by_seed(result)
    assert sorted(rows) == [0, 1, 2, 3, 4]
    p = float(stats.ttest_rel(DROPPED, NOISY).pvalue)
    assert p < 0.01
    for seed, row in rows.items():  # every seed's row carries the group's judgement
        entry = _metric(row, metric)
        assert entry["verdict"] == REGRESSED
        assert entry["p_value"] == pytest.approx(p, rel=1e-12)
        assert entry["delta_rel"] == pytest.approx(np.mean(DROPPED) / np.mean(NOISY) - 1)
        assert entry["baseline"] == pytest.approx(np.mean(NOISY))
        assert entry["candidate"] == pytest.approx(np.mean(DROPPED))
        assert entry["note"] == f"mean of 5 seeds 0.901 → 0.799, paired t-test p={p:.1e}"
        assert f"{metric} -11.3% (regressed)" in row["reason"]
        if seed:  # no latency: the verdict comes from the metrics
            assert row["verdict"] == REGRESSED and row["reason"].startswith("no latency; values differ")
        else:  # latency unchanged, the accuracy regressed: the row says regressed and why
            assert row["verdict"] == REGRESSED and row["baseline_ms"] is not None
            assert row["reason"].startswith("latency unchanged (")
    found = cases_with(result, [REGRESSED])
    assert len(found) == 5 and 0 in _by_seed(found)  # the seed-0 row too, though its latency is unchanged


def test_a_clear_rise_is_improved():
    result = compare(*_sides(DROPPED, NOISY))
    rows = _by_seed(result)
    assert all(_metric(row)["verdict"] == IMPROVED for row in rows.values())
    assert rows[3]["verdict"] == IMPROVED and cases_with(result, [REGRESSED]).empty


def test_seed_noise_alone_is_unchanged():
    # every seed's value differs, by a seed's noise only: the old exact rule said "changed" at every row
    shuffled = [NOISY[i] for i in (2, 4, 1, 0, 3)]
    jitter = [v + d for v, d in zip(NOISY, (0.004, -0.006, 0.003, -0.002, 0.002), strict=True)]
    for candidate in (shuffled, jitter):
        result = compare(*_sides(NOISY, candidate))
        p = float(stats.ttest_rel(candidate, NOISY).pvalue)
        assert p >= 0.01
        for seed, row in _by_seed(result).items():
            entry = _metric(row)
            assert entry["verdict"] == UNCHANGED and entry["p_value"] == pytest.approx(p, rel=1e-12)
            assert entry["baseline"] != entry["candidate"] or candidate is shuffled
            assert row["verdict"] == UNCHANGED, (seed, row["reason"])
        assert cases_with(result, [REGRESSED, CHANGED]).empty


def test_the_same_value_at_every_seed_is_unchanged():
    result = compare(*_sides(NOISY, NOISY))
    for row in _by_seed(result).values():
        entry = _metric(row)
        assert entry["verdict"] == UNCHANGED and entry["p_value"] is None
        assert "the same value at every seed" in entry["note"] and row["verdict"] == UNCHANGED


def test_different_seeds_use_welch_and_no_spread_is_inconclusive():
    cand = [0.80, 0.79, 0.81]
    result = compare(*_sides(NOISY, cand, cand_seeds=[0, 5, 6]))
    p = float(stats.ttest_ind(cand, NOISY, equal_var=False).pvalue)
    row = _by_seed(result)[0]
    entry = _metric(row)
    assert entry["verdict"] == REGRESSED and entry["p_value"] == pytest.approx(p, rel=1e-12)
    assert entry["note"].startswith("mean of 5 → 3 seeds 0.901 → 0.800, Welch's t-test p=")

    result = compare(*_sides([0.9, 0.9], [0.8, 0.8, 0.8], cand_seeds=[0, 1, 2]))
    entry = _metric(_by_seed(result)[0])
    assert entry["verdict"] == INCONCLUSIVE and entry["p_value"] is None
    assert "every seed gave the same value on both rows" in entry["note"]


def test_a_single_seed_on_one_side_keeps_the_exact_rule():
    base, cand = _sides(NOISY, DROPPED[:1])
    result = compare(base, cand)
    row = _by_seed(result)[0]
    entry = _metric(row)
    assert entry["verdict"] == CHANGED and entry["note"] == "value, no samples" and entry["p_value"] is None
    assert entry["baseline"] == NOISY[0] and entry["candidate"] == DROPPED[0]
    assert row["verdict"] == CHANGED and row["reason"].startswith("latency unchanged (")
    assert cases_with(result, [REGRESSED]).empty


def test_old_stores_without_seed_columns_still_compare():
    # records written before seeds existed: no group_id, no seed column; each case its own group
    def old(run_id: str, values: Sequence[float], minutes: int = 0) -> pd.DataFrame:
        records = [make_record(Case("resnet18", batch=i + 1), run_id=run_id, minutes=minutes, acc_top1=v)
                   for i, v in enumerate(values)]
        return pd.DataFrame(records).drop(columns=["seed", "group_id"], errors="ignore")

    base = old("base", [0.70, 0.80])
    assert "group_id" not in base and "seed" not in base
    rows = compare(base, old("cand", [0.70, 0.79], minutes=1)).set_index("label")
    assert rows.loc["resnet18 b1 224px cpu fp32", "verdict"] == UNCHANGED
    assert rows.loc["resnet18 b1 224px cpu fp32", "reason"] == "no latency; every value is the same"
    assert rows.loc["resnet18 b2 224px cpu fp32", "verdict"] == CHANGED
    assert _metric(rows.loc["resnet18 b2 224px cpu fp32"].to_dict())["note"] == "value, no samples"

    # an old single-seed baseline against a candidate at 5 seeds: the seed-0 case pairs, by the exact rule
    old_base = pd.DataFrame([make_record(Case("resnet18"), run_id="base", acc_top1=NOISY[0], **_latency(0))])
    old_base = old_base.drop(columns=["seed", "group_id"], errors="ignore")
    result = compare(old_base, pd.DataFrame(_group(DROPPED, run_id="cand", minutes=1, latency_seed=1)))
    row = _by_seed(result)[0]
    assert _metric(row)["verdict"] == CHANGED and row["verdict"] == CHANGED
