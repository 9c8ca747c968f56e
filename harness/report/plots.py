"""Plots of the report as inline SVG, drawn in Python from the data: no matplotlib, no JavaScript, readable
from ``file://``. Torch-free.

Each plot function takes a suite's records and returns a :class:`Plot` (title, SVG markup, caption), or None
when its data are missing. Every text from the data (model names, labels, tooltips) goes through
``html.escape``; a point's ``<title>`` is its tooltip. An axis is logarithmic when its values span more than
:data:`LOG_SPAN`. Plots subsample or aggregate, so their size does not grow with the store.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import pandas as pd
from markupsafe import Markup

from harness.report.tables import SeedSpread, error_by_batch_series, hardware_names, published_error_by_batch
from harness.seed_stats import group_ids, seeds_of
from harness.store import is_missing

#: An axis is logarithmic when its (positive) values span more than this factor.
LOG_SPAN = 20.0
WIDTH, HEIGHT = 760, 420
#: Series colours (Okabe & Ito's colour-blind-safe palette, then grey tones), cycled.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#8C564B", "#999999",
           "#F0E442")
#: At most this many points per scatter plot (the Pareto front is always kept; the rest evenly subsampled).
MAX_POINTS = 2000
#: At most this many cases in a latency distribution plot, and this many samples drawn per case.
MAX_BOXES = 40
STRIP_POINTS = 40
#: At most this many cases in a history plot (those with the most runs, then the largest relative change).
MAX_HISTORY_CASES = 10

#: Peak arithmetic throughput of GPUs, TFLOP/s, dense (no structured sparsity), keyed by a substring of the
#: GPU's name as NVML reports it (first match wins, so the more specific names come first). ``fp32`` is the
#: non-tensor-core FP32 peak; ``fp16``/``bf16`` the tensor-core peak with FP32 accumulation (half of the
#: datasheets' "with sparsity" figures). Sources: the vendors' datasheets named beside each row. CPUs are left
#: out on purpose (their peak depends on the SKU's clocks and vector units): no roof is drawn for them.
GPU_PEAK_TFLOPS: tuple[tuple[str, dict[str, float], str], ...] = (
    ("H100 PCIe", {"fp32": 51.2, "fp16": 756.0, "bf16": 756.0}, "NVIDIA H100 Tensor Core GPU datasheet (PCIe)"),
    ("H100 NVL", {"fp32": 60.0, "fp16": 835.5, "bf16": 835.5}, "NVIDIA H100 NVL datasheet"),
    ("H100", {"fp32": 66.9, "fp16": 989.4, "bf16": 989.4}, "NVIDIA H100 Tensor Core GPU datasheet (SXM5)"),
    ("H200", {"fp32": 66.9, "fp16": 989.4, "bf16": 989.4}, "NVIDIA H200 Tensor Core GPU datasheet (SXM)"),
    ("A100", {"fp32": 19.5, "fp16": 312.0, "bf16": 312.0}, "NVIDIA A100 Tensor Core GPU datasheet"),
    ("V100", {"fp32": 15.7, "fp16": 125.0}, "NVIDIA Tesla V100 datasheet (SXM2)"),
    ("T4", {"fp32": 8.1, "fp16": 65.0}, "NVIDIA T4 datasheet"),
    ("L4", {"fp32": 30.3, "fp16": 121.0, "bf16": 121.0}, "NVIDIA L4 datasheet"),
    ("1080 Ti", {"fp32": 11.3}, "NVIDIA GeForce GTX 1080 Ti specifications (3584 cores × 1582 MHz × 2)"),
)


def peak_tflops(hardware: str, dtype: str) -> tuple[float, str] | None:
    """Return ``(peak TFLOP/s, source)`` of ``hardware`` (a GPU name) at ``dtype`` from
    :data:`GPU_PEAK_TFLOPS`, or None when it is not known."""
    name = hardware.lower()
    for key, peaks, source in GPU_PEAK_TFLOPS:
        if key.lower() in name:
            return (peaks[dtype], source) if dtype in peaks else None
    return None


@dataclass
class Plot:
    """A rendered plot: an id for the page's anchor, a title, the SVG markup and a caption (plain text)."""

    id: str
    title: str
    svg: Markup
    caption: str


@dataclass
class Point:
    """A data point and its tooltip (plain text; escaped when drawn). ``y_low`` and ``y_high`` (data units, like
    ``y``) are the ends of a vertical error bar drawn through the point; None (or NaN) on either: no bar."""

    x: float
    y: float
    tip: str = ""
    y_low: float | None = None
    y_high: float | None = None

    def bar(self) -> tuple[float, float] | None:
        """Return the ends of the point's error bar ``(y_low, y_high)`` (data units), or None without one (an end
        missing or not finite)."""
        if self.y_low is None or self.y_high is None or not (math.isfinite(self.y_low) and math.isfinite(self.y_high)):
            return None
        return float(self.y_low), float(self.y_high)


@dataclass
class Series:
    """Points drawn with one colour: as markers, as a line through them in order, or both. A series with
    ``scaled`` False (a guide line) does not widen the axes."""

    name: str
    points: list[Point]
    color: str = PALETTE[0]
    line: bool = False
    markers: bool = True
    dash: str = ""
    radius: float = 3.5
    hollow: bool = False
    scaled: bool = True
    legend: bool = True


@dataclass
class Axis:
    """An axis: its label (with the unit), log scale (None: when the values span decades), explicit ticks,
    whether values are POSIX times (seconds), and extra values the range must include."""

    label: str
    log: bool | None = None
    ticks: Sequence[float] | None = None
    time: bool = False
    include: Sequence[float] = field(default_factory=tuple)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _g(value: float) -> str:
    """Return a short label of a number: 4 significant digits, exponents without '+0'."""
    if value == 0:
        return "0"
    out = f"{value:.4g}"
    return out.replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")


def _f(value: float) -> str:
    return f"{value:.1f}"


class _Scale:
    """Maps data values to pixels between ``start`` and ``end`` (linear, logarithmic or time), with ticks."""

    def __init__(self, values: np.ndarray, axis: Axis, start: float, end: float) -> None:
        values = np.asarray(values, dtype=float)
        values = values[np.isfinite(values)]
        if values.size == 0:
            values = np.array([0.0, 1.0])
        lo, hi = float(values.min()), float(values.max())
        auto_log = lo > 0 and hi / lo > LOG_SPAN
        self.axis = axis
        self.log = (auto_log if axis.log is None else axis.log) and lo > 0 and not axis.time
        a, b = (math.log10(lo), math.log10(hi)) if self.log else (lo, hi)
        if a == b:
            delta = 0.5 if self.log else 3600.0 if axis.time else (abs(a) * 0.1 or 1.0)
            a, b = a - delta, b + delta
        pad = (b - a) * 0.05
        self.a, self.b, self.start, self.end = a - pad, b + pad, start, end

    def __call__(self, value: float) -> float:
        t = math.log10(value) if self.log else value
        return self.start + (t - self.a) / (self.b - self.a) * (self.end - self.start)

    def ticks(self) -> list[tuple[float, str]]:
        if self.axis.ticks is not None:
            inside = [v for v in self.axis.ticks if self._inside(v)]
            return [(v, _g(v)) for v in inside]
        if self.axis.time:
            return self._time_ticks()
        if self.log:
            first, last = math.ceil(self.a), math.floor(self.b)
            steps = (1, 2, 5) if last - first < 2 else (1,)
            ticks = [m * 10.0**k for k in range(first - 1, last + 1) for m in steps]
            ticks = [v for v in ticks if self._inside(v)]
            if len(ticks) >= 2:
                return [(v, _g(v)) for v in ticks]
            lo, hi = 10**self.a, 10**self.b
            return [(v, _g(v)) for v in _linear_ticks(lo, hi) if v > 0]
        return [(v, _g(v)) for v in _linear_ticks(self.a, self.b)]

    def _inside(self, value: float) -> bool:
        if self.log and value <= 0:
            return False
        t = math.log10(value) if self.log else value
        return self.a <= t <= self.b

    def _time_ticks(self) -> list[tuple[float, str]]:
        span = self.b - self.a
        steps = (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400, 14 * 86400,
                 30 * 86400, 91 * 86400, 365 * 86400)
        step = next((s for s in steps if span / s <= 6), steps[-1] * max(1, math.ceil(span / steps[-1] / 6)))
        fmt = "%Y-%m-%d" if step >= 86400 else ("%m-%d %H:%M" if span > 86400 else "%H:%M")
        first = math.ceil(self.a / step) * step
        values = np.arange(first, self.b + 1e-9, step)
        return [(float(v), datetime.fromtimestamp(float(v), tz=timezone.utc).strftime(fmt)) for v in values]


def _linear_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    raw = (hi - lo) / count
    if raw <= 0:
        return [lo]
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if raw <= m * magnitude)
    first = math.ceil(lo / step) * step
    return [round(v / step) * step for v in np.arange(first, hi + step * 1e-9, step)]


def _legend(series: Sequence[Series], x0: float, y0: float) -> list[str]:
    out = []
    entries = [s for s in series if s.legend]
    shown = entries[:15]
    for i, s in enumerate(shown):
        y = y0 + 16 * i
        dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
        if s.line:
            out.append(f'<line x1="{x0:.1f}" y1="{y:.1f}" x2="{x0 + 18:.1f}" y2="{y:.1f}" stroke="{s.color}" '
                       f'stroke-width="2"{dash}/>')
        if s.markers:
            fill = "none" if s.hollow else s.color
            out.append(f'<circle cx="{x0 + 9:.1f}" cy="{y:.1f}" r="4" fill="{fill}" stroke="{s.color}"/>')
        name = s.name if len(s.name) <= 30 else s.name[:29] + "…"
        out.append(f'<text x="{x0 + 24:.1f}" y="{y + 4:.1f}" class="legend"><title>{_e(s.name)}</title>'
                   f"{_e(name)}</text>")
    if len(entries) > len(shown):
        out.append(f'<text x="{x0:.1f}" y="{y0 + 16 * len(shown) + 4:.1f}" class="legend">'
                   f"+{len(entries) - len(shown)} more</text>")
    return out


def _svg_start(plot_id: str, title: str, height: int, area: tuple[int, int, int, int], clip: bool) -> list[str]:
    """Return the opening of a plot's SVG: the element, its title, the frame of the plot ``area`` (left, top,
    right, bottom, px) and, with ``clip``, a clip path of that area (``<plot_id>-clip``)."""
    left, top, right, bottom = area
    out = [f'<svg class="plot" id="{_e(plot_id)}-svg" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" '
           f'height="{height}" role="img" aria-label="{_e(title)}">', f"<title>{_e(title)}</title>"]
    if clip:
        out.append(f'<defs><clipPath id="{_e(plot_id)}-clip"><rect x="{left}" y="{top}" width="{right - left}" '
                   f'height="{bottom - top}"/></clipPath></defs>')
    out.append(f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" class="frame"/>')
    return out


def _x_axis(sx: _Scale, top: int, bottom: int, height: int) -> list[str]:
    """Return the x axis: a grid line, tick and label per tick of ``sx``, and the axis label centred below."""
    out = []
    for value, label in sx.ticks():
        px = sx(value)
        out.append(f'<line x1="{px:.1f}" y1="{top}" x2="{px:.1f}" y2="{bottom}" class="grid"/>'
                   f'<line x1="{px:.1f}" y1="{bottom}" x2="{px:.1f}" y2="{bottom + 5}" class="tick"/>'
                   f'<text x="{px:.1f}" y="{bottom + 18}" text-anchor="middle" class="tick">{_e(label)}</text>')
    x_label = sx.axis.label + (" (log scale)" if sx.log else "")
    out.append(f'<text x="{(sx.start + sx.end) / 2:.1f}" y="{height - 12}" text-anchor="middle" class="axis">'
               f"{_e(x_label)}</text>")
    return out


def chart(plot_id: str, title: str, series: Sequence[Series], x: Axis, y: Axis) -> Markup:
    """Return an SVG chart of ``series`` on axes ``x`` and ``y``: frame, grid, ticks, axis labels, lines
    (clipped to the plot area), error bars (a vertical whisker with caps, ``class="errorbar"``, in the series'
    colour, for each point with ``y_low`` and ``y_high``), markers with their tooltips, and a legend when
    there are named series. The axes' ranges include the points (and the ends of their error bars) of the series
    that are ``scaled``."""
    legend = any(s.legend for s in series) and len(series) > 0
    left, top, right, bottom = 72, 14, WIDTH - (230 if legend else 16), HEIGHT - 52
    scaled = [p for s in series if s.scaled for p in s.points]
    bar_ends = [v for s in series if s.scaled for p in s.points for v in (p.bar() or ())]
    sx = _Scale(np.array([p.x for p in scaled] + list(x.include)), x, left, right)
    sy = _Scale(np.array([p.y for p in scaled] + bar_ends + list(y.include)), y, bottom, top)
    out = _svg_start(plot_id, title, HEIGHT, (left, top, right, bottom), clip=True)
    out += _x_axis(sx, top, bottom, HEIGHT)
    for value, label in sy.ticks():
        py = sy(value)
        out.append(f'<line x1="{left}" y1="{py:.1f}" x2="{right}" y2="{py:.1f}" class="grid"/>'
                   f'<line x1="{left - 5}" y1="{py:.1f}" x2="{left}" y2="{py:.1f}" class="tick"/>'
                   f'<text x="{left - 8}" y="{py + 4:.1f}" text-anchor="end" class="tick">{_e(label)}</text>')
    y_label = y.label + (" (log scale)" if sy.log else "")
    out.append(f'<text transform="rotate(-90)" x="{-(top + bottom) / 2:.1f}" y="18" text-anchor="middle" '
               f'class="axis">{_e(y_label)}</text>')
    out.append(f'<g clip-path="url(#{_e(plot_id)}-clip)">')
    for s in series:
        if s.line and len(s.points) > 1:
            coords = " ".join(f"{sx(p.x):.1f},{sy(p.y):.1f}" for p in s.points)
            dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
            out.append(f'<polyline points="{coords}" fill="none" stroke="{s.color}" stroke-width="1.6"{dash}>'
                       f"<title>{_e(s.name)}</title></polyline>")
    for s in series:
        for p in s.points:
            bar = p.bar()
            if bar is not None:
                out.append(_error_bar(sx(p.x), _bar_end(sy, bar[0]), _bar_end(sy, bar[1]), s.color))
    out.append("</g>")
    for s in series:
        if not s.markers:
            continue
        fill = "none" if s.hollow else s.color
        for p in s.points:
            out.append(f'<circle cx="{sx(p.x):.1f}" cy="{sy(p.y):.1f}" r="{s.radius}" fill="{fill}" '
                       f'stroke="{s.color}" fill-opacity="0.8"><title>{_e(p.tip)}</title></circle>')
    if legend:
        out += _legend(series, right + 14, top + 10)
    out.append("</svg>")
    return Markup("\n".join(out))


#: Half the width of an error bar's caps (px).
CAP = 3.5


def _bar_end(sy: _Scale, value: float) -> float:
    """Return the pixel of an error bar's end ``value`` on ``sy`` (a value a log axis cannot show: its bottom)."""
    return sy(value if not sy.log or value > 0 else 10.0**sy.a)


def _error_bar(px: float, py_low: float, py_high: float, color: str) -> str:
    """Return an error bar as one SVG path: a vertical line at ``px`` from ``py_low`` to ``py_high`` (pixels of
    its low and high end) with a cap of ±:data:`CAP` px at each end."""
    return (f'<path d="M{px:.1f},{py_low:.1f}V{py_high:.1f}M{px - CAP:.1f},{py_low:.1f}H{px + CAP:.1f}'
            f'M{px - CAP:.1f},{py_high:.1f}H{px + CAP:.1f}" class="errorbar" fill="none" stroke="{color}" '
            'stroke-width="1.2"/>')


def _positive(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values) & (values > 0)]


def box_chart(plot_id: str, title: str, rows: Sequence[tuple[str, np.ndarray]], x: Axis) -> Markup:
    """Return a horizontal box-and-strip SVG chart: a row per (label, samples): box from the first to the
    third quartile, median line, whiskers to the last sample within 1.5 × IQR, and up to
    :data:`STRIP_POINTS` samples as dots (evenly spaced in sorted order), each with its tooltip."""
    row_h = 22
    left, top, right = 250, 14, WIDTH - 16
    bottom = top + row_h * len(rows)
    height = bottom + 52
    everything = np.concatenate([np.asarray(s, dtype=float) for _, s in rows])
    sx = _Scale(everything, x, left, right)
    out = _svg_start(plot_id, title, height, (left, top, right, bottom), clip=False)
    out += _x_axis(sx, top, bottom, height)
    for i, (label, raw) in enumerate(rows):
        samples = np.sort(np.asarray(raw, dtype=float))
        samples = _positive(samples) if sx.log else samples[np.isfinite(samples)]
        cy = top + row_h * i + row_h / 2
        short = label if len(label) <= 38 else label[:37] + "…"
        out.append(f'<text x="{left - 8}" y="{cy + 4:.1f}" text-anchor="end" class="tick"><title>{_e(label)}'
                   f"</title>{_e(short)}</text>")
        if samples.size == 0:
            continue
        q1, median, q3 = np.percentile(samples, [25, 50, 75])
        iqr = q3 - q1
        low = samples[samples >= q1 - 1.5 * iqr].min()
        high = samples[samples <= q3 + 1.5 * iqr].max()
        tip = (f"{label}: median {_g(median)} ms, IQR {_g(q1)}–{_g(q3)} ms, whiskers {_g(low)}–{_g(high)} ms, "
               f"{samples.size} samples")
        out.append(f'<line x1="{sx(low):.1f}" y1="{cy:.1f}" x2="{sx(high):.1f}" y2="{cy:.1f}" class="whisker"/>')
        out.append(f'<rect x="{sx(q1):.1f}" y="{cy - 7:.1f}" width="{max(sx(q3) - sx(q1), 1):.1f}" height="14" '
                   f'class="box"><title>{_e(tip)}</title></rect>')
        out.append(f'<line x1="{sx(median):.1f}" y1="{cy - 7:.1f}" x2="{sx(median):.1f}" y2="{cy + 7:.1f}" '
                   f'class="median"/>')
        picks = np.unique(np.linspace(0, samples.size - 1, min(STRIP_POINTS, samples.size)).round().astype(int))
        for k, j in enumerate(picks):
            jitter = ((k * 7919) % 11 - 5) * 0.9
            out.append(f'<circle cx="{sx(samples[j]):.1f}" cy="{cy + jitter:.1f}" r="1.8" class="sample">'
                       f"<title>{_e(label)}: {_e(_g(samples[j]))} ms</title></circle>")
    out.append("</svg>")
    return Markup("\n".join(out))


# --- the plots of a suite ------------------------------------------------------------------------------------


def pareto_front(x: Sequence[float], y: Sequence[float]) -> np.ndarray:
    """Return a boolean mask of the points on the Pareto front when a lower ``x`` and a higher ``y`` are
    better: those no other point dominates (another point dominates one when its x is ≤ and its y is ≥,
    one of them strictly). Equal points are both on the front."""
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    mask = np.zeros(xs.size, dtype=bool)
    order = np.lexsort((-ys, xs))  # by x ascending, then y descending
    best = -math.inf
    i = 0
    while i < order.size:
        j = i
        while j < order.size and xs[order[j]] == xs[order[i]]:
            j += 1
        group = order[i:j]
        top = ys[group].max()
        if top > best:
            mask[group[ys[group] == top]] = True
            best = top
        i = j
    return mask


def _ok(records: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    if not set(columns) <= set(records) or records.empty:
        return records.iloc[0:0]
    keep = records["status"] == "ok"
    for column in columns:
        keep &= records[column].notna()
    return records[keep]


def _subsample(frame: pd.DataFrame, keep: np.ndarray | None = None, limit: int = MAX_POINTS) -> pd.DataFrame:
    """Return at most ``limit`` rows of ``frame``, evenly spaced, always keeping the rows where ``keep``."""
    if len(frame) <= limit:
        return frame
    chosen = np.zeros(len(frame), dtype=bool)
    chosen[np.linspace(0, len(frame) - 1, limit).round().astype(int)] = True
    if keep is not None:
        chosen |= keep
    return frame[chosen]


def _group_name(values: tuple) -> str:
    return " ".join(str(v) for v in values)


def seed_points(records: pd.DataFrame) -> pd.DataFrame:
    """Return a row per case of the ok records in ``records`` (their seeds together: the records sharing a
    ``group_id`` within a suite; a record without one is its own case, by ``case_id``) with top-1 accuracy and a
    latency: ``label`` (the first seed's), ``device``, ``dtype``, ``batch``, ``acc_top1`` (mean over the seeds
    that measured it, fraction 0…1), ``acc_std`` (their sample std, NaN for one), ``acc_n`` (how many) and
    ``latency_ms_median`` (ms per batch: the median over the seeds that timed it, usually only the first). A case
    none of whose records has both is left out; cases in the order of their first seed's record."""
    if not {"acc_top1", "latency_ms_median", "case_id"} <= set(records) or records.empty:
        return pd.DataFrame()
    ok = records[(records["status"] == "ok").to_numpy(dtype=bool, na_value=False)]
    ok = ok[ok["acc_top1"].notna() | ok["latency_ms_median"].notna()]
    if ok.empty:
        return pd.DataFrame()
    ok = ok.assign(_group=group_ids(ok), _seed=seeds_of(ok), _acc=ok["acc_top1"].astype(float),
                   _lat=ok["latency_ms_median"].astype(float)).sort_values("_seed", kind="stable")
    keys = [c for c in ("suite", "_group") if c in ok]
    extra = {c: (c, "first") for c in ("device", "dtype", "batch", "acc_dataset") if c in ok}
    label = "label" if "label" in ok else "case_id"
    out = ok.groupby(keys, sort=False, dropna=False).agg(
        label=(label, "first"), acc_top1=("_acc", "mean"), acc_std=("_acc", "std"), acc_n=("_acc", "count"),
        latency_ms_median=("_lat", "median"), **extra)
    out = out[(out["acc_n"] > 0) & out["latency_ms_median"].notna()]
    return out.reset_index(drop=True)


def accuracy_latency_plot(records: pd.DataFrame, plot_id: str = "plot-accuracy") -> Plot | None:
    """Return top-1 accuracy (%) against median latency (ms per batch), a colour per (device, dtype, batch), with
    each group's Pareto front (faster and more accurate is better) drawn; a point per case (see
    :func:`seed_points`): a case that ran several seeds is drawn at the mean accuracy over them, with a bar of
    ± one standard deviation, and the front is that of the means. None without two cases having both."""
    cases = seed_points(records)
    if len(cases) < 2:
        return None
    series: list[Series] = []
    shown = total = 0
    bars = False
    keys = [c for c in ("device", "dtype", "batch") if c in cases]
    for i, (key, group) in enumerate(cases.sort_values(keys, kind="stable").groupby(keys, sort=True)):
        key = key if isinstance(key, tuple) else (key,)
        name = _group_name(tuple(f"b{v}" if k == "batch" else v for k, v in zip(keys, key, strict=True)))
        color = PALETTE[i % len(PALETTE)]
        front = pareto_front(group["latency_ms_median"], group["acc_top1"])
        group = group.assign(_front=front)
        kept = _subsample(group, front)
        shown, total = shown + len(kept), total + len(group)
        points = [_accuracy_point(r) for r in
                  kept[["latency_ms_median", "acc_top1", "acc_std", "acc_n", "label", "_front"]].to_dict("records")]
        bars |= any(p.bar() is not None for p in points)
        series.append(Series(name, points, color))
        on_front = group[front].sort_values("latency_ms_median")
        front_points = [Point(a, 100 * b) for a, b in
                        zip(on_front["latency_ms_median"], on_front["acc_top1"], strict=True)]
        series.append(Series(f"{name} Pareto front", front_points, color, line=True, markers=False, dash="5 3",
                             legend=False))
    title = "Top-1 accuracy vs latency"
    svg = chart(plot_id, title, series, Axis("Latency median (ms per batch)"), Axis("Top-1 accuracy (%)"))
    datasets = sorted(cases["acc_dataset"].dropna().astype(str).unique()) if "acc_dataset" in cases else []
    caption = ("Top-1 accuracy (%) against the median latency (ms per batch), a colour per device, dtype and batch; "
               "the dashed line joins each group's Pareto front: the cases no other case of the group beats on both "
               "(at most as slow and at least as accurate)."
               + (" Where a case ran several seeds, its point is the mean accuracy over the seeds (at the latency "
                  "measured, the seeds repeat only the accuracy), the bar spans ± one standard deviation (sample "
                  "std) over them, and the front is that of the means." if bars else "")
               + (f" Dataset: {', '.join(datasets)}." if datasets else "")
               + (f" {shown} of {total} cases drawn (front kept, the rest evenly subsampled)." if shown < total
                  else ""))
    return Plot(plot_id, title, svg, caption)


def _accuracy_point(row: dict) -> Point:
    """Return the point of one case of :func:`seed_points` (accuracy in %), with its bar over several seeds."""
    lat, acc, std, n = row["latency_ms_median"], 100 * row["acc_top1"], 100 * row["acc_std"], int(row["acc_n"])
    front = " — on the Pareto front" if row["_front"] else ""
    if n > 1 and math.isfinite(std):
        return Point(lat, acc, f"{row['label']}: {_g(lat)} ms, top-1 {_f(acc)}% ± {_f(std)}, mean of {n} seeds"
                     + front, acc - std, acc + std)
    return Point(lat, acc, f"{row['label']}: {_g(lat)} ms, top-1 {_f(acc)}%" + front)


def flops_latency_plot(records: pd.DataFrame, plot_id: str = "plot-flops") -> Plot | None:
    """Return FLOPs (or MACs) per batch against median latency, a colour per (hardware, dtype), with the
    hardware's peak as a roof line (work = peak × time) where :data:`GPU_PEAK_TFLOPS` knows it; None without
    cases having both."""
    column = next((c for c in ("flops", "macs") if len(_ok(records, [c, "latency_ms_median"]))), None)
    if column is None:
        return None
    ok = _ok(records, [column, "latency_ms_median"])
    ok = ok[ok[column] > 0].assign(hardware=hardware_names(ok[ok[column] > 0]))
    if ok.empty:
        return None
    unit = "FLOPs" if column == "flops" else "MACs"
    per_flop = 1.0 if column == "flops" else 0.5  # a MAC is two FLOPs
    lat = ok["latency_ms_median"].to_numpy(dtype=float)
    xs = np.geomspace(max(lat.min(), 1e-6) / 2, lat.max() * 2, 48)
    series: list[Series] = []
    roofs: list[str] = []
    unknown: list[str] = []
    include: list[float] = []
    shown = 0
    for i, ((hardware, dtype), group) in enumerate(ok.groupby(["hardware", "dtype"], sort=True)):
        color = PALETTE[i % len(PALETTE)]
        kept = _subsample(group)
        shown += len(kept)
        name = f"{hardware or 'unknown hardware'} {dtype}"
        points = [Point(r["latency_ms_median"], r[column] / 1e9,
                        f"{r['label']}: {_g(r['latency_ms_median'])} ms, {_g(r[column] / 1e9)} G{unit}")
                  for r in kept[["latency_ms_median", column, "label"]].to_dict("records")]
        series.append(Series(name, points, color))
        peak = peak_tflops(str(hardware), str(dtype)) if str(group["device"].iloc[0]).startswith("cuda") else None
        if peak is None:
            unknown.append(name)
            continue
        tflops, source = peak
        # TFLOP/s × ms = GFLOP: the roof is the work the device could do at its peak in that time
        series.append(Series(f"{name} peak {_g(tflops)} TFLOP/s", [Point(t, tflops * t * per_flop) for t in xs],
                             color, line=True, markers=False, dash="6 4", scaled=False))
        include.append(tflops * lat.min() * per_flop)
        roofs.append(f"{name}: {_g(tflops)} TFLOP/s ({source})")
    title = f"{unit} vs latency per device"
    svg = chart(plot_id, title, series, Axis("Latency median (ms per batch)"),
                Axis(f"{unit} per batch (G)", include=include))
    caption = (f"{unit} of one batch (G) against the median latency (ms per batch), a colour per hardware and dtype."
               + (" Dashed: the roof, the work the device does at its peak arithmetic rate in that time (no point "
                  "can lie above it" + ("; a MAC counted as two FLOPs" if unit == "MACs" else "") + "): "
                  + "; ".join(roofs) + "." if roofs else "")
               + (" No peak known for " + "; ".join(unknown) + ": no roof drawn." if unknown else "")
               + (f" {shown} of {len(ok)} cases drawn (evenly subsampled)." if shown < len(ok) else ""))
    return Plot(plot_id, title, svg, caption)


def latency_distribution_plot(records: pd.DataFrame, plot_id: str = "plot-latency-distribution",
                              total: int | None = None) -> Plot | None:
    """Return the latency samples of each record in ``records`` (a ``latency_ms_samples`` column of lists) as
    a box and strip plot, at most :data:`MAX_BOXES` cases in the given order; ``total`` is how many cases had
    samples (for the caption). None when no record has samples."""
    if "latency_ms_samples" not in records or records.empty:
        return None
    rows = []
    for record in records[["label", "latency_ms_samples"]].to_dict("records"):
        samples = record["latency_ms_samples"]
        if samples is not None and len(samples) > 0:
            rows.append((str(record["label"]), np.asarray(samples, dtype=float)))
    if not rows:
        return None
    total = max(total or 0, len(rows))
    rows = rows[:MAX_BOXES]
    title = "Latency distribution per case"
    svg = box_chart(plot_id, title, rows, Axis("Latency (ms per batch)"))
    caption = ("Every timed sample of the latest record of each case (ms per batch): box from the first to the third "
               "quartile, line at the median, whiskers to the last sample within 1.5 × IQR of the box, dots = "
               f"samples (at most {STRIP_POINTS} per case, evenly spaced in sorted order)."
               + (f" The first {len(rows)} of {total} cases in table order." if len(rows) < total else ""))
    return Plot(plot_id, title, svg, caption)


def error_batch_plot(records: pd.DataFrame, plot_id: str = "plot-error-batch") -> Plot | None:
    """Return top-1 error (%) against the batch size per process, a line per (model, norm, processes), with
    the published values as dashed lines; None unless several norms and batches have top-1 accuracy."""
    ok = _ok(records, ["acc_top1", "batch", "norm"])
    if ok.empty or ok["norm"].nunique() < 2 or ok["batch"].nunique() < 2:
        return None
    series: list[Series] = []
    colors: dict[tuple[str, str], str] = {}
    bars = False
    for (model, norm, world), spreads in error_by_batch_series(ok).items():
        color = colors.setdefault((model, norm), PALETTE[len(colors) % len(PALETTE)])
        name = f"{model} {norm}" + (f" ×{world} processes" if world != 1 else "")
        points = [_spread_point(name, b, e) for b, e in sorted(spreads.items())]
        bars |= any(p.bar() is not None for p in points)
        series.append(Series(name, points, color, line=True))
    for (model, norm, source), errors in sorted(published_error_by_batch(ok).items()):
        color = colors.setdefault((model, norm), PALETTE[len(colors) % len(PALETTE)])
        name = f"{model} {norm} published"
        points = [Point(b, e, f"{name} ({source}): batch {b}, top-1 error {_f(e)}%")
                  for b, e in sorted(errors.items())]
        series.append(Series(name, points, color, line=True, dash="4 3", hollow=True))
    batches = sorted({p.x for s in series for p in s.points})
    title = "Top-1 error vs batch size per normalization"
    svg = chart(plot_id, title, series, Axis("Images per process (batch)", log=True, ticks=batches),
                Axis("Top-1 error (%)", log=False))
    has_published = any(s.dash for s in series)
    caption = ("Top-1 error (%) = 100 × (1 − top-1 accuracy) by images per process, a line per model and "
               "normalization" + ("; dashed: the papers' published values (another setting: compare the trend)."
                                  if has_published else ".")
               + (" Where a case ran several seeds, its point is the mean error over the seeds and the bar spans "
                  "± one standard deviation (sample std) over them." if bars else ""))
    return Plot(plot_id, title, svg, caption)


def _spread_point(name: str, batch: int, error: SeedSpread) -> Point:
    """Return the point of one batch of an error series: the mean top-1 error (%) over the seeds at ``batch``,
    with a bar of ± one standard deviation (%) when several seeds ran."""
    if error.n > 1 and math.isfinite(error.std):
        tip = f"{name}: batch {batch}, top-1 error {_f(error.mean)}% ± {_f(error.std)} over {error.n} seeds"
        return Point(batch, error.mean, tip, error.mean - error.std, error.mean + error.std)
    return Point(batch, error.mean, f"{name}: batch {batch}, top-1 error {_f(error.mean)}%")


def history_plot(records: pd.DataFrame, plot_id: str = "plot-history") -> Plot | None:
    """Return the median latency of each case across runs (every record of the suite, not only the latest):
    a line per case through its per-run medians, for the :data:`MAX_HISTORY_CASES` cases with the most runs
    (then the largest relative change); None unless some case has ok records from two runs or more."""
    ok = _ok(records, ["latency_ms_median", "case_id", "run_id", "timestamp_utc"])
    if ok.empty:
        return None
    cases, case_names = pd.factorize(ok["case_id"], use_na_sentinel=False)
    runs, run_names = pd.factorize(ok["run_id"], use_na_sentinel=False)
    if len(run_names) < 2:
        return None
    pairs = pd.unique(cases.astype(np.int64) * len(run_names) + runs)
    runs_per_case = np.bincount(pairs // len(run_names), minlength=len(case_names))
    values = pd.Series(ok["latency_ms_median"].to_numpy(dtype=float)).groupby(cases)
    change = (values.max() / values.min()).reindex(range(len(case_names))).to_numpy()
    candidates = np.flatnonzero(runs_per_case >= 2)
    if candidates.size == 0:
        return None
    ranked = candidates[np.lexsort((candidates, -change[candidates], -runs_per_case[candidates]))]
    chosen = ranked[:MAX_HISTORY_CASES]
    sub = ok.iloc[np.flatnonzero(np.isin(cases, chosen))]
    label = sub["label"] if "label" in sub else sub["case_id"]
    per_run = sub.assign(_label=label).groupby(["case_id", "run_id"], sort=False).agg(
        time=("timestamp_utc", "max"), value=("latency_ms_median", "median"), label=("_label", "last"))
    series = []
    for i, code in enumerate(chosen.tolist()):
        case = per_run.xs(case_names[code], level="case_id").sort_values("time")
        name = str(case["label"].iloc[-1])
        points = [Point(pd.Timestamp(t).timestamp(), v,
                        f"{name}: {_g(v)} ms, run {run_id}, {pd.Timestamp(t).strftime('%Y-%m-%d %H:%M')} UTC")
                  for run_id, t, v in zip(case.index, case["time"], case["value"], strict=True)]
        radius = 3.5 if len(points) <= 50 else 1.8
        series.append(Series(name, points, PALETTE[i % len(PALETTE)], line=True, radius=radius))
    title = "Latency median across runs"
    svg = chart(plot_id, title, series, Axis("Run time (UTC)", time=True), Axis("Latency median (ms per batch)"))
    caption = ("The median latency (ms per batch) of each case in every run that measured it (the median over the "
               "run's records of the case), by the run's time."
               + (f" {len(chosen)} of {candidates.size} cases with two runs or more: those with the most runs, then "
                  "the largest change (max / min)." if len(chosen) < candidates.size else ""))
    return Plot(plot_id, title, svg, caption)


def compression_plot(records: pd.DataFrame, plot_id: str = "plot-compression") -> Plot | None:
    """Return the compression survey's plot: top-1 accuracy (%, mean over the seeds, ± one std) against latency (ms,
    the cost case's) of every compressed model and its dense twin, a colour per method, and each model's Pareto front
    over its methods and levels; None without two rows having both (:func:`harness.report.compression
    .compression_rows`)."""
    from harness.report.compression import compression_rows

    rows = compression_rows(records)
    if rows.empty:
        return None
    rows = rows[rows["top1_mean"].notna() & rows["latency_ms_median"].notna()]
    if len(rows) < 2:
        return None
    series: list[Series] = []
    for i, (method, group) in enumerate(rows.groupby("compress", sort=True)):
        points = []
        for row in group.to_dict("records"):
            std = 100 * row["top1_std"] if not is_missing(row["top1_std"]) else math.nan
            acc, lat = 100 * row["top1_mean"], float(row["latency_ms_median"])
            tip = f"{row['model']} {method} {row['level']}".strip() + f": {_g(lat)} ms, top-1 {_f(acc)}%"
            points.append(Point(lat, acc, tip + (f" ± {_f(std)}" if math.isfinite(std) else ""), acc - std, acc + std))
        series.append(Series(str(method), points, PALETTE[i % len(PALETTE)]))
    for model, group in rows.groupby("model", sort=True):
        on_front = group[pareto_front(group["latency_ms_median"], group["top1_mean"])].sort_values("latency_ms_median")
        series.append(Series(f"{model} Pareto front", [Point(float(a), 100 * float(b)) for a, b in zip(
            on_front["latency_ms_median"], on_front["top1_mean"], strict=True)], "#999999", line=True, markers=False,
            dash="5 3", legend=False))
    title = "Compression: top-1 accuracy vs latency"
    svg = chart(plot_id, title, series, Axis("Latency median (ms per batch, the cost case)"),
                Axis("Top-1 accuracy (%)"))
    caption = ("Each compressed model and level (a colour per method; dense: compress none) at its top-1 accuracy "
               "(mean over the seeds, bar ± one std) and its latency (the cost case: random weights compressed, the "
               "largest input size measured); the dashed grey line joins each model's Pareto front: the rows no "
               "other row of the model beats on both.")
    return Plot(plot_id, title, svg, caption)


def suite_plots(latest: pd.DataFrame, history: pd.DataFrame | None = None,
                samples: pd.DataFrame | None = None, samples_total: int | None = None) -> list[Plot]:
    """Return the plots of one suite whose data exist: accuracy vs latency, FLOPs vs latency, latency
    distribution (from ``samples``: latest records with a ``latency_ms_samples`` column), error vs batch per
    norm, and latency history (from ``history``: every record of the suite)."""
    plots = [accuracy_latency_plot(latest), compression_plot(latest), flops_latency_plot(latest)]
    if samples is not None:
        plots.append(latency_distribution_plot(samples, total=samples_total))
    plots.append(error_batch_plot(latest))
    if history is not None:
        plots.append(history_plot(history))
    plots.append(box_simulation_plot(latest))
    return [p for p in plots if p is not None]


def box_simulation_plot(records: pd.DataFrame, plot_id: str = "plot-box-simulation") -> Plot | None:
    """Return the DIoU paper's convergence curves: the simulation's total error against the iteration, a line per loss
    (and seed), the published final errors as hollow markers at the last iteration; None when the suite ran no
    box-regression simulation. The error axis is logarithmic when it spans decades (zero errors are then left out)."""
    from harness.report.tables import boxsim_errors, boxsim_records

    ok = boxsim_records(records)
    if ok.empty:
        return None
    series: list[Series] = []
    colors: dict[str, str] = {}
    several_seeds = "seed" in ok and ok["seed"].nunique() > 1
    for record in ok.to_dict("records"):
        errors = boxsim_errors(record.get("boxsim_error_per_iter"))
        if errors.size == 0:
            continue
        loss = str(record.get("boxsim_loss") or record.get("box_loss"))
        color = colors.setdefault(loss, PALETTE[len(colors) % len(PALETTE)])
        name = loss.upper() + (f" seed={record.get('seed')}" if several_seeds else "")
        step = max(1, math.ceil(errors.size / 50))  # markers (tooltips) on at most ~50 iterations, the line on all
        points = [Point(i + 1, float(e), f"{name}: iteration {i + 1}, total error {_g(float(e))}")
                  for i, e in enumerate(errors) if e > 0 and math.isfinite(e)]
        series.append(Series(name, points, color, line=True, markers=False))
        marked = [p for p in points if (int(p.x) - 1) % step == 0 or int(p.x) == errors.size]
        series.append(Series(name, marked, color, radius=2.0, legend=False))
        published = _published_final(record)
        if published is not None and published[0] > 0:
            value, source = published
            series.append(Series(f"{loss.upper()} published", [Point(errors.size, value, f"{loss.upper()} published "
                                 f"final error {_g(value)} ({source})")], color, hollow=True, radius=5.0))
    if not series:
        return None
    title = "Box-regression simulation: total error vs iteration"
    svg = chart(plot_id, title, series, Axis("Iteration", log=False), Axis("Total l1 error (x, y, w, h), all cases"))
    caption = ("Zheng et al. 2020 (Distance-IoU), Algorithm 1: the l1 distance between every regressed box and its "
               "target, summed over all regression cases, after each iteration of gradient descent on each loss. "
               "Hollow circles: the final errors read off the authors' curves (hand-written gradients; for reference).")
    return Plot(plot_id, title, svg, caption)


def _published_final(record: dict) -> tuple[float, str] | None:
    """Return ``(value, source)`` of a record's published ``boxsim_error_final``, or None."""
    import json

    raw = record.get("published_json")
    if not isinstance(raw, str) or not raw:
        return None
    for entry in json.loads(raw):
        if entry.get("metric") == "boxsim_error_final":
            return float(entry["value"]), str(entry.get("source", ""))
    return None
