"""Comparing a baseline and a candidate set of records: which cases got slower, faster, or stayed the same.

Torch-free (numpy, pandas, scipy). Used by ``harness compare BASELINE CANDIDATE`` and the regressions page.

Pairing. Each side is reduced to its latest ``ok`` record per (suite, case_id); a case with no ok record
on one side is listed as ``missing in baseline`` / ``missing in candidate`` (with the latest failure, if
any). Two records are ``not comparable`` when their latency protocol (the ``latency`` entry of
``protocol_json``) differs, or when an environment key that changes timings differs (``env_cpu``,
``env_gpu``, ``env_torch`` by default: ``ENV_KEYS``); the reason names what differs.

The statistical rule for latency (milliseconds per batch, lower is better), from the raw samples
(``latency_ms_samples``) of each side:

- ``regressed``: the Mann-Whitney U test (two-sided) is significant at ``alpha`` (default 0.01) AND the
  median got slower by at least ``min_effect`` (default 0.05 = 5%), relative to the baseline median;
- ``improved``: significant AND faster by at least ``min_effect``;
- ``unchanged``: the 95% confidence interval of the relative change of medians lies within
  ±``min_effect`` — whether or not the test is significant: a significant change that is surely smaller
  than the minimum effect (a precise +2%) is practically no change;
- ``inconclusive``: anything else: fewer than ``MIN_SAMPLES`` (5) samples on a side, no raw samples, or an
  interval reaching beyond ±``min_effect`` (not significant but too noisy to rule out a real change, or
  significant but too small or too uncertain to call);
- ``too noisy``: either record's timing is flagged ``latency_noisy`` (its IQR / median beyond the protocol's
  threshold, or fewer samples than its ``min_repeats``: the machine was busy or the time cap cut sampling short).
  Such samples say how the machine behaved, not how the code performs, so no verdict is drawn from them whatever
  the test says; the medians, the change and the test are still shown, and the reason names the noisy side.
  ``--confirm`` measures these cases again too.

Why both a test and a minimum effect: a fixed-percentage threshold alone flags noise (TorchBench raised
its regression threshold to 30% for that reason), and a test alone flags changes too small to matter
once there are many samples; asv decides with Mann-Whitney U as well. The test assumes independent
samples; timings drift (thermals, other processes), which the minimum effect absorbs.

The confidence interval is a percentile bootstrap of the ratio of medians, ``median(candidate*) /
median(baseline*) - 1`` over ``BOOTSTRAP_RESAMPLES`` (2000) resamples of each side, drawn from a numpy
generator seeded with ``seed`` (default 0): the same samples always give the same verdict.

Judged by the history (``compare(..., history=...)``, ``harness compare --history N``). A case whose series over
the last N runs holds enough usable nights takes its latency verdict from :mod:`harness.history` (a change point or
a one-night excursion against the series' own noise) instead of the two runs' samples, which cannot see the drift
between runs; its reason says what the two runs alone would have said. A busy (contended) night is left out of the
series, so tonight contended stays ``too noisy``; a night flagged noisy for its spread alone is judged.

Other metrics have no samples and are compared by value, listed per case in the ``metrics`` column:
deterministic counts (``COUNT_METRICS``: params, macs, flops, ...) and accuracy (``VALUE_METRICS``) are
``changed`` or ``unchanged``; throughput is batch ÷ median latency and follows the latency verdict.

Accuracy over seeds. A case run at several seeds has one record per seed, sharing a ``group_id`` (the case_id
at seed 0; a store without that column: each case is its own group). When a case's group has a value of an
accuracy column (``VALUE_METRICS``) at ≥ 2 seeds on both sides, that column is judged on the group's seeds by
:func:`harness.seed_stats.judge` (the paired t-test when both sides ran the same seeds, else Welch's), at
``alpha``: ``regressed`` when significant and the mean fell (higher accuracy is better), ``improved`` when
significant and it rose, else ``unchanged``; ``inconclusive`` when there is no p-value (e.g. no spread on either
side), except that the same value at every seed is ``unchanged``. Its ``baseline``/``candidate`` are the
groups' means and ``delta_rel`` their relative Δ; every seed's row of the group carries the same judgement. With
fewer than 2 seeds on a side the exact-value rule above applies.

A case's verdict. A row with latency keeps the latency verdict; when that is ``unchanged`` but a tested accuracy
regressed or improved, or counts or values differ, it is ``regressed``, ``improved`` or ``changed`` (in that
order); under any latency verdict the changed, regressed and improved metrics are named in the reason
(``cases_with`` finds them). A row without latency (a seed after the first, which repeats the accuracy metrics
only) takes its verdict from its metrics: ``regressed`` if any regressed, else ``improved``, ``changed``,
``inconclusive`` in that order, else ``unchanged``. Against the ``published``
baseline (values from the suites' ``published:`` entries, without samples) every case is ``reference``:
the relative difference Δ = (measured − published) / published is shown, and nothing is tested.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.errors import HarnessError
from harness.history import HistoryJudgement, Night, latency_protocol
from harness.run_index import run_ids
from harness.seed_stats import Judgement, judge, seed_groups
from harness.stats import row_medians
from harness.store import ResultStore, json_value
from harness.store_query import latest_per_case

REGRESSED = "regressed"
IMPROVED = "improved"
CHANGED = "changed"
INCONCLUSIVE = "inconclusive"
TOO_NOISY = "too noisy"
NOT_COMPARABLE = "not comparable"
MISSING_IN_BASELINE = "missing in baseline"
MISSING_IN_CANDIDATE = "missing in candidate"
REFERENCE = "reference"
UNCHANGED = "unchanged"

#: Every verdict, in the order they are listed (most urgent first).
VERDICTS: tuple[str, ...] = (REGRESSED, IMPROVED, CHANGED, INCONCLUSIVE, TOO_NOISY, NOT_COMPARABLE,
                             MISSING_IN_BASELINE, MISSING_IN_CANDIDATE, REFERENCE, UNCHANGED)

#: The spec naming the published reference values (only as the baseline).
PUBLISHED = "published"

ALPHA = 0.01  # significance level of the Mann-Whitney U test
MIN_EFFECT = 0.05  # least relative change of the median latency that counts (0.05 = 5%)
MIN_SAMPLES = 5  # fewer raw samples than this on a side: inconclusive
BOOTSTRAP_RESAMPLES = 2000
SEED = 0

#: Environment columns whose difference makes timings incomparable.
ENV_KEYS: tuple[str, ...] = ("env_cpu", "env_gpu", "env_torch")

#: Deterministic counts: compared exactly.
COUNT_METRICS: tuple[str, ...] = ("params", "params_trainable", "macs", "flops", "mac_bytes", "activations")
#: Accuracy (higher is better): compared by value, or by a t-test over the seeds of a case's group.
VALUE_METRICS: tuple[str, ...] = ("acc_top1", "acc_top5", "acc_ap", "acc_ap50")
#: Least seeds with a value on each side for an accuracy column to be judged by a test.
MIN_SEEDS = 2

#: Columns of a comparison, in order. ``*_ms``: median latency, ms per batch; ``delta_rel``: (candidate −
#: baseline) / baseline of the medians (0.1 = 10% slower); ``ci_low``/``ci_high``: its 95% bootstrap
#: interval; ``p_value``: two-sided Mann-Whitney U; ``n_*``: raw samples per side; ``metrics``: the other
#: metrics compared, a list of {metric, baseline, candidate, delta_rel, verdict, note, p_value} (``p_value``:
#: the t-test's over a seed group, else None); ``history``: when judged by the history of nights, the judgement's
#: ``HistoryJudgement.as_dict()`` (levels, change point, nights), else None.
COLUMNS: tuple[str, ...] = ("suite", "case_id", "label", "verdict", "reason", "baseline_ms", "candidate_ms",
                            "delta_rel", "ci_low", "ci_high", "p_value", "n_baseline", "n_candidate",
                            "baseline_run_id", "candidate_run_id", "metrics", "history")

#: Column of a published-baseline frame: per metric, its source, convention and comparability (JSON).
PUBLISHED_NOTES = "published_notes"

LATENCY = "latency_ms_median"
SAMPLES = "latency_ms_samples"


# ---------------------------------------------------------------------------------------------- loading


#: A run named by its recency: ``latest`` (the most recent run), ``latest~N`` (the Nth before it).
RECENT = re.compile(r"latest(?:~(\d+))?")


class NoSuchRun(HarnessError):
    """A side names a run that is not there (e.g. ``latest~1`` before the second night)."""


def load_side(spec: str, results_dir: str | Path = "results", *, candidate: pd.DataFrame | None = None,
              suite: str | None = None) -> pd.DataFrame:
    """Return the records one side of a comparison names.

    ``spec`` is a results directory (every record under it), a run id in ``results_dir`` (its records; a
    unique prefix of one will do), ``latest`` or ``latest~N`` (the most recent run in ``results_dir``, or the
    Nth before it, by their last activity: :mod:`harness.run_index`), or ``published`` (only as the baseline: the
    published values of the ``candidate`` records, see ``published_side``). ``suite`` keeps only that suite's
    records. Raises HarnessError for anything else (NoSuchRun when no run matches), listing the run ids there are.
    """
    if spec == PUBLISHED:
        if candidate is None:
            raise HarnessError("'published' can only be the baseline: the published values of the candidate's cases")
        return published_side(candidate)
    path = Path(spec)
    if path.is_dir():
        frame = _of_suite(ResultStore(path).read(), suite)
        if frame.empty:
            raise HarnessError(f"no records in results directory {spec!r}" + (f" of suite {suite!r}" if suite else ""))
        return frame
    where = f"{Path(results_dir)}/"
    if not Path(results_dir).is_dir():
        raise HarnessError(f"no results directory or run id {spec!r}: {where} does not exist either")
    store = ResultStore(results_dir)
    runs = run_ids(store, suite)  # from the runs' manifests (harness.run_index): no record is read to find them
    recent = RECENT.fullmatch(spec)
    if recent:
        back = int(recent[1] or 0)
        if back >= len(runs):
            of = f" of suite {suite!r}" if suite else ""
            raise NoSuchRun(f"{spec!r}: {where} holds {len(runs)} run(s){of}, so there is no run {back} before the "
                            "latest")
        return store.read(suite=suite, run_id=runs[back])  # only that run's files are read whole
    matches = [run for run in runs if run == spec] or [run for run in runs if spec and run.startswith(spec)]
    if len(matches) == 1:
        return store.read(suite=suite, run_id=matches[0])
    if len(matches) > 1:
        raise HarnessError(f"run id prefix {spec!r} is ambiguous in {where}: {', '.join(matches)}")
    shown = ", ".join(runs[:10]) + (f" (and {len(runs) - 10} more)" if len(runs) > 10 else "")
    raise HarnessError(f"no results directory or run id {spec!r} in {where} — known run ids: {shown or 'none'}")


def _of_suite(frame: pd.DataFrame, suite: str | None) -> pd.DataFrame:
    return frame if suite is None or frame.empty else frame[frame["suite"] == suite].reset_index(drop=True)


def published_side(candidate: pd.DataFrame) -> pd.DataFrame:
    """Return a baseline of the published values matched to the candidate's cases (their ``published_json``).

    One row per case of the candidate (its latest ok record) that has published values: identity columns,
    ``run_id`` ``published``, one column per published metric, and ``published_notes`` (JSON: per metric
    its source, convention and whether it is comparable). Raises HarnessError when no case has any.
    """
    latest = _latest(candidate)
    rows = []
    for record in latest.values():
        raw = record.get("published_json")
        entries = json.loads(raw) if isinstance(raw, str) and raw else []
        if not entries or record.get("status") != "ok":
            continue
        row: dict[str, Any] = {key: record.get(key) for key in ("suite", "case_id", "label", "timestamp_utc")}
        row |= {"run_id": PUBLISHED, "status": "ok"}
        notes = {}
        for entry in entries:
            row[entry["metric"]] = entry["value"]
            notes[entry["metric"]] = {"source": entry.get("source", ""), "convention": entry.get("convention", ""),
                                      "comparable": entry.get("comparable", True)}
        row[PUBLISHED_NOTES] = json.dumps(notes)
        rows.append(row)
    if not rows:
        raise HarnessError(f"none of the candidate's {len(latest)} case(s) has a published value "
                           "(a suite's `published:` entries)")
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class LatencyJudgement:
    """The verdict on one case's latency. Medians in ms per batch; ``delta_rel`` and its CI relative (0.1 = +10%)."""

    verdict: str
    reason: str
    baseline_ms: float | None = None
    candidate_ms: float | None = None
    delta_rel: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    n_baseline: int = 0
    n_candidate: int = 0


def _pct(value: float) -> str:
    return f"{value * 100:+.1f}%"


def _p(value: float) -> str:
    return f"{value:.1e}" if value < 1e-3 else f"{value:.3f}"


def ratio_ci(baseline: np.ndarray, candidate: np.ndarray, *, seed: int = SEED,
             resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float]:
    """Return the 95% percentile-bootstrap interval of ``median(candidate) / median(baseline) - 1``.

    Each side is resampled with replacement ``resamples`` times with ``numpy.random.default_rng(seed)``.
    """
    rng = np.random.default_rng(seed)
    base = row_medians(rng.choice(baseline, size=(resamples, baseline.size)))
    cand = row_medians(rng.choice(candidate, size=(resamples, candidate.size)))
    low, high = np.percentile(cand / base - 1.0, [2.5, 97.5])
    return float(low), float(high)


def judge_latency(baseline: Sequence[float], candidate: Sequence[float], alpha: float = ALPHA,
                  min_effect: float = MIN_EFFECT, *, seed: int = SEED) -> LatencyJudgement:
    """Judge two sets of latency samples (ms per batch) by the module's rule; see the module docstring."""
    from scipy.stats import mannwhitneyu

    b = np.asarray(baseline, dtype=float)
    c = np.asarray(candidate, dtype=float)
    b, c = b[np.isfinite(b)], c[np.isfinite(c)]
    sizes = {"n_baseline": int(b.size), "n_candidate": int(c.size)}
    if b.size == 0 or c.size == 0:
        return LatencyJudgement(INCONCLUSIVE, "no latency samples on the " + ("baseline" if b.size == 0 else
                                "candidate") + " side", **sizes)
    mb, mc = float(np.median(b)), float(np.median(c))
    if mb <= 0:
        return LatencyJudgement(INCONCLUSIVE, f"baseline median is {mb} ms", mb, mc, **sizes)
    delta = mc / mb - 1.0
    medians = {"baseline_ms": mb, "candidate_ms": mc, "delta_rel": delta}
    if min(b.size, c.size) < MIN_SAMPLES:
        return LatencyJudgement(INCONCLUSIVE, f"too few samples ({b.size} baseline, {c.size} candidate; need "
                                f"≥ {MIN_SAMPLES} per side)", **medians, **sizes)
    p = float(mannwhitneyu(c, b, alternative="two-sided").pvalue)
    if math.isnan(p):  # every sample equal on both sides
        p = 1.0
    low, high = ratio_ci(b, c, seed=seed)
    verdict, why = decide(delta, low, high, p, alpha, min_effect, test="Mann-Whitney", what="median")
    return LatencyJudgement(verdict, why, **medians, ci_low=low, ci_high=high, p_value=p, **sizes)


def decide(delta: float, low: float, high: float, p: float, alpha: float, min_effect: float, *, test: str,
           what: str, confidence: float = 0.95) -> tuple[str, str]:
    """Return the verdict and its reason for a relative change ``delta`` (0.1 = 10% slower) of ``what`` with the
    ``confidence`` interval [``low``, ``high``] and the p-value ``p`` of ``test``, by the module's rule: regressed or
    improved when significant at ``alpha`` and at least ``min_effect``; unchanged when the interval lies within
    ±``min_effect``; else inconclusive."""
    change = f"{_pct(delta)} ({confidence * 100:.4g}% CI {_pct(low)} to {_pct(high)})"
    limit = f"±{min_effect * 100:g}%"
    significant = p < alpha
    tested = f"{test} p = {_p(p)} {'<' if significant else '≥'} {alpha:g}"
    if significant and delta >= min_effect:
        return REGRESSED, f"slower: {what} {change}, {tested}"
    if significant and delta <= -min_effect:
        return IMPROVED, f"faster: {what} {change}, {tested}"
    if -min_effect <= low and high <= min_effect:
        kind = "significant, but" if significant else "no significant difference, and"
        return UNCHANGED, f"{kind} the change {change} lies within {limit} ({tested})"
    if significant:
        return INCONCLUSIVE, (f"significant ({tested}) but the change {change} is neither surely below nor at least "
                              f"{limit}")
    return INCONCLUSIVE, f"not significant ({tested}) but the change {change} reaches beyond {limit}: too noisy to tell"


# ------------------------------------------------------------------------------------------- comparing


def _latest(frame: pd.DataFrame) -> dict[tuple[str, str], pd.Series]:
    """Return per (suite, case_id) the latest ok record, else the latest record of any status."""
    if frame is None or frame.empty:
        return {}
    return _by_case(latest_per_case(frame))


def _by_case(latest: pd.DataFrame) -> dict[tuple[str, str], pd.Series]:
    """Return the rows of ``latest`` (one per case) by (suite, case_id)."""
    return {(str(r["suite"]), str(r["case_id"])): r for _, r in latest.iterrows()}


#: Per (suite, group_id), per accuracy column of ``VALUE_METRICS``: {seed: value}.
SeedValues = dict[tuple[str, str], dict[str, dict[int, float]]]


def _seed_values(latest: pd.DataFrame) -> SeedValues:
    """Return the accuracy values per seed of each seed group of ``latest`` (the latest record per case), for
    the columns of ``VALUE_METRICS``."""
    if latest.empty:
        return {}
    groups = seed_groups(latest)
    out: SeedValues = {}
    for _, group in groups.iterrows():
        out[(str(group["suite"]), str(group["group_id"]))] = {
            metric: group[f"{metric}_by_seed"] for metric in VALUE_METRICS
            if isinstance(group.get(f"{metric}_by_seed"), dict)}
    return out


def _group_key(record: pd.Series) -> tuple[str, str]:
    """Return the (suite, group_id) of a record: its ``group_id``, else (old stores) its ``case_id``."""
    group = _value(record, "group_id")
    return str(record["suite"]), str(group if group is not None else record["case_id"])


def _value(record: pd.Series, column: str) -> Any:
    value = record.get(column)
    if value is None or (not isinstance(value, (list, tuple, np.ndarray)) and pd.isna(value)):
        return None
    return value


def _text(record: pd.Series, column: str) -> str:
    value = _value(record, column)
    return "" if value is None else str(value)


def _samples(record: pd.Series) -> np.ndarray | None:
    value = _value(record, SAMPLES)
    if value is None:
        return None
    return np.asarray(list(value), dtype=float)


def _median(record: pd.Series, samples: np.ndarray | None) -> float | None:
    """Return the record's median latency (ms per batch): the stored one, else that of its samples."""
    value = _value(record, LATENCY)
    if value is not None:
        return float(value)
    return float(np.median(samples)) if samples is not None and samples.size else None


def _incomparable(base: pd.Series, cand: pd.Series, env_keys: Iterable[str]) -> list[str]:
    """Return why the timings of two records cannot be compared (empty if they can)."""
    reasons = []
    for key in env_keys:
        old, new = _text(base, key), _text(cand, key)
        if old != new:
            reasons.append(f"{key} differs: {old or '?'} → {new or '?'}")
    old_protocol, new_protocol = (latency_protocol(_text(r, "protocol_json")) for r in (base, cand))
    if old_protocol != new_protocol:
        if isinstance(old_protocol, dict) and isinstance(new_protocol, dict):
            keys = sorted(set(old_protocol) | set(new_protocol), key=str)
            diffs = [f"{k} {old_protocol.get(k)!r} → {new_protocol.get(k)!r}" for k in keys
                     if old_protocol.get(k) != new_protocol.get(k)]
            reasons.append("latency protocol differs: " + ", ".join(diffs))
        else:
            reasons.append(f"latency protocol differs: {old_protocol!r} → {new_protocol!r}")
    return reasons


def _noisy_sides(base: pd.Series, cand: pd.Series) -> str:
    """Return which records' timings are flagged noisy and why ("" when neither is)."""
    sides = []
    for side, record in (("baseline", base), ("candidate", cand)):
        if bool(_value(record, "latency_noisy")):
            sides.append(f"the {side}'s timing is noisy ({_text(record, 'latency_noisy_reason') or 'IQR/median'})")
    return " and ".join(sides)


def _relative(old: float, new: float) -> float | None:
    return (new - old) / old if old else None


def _seeded_metric(metric: str, base_by_seed: dict[int, float], cand_by_seed: dict[int, float],
                   alpha: float) -> dict[str, Any]:
    """Return the comparison of an accuracy column over the seeds of a case's group on each side (see the
    module docstring): the means, their relative Δ, and a verdict from ``seed_stats.judge`` at ``alpha``."""
    judgement: Judgement = judge(base_by_seed, cand_by_seed, same_data=True)
    old = float(np.mean(list(base_by_seed.values())))
    new = float(np.mean(list(cand_by_seed.values())))
    n_old, n_new = len(base_by_seed), len(cand_by_seed)
    seeds = f"{n_old} seeds" if n_old == n_new else f"{n_old} → {n_new} seeds"
    note = f"mean of {seeds} {old:.3f} → {new:.3f}"
    p = judgement.p_value
    if p is None or math.isnan(p):
        verdict = UNCHANGED if base_by_seed == cand_by_seed else INCONCLUSIVE  # same value at every seed
        note += f", {judgement.test + ': ' if judgement.test else ''}{judgement.reason or 'no p-value'}"
        p = None
    else:
        verdict = UNCHANGED
        if p < alpha and new != old:
            verdict = REGRESSED if new < old else IMPROVED
        note += f", {judgement.test} p={_p(p)}"
    return {"metric": metric, "baseline": old, "candidate": new, "delta_rel": judgement.delta_rel,
            "verdict": verdict, "note": note, "p_value": p}


def _other_metrics(base: pd.Series, cand: pd.Series, published: bool,
                   seeded: dict[str, tuple[dict[int, float], dict[int, float]]] | None = None,
                   alpha: float = ALPHA) -> list[dict[str, Any]]:
    """Return the comparison of the metrics without samples that both records have; ``seeded``: per accuracy
    column, the values per seed of the records' groups (baseline, candidate), judged by a test at ``alpha``
    when both have ≥ ``MIN_SEEDS`` seeds."""
    out = []
    seeded = seeded or {}
    if published:
        notes = json.loads(_text(base, PUBLISHED_NOTES) or "{}")
        for metric, note in notes.items():
            if metric == LATENCY:
                continue
            old, new = _value(base, metric), _value(cand, metric)
            text = "; ".join(t for t in (note.get("source"), note.get("convention")) if t)
            if not note.get("comparable", True):
                text += " (a different convention: not comparable)"
            out.append({"metric": metric, "baseline": old, "candidate": new,
                        "delta_rel": _relative(old, new) if old is not None and new is not None else None,
                        "verdict": REFERENCE, "note": text, "p_value": None})
        return out
    for metric in (*COUNT_METRICS, *VALUE_METRICS):
        old, new = _value(base, metric), _value(cand, metric)
        if old is None or new is None:
            continue
        by_seed = seeded.get(metric)
        if metric in VALUE_METRICS and by_seed is not None and min(len(by_seed[0]), len(by_seed[1])) >= MIN_SEEDS:
            out.append(_seeded_metric(metric, *by_seed, alpha))
            continue
        old, new = float(old), float(new)
        same = math.isclose(old, new, rel_tol=1e-12, abs_tol=0.0)
        out.append({"metric": metric, "baseline": old, "candidate": new, "delta_rel": _relative(old, new),
                    "verdict": UNCHANGED if same else CHANGED,
                    "note": "exact count" if metric in COUNT_METRICS else "value, no samples", "p_value": None})
    return out


def _metric_text(entry: dict[str, Any]) -> str:
    delta = entry["delta_rel"]
    shown = f"{entry['metric']} {_pct(delta)}" if delta is not None else f"{entry['metric']} n/a"
    return shown if entry["verdict"] == REFERENCE else f"{shown} ({entry['verdict']})"


def _missing(record: pd.Series | None, side: str) -> str:
    if record is None:
        return f"no record of this case in the {side}"
    error = _text(record, "error").strip().splitlines()
    detail = f" — {error[0][:200]}" if error else ""
    return f"no ok record in the {side} (latest: {record.get('status')}{detail})"


#: What the history says of a case: its judgement, or its nights when too few to judge (see harness.history).
History = Mapping[tuple[str, str], "HistoryJudgement | list[Night]"]


def _by_history(pairwise: LatencyJudgement, history: HistoryJudgement | list[Night] | None) -> LatencyJudgement:
    """Return the latency judgement the history gives (the two-run one when it has none), saying what the two runs
    alone would have said."""
    if isinstance(history, HistoryJudgement):
        nights = len(history.used)
        return replace(pairwise, verdict=history.verdict, baseline_ms=history.level_before_ms,
                       delta_rel=history.delta_rel, ci_low=None, ci_high=None, p_value=None,
                       reason=f"history of {nights} nights: {history.reason} (the previous run alone: "
                       f"{pairwise.verdict})")
    if history is not None:
        usable = sum(1 for night in history if not night.left_out) - 1
        return replace(pairwise, reason=f"{pairwise.reason}; history too short to judge ({max(usable, 0)} usable "
                       "night(s) before this one): judged against the previous run alone")
    return pairwise


def _compare_case(base: pd.Series, cand: pd.Series, published: bool, alpha: float, min_effect: float,
                  env_keys: Sequence[str], seed: int,
                  seeded: dict[str, tuple[dict[int, float], dict[int, float]]] | None = None,
                  history: HistoryJudgement | list[Night] | None = None) -> dict[str, Any]:
    metrics = _other_metrics(base, cand, published, seeded, alpha)
    base_samples, cand_samples = _samples(base), _samples(cand)
    base_ms, cand_ms = _median(base, base_samples), _median(cand, cand_samples)
    if published:
        judgement = LatencyJudgement(REFERENCE, "")
        if base_ms is not None and cand_ms is not None:
            judgement = LatencyJudgement(REFERENCE, "", base_ms, cand_ms, _relative(base_ms, cand_ms))
        shown = ([f"latency {_pct(judgement.delta_rel)}"] if judgement.delta_rel is not None else [])
        shown += [_metric_text(m) for m in metrics]
        sources = sorted({m["note"] for m in metrics if m["note"]})
        reason = ("published values, no samples to test: " + (", ".join(shown) or "nothing measured in common")
                  + (f" ({' | '.join(sources)})" if sources else ""))
        return {**asdict(judgement), "reason": reason, "metrics": metrics, "history": None}
    has_latency = [base_ms is not None, cand_ms is not None]
    if all(has_latency):
        reasons = _incomparable(base, cand, env_keys)
        if reasons:
            judgement = LatencyJudgement(NOT_COMPARABLE, "; ".join(reasons))
        elif base_samples is not None and cand_samples is not None:
            judgement = judge_latency(base_samples, cand_samples, alpha, min_effect, seed=seed)
        else:
            judgement = LatencyJudgement(INCONCLUSIVE, "no raw latency samples on the " + (
                "baseline" if base_samples is None else "candidate") + " side: medians alone cannot be tested")
        noisy = _noisy_sides(base, cand)
        if noisy and judgement.verdict != NOT_COMPARABLE:
            judgement = replace(judgement, verdict=TOO_NOISY,
                                reason=f"too noisy to judge: {noisy} (the test alone: {judgement.reason})")
        if judgement.baseline_ms is None:  # not tested: show the medians and sample counts all the same
            judgement = replace(judgement, baseline_ms=base_ms, candidate_ms=cand_ms,
                                delta_rel=_relative(base_ms, cand_ms),
                                n_baseline=0 if base_samples is None else int(base_samples.size),
                                n_candidate=0 if cand_samples is None else int(cand_samples.size))
        judgement = _by_history(judgement, history)
    elif any(has_latency):
        side = "baseline" if has_latency[0] else "candidate"
        judgement = LatencyJudgement(NOT_COMPARABLE, f"latency measured in the {side} only")
    elif metrics:
        verdicts = {m["verdict"] for m in metrics}
        verdict = next((v for v in (REGRESSED, IMPROVED, CHANGED, INCONCLUSIVE) if v in verdicts), UNCHANGED)
        if verdict == INCONCLUSIVE:
            why = "no test could decide (" + "; ".join(m["note"] for m in metrics if m["verdict"] == INCONCLUSIVE) + ")"
        elif verdict != UNCHANGED:
            why = "values differ"
        elif verdicts == {UNCHANGED} and all(m["p_value"] is None for m in metrics):
            why = "every value is the same"
        else:
            why = "no metric changed"
        judgement = LatencyJudgement(verdict, f"no latency; {why}")
    else:
        judgement = LatencyJudgement(INCONCLUSIVE, "nothing measured in common")
    promoted = next((v for v in (REGRESSED, IMPROVED, CHANGED) if any(m["verdict"] == v for m in metrics)), None)
    if promoted and judgement.verdict == UNCHANGED:
        # same speed, but a tested accuracy moved or a count differs: the row says so
        judgement = replace(judgement, verdict=promoted, reason=f"latency unchanged ({judgement.reason})")
    changed_text = [_metric_text(m) for m in metrics if m["verdict"] in (REGRESSED, IMPROVED, CHANGED)]
    reason = judgement.reason + (f"; {', '.join(changed_text)}" if changed_text else "")
    shown = history.as_dict() if isinstance(history, HistoryJudgement) and has_latency == [True, True] else None
    return {**asdict(judgement), "reason": reason, "metrics": metrics, "history": shown}


def compare(baseline: pd.DataFrame, candidate: pd.DataFrame, alpha: float = ALPHA, min_effect: float = MIN_EFFECT,
            *, env_keys: Sequence[str] = ENV_KEYS, seed: int = SEED, history: History | None = None) -> pd.DataFrame:
    """Compare ``candidate`` against ``baseline`` records; return one row per case (``COLUMNS``).

    Cases are paired by (suite, case_id), the latest ok record of each side. ``alpha``: significance level
    of the two-sided Mann-Whitney U test on the raw latency samples; ``min_effect``: least relative change
    of the median latency that counts as a regression or improvement (0.05 = 5%); ``env_keys``: environment
    columns that must agree for timings to be comparable. A baseline from ``published_side`` gives
    ``reference`` verdicts. The accuracy columns of a case run at ≥ 2 seeds on both sides are judged over its
    seed group by a t-test at ``alpha`` (see the module docstring). ``history`` (from
    :func:`harness.history.judge_history`): a case it judges takes its latency verdict from the history of nights
    instead of the two runs (a case it holds too few nights of keeps the two-run verdict, and says so). Rows are
    ordered by verdict (``VERDICTS``), then suite and label; the options are kept in ``.attrs``.
    """
    if not 0 < alpha < 1:
        raise HarnessError(f"alpha must lie between 0 and 1, got {alpha}")
    if min_effect < 0:
        raise HarnessError(f"min_effect must be ≥ 0, got {min_effect}")
    published = PUBLISHED_NOTES in baseline.columns
    base_frame, cand_frame = (latest_per_case(side) if side is not None and not side.empty else pd.DataFrame()
                              for side in (baseline, candidate))
    base_latest, cand_latest = _by_case(base_frame), _by_case(cand_frame)
    base_seeds, cand_seeds = ({}, {}) if published else (_seed_values(base_frame), _seed_values(cand_frame))
    rows = []
    for key in sorted(set(base_latest) | set(cand_latest)):
        base, cand = base_latest.get(key), cand_latest.get(key)
        label = _text(cand if cand is not None else base, "label")
        row: dict[str, Any] = {"suite": key[0], "case_id": key[1], "label": label,
                               "baseline_run_id": _text(base, "run_id") if base is not None else None,
                               "candidate_run_id": _text(cand, "run_id") if cand is not None else None}
        base_ok = base is not None and base.get("status") == "ok"
        cand_ok = cand is not None and cand.get("status") == "ok"
        if not base_ok or not cand_ok:
            verdict = MISSING_IN_BASELINE if not base_ok else MISSING_IN_CANDIDATE
            reason = _missing(base, "baseline") if not base_ok else _missing(cand, "candidate")
            if published and not base_ok:
                reason = "no published value for this case"
            rows.append(row | asdict(LatencyJudgement(verdict, reason)) | {"metrics": [], "history": None})
            continue
        base_group, cand_group = base_seeds.get(_group_key(base), {}), cand_seeds.get(_group_key(cand), {})
        seeded = {metric: (base_group[metric], cand_group[metric]) for metric in VALUE_METRICS
                  if metric in base_group and metric in cand_group}
        rows.append(row | _compare_case(base, cand, published, alpha, min_effect, env_keys, seed, seeded,
                                        (history or {}).get(key)))
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    if not frame.empty:
        order = frame["verdict"].map(VERDICTS.index)
        frame = frame.assign(_order=order).sort_values(["_order", "suite", "label"], kind="stable")
        frame = frame.drop(columns="_order").reset_index(drop=True)
    frame.attrs = {"alpha": alpha, "min_effect": min_effect, "env_keys": list(env_keys), "published": published,
                   "history": history is not None}
    return frame


def verdict_counts(comparison: pd.DataFrame) -> dict[str, int]:
    """Return the number of cases per verdict, every verdict of ``VERDICTS`` in order (zeros included)."""
    counts = comparison["verdict"].value_counts() if not comparison.empty else {}
    return {verdict: int(counts.get(verdict, 0)) for verdict in VERDICTS}


def cases_with(comparison: pd.DataFrame, verdicts: Iterable[str]) -> pd.DataFrame:
    """Return the cases whose verdict, or the verdict of one of their other metrics, is in ``verdicts``."""
    wanted = set(verdicts)
    if comparison.empty:
        return comparison

    def hit(row: pd.Series) -> bool:
        return row["verdict"] in wanted or any(m["verdict"] in wanted for m in row["metrics"] or [])

    return comparison[comparison.apply(hit, axis=1)]


def comparison_records(comparison: pd.DataFrame) -> list[dict[str, Any]]:
    """Return the comparison as JSON-ready dicts (NaN and missing values as None)."""
    records = []
    for row in comparison.to_dict(orient="records"):
        records.append({key: json_value(value) for key, value in row.items()})
    return records


def parse_verdicts(text: str) -> list[str]:
    """Return the verdicts named in comma-separated ``text`` (``-``/``_`` for spaces; ``missing`` = both).

    Raises ValueError naming the known verdicts for an unknown one.
    """
    out: list[str] = []
    for item in filter(None, (part.strip().lower().replace("-", " ").replace("_", " ") for part in text.split(","))):
        if item == "missing":
            out += [MISSING_IN_BASELINE, MISSING_IN_CANDIDATE]
        elif item in VERDICTS:
            out.append(item)
        else:
            raise ValueError(f"unknown verdict {item!r}; known: {', '.join(VERDICTS)}, missing")
    return out
