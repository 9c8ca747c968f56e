"""A/B interleaving: each case of a suite measured alternately in two environments, in one sitting, so that the
machine's drift hits both sides alike. How an upgrade of torch or timm (another venv), another checkout, or an
environment variable is judged before it merges (``harness ab``).

Each side is a command that starts a Python interpreter able to import this harness (``python``, a venv's
``bin/python``, ``env VAR=1 python``); it runs ``harness.runner.ab_worker`` there. The sitting is ``pairs`` pairs of
fresh workers, one per side, started together: each pair measures every case in ``rounds`` rounds, a round being a
latency window of ``window_s`` seconds on one side and then on the other, the order alternating (AB, BA, …) so that
neither side always goes first, with a pause of ``SETTLE_S`` before each window so that the side that just measured
has left the cores. Why fresh pairs: on a shared machine a process keeps an offset of its own for its whole life
(where its memory landed, which cores its threads met): on this project's 2-core VM, one model timed in six fresh
processes had means spread ±8%, in six fresh builds within one process ±4%. One pair per sitting would compare two
such offsets, not two environments (an A/A sitting of one pair called MobileNetV2 b8 regressed); over many pairs they
average out, and the pairs are the units of the statistics.

The statistic. Pair j gives d_j, the median over its rounds of log(candidate median / baseline median): the two
windows of a round are a second apart, so the machine's drift cancels in each ratio. The change is exp(mean d_j) − 1,
its 95% interval the t-interval of the mean over the pairs, its test the one-sample t-test of the d_j against 0; the
verdict follows ``harness compare``'s rule (:func:`harness.compare.decide`): regressed or improved when significant at
``alpha`` and at least ``min_effect``, unchanged when the interval lies within ±``min_effect``, else inconclusive. A
round in which either window was contended (other processes took the cores) is dropped; with fewer than ``MIN_PAIRS``
pairs left the case is too noisy.

Until decided. With ``max_pairs`` above ``pairs``, the cases still inconclusive after ``pairs`` pairs go on alone in
more pairs, judged again each time the pairs have doubled (:func:`looks`), until each is decided or ``max_pairs`` is
reached. Each of the K looks tests at ``alpha`` / K with a (1 − 0.05 / K) interval (Bonferroni over the looks), so
judging more often does not raise the chance of calling identical environments different.
"""

from __future__ import annotations

import dataclasses
import json
import select
import shlex
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.compare import LatencyJudgement

PAIRS = 10
ROUNDS = 2
WINDOW_S = 0.3
MIN_PAIRS = 5
STARTUP_TIMEOUT_S = 300.0
#: Seconds between two windows: the side that just measured leaves the cores (OpenMP's threads spin-wait ~0.2 s
#: after a parallel region; measured meanwhile, the other side's window would be contended).
SETTLE_S = 0.25
#: Seconds a side may take to answer one window (a build and warm-up included) before it is declared hung.
WINDOW_TIMEOUT_S = 600.0


class Side:
    """One environment's worker: ``name`` (baseline or candidate) and the command starting its interpreter."""

    def __init__(self, name: str, command: str) -> None:
        self.name = name
        self.command = command
        self.argv = shlex.split(command)
        if not self.argv:
            raise HarnessError(f"--{name}-env is empty: give the command that starts a Python interpreter")
        self._proc: subprocess.Popen[str] | None = None
        self.env: dict[str, Any] = {}

    def launch(self) -> None:
        """Start the worker without waiting for it; HarnessError when the command cannot be started."""
        try:
            self._proc = subprocess.Popen([*self.argv, "-m", "harness.runner.ab_worker"], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, text=True, bufsize=1)
        except OSError as exc:
            raise HarnessError(f"--{self.name}-env {self.command!r}: cannot start it: {exc}") from None

    def ready(self) -> dict[str, Any]:
        """Wait until the launched worker is ready; return the environment it reports."""
        self.env = self._answer(STARTUP_TIMEOUT_S)["env"]
        return self.env

    def measure(self, case: dict[str, Any], latency: dict[str, Any]) -> dict[str, Any]:
        """Return the worker's answer to one latency window of ``case`` (a Case's dict) with ``latency`` options."""
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps({"case": case, "latency": latency}) + "\n")
            self._proc.stdin.flush()
        except BrokenPipeError:
            pass  # the worker died: _answer says how
        return self._answer(WINDOW_TIMEOUT_S)

    def _answer(self, timeout_s: float) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdout is not None
        ready, _, _ = select.select([self._proc.stdout], [], [], timeout_s)
        line = self._proc.stdout.readline() if ready else ""
        if not line:
            self.stop()
            why = f"gave no answer within {timeout_s:g} s" if not ready else f"exited ({self._proc.returncode})"
            raise HarnessError(f"the {self.name} side's worker ({self.command!r}) {why}; its messages are above "
                               "(does that interpreter import this harness?)")
        try:
            return json.loads(line)
        except ValueError:
            self.stop()
            raise HarnessError(f"the {self.name} side's worker ({self.command!r}) answered {line[:200]!r}, not a "
                               "protocol line: is it the same version of the harness?") from None

    def stop(self) -> None:
        """End the worker (closing its input), killing it if it does not exit; safe to call twice."""
        if self._proc is None:
            return
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            try:
                self._proc.stdin.close()
            except BrokenPipeError:
                pass
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)


@dataclass(frozen=True)
class AbResult:
    """The verdict on one case: ``judgement`` holds the verdict, its reason, the medians in ms per batch (over every
    round kept), ``delta_rel`` the change of the candidate against the baseline (0.1 = 10% slower), ``ci_low`` /
    ``ci_high`` its 95% interval, ``p_value`` the t-test's and ``n_*`` the rounds kept; ``pairs`` the worker pairs
    judged, ``dropped`` the rounds left out as contended, ``pair_deltas`` each pair's d_j (log ratio)."""

    case_id: str
    label: str
    judgement: LatencyJudgement
    pairs: int = 0
    dropped: int = 0
    pair_deltas: list[float] = field(default_factory=list)


def judge_pairs(pair_deltas: Sequence[float], alpha: float = 0.01, min_effect: float = 0.05,
                confidence: float = 0.95) -> tuple[str, str, dict[str, float]]:
    """Return (verdict, reason, statistics) of the pairs' log ratios ``pair_deltas`` by the module's rule (the
    interval at ``confidence``); the statistics: ``delta_rel``, ``ci_low``, ``ci_high``, ``p_value``."""
    from scipy import stats

    from harness.compare import INCONCLUSIVE, decide

    d = np.asarray(pair_deltas, dtype=float)
    if d.size < MIN_PAIRS:
        return INCONCLUSIVE, f"{d.size} worker pair(s), fewer than {MIN_PAIRS}", {}
    mean, sem = float(d.mean()), float(d.std(ddof=1) / np.sqrt(d.size))
    half = float(stats.t.ppf(0.5 + confidence / 2, d.size - 1)) * sem
    p = 1.0 if sem == 0 else float(stats.ttest_1samp(d, 0.0).pvalue)
    low, high, delta = float(np.expm1(mean - half)), float(np.expm1(mean + half)), float(np.expm1(mean))
    verdict, why = decide(delta, low, high, p, alpha, min_effect, test="t-test", what=f"mean of {d.size} worker pairs",
                          confidence=confidence)
    return verdict, why, {"delta_rel": delta, "ci_low": low, "ci_high": high, "p_value": p}


def window_options(latency: dict[str, Any], window_s: float) -> dict[str, Any]:
    """Return the latency options of one window: the suite's, with sampling bounded to ``window_s`` seconds (at
    least 3 samples) and a short warm-up (the model stays built between rounds)."""
    return {**latency, "min_time_s": window_s, "max_time_s": window_s, "min_repeats": 3,
            "warmup_max_s": min(float(latency.get("warmup_max_s", 5.0)), max(window_s, 0.2)),
            "timer_overhead_samples": 20}


@dataclass
class _Tally:
    """What the pairs measured of one case so far."""

    medians: dict[str, list[float]] = field(default_factory=lambda: {"baseline": [], "candidate": []})
    pair_deltas: list[float] = field(default_factory=list)
    dropped: int = 0
    failure: tuple[str, str] | None = None


def _measure_rounds(case: Any, sides: tuple[Side, Side], options: dict[str, Any], rounds: int, tally: _Tally) -> None:
    """Measure ``rounds`` rounds of ``case`` on one worker pair, adding them (or the failure) to ``tally``."""
    ratios = []
    for r in range(rounds):
        answers = {}
        for side in sides if r % 2 == 0 else sides[::-1]:
            time.sleep(SETTLE_S)
            answers[side.name] = side.measure(case.to_dict(), options)
        bad = next(((name, a) for name, a in answers.items() if a["status"] != "ok"), None)
        if bad is not None:
            tally.failure = (bad[1]["status"], f"{bad[0]}: {(bad[1]['error'].strip().splitlines() or [''])[-1]}")
            return
        if any(a["contended"] for a in answers.values()):
            tally.dropped += 1
            continue
        for name, answer in answers.items():
            tally.medians[name].append(float(answer["median_ms"]))
        ratios.append(np.log(answers["candidate"]["median_ms"] / answers["baseline"]["median_ms"]))
    if ratios:
        tally.pair_deltas.append(float(np.median(ratios)))


def _result(case: Any, tally: _Tally, alpha: float, min_effect: float, confidence: float = 0.95) -> AbResult:
    from harness.compare import TOO_NOISY, LatencyJudgement

    if tally.failure is not None:
        return AbResult(case.case_id, case.label, LatencyJudgement(*tally.failure))
    kept = len(tally.pair_deltas)
    if kept < MIN_PAIRS:
        return AbResult(case.case_id, case.label, LatencyJudgement(
            TOO_NOISY, f"{tally.dropped} round(s) contended (other processes took the cores): {kept} worker pair(s) "
            f"left, fewer than {MIN_PAIRS}"), pairs=kept, dropped=tally.dropped)
    verdict, why, stats = judge_pairs(tally.pair_deltas, alpha, min_effect, confidence)
    if tally.dropped:
        why += f"; {tally.dropped} contended round(s) left out"
    base, cand = tally.medians["baseline"], tally.medians["candidate"]
    judgement = LatencyJudgement(verdict, why, float(np.median(base)), float(np.median(cand)), n_baseline=len(base),
                                 n_candidate=len(cand), **stats)
    return AbResult(case.case_id, case.label, judgement, pairs=kept, dropped=tally.dropped,
                    pair_deltas=tally.pair_deltas)


def looks(pairs: int, max_pairs: int) -> list[int]:
    """Return the numbers of pairs after which the undecided cases are judged: ``pairs``, then doubling, the last
    ``max_pairs`` (just ``[pairs]`` when ``max_pairs`` ≤ ``pairs``)."""
    out = [pairs]
    while out[-1] < max_pairs:
        out.append(min(out[-1] * 2, max_pairs))
    return out


def look_levels(pairs: int, max_pairs: int, alpha: float) -> tuple[float, float]:
    """Return ``(alpha, confidence)`` of each look of :func:`looks` (``pairs`` to ``max_pairs``): ``alpha`` / K and
    1 − 0.05 / K for K looks (Bonferroni over the looks)."""
    k = len(looks(pairs, max_pairs))
    return alpha / k, 1 - 0.05 / k


def run_ab(cases: Sequence[Any], baseline_env: str, candidate_env: str, latency: dict[str, Any], *,
           pairs: int = PAIRS, max_pairs: int | None = None, rounds: int = ROUNDS, window_s: float = WINDOW_S,
           alpha: float = 0.01, min_effect: float = 0.05,
           progress: Callable[[int, int], None] | None = None,
           ) -> tuple[list[AbResult], dict[str, Any]]:
    """Measure every case of ``cases`` (Cases) on ``pairs`` fresh worker pairs, ``rounds`` rounds each, and judge
    them — the inconclusive ones on more pairs up to ``max_pairs`` (see the module's "Until decided"); return the
    results (in the order of ``cases``) and each side's environment ({"baseline": env, "candidate": env}, from the
    first pair). ``progress(j, n)`` is called after pair j measured n cases."""
    from harness.compare import INCONCLUSIVE

    options = window_options(latency, window_s)
    tallies = [_Tally() for _ in cases]
    checkpoints = looks(pairs, max_pairs or pairs)
    alpha_look, confidence = look_levels(pairs, max_pairs or pairs, alpha)
    results: dict[int, AbResult] = {}
    envs: dict[str, Any] = {}
    measured = 0
    for k, look in enumerate(checkpoints, 1):
        todo = [i for i in range(len(cases)) if i not in results]
        while measured < look:
            _measure_pair(cases, tallies, todo, (baseline_env, candidate_env), options, rounds, envs)
            if progress is not None:
                progress(measured, len(todo))
            measured += 1
        for i in todo:
            result = _result(cases[i], tallies[i], alpha_look, min_effect, confidence)
            if result.judgement.verdict != INCONCLUSIVE or k == len(checkpoints):
                if len(checkpoints) > 1:
                    reason = (f"{result.judgement.reason} [look {k} of {len(checkpoints)}, after {look} pairs; each "
                              f"look at alpha {alpha:g}/{len(checkpoints)}]")
                    result = dataclasses.replace(result, judgement=dataclasses.replace(result.judgement,
                                                                                       reason=reason))
                results[i] = result
        if len(results) == len(cases):
            break
    return [results[i] for i in range(len(cases))], envs


def _measure_pair(cases: Sequence[Any], tallies: list[_Tally], todo: list[int], commands: tuple[str, str],
                  options: dict[str, Any], rounds: int, envs: dict[str, Any]) -> None:
    """Start a fresh worker pair and measure the cases at positions ``todo`` (not yet failed) on it, ``rounds``
    rounds each, into their tallies; the first pair's environments go into ``envs``."""
    sides = (Side("baseline", commands[0]), Side("candidate", commands[1]))
    try:
        for side in sides:
            side.launch()
        for side in sides:
            envs.setdefault(side.name, side.ready())
        for i in todo:
            if tallies[i].failure is None:
                _measure_rounds(cases[i], sides, options, rounds, tallies[i])
    finally:
        for side in sides:
            side.stop()
