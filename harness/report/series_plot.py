"""A flagged case's history of nights as a small plot for the regressions page: each night's median latency (error
bars: its 95% interval), nights left out hollow, the levels before and after as lines, the change point marked."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from markupsafe import Markup

from harness.report.plots import PALETTE, Axis, Point, Series, chart

#: The dash pattern of the level lines (on, off: line widths).
DASH = (4.0, 3.0)


def _tip(index: int, night: Mapping[str, Any]) -> str:
    where = f"night {index}: run {night['run_id']}"
    commit = f", commit {night['git_sha'][:12]}" if night.get("git_sha") else ""
    left = f" (left out: {night['left_out']})" if night.get("left_out") else ""
    return f"{where}{commit}: {night['value_ms']:.4g} ms{left}"


def _level(name: str, first: float, last: float, value_ms: float | None, color: str) -> Series | None:
    if value_ms is None:
        return None
    return Series(name, [Point(first, value_ms, f"{name}: {value_ms:.4g} ms"), Point(last, value_ms)], color=color,
                  line=True, markers=False, dash=DASH, kind="level")


def series_plot(plot_id: str, label: str, history: Mapping[str, Any]) -> Markup:
    """Return the inline SVG of one case's history (``HistoryJudgement.as_dict()``): x the night (0 = oldest shown,
    the last = tonight), y the median latency in ms per batch."""
    nights = history["nights"]
    used = set(history["used"])
    kept, left = [], []
    for i, night in enumerate(nights):
        noise = night.get("noise_rel")
        low = high = None
        if noise is not None and math.isfinite(noise):
            low, high = night["value_ms"] * (1 - 1.96 * noise), night["value_ms"] * (1 + 1.96 * noise)
        (kept if i in used else left).append(Point(i, night["value_ms"], _tip(i, night), low, high))
    change = history.get("change_at")
    tonight = len(nights) - 1
    start = history.get("level_from") or 0
    series = [Series("night's median (95% CI)", kept, color=PALETTE[0], line=True)]
    if left:
        series.append(Series("left out (contended or another environment)", left, color=PALETTE[8], hollow=True))
    if change is None:
        reference = _level("recent level", start, tonight - 1, history.get("level_before_ms"), PALETTE[2])
        after = None
    else:
        reference = _level("level before", start, change - 0.5, history.get("level_before_ms"), PALETTE[2])
        after = _level("level after", change - 0.5, tonight, history.get("level_after_ms"), PALETTE[1])
    series += [s for s in (reference, after) if s is not None]
    if change is not None:
        values = [p.y for p in kept + left]
        series.append(Series("change point", [Point(change - 0.5, min(values)), Point(change - 0.5, max(values))],
                             color=PALETTE[1], line=True, markers=False, scaled=False, kind="change"))
    return chart(plot_id, f"{label}: history of nights", series, Axis("night (oldest → tonight)"),
                 Axis("median latency (ms per batch)", log=False))
