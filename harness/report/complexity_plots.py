"""The plots of a counting survey (a suite that counts and times nothing, such as ``harness zoo``'s): MACs against
parameters, and memory access cost against MACs, a point per case, the extremes of each ratio named."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.report.plots import PALETTE, Axis, Plot, Point, Series, chart, label_key, name_points, ok_records

#: How many cases of each extreme of a plot's ratio (the highest, the lowest) are named.
EXTREMES = 5


@dataclass(frozen=True)
class RatioScatter:
    """One survey plot: ``y`` against ``x`` (record columns), each divided by its ``scale`` for its axis label; the
    ratio y / x is named ``ratio`` (e.g. MACs per parameter) in tooltips and the caption."""

    plot_id: str
    title: str
    x: str
    x_label: str
    x_scale: float
    y: str
    y_label: str
    y_scale: float
    ratio: str
    meaning: str


SCATTERS = (
    RatioScatter("plot-macs-params", "MACs vs parameters", "params", "Parameters (M)", 1e6, "macs",
                 "MACs per forward pass (G)", 1e9, "MACs per parameter",
                 "how often each weight is used per image: high for convolutions at high resolution, about one for "
                 "a model dominated by fully connected layers"),
    RatioScatter("plot-macbytes-macs", "Memory access cost vs MACs", "macs", "MACs per forward pass (G)", 1e9,
                 "mac_bytes", "Memory access cost (MB)", 1e6, "bytes per MAC",
                 "the inverse of arithmetic intensity: high for memory-bound architectures (depthwise convolutions, "
                 "element-wise ops, attention's score tensors), low for dense convolutions"),
)


def survey_plots(records: pd.DataFrame) -> list[Plot]:
    """Return the plots of :data:`SCATTERS` for a suite that counts and times nothing (no latency in any record) with
    at least two ok records counted; none otherwise."""
    if "latency_ms_median" in records and records["latency_ms_median"].notna().any():
        return []
    counted = ok_records(records, ["params", "macs", "mac_bytes"])
    if counted.empty:
        return []
    counted = counted[(counted["params"] > 0) & (counted["macs"] > 0) & (counted["mac_bytes"] > 0)]
    if len(counted) < 2:
        return []
    return [_ratio_plot(counted, scatter) for scatter in SCATTERS]


def _ratio_plot(records: pd.DataFrame, s: RatioScatter) -> Plot:
    """Return scatter ``s`` of ``records`` (all with positive values), coloured by op coverage, the
    :data:`EXTREMES` highest and lowest ratios named."""
    x = records[s.x].to_numpy(dtype=float)
    y = records[s.y].to_numpy(dtype=float)
    ratio = y / x
    order = np.argsort(ratio, kind="stable")
    extreme = np.zeros(len(records), dtype=bool)
    extreme[order[:EXTREMES]] = extreme[order[-EXTREMES:]] = True
    coverage = (records["complexity_coverage"].to_numpy(dtype=float) if "complexity_coverage" in records
                else np.ones(len(records)))
    full = ~(coverage < 1.0)  # a record without a coverage counts as full: nothing says it missed an op
    labels = records["model"].astype(str).to_numpy() if "model" in records else records["label"].astype(str).to_numpy()
    points = [Point(x[k] / s.x_scale, y[k] / s.y_scale,
                    f"{labels[k]}: {x[k] / s.x_scale:.4g} {_unit(s.x_label)}, {y[k] / s.y_scale:.4g} "
                    f"{_unit(s.y_label)}, {ratio[k]:.3g} {s.ratio}"
                    + ("" if full[k] else f", coverage {coverage[k]:.1%}"))
              for k in range(len(records))]
    series = [Series(name, [points[k] for k in np.flatnonzero(mask)], color, radius=2.5)
              for name, mask, color in (("op coverage 1.0", full, PALETTE[0]),
                                        ("op coverage < 1.0 (counts are lower bounds)", ~full, PALETTE[1]))
              if mask.any()]
    named = [(points[k], str(labels[k]), bool(extreme[k])) for k in range(len(records))]
    names = name_points(named, f"the {EXTREMES} with the highest and the {EXTREMES} with the lowest {s.ratio}")
    svg = chart(s.plot_id, s.title, series, Axis(s.x_label), Axis(s.y_label))
    caption = (f"{s.title}, a point per architecture at its input size, batch 1 ({len(records)} drawn). The ratio, "
               f"{s.ratio}, says {s.meaning}." + names + label_key(p for p, _, _ in named))
    return Plot(s.plot_id, s.title, svg, caption)


def _unit(label: str) -> str:
    """Return the words of an axis label before its unit in brackets, lower-cased: ``Parameters (M)`` → ``M
    parameters``."""
    name, _, unit = label.partition(" (")
    return f"{unit.rstrip(')')} {name.lower()}".strip()
