"""Accuracy over seeds: a case's seeds summarised (n, mean, std, 95% t-interval, min, max) and each row judged
against its group's baseline row (Δ of the means and a t-test's p-value). Torch-free (numpy, pandas, scipy).

The one place where seeds are aggregated: the report's tables and plots, ``harness export`` and ``harness compare``
all read :func:`seed_groups` and :func:`against_baseline`.

- **Groups.** The latest record of each case is taken (:func:`harness.store_query.latest_per_case`); the ok
  records of one suite that share a ``group_id`` (the case at seed 0: every field but the seed the same) form a
  group, one value per seed.
- **Summary** of each column of :data:`SEEDED_COLUMNS` (accuracy and the training's final loss): n, mean, std
  (n − 1 in the denominator), the 95% confidence interval of the mean from Student's t with n − 1 degrees of
  freedom, min and max. One seed: std and interval are missing (NaN).
- **Baseline.** A suite's ``baseline: {field: value, …}`` names, within each set of groups that differ only in
  those fields (every other case field equal; a field's options, :data:`OPTIONS_OF`, count as the field), the
  group whose fields hold those values. Every other group of the
  set gets Δ = (mean − baseline mean) / baseline mean and a two-sided p-value: the **paired** t-test on the
  per-seed differences (``scipy.stats.ttest_rel``) when both rows ran the same seeds on the same data (the
  default: a seed fixes the initialisation and data order of both rows), else **Welch's** t-test
  (``scipy.stats.ttest_ind(equal_var=False)``). Rows that cannot be judged say why (``reason``): no baseline row
  measured, a single seed on either side, every paired difference zero.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from harness.case import CASE_COLUMNS, KWARGS_FIELDS
from harness.store import is_missing

#: Columns summarised over seeds: accuracy (fractions 0…1) and the training's final loss.
SEEDED_COLUMNS: tuple[str, ...] = (
    "acc_top1", "acc_top5", "acc_ap", "acc_ap50", "acc_ap75", "acc_aps", "acc_apm", "acc_apl", "acc_ar100",
    "acc_train_loss_last", "det_train_loss_last",
)
#: Columns judged against the baseline row in the report (Δ and p); the others are summarised only.
JUDGED_COLUMNS: tuple[str, ...] = ("acc_top1", "acc_top5", "acc_ap", "acc_ap50", "acc_ap75")
#: Case fields whose options travel with them: a baseline naming the field tells rows apart by its options too
#: (``baseline: {compress: none}`` is the dense row of every compression at every level).
OPTIONS_OF: dict[str, str] = {"compress": "compress_kwargs", "norm": "norm_kwargs"}
#: The confidence of the interval of the mean.
CONFIDENCE = 0.95
#: Significance level when the records do not say (a suite's ``alpha``).
ALPHA = 0.05
PAIRED = "paired t-test"
WELCH = "Welch's t-test"


@dataclass(frozen=True)
class SeedSummary:
    """One column of one group over its seeds: n, mean, sample std, 95% t-interval of the mean, min, max."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float
    min: float
    max: float


def summarize_seeds(values: Sequence[float], confidence: float = CONFIDENCE) -> SeedSummary:
    """Return the summary of one value per seed (NaN std and interval for a single seed); ValueError for none."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("no seeds to summarize")
    mean = float(x.mean())
    if x.size < 2:
        return SeedSummary(1, mean, math.nan, math.nan, math.nan, mean, mean)
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, x.size - 1)) * std / math.sqrt(x.size)
    return SeedSummary(int(x.size), mean, std, mean - half, mean + half, float(x.min()), float(x.max()))


@dataclass(frozen=True)
class Judgement:
    """A row against its baseline on one column: Δ of the means (relative), the test and its two-sided p-value;
    ``reason`` says why there is no p-value when ``p_value`` is None."""

    delta_rel: float | None
    test: str
    p_value: float | None
    reason: str = ""

    def significant(self, alpha: float) -> bool:
        """Return True when the p-value is below ``alpha``."""
        return self.p_value is not None and self.p_value < alpha


def judge(baseline: Mapping[int, float], other: Mapping[int, float], same_data: bool = True) -> Judgement:
    """Return ``other`` (seed -> value) judged against ``baseline`` (seed -> value): Δ = (mean − baseline mean) /
    baseline mean, and the paired t-test when both ran the same seeds on the same data, else Welch's."""
    base = np.asarray(list(baseline.values()), dtype=float)
    mine = np.asarray(list(other.values()), dtype=float)
    base_mean = float(base.mean()) if base.size else math.nan
    delta = (float(mine.mean()) - base_mean) / base_mean if base.size and mine.size and base_mean else None
    if base.size < 2 or mine.size < 2:
        side = "this row" if mine.size < 2 else "the baseline row"
        return Judgement(delta, "", None, f"one seed in {side}: no spread to test against")
    if same_data and set(baseline) == set(other):
        seeds = sorted(baseline)
        a = np.asarray([other[s] for s in seeds], dtype=float)
        b = np.asarray([baseline[s] for s in seeds], dtype=float)
        if np.all(a == b):
            return Judgement(delta, PAIRED, None, "the same value at every seed: nothing to test")
        with warnings.catch_warnings():  # constant differences: scipy warns of precision loss and returns p = 0
            warnings.simplefilter("ignore", RuntimeWarning)
            return Judgement(delta, PAIRED, float(stats.ttest_rel(a, b).pvalue))
    if np.ptp(base) == 0 and np.ptp(mine) == 0:
        reason = "every seed gave the same value on both rows" + (": nothing to test" if delta is None or delta == 0
                                                                   else ": no spread to test against")
        return Judgement(delta, WELCH, None, reason)
    return Judgement(delta, WELCH, float(stats.ttest_ind(mine, base, equal_var=False).pvalue))


def _column(frame: pd.DataFrame, name: str, fill: Any) -> pd.Series:
    return frame[name] if name in frame else pd.Series(fill, index=frame.index)


def group_ids(records: pd.DataFrame) -> pd.Series:
    """Return each record's ``group_id`` (the same for every seed of a case); a record written before seeds existed
    has none and is seed 0 of its case, so its ``case_id`` is its group."""
    group = _column(records, "group_id", None).astype(object)
    return group.where(group.notna(), records["case_id"].astype(object))


def seeds_of(records: pd.DataFrame) -> pd.Series:
    """Return each record's seed as int64 (0 for records written before seeds existed)."""
    return _column(records, "seed", 0).fillna(0).astype(np.int64)


def seed_groups(latest: pd.DataFrame) -> pd.DataFrame:
    """Return a row per (suite, group_id) of the ok records in ``latest`` (the latest record per case) that have a
    value in :data:`SEEDED_COLUMNS`: the case fields of its seed-0 identity (``seed`` dropped), ``seeds`` (sorted
    list), ``n_seeds``, ``dataset``, ``baseline_json``, ``alpha`` and ``published_json`` (the suite's), ``labels``
    (one per seed), and per column ``C``: ``C_by_seed`` ({seed: value}) and ``C_n``, ``C_mean``, ``C_std``,
    ``C_ci_low``, ``C_ci_high``, ``C_min``, ``C_max``. Records written before seeds existed
    count as seed 0 of their case."""
    columns = [c for c in SEEDED_COLUMNS if c in latest]
    if latest.empty or not columns:
        return pd.DataFrame()
    ok = latest[(latest["status"] == "ok").to_numpy(dtype=bool, na_value=False)]
    ok = ok[ok[columns].notna().any(axis=1)]
    if ok.empty:
        return pd.DataFrame()
    dataset = _column(ok, "acc_dataset", None).astype(object)
    ok = ok.assign(_group=group_ids(ok), _seed=seeds_of(ok),
                   _dataset=dataset.where(dataset.notna(), _column(ok, "det_dataset", "").astype(object)).astype(str))
    fields = [c for c in CASE_COLUMNS if c in ok and c != "seed"]
    ordered = ok.sort_values("_seed", kind="stable")
    wanted = {*fields, *columns, "_seed", "_dataset", "label", "baseline_json", "alpha", "published_json"}
    arrays = {c: ordered[c].to_numpy() for c in wanted if c in ordered}  # a group's rows by position: no sub-frames
    groups = ordered.groupby(["suite", "_group"], sort=False).indices
    rows = []
    for (suite, group), at in sorted(groups.items(), key=lambda item: item[1][0]):  # in order of first appearance
        seeds = arrays["_seed"][at]
        row: dict[str, Any] = {"suite": suite, "group_id": group, **{c: arrays[c][at[0]] for c in fields},
                               "seeds": seeds.tolist(), "n_seeds": len(at),
                               "dataset": " | ".join(sorted(set(arrays["_dataset"][at]))),
                               "baseline_json": _last_text(arrays, "baseline_json", at),
                               "alpha": _last_number(arrays, "alpha", at, ALPHA),
                               "published_json": _last_text(arrays, "published_json", at),
                               "labels": [str(label) for label in arrays["label"][at]]}
        for column in columns:
            values = {int(s): float(v) for s, v in zip(seeds, arrays[column][at], strict=True) if not is_missing(v)}
            row[f"{column}_by_seed"] = values
            if values:
                summary = summarize_seeds(list(values.values()))
                row |= {f"{column}_{k}": v for k, v in summary.__dict__.items()}
        rows.append(row)
    return pd.DataFrame(rows)


def _present(arrays: dict[str, np.ndarray], column: str, at: np.ndarray) -> list[Any]:
    """Return the values of ``column`` at positions ``at`` that are not missing, in order ([] without the column)."""
    return [v for v in arrays[column][at] if not is_missing(v)] if column in arrays else []


def _last_text(arrays: dict[str, np.ndarray], column: str, at: np.ndarray) -> str:
    values = _present(arrays, column, at)
    return str(values[-1]) if values else ""


def _last_number(arrays: dict[str, np.ndarray], column: str, at: np.ndarray, default: float) -> float:
    values = _present(arrays, column, at)
    return float(values[-1]) if values else default


def baseline_fields(text: str) -> dict[str, Any]:
    """Return a record's ``baseline_json`` as {field: value as stored} (keyword-argument fields as sorted JSON
    text, like the store's columns); {} when empty."""
    fields = json.loads(text) if text else {}
    return {k: json.dumps(v, sort_keys=True, default=str) if k in KWARGS_FIELDS else v for k, v in fields.items()}


def _key_text(value: Any) -> str:
    """Return a case field's value as the text groups are matched by (whole floats as integers: an int64 column
    with a missing value reads as floats)."""
    if is_missing(value):
        return "∅"
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def against_baseline(groups: pd.DataFrame) -> pd.DataFrame:
    """Return ``groups`` (from :func:`seed_groups`) with, per group: ``baseline`` (the fields of its suite's
    baseline as text, '' when the suite names none), ``is_baseline``, ``baseline_group_id`` (None when no
    baseline row was measured), ``baseline_reason`` (why not), and per column ``C`` of :data:`SEEDED_COLUMNS`:
    ``C_judgement`` (a :class:`Judgement` against the baseline row, None for the baseline row itself and
    where there is none)."""
    if groups.empty:
        return groups
    out = groups.copy()
    out["baseline"] = ""
    out["is_baseline"] = False
    out["baseline_group_id"] = None
    out["baseline_reason"] = ""
    columns = [c for c in SEEDED_COLUMNS if f"{c}_by_seed" in out]
    for column in columns:
        out[f"{column}_judgement"] = None
    fields = [c for c in CASE_COLUMNS if c in out and c != "seed"]
    for (_suite, text), members in out.groupby(["suite", "baseline_json"], sort=False):
        wanted = baseline_fields(text)
        if not wanted:
            continue
        named = ", ".join(f"{k}={v}" for k, v in json.loads(text).items())
        out.loc[members.index, "baseline"] = named
        told_apart = set(wanted) | {OPTIONS_OF[f] for f in wanted if f in OPTIONS_OF}
        rest = [c for c in fields if c not in told_apart]
        keys = members[rest].apply(lambda col: col.map(_key_text)).agg("\x1f".join, axis=1) if rest else \
            pd.Series("", index=members.index)
        is_base = pd.Series(True, index=members.index)
        for field, value in wanted.items():
            is_base &= members[field].map(_key_text) == _key_text(value) if field in members else False
        out.loc[members.index, "is_baseline"] = is_base
        base_of = {keys[i]: i for i in members.index[is_base]}
        for i in members.index[~is_base]:
            b = base_of.get(keys[i])
            if b is None:
                out.at[i, "baseline_reason"] = f"no baseline row ({named}) measured for this row's other fields"
                continue
            out.at[i, "baseline_group_id"] = out.at[b, "group_id"]
            same_data = out.at[i, "dataset"] == out.at[b, "dataset"]
            for column in columns:
                base_values, values = out.at[b, f"{column}_by_seed"], out.at[i, f"{column}_by_seed"]
                if isinstance(base_values, dict) and isinstance(values, dict) and base_values and values:
                    out.at[i, f"{column}_judgement"] = judge(base_values, values, same_data)
    return out
