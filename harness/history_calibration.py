"""How often the history rules (:mod:`harness.history`) cry wolf and how soon they see a real step: on synthetic
series (:func:`simulate`) and by replaying a real store night by night (:func:`replay`).

Used by ``tools/calibrate_nightly.py`` and ``tests/bench/test_bench_history.py``; torch-free.

Synthetic series. Night t's log-median is ``drift_t + noise_t``: ``noise_t`` is Student-t with 4 degrees of freedom
scaled to standard deviation ``sigma`` (heavier tails than a normal: a VM's nights have outliers), ``drift_t`` a
random walk with steps of standard deviation ``drift``; each night's within-run spread is ``within``. A step series
adds log(1 + step) from night ``history`` on. Rates are per case-night (false alarms: a ``regressed`` verdict on a
series without a step; any alarm counts ``improved`` too) and per series (detected: ``regressed`` on the step's
first or second night).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.history import HISTORY_RUNS, MIN_HISTORY, Night, case_series, judge_series

TAIL_DOF = 4


@dataclass(frozen=True)
class Rates:
    """Counts of one calibration: ``judged`` case-nights (or series, for a step), how many were flagged
    ``regressed``, and how many got any alarm (regressed or improved)."""

    judged: int
    regressed: int
    alarms: int

    @property
    def regressed_rate(self) -> float:
        """Return regressed / judged (0.0 when nothing was judged)."""
        return self.regressed / self.judged if self.judged else 0.0

    @property
    def alarm_rate(self) -> float:
        """Return alarms / judged (0.0 when nothing was judged)."""
        return self.alarms / self.judged if self.judged else 0.0


def _nights(log_values: np.ndarray, within: float) -> list[Night]:
    return [Night(f"n{i:03d}", "", "", float(np.exp(v)), within) for i, v in enumerate(log_values)]


def synthetic_series(rng: np.random.Generator, nights: int, sigma: float, drift: float) -> np.ndarray:
    """Return one synthetic series of log-medians (see the module docstring), ``nights`` long, around 0."""
    noise = rng.standard_t(TAIL_DOF, nights) * sigma / np.sqrt(TAIL_DOF / (TAIL_DOF - 2))
    return np.cumsum(rng.normal(0.0, drift, nights)) + noise


def _verdicts(nights: Sequence[Night], judged: Sequence[int], window: int, min_effect: float,
              options: dict[str, float]) -> list[str]:
    out = []
    for t in judged:
        judgement = judge_series(nights[max(0, t + 1 - window):t + 1], min_effect, **options)
        out.append("" if judgement is None else judgement.verdict)
    return out


def simulate_false_alarms(*, series: int, nights: int, sigma: float, drift: float, within: float,
                          min_effect: float = 0.05, window: int = HISTORY_RUNS, seed: int = 0,
                          **options: float) -> Rates:
    """Return the alarms over the case-nights of ``series`` synthetic series without a step, each ``nights`` long,
    judged night by night from the first with ``MIN_HISTORY`` nights before it, over at most ``window`` nights."""
    rng = np.random.default_rng(seed)
    verdicts: list[str] = []
    for _ in range(series):
        values = _nights(synthetic_series(rng, nights, sigma, drift), within)
        verdicts += _verdicts(values, range(MIN_HISTORY, nights), window, min_effect, options)
    return _rates(verdicts)


def simulate_detection(step: float, *, series: int, history: int, sigma: float, drift: float, within: float,
                       min_effect: float = 0.05, window: int = HISTORY_RUNS, seed: int = 0,
                       **options: float) -> Rates:
    """Return how many of ``series`` synthetic series with a step of ``step`` (0.1 = 10% slower) after ``history``
    nights were flagged ``regressed`` on the step's first or second night."""
    rng = np.random.default_rng(seed)
    regressed = alarms = 0
    for _ in range(series):
        log_values = synthetic_series(rng, history + 2, sigma, drift)
        log_values[history:] += np.log1p(step)
        verdicts = _verdicts(_nights(log_values, within), (history, history + 1), window, min_effect, options)
        regressed += "regressed" in verdicts
        alarms += any(v in ("regressed", "improved") for v in verdicts)
    return Rates(series, regressed, alarms)


def _rates(verdicts: Sequence[str]) -> Rates:
    judged = [v for v in verdicts if v]
    return Rates(len(judged), judged.count("regressed"), sum(v in ("regressed", "improved") for v in judged))


@dataclass(frozen=True)
class Replay:
    """A store replayed night by night: per (case, run) the verdict the history gave that night ('' when too short),
    in ``verdicts`` (columns suite, case_id, run_id, night, verdict, rule, delta_rel)."""

    verdicts: pd.DataFrame

    def rates(self, runs: Sequence[str] | None = None) -> Rates:
        """Return the rates over the judged case-nights (of ``runs`` only when given)."""
        frame = self.verdicts if runs is None else self.verdicts[self.verdicts["run_id"].isin(list(runs))]
        return _rates(list(frame["verdict"]))

    def detected_within(self, runs: Sequence[str]) -> Rates:
        """Return per series how many were flagged ``regressed`` on at least one of ``runs`` (counted over the
        series judged on them)."""
        frame = self.verdicts[self.verdicts["run_id"].isin(list(runs)) & (self.verdicts["verdict"] != "")]
        by_case = frame.groupby(["suite", "case_id"])["verdict"]
        return Rates(int(by_case.ngroups), int(by_case.apply(lambda v: "regressed" in set(v)).sum()),
                     int(by_case.apply(lambda v: bool({"regressed", "improved"} & set(v))).sum()))


def replay(records: pd.DataFrame, runs: Sequence[str], env_keys: Sequence[str], *, min_effect: float = 0.05,
           window: int = HISTORY_RUNS, **options: float) -> Replay:
    """Judge every night of ``runs`` (oldest first) as ``harness compare --history window`` would have that night,
    from the records of the runs before it; return the verdicts."""
    rows = []
    for t in range(1, len(runs)):
        history = list(runs[max(0, t + 1 - window):t + 1])
        for (suite, case_id), nights in case_series(records, history, env_keys).items():
            judgement = judge_series(nights, min_effect, **options)
            rows.append({"suite": suite, "case_id": case_id, "run_id": runs[t], "night": t,
                         "verdict": "" if judgement is None else judgement.verdict,
                         "rule": "" if judgement is None else judgement.rule,
                         "delta_rel": None if judgement is None else judgement.delta_rel})
    return Replay(pd.DataFrame(rows, columns=["suite", "case_id", "run_id", "night", "verdict", "rule", "delta_rel"]))
