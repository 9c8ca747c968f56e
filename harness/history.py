"""Judging tonight's latency against each case's history of nights: change points and one-night excursions.

Torch-free (numpy, pandas, ruptures). Used by ``harness compare --history N``, the regressions page and
``tools/calibrate_nightly.py``.

Why a history. Between two runs of the same commit on a shared machine, a case's median moves by more than its
samples spread within one run (thermals, neighbours, the page cache), so a test on two runs' samples flags drift as
regressions. A night is judged here against the series of its case over the last N runs, as MongoDB's performance CI
(E-Divisive means), asv (step detection) and Perfherder (windows) do.

The series. For each case (suite, case_id) of the candidate run: one value per run among the last N runs of the
suite (the candidate last), the median latency (ms per batch) of the run's latest ok record of the case. Nights whose
latency protocol or environment (``ENV_KEYS``) differ from the candidate's are left out (another series), as are
nights whose timing is flagged contended (other processes took the cores: what the machine did, not the code). A
night flagged noisy only for its spread stays in: on an ordinary machine many are, their medians still place the
level, and their wider intervals raise σ. Values are taken in logs, so a change is relative.

The noise σ of a series (in log units ≈ relative) is the largest of: the between-night spread, robustly
(1.4826 × the MAD of the night-to-night differences / √2: a step moves one difference only), the within-run spread
(the median over nights of the half-width of each record's 95% CI of its median / 1.96), and ``NOISE_FLOOR`` (0.5%).

The rules, on the latest night, with ``min_effect`` (default 5%):

- **change point**: change points are found by PELT (ruptures, cost ``l2``, segments of ≥ 2 nights) on the series
  divided by σ, with a penalty of ``penalty`` (default 5) × log(n) per change point. When the last change point is
  among the last ``recent`` (3) nights — so its new level has held at least two nights: a regression must survive
  the next night — and the median of the nights after it differs from the median of the segment before it by at
  least ``min_effect``, every one of those nights by at least half of it in the same direction (one high night
  beside an ordinary one is not a level): ``regressed`` (slower) or ``improved`` (faster), at that night.
- **excursion**: tonight differs from the median of the nights since the last change point (at most the last
  ``REFERENCE_NIGHTS``; at least 3) by more than ``k`` (default 5) × σ (or × tonight's own within-run spread, when
  larger) and by at least ``min_effect``: a one-night
  jump, flagged the first night (``--confirm`` measures it again).
- otherwise ``unchanged``; with fewer than ``min_history`` (6) usable nights before tonight nothing is judged here
  (the caller keeps the two-run verdict and says so).

Why PELT from ruptures: it finds the optimal segmentation under a penalty in linear time, ruptures is maintained,
BSD-licensed and needs only numpy and scipy (MongoDB's signal-processing-algorithms pins old numpy and gevent).
The defaults were calibrated by ``tools/calibrate_nightly.py`` and ``tests/bench/test_bench_history.py``: see the
README's nightly section for the false-alarm and detection rates they give on this project's machine.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from harness.errors import HarnessError

PENALTY = 5.0  # per change point, × log(nights), on the series in units of its noise
EXCURSION_K = 5.0  # a night beyond this many σ from the recent level is an excursion
RECENT_NIGHTS = 3  # a change point among the last this many nights is judged (it has held ≥ 2 nights)
MIN_HISTORY = 6  # usable nights before tonight needed to judge by the history
HISTORY_RUNS = 30  # default N of --history
REFERENCE_NIGHTS = 10  # an excursion is measured against the median of at most this many nights
NOISE_FLOOR = 0.005  # least σ (relative): a perfectly steady series does not flag 0.1% moves
MIN_SEGMENT = 2  # nights per segment (PELT's min_size)
Z_95 = 1.959964

#: Columns a history needs of each record.
COLUMNS: tuple[str, ...] = ("suite", "case_id", "label", "run_id", "status", "timestamp_utc", "latency_ms_median",
                            "latency_ms_ci_low", "latency_ms_ci_high", "latency_contended",
                            "protocol_json", "env_git_sha", "env_cpu", "env_gpu", "env_torch")


@dataclass(frozen=True)
class Night:
    """One run's value of a case: ``value_ms`` its median latency (ms per batch), ``noise_rel`` the relative
    half-width of that median's 95% CI / 1.96 (NaN when unknown), ``left_out`` why it is not in the series ('' when
    it is)."""

    run_id: str
    timestamp_utc: str
    git_sha: str
    value_ms: float
    noise_rel: float = math.nan
    left_out: str = ""


@dataclass(frozen=True)
class HistoryJudgement:
    """The verdict on tonight (the last night of ``nights``). ``change_at``: index in ``nights`` of the first night
    of the new level (None when no change point is judged); ``level_before_ms`` / ``level_after_ms``: medians of the
    reference nights (from index ``level_from``) and of the nights from the change (or tonight); ``delta_rel``:
    after / before − 1; ``noise_rel``: σ; ``rule``: "change point", "excursion" or ""; ``used``: the indices of the
    nights in the series (the others are left out)."""

    verdict: str
    reason: str
    nights: tuple[Night, ...]
    rule: str = ""
    change_at: int | None = None
    level_from: int | None = None
    level_before_ms: float | None = None
    level_after_ms: float | None = None
    delta_rel: float | None = None
    noise_rel: float | None = None
    used: tuple[int, ...] = field(default=())

    def commit_range(self) -> tuple[str, str]:
        """Return the commits (``env_git_sha``) of the last night before the change and of its first night ('' when
        there is no change point or a commit is unknown)."""
        if self.change_at is None:
            return "", ""
        before = [i for i in self.used if i < self.change_at]
        return (self.nights[before[-1]].git_sha if before else ""), self.nights[self.change_at].git_sha

    def as_dict(self) -> dict[str, object]:
        """Return the judgement as JSON-ready values (the nights as dicts)."""
        old, new = self.commit_range()
        return {"rule": self.rule, "change_at": self.change_at, "level_from": self.level_from,
                "level_before_ms": self.level_before_ms,
                "level_after_ms": self.level_after_ms, "delta_rel": self.delta_rel, "noise_rel": self.noise_rel,
                "commit_before": old, "commit_after": new, "used": list(self.used),
                "nights": [night.__dict__ for night in self.nights]}


def noise_of(log_values: np.ndarray, within_rel: np.ndarray) -> float:
    """Return σ of a series (log units ≈ relative): the largest of its robust between-night spread, the median
    within-run spread ``within_rel`` (NaN where unknown) and ``NOISE_FLOOR``."""
    between = 0.0
    if log_values.size >= 3:
        steps = np.diff(log_values)
        between = 1.4826 * float(np.median(np.abs(steps - np.median(steps)))) / math.sqrt(2)
    known = within_rel[np.isfinite(within_rel)]
    within = float(np.median(known)) if known.size else 0.0
    return max(between, within, NOISE_FLOOR)


def change_points(log_values: np.ndarray, sigma: float, penalty: float = PENALTY) -> list[int]:
    """Return the indices where a new level starts in ``log_values`` (PELT, l2 cost, segments of ≥ 2 values, on the
    values divided by ``sigma``, penalty ``penalty`` × log(n) per change point); [] for fewer than 4 values."""
    import ruptures

    n = log_values.size
    if n < 2 * MIN_SEGMENT:
        return []
    signal = ((log_values - np.median(log_values)) / sigma).reshape(-1, 1)
    ends = ruptures.Pelt(model="l2", min_size=MIN_SEGMENT, jump=1).fit(signal).predict(pen=penalty * math.log(n))
    return [int(end) for end in ends[:-1]]


def _pct(value: float) -> str:
    return f"{value * 100:+.1f}%"


def judge_series(nights: Sequence[Night], min_effect: float = 0.05, *, penalty: float = PENALTY,
                 k: float = EXCURSION_K, recent: int = RECENT_NIGHTS,
                 min_history: int = MIN_HISTORY) -> HistoryJudgement | None:
    """Judge the last of ``nights`` (oldest first) by the module's rules; return None when fewer than
    ``min_history`` usable nights precede it (or it is itself left out): the history cannot judge it."""
    nights = tuple(nights)
    used = tuple(i for i, night in enumerate(nights) if not night.left_out and night.value_ms > 0)
    if not nights or not used or used[-1] != len(nights) - 1 or len(used) - 1 < min_history:
        return None
    y = np.log([nights[i].value_ms for i in used])
    sigma = noise_of(y, np.array([nights[i].noise_rel for i in used]))
    n = y.size
    cuts = change_points(y, sigma, penalty)
    last_cut = cuts[-1] if cuts else 0
    base = {"nights": nights, "noise_rel": sigma, "used": used}
    noise = f"noise σ {sigma * 100:.1f}%"
    if cuts and last_cut >= n - recent:
        start = cuts[-2] if len(cuts) > 1 else 0
        before, after = float(np.median(y[start:last_cut])), float(np.median(y[last_cut:]))
        delta = math.exp(after - before) - 1
        nightly = np.expm1(y[last_cut:] - before) * math.copysign(1.0, delta)
        if abs(delta) >= min_effect and float(nightly.min()) >= min_effect / 2:
            at = used[last_cut]
            held = n - last_cut
            verdict = "regressed" if delta > 0 else "improved"
            reason = (f"{'slower' if delta > 0 else 'faster'} since {nights[at].run_id} (held {held} nights): level "
                      f"{math.exp(before):.3g} → {math.exp(after):.3g} ms ({_pct(delta)}), a change point over "
                      f"{n} nights ({noise})")
            return HistoryJudgement(verdict, reason, rule="change point", change_at=at, level_from=used[start],
                                    level_before_ms=math.exp(before),
                                    level_after_ms=math.exp(after), delta_rel=delta, **base)
    first = max(last_cut, n - 1 - REFERENCE_NIGHTS)
    if n - 1 - first < 3:  # too few nights since the last change point: measure from the nights before it too
        first = max(0, n - 1 - REFERENCE_NIGHTS)
    reference = y[first:n - 1]
    level = float(np.median(reference))
    delta = math.exp(y[-1] - level) - 1
    z = (y[-1] - level) / max(sigma, nights[-1].noise_rel if math.isfinite(nights[-1].noise_rel) else 0.0)
    levels = {"level_from": used[first], "level_before_ms": math.exp(level), "level_after_ms": nights[-1].value_ms,
              "delta_rel": delta}
    tonight = (f"tonight {nights[-1].value_ms:.3g} ms against a level of {math.exp(level):.3g} ms over "
               f"{reference.size} nights ({_pct(delta)}, {z:+.1f} σ; {noise})")
    if abs(z) > k and abs(delta) >= min_effect:
        verdict = "regressed" if delta > 0 else "improved"
        return HistoryJudgement(verdict, f"one-night excursion beyond {k:g} σ: {tonight}", rule="excursion",
                                **levels, **base)
    why = (f"within {k:g} σ" if abs(z) <= k else f"beyond {k:g} σ but smaller than the minimum effect "
           f"{min_effect * 100:g}%")
    return HistoryJudgement("unchanged", f"{why}: {tonight}", **levels, **base)


# --------------------------------------------------------------------------------------------- series


def latency_protocol(raw: object) -> object:
    """Return the ``latency`` entry of a record's ``protocol_json`` (None when there is none; the text itself when it
    is not a JSON object): two timings are comparable only under the same protocol."""
    try:
        return json.loads(raw).get("latency") if isinstance(raw, str) and raw else None
    except (ValueError, AttributeError):
        return raw


def _flag(value: object) -> bool:
    return bool(value) and not (isinstance(value, float) and math.isnan(value))


def _noise_rel(record: pd.Series) -> float:
    low, high, median = (record.get(c) for c in ("latency_ms_ci_low", "latency_ms_ci_high", "latency_ms_median"))
    try:
        return (float(high) - float(low)) / 2 / Z_95 / float(median)
    except (TypeError, ValueError, ZeroDivisionError):
        return math.nan


def case_series(records: pd.DataFrame, runs: Sequence[str], env_keys: Collection[str]) -> dict[tuple[str, str],
                                                                                                 list[Night]]:
    """Return per (suite, case_id) of the last run of ``runs`` (oldest first) its nights over ``runs``: one per run
    holding an ok record of the case with a latency median (the run's latest such record), each marked ``left_out``
    with the reason when its timing is contended or its protocol or ``env_keys`` differ from the last
    night's."""
    if records.empty or not runs:
        return {}
    ok = records[(records["status"] == "ok") & records["latency_ms_median"].notna()]
    ok = ok[ok["run_id"].isin(list(runs))].sort_values("timestamp_utc", kind="stable")
    latest = ok.drop_duplicates(["suite", "case_id", "run_id"], keep="last")
    order = {run: i for i, run in enumerate(runs)}
    latest = latest.assign(_night=latest["run_id"].map(order)).sort_values("_night", kind="stable")
    out: dict[tuple[str, str], list[Night]] = {}
    for (suite, case_id), group in latest.groupby(["suite", "case_id"], sort=False):
        rows = [row for _, row in group.iterrows()]
        if rows[-1]["run_id"] != runs[-1]:
            continue  # not measured tonight: the comparison says it is missing
        tonight = rows[-1]
        nights = []
        for row in rows:
            why = [f"{key} differs" for key in env_keys if str(row.get(key) or "") != str(tonight.get(key) or "")]
            if latency_protocol(row.get("protocol_json")) != latency_protocol(tonight.get("protocol_json")):
                why.append("latency protocol differs")
            if _flag(row.get("latency_contended")):
                why.append("contended")
            nights.append(Night(str(row["run_id"]), str(row.get("timestamp_utc") or ""),
                                str(row.get("env_git_sha") or ""), float(row["latency_ms_median"]), _noise_rel(row),
                                ", ".join(why)))
        out[(str(suite), str(case_id))] = nights
    return out


def read_history(results_dir: str, suite: str | None, candidate_run: str, runs: int = HISTORY_RUNS) -> tuple[
        list[str], pd.DataFrame]:
    """Return the ids of the last ``runs`` runs up to ``candidate_run`` (oldest first; of ``suite`` when given)
    and their records (``COLUMNS`` only). Raises HarnessError when the candidate run is not in ``results_dir``."""
    from harness.run_index import run_ids
    from harness.store import ResultStore
    from harness.store_reader import read_located

    if runs < 2:
        raise HarnessError(f"--history needs at least 2 runs, got {runs}")
    store = ResultStore(results_dir)
    ids = run_ids(store, suite)  # most recent first
    if candidate_run not in ids:
        raise HarnessError(f"--history: run {candidate_run!r} is not in {results_dir}/")
    chosen = ids[ids.index(candidate_run):][:runs][::-1]
    suites = [suite] if suite else None
    frame = read_located(lambda: store.files_of(suites, chosen), columns=COLUMNS, keep=COLUMNS).frame
    frame = frame.reindex(columns=list(COLUMNS))
    frame = frame[frame["run_id"].isin(chosen)]
    return chosen, frame.reset_index(drop=True)


def judge_history(records: pd.DataFrame, runs: Sequence[str], env_keys: Collection[str], min_effect: float = 0.05,
                  **options: float) -> dict[tuple[str, str], HistoryJudgement | list[Night]]:
    """Return per case of the last run its :class:`HistoryJudgement`, or its nights (a list) when the history is too
    short to judge it; ``options``: ``judge_series``'s keywords."""
    out: dict[tuple[str, str], HistoryJudgement | list[Night]] = {}
    for key, nights in case_series(records, runs, env_keys).items():
        judgement = judge_series(nights, min_effect, **options)  # type: ignore[arg-type]
        out[key] = judgement if judgement is not None else nights
    return out
