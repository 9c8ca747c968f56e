"""Claims: a suite's statements "this case vs that one, the ratio of a metric lies within bounds", paired with the
suite's cases when it is read and judged from the stored records when the report is drawn.

In a suite file::

    claims:
      - claim: Res2Net-50 costs ResNet-50's multiply-adds (within 5%) yet runs slower
        source: our notes; Gao et al. 2019 (Res2Net)
        candidate: {model: res2net50_26w_4s}   # the cases the claim is about (a list = any of)
        baseline: {model: resnet50}            # a candidate with these fields replaced: its baseline case
        ratios:                                # candidate / baseline, per metric column
          macs: {min: 0.95, max: 1.05}
          latency_ms_median: {min: 1.0}
          params: {}                           # no bound: the ratio is reported, not judged

Every candidate case is paired with its baseline case (the candidate with the ``baseline`` fields replaced, so a
claim holds per device, batch, ...: the other fields stay the candidate's); the suite must contain that case.
Each candidate's record carries its pairs in ``claims_json`` (:func:`claims_json`): the claim's text, source,
bounds and the baseline's ``case_id``. :func:`claim_rows` judges them from a suite's latest records, a row per
(claim, pair, metric), with one of the :data:`VERDICTS`. A metric with a confidence interval in the store
(:data:`INTERVALS`) is judged on the interval of the ratio too: when that interval crosses a bound, the verdict
is ``within noise`` whichever side the point ratio falls. Torch-free.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from harness.case import Case, matches
from harness.store import is_missing

#: What a claim's row can say: the ratio lies within its bounds, lies outside them, its interval crosses a bound,
#: it has no bounds, or one of the two records has no value.
VERDICTS = ("holds", "fails", "within noise", "reported", "not measured")
#: metric column -> its confidence interval's (low, high) columns in a record.
INTERVALS: dict[str, tuple[str, str]] = {"latency_ms_median": ("latency_ms_ci_low", "latency_ms_ci_high")}


@dataclasses.dataclass(frozen=True)
class ClaimProblem:
    """Something wrong with claim ``index``: ``key`` names where in it (``candidate``, ``baseline``, ``ratios``)."""

    index: int
    key: str
    message: str


def pair_claims(claims: Sequence[dict[str, Any]], cases: Iterable[Case]
                ) -> tuple[dict[str, list[dict[str, Any]]], list[ClaimProblem]]:
    """Pair each claim's candidate cases with their baseline cases.

    ``claims`` are a suite's claims as plain data (``claim``, ``source``, ``candidate``: a filter, ``baseline``:
    the fields to replace, ``ratios``: metric -> ``{min, max}``). Returns ``{candidate case_id: [entry, ...]}``,
    each entry the claim's text, source, index and ``ratios`` with the baseline's ``case_id`` and label, and
    the problems: a claim matching no case, a baseline case missing from the suite, a candidate that is its
    own baseline.
    """
    cases = tuple(cases)
    by_id = {case.case_id: case for case in cases}
    pairs: dict[str, list[dict[str, Any]]] = {}
    problems: list[ClaimProblem] = []
    for index, claim in enumerate(claims):
        candidates = [case for case in cases if matches(case.to_dict(), claim["candidate"])]
        if not candidates:
            problems.append(ClaimProblem(index, "candidate", "matches none of the suite's cases"))
        for case in candidates:
            baseline = Case.from_dict({**case.to_dict(), **claim["baseline"]})
            if baseline.case_id == case.case_id:
                problems.append(ClaimProblem(index, "baseline", f"leaves {case.label} unchanged: a claim compares two "
                                                                "different cases"))
            elif baseline.case_id not in by_id:
                problems.append(ClaimProblem(index, "baseline", f"the baseline of {case.label} is {baseline.label}, "
                                                                "which is not one of the suite's cases: add it"))
            else:
                pairs.setdefault(case.case_id, []).append({
                    "index": index, "claim": claim["claim"], "source": claim.get("source", ""),
                    "ratios": claim["ratios"], "baseline_case_id": baseline.case_id,
                    "baseline_label": baseline.label})
    return pairs, problems


def claims_json(entries: list[dict[str, Any]]) -> str | None:
    """Return a candidate's claim entries as the text of its record's ``claims_json`` (None when it has none)."""
    return json.dumps(entries) if entries else None  # keys in the suite's order: the report's metric order


def _value(record: dict[str, Any] | None, column: str) -> float | None:
    """Return an ok record's number in ``column``; None when the record is missing, not ok, or has none."""
    value = None if record is None or record.get("status") != "ok" else record.get(column)
    if value is None or isinstance(value, (bool, str)) or is_missing(value):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def ratio_interval(candidate: dict[str, Any], baseline: dict[str, Any], column: str) -> tuple[float, float] | None:
    """Return the interval of candidate / baseline for ``column`` from both records' confidence intervals
    (:data:`INTERVALS`; lowest / highest, highest / lowest), or None when the column has none stored."""
    if column not in INTERVALS:
        return None
    low_col, high_col = INTERVALS[column]
    c_low, c_high = _value(candidate, low_col), _value(candidate, high_col)
    b_low, b_high = _value(baseline, low_col), _value(baseline, high_col)
    if None in (c_low, c_high, b_low, b_high) or not b_low or not b_high:
        return None
    return c_low / b_high, c_high / b_low  # type: ignore[operator]


def verdict(ratio: float | None, bounds: dict[str, Any], interval: tuple[float, float] | None = None) -> str:
    """Return the verdict (one of :data:`VERDICTS`) on ``ratio`` against ``bounds`` (``min`` and/or ``max``,
    inclusive); ``interval``, when given, turns a verdict into ``within noise`` when it crosses a bound."""
    if ratio is None or not math.isfinite(ratio):
        return "not measured"
    low, high = bounds.get("min"), bounds.get("max")
    if low is None and high is None:
        return "reported"
    if interval is not None:
        crossed = [b for b in (low, high) if b is not None and interval[0] < b < interval[1]]
        if crossed:
            return "within noise"
    inside = (low is None or ratio >= low) and (high is None or ratio <= high)
    return "holds" if inside else "fails"


def bounds_text(bounds: dict[str, Any]) -> str:
    """Return a ratio's expected range as shown: ``0.95–1.05``, ``≥ 1``, ``≤ 1.1`` or ``reported``."""
    low, high = bounds.get("min"), bounds.get("max")
    if low is not None and high is not None:
        return f"{low:g}–{high:g}"
    if low is not None:
        return f"≥ {low:g}"
    return f"≤ {high:g}" if high is not None else "reported"


#: Columns of :func:`claim_rows`.
ROW_COLUMNS = ("index", "claim", "source", "candidate", "baseline", "metric", "candidate_value", "baseline_value",
               "ratio", "ratio_low", "ratio_high", "expected", "verdict", "why")


def claim_rows(records: pd.DataFrame) -> pd.DataFrame:
    """Return the claims of one suite's latest records (a record per case, as the report's views get them) judged:
    a row per (claim, candidate, metric), in claim order, with the two values, their ratio (and its interval where
    :data:`INTERVALS` has one), the expected range, the verdict and, when not measured, why."""
    if "claims_json" not in records or records.empty:
        return pd.DataFrame(columns=list(ROW_COLUMNS))
    by_id = {r["case_id"]: r for r in records.to_dict("records")}
    rows = []
    for candidate in by_id.values():
        raw = candidate.get("claims_json")
        if not isinstance(raw, str) or not raw:
            continue
        for entry in json.loads(raw):
            baseline = by_id.get(entry["baseline_case_id"])
            for metric, bounds in entry["ratios"].items():
                c_value, b_value = _value(candidate, metric), _value(baseline, metric)
                ratio = c_value / b_value if c_value is not None and b_value else None
                interval = ratio_interval(candidate, baseline, metric) if baseline is not None else None
                rows.append({
                    "index": entry["index"], "claim": entry["claim"], "source": entry["source"],
                    "candidate": candidate["label"], "baseline": entry["baseline_label"], "metric": metric,
                    "candidate_value": c_value, "baseline_value": b_value, "ratio": ratio,
                    "ratio_low": interval[0] if interval else None, "ratio_high": interval[1] if interval else None,
                    "expected": bounds_text(bounds), "verdict": verdict(ratio, bounds, interval),
                    "why": _why_not_measured(candidate, baseline, metric) if ratio is None else ""})
    if not rows:
        return pd.DataFrame(columns=list(ROW_COLUMNS))
    return pd.DataFrame(rows, columns=list(ROW_COLUMNS)).sort_values(["index", "candidate"], kind="stable")


def _why_not_measured(candidate: dict[str, Any], baseline: dict[str, Any] | None, metric: str) -> str:
    """Return why a claim's ratio could not be computed, naming the case at fault."""
    if baseline is None:
        return "the baseline case has no record in this suite"
    for role, record in (("candidate", candidate), ("baseline", baseline)):
        if record.get("status") != "ok":
            reason = record.get("error")
            reason = "" if reason is None or is_missing(reason) else f": {str(reason).splitlines()[0][:200]}"
            return f"the {role} case is {record.get('status')}{reason}"
        if _value(record, metric) is None:
            return f"the {role} case has no {metric}"
    return f"the baseline's {metric} is 0"


def summary_lines(rows: pd.DataFrame) -> list[str]:
    """Return :func:`claim_rows`' rows as console lines, one per claim and candidate case: each metric's ratio
    with its verdict and expected range (``macs ×1.041 holds (0.95–1.05)``), or why it was not measured."""
    lines = []
    for (index, candidate), group in rows.groupby(["index", "candidate"], sort=False):
        head = f"claim {int(index) + 1} [{candidate} vs {group['baseline'].iloc[0]}]:"
        if (group["verdict"] == "not measured").all():
            lines.append(f"{head} not measured ({group['why'].iloc[0]})")
            continue
        parts = []
        for row in group.to_dict("records"):
            if row["verdict"] == "not measured":
                parts.append(f"{row['metric']} not measured")
            elif row["verdict"] == "reported":
                parts.append(f"{row['metric']} ×{row['ratio']:.3f}")
            else:
                parts.append(f"{row['metric']} ×{row['ratio']:.3f} {row['verdict']} ({row['expected']})")
        lines.append(f"{head} {', '.join(parts)}")
    return lines
