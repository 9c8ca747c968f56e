"""Splitting a suite's cases into N shards of about equal cost, the same way on every machine.

``harness run SUITE --shard I/N`` runs shard I (1-based) of N. Every machine computes the same split from the
suite alone: each case's cost is estimated from its fields and its metrics' options (no timing history, which
differs between machines), the cases are taken from the most to the least costly (ties by case_id) and each
goes to the shard with the least estimated cost so far (ties to the lowest index): the longest-processing-time
rule, within 4/3 of the best split. The union of the N shards is the suite, and no case is in two.

The estimate is in rough seconds on one CPU socket and only its proportions matter: a fixed cost to build the
model, plus each metric's own (:data:`METRIC_COST_S`), scaled by the work of one batch (batch × pixels ×
processes, relative to one 224-px image) where the metric's time grows with it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from harness.case import Case
from harness.errors import HarnessError

BUILD_COST_S = 2.0


def _work(case: Case) -> float:
    """Return the work of one batch of ``case`` relative to one 224-px image in inference."""
    train = 3.0 if case.mode == "train" else 1.0
    return case.batch * case.world_size * case.resolution * (case.width or case.resolution) / 224**2 * train


def _timed(options: dict[str, Any], case: Case) -> float:
    """A time-bounded metric: warm-up plus its sampling window (between min_time_s and max_time_s)."""
    low, high = options.get("min_time_s", 1.0), options.get("max_time_s", 10.0)
    return min(high, max(low, 0.05 * _work(case))) + options.get("warmup_max_s", 1.0) / 2


def _images_s(options: dict[str, Any], case: Case) -> float:
    """A metric over a dataset: the images scored (``limit``) plus three times those trained on."""
    images = (options.get("limit") or 0) + 3 * options.get("train_images", 0)
    return 0.002 * images * _work(case) / case.batch


#: metric name -> estimated seconds for one case, from its options and the case.
METRIC_COST_S: dict[str, Callable[[dict[str, Any], Case], float]] = {
    "complexity": lambda _o, case: 1.0 + 0.02 * _work(case),
    "latency": _timed,
    "energy": lambda o, case: o.get("min_window_s", 1.0) + 0.02 * _work(case),
    "memory": lambda _o, case: 0.5 + 0.05 * _work(case),
    "accuracy": lambda o, case: 5.0 + _images_s(o, case),
    "detection": lambda o, case: 10.0 + _images_s(o, case),
}


def estimate_cost_s(case: Case, metrics: dict[str, dict[str, Any]]) -> float:
    """Return the estimated seconds to run ``case`` with ``metrics`` (name -> options), for balancing shards."""
    default = METRIC_COST_S["complexity"]
    return BUILD_COST_S + sum(METRIC_COST_S.get(name, default)(options, case) for name, options in metrics.items())


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (1-based) of ``count``."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def slug(self) -> str:
        """Return the shard as a file-name part, e.g. ``shard-2-of-4``."""
        return f"shard-{self.index}-of-{self.count}"


def parse_shard(text: str) -> Shard:
    """Return the Shard written ``I/N`` (1 ≤ I ≤ N); raise HarnessError saying what was expected otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise HarnessError(f"--shard {text!r}: expected I/N, e.g. 1/4 (shard I of N, counted from 1)")
    index, count = int(match[1]), int(match[2])
    if not 1 <= index <= count:
        raise HarnessError(f"--shard {text!r}: I must be between 1 and N")
    return Shard(index, count)


def assign_shards(cases: Sequence[Case], cost_s: Callable[[Case], float], count: int) -> dict[str, int]:
    """Return ``{case_id: shard index (1-based)}``: the longest-processing-time split of ``cases`` into
    ``count`` shards by ``cost_s`` (see the module doc); deterministic for the same cases and costs."""
    loads = [0.0] * count
    assigned: dict[str, int] = {}
    for case in sorted(cases, key=lambda c: (-cost_s(c), c.case_id)):
        lightest = min(range(count), key=lambda i: (loads[i], i))
        loads[lightest] += cost_s(case)
        assigned[case.case_id] = lightest + 1
    return assigned


def select_shard(cases: Sequence[Case], cost_s: Callable[[Case], float], shard: Shard) -> list[Case]:
    """Return the cases of ``shard``, in the suite's order."""
    assigned = assign_shards(cases, cost_s, shard.count)
    return [case for case in cases if assigned[case.case_id] == shard.index]
