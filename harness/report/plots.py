"""Plots of the report as inline SVG, drawn by matplotlib (its object API, no pyplot state; no JavaScript,
readable from ``file://``). Torch-free.

Each plot function takes a suite's records and returns a :class:`Plot` (title, SVG markup, caption), or None
when its data are missing. A plot is :class:`Series` of :class:`Point` drawn by :func:`chart` (or rows of samples
drawn by :func:`box_chart`); :func:`inline_svg` makes matplotlib's SVG fit the page: no fixed size (the page scales it
by its ``viewBox``), every id prefixed by the plot's, a ``<title>`` tooltip per point, the same bytes for the same
data. The points a reader must identify (:func:`name_points`) carry a label beside them, placed by adjustText: their
names, or numbers keyed in the caption (:func:`label_key`); legends sit outside the axes and wrap long names, never
cut them; the axes cover every point and error bar. An axis is logarithmic when its values span more than
:data:`LOG_SPAN`. Plots subsample or aggregate, so their size does not grow with the store.
"""

from __future__ import annotations

import io
import math
import textwrap
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from xml.etree import ElementTree

import matplotlib
import numpy as np
import pandas as pd
from adjustText import adjust_text
from markupsafe import Markup
from matplotlib import cbook
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.axis import Axis as MplAxis
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.text import Text
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

from harness.report.tables import SeedSpread, error_by_batch_series, hardware_names, published_error_by_batch
from harness.seed_stats import group_ids, seeds_of
from harness.store import is_missing

#: An axis is logarithmic when its (positive) values span more than this factor.
LOG_SPAN = 20.0
#: A figure's size (px: the SVG's user unit at 72 dpi). The page scales it to its width; at this width its text is
#: :data:`FONT_PX`.
WIDTH, HEIGHT = 960, 432
DPI = 72
FONT_PX = 12
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
#: A plot names at most this many points (beyond, only those on a Pareto front); at most :data:`MAX_LABELS` by their
#: names at the points, more by numbers keyed in the caption.
MAX_NAMED = 40
MAX_LABELS = 16
#: Legend entries per column (at most two columns; the figure grows for more); names wrap at :data:`WRAP` characters.
LEGEND_ROWS = 16
WRAP = 40
#: The dash pattern of a Pareto front's line (on, off: line widths).
FRONT_DASH = (3.0, 2.0)
#: The points adjustText keeps the labels off: the nearest this many to a labelled point (its time grows with the
#: square of the overlaps between labels and points).
LABEL_OBSTACLES = 120
#: Iterations of adjustText's label placement at most (a count, not its default time limit: the same bytes each time).
LABEL_ITERATIONS = 60
#: matplotlib's settings for the report's figures (text stays text; ids hashed with a fixed salt).
STYLE = {"svg.fonttype": "none", "svg.hashsalt": "harness-report", "font.size": FONT_PX,
         "axes.labelsize": FONT_PX + 1, "xtick.labelsize": FONT_PX, "ytick.labelsize": FONT_PX,
         "legend.fontsize": FONT_PX, "axes.grid": True, "grid.color": "#e6e6e6", "axes.axisbelow": True,
         "axes.edgecolor": "#888888", "legend.frameon": False, "axes.formatter.useoffset": False}
#: matplotlib's settings are global: one figure at a time.
_LOCK = threading.Lock()

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
    """A data point and its tooltip (plain text, escaped when drawn). ``y_low`` and ``y_high`` (data units, like
    ``y``) are the ends of a vertical error bar drawn through the point; None (or NaN) on either: no bar. A point with
    a ``name`` must be identifiable: :func:`chart` writes a label beside it (the name, or a number keyed by
    :func:`label_key`) and sets ``label`` to it."""

    x: float
    y: float
    tip: str = ""
    y_low: float | None = None
    y_high: float | None = None
    name: str = ""
    label: str = ""

    def bar(self) -> tuple[float, float] | None:
        """Return the ends of the point's error bar ``(y_low, y_high)`` (data units), or None without one (an end
        missing or not finite)."""
        if self.y_low is None or self.y_high is None or not (math.isfinite(self.y_low) and math.isfinite(self.y_high)):
            return None
        return float(self.y_low), float(self.y_high)


@dataclass
class Series:
    """Points drawn with one colour: as markers, as a line through them in order, or both; ``dash`` is the line's
    dash pattern (on, off, … in line widths; empty: solid). A series with ``scaled`` False (a guide line) does not
    widen the axes. In the SVG the series is the group ``<plot id>-<kind>-<index in the chart>``, its error bars
    ``<plot id>-errorbar-<index>``."""

    name: str
    points: list[Point]
    color: str = PALETTE[0]
    line: bool = False
    markers: bool = True
    dash: tuple[float, ...] = ()
    radius: float = 3.5
    hollow: bool = False
    scaled: bool = True
    legend: bool = True
    kind: str = "series"


@dataclass
class Axis:
    """An axis: its label (with the unit), log scale (None: when the values span decades), explicit ticks,
    whether values are POSIX times (seconds), and extra values the range must include."""

    label: str
    log: bool | None = None
    ticks: Sequence[float] | None = None
    time: bool = False
    include: Sequence[float] = field(default_factory=tuple)


#: The tooltips of a figure by the gid of its SVG group: one ``<title>`` for the group, or one per marker in order.
Tips = dict[str, str | list[str]]


def _g(value: float) -> str:
    """Return a short label of a number: 4 significant digits, exponents without '+0'."""
    if value == 0:
        return "0"
    out = f"{value:.4g}"
    return out.replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")


def _f(value: float) -> str:
    return f"{value:.1f}"


def _text(name: str, width: int = WRAP) -> str:
    """Return ``name`` wrapped at ``width`` characters (never cut), with ``$`` escaped (matplotlib's math)."""
    return textwrap.fill(name, width, break_long_words=False, break_on_hyphens=False).replace("$", r"\$")


# --- figures to inline SVG -------------------------------------------------------------------------------------


def render(plot_id: str, title: str, draw: Callable[[Figure], Tips]) -> Markup:
    """Return the inline SVG (:func:`inline_svg`) of a :data:`WIDTH` × :data:`HEIGHT` px figure drawn by ``draw``
    (which may grow its height and returns its tooltips), under :data:`STYLE`."""
    with _LOCK, matplotlib.rc_context(STYLE):
        fig = figure()
        tips = draw(fig)
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg")
    return inline_svg(buffer.getvalue(), plot_id, title, tips)


def figure() -> Figure:
    """Return an empty :data:`WIDTH` × :data:`HEIGHT` px figure on an Agg canvas (which measures the text), without a
    layout engine: the draw functions lay it out once (:func:`_lay_out`), so that saving draws it once."""
    fig = Figure(figsize=(WIDTH / DPI, HEIGHT / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _lay_out(fig: Figure) -> None:
    """Place ``fig``'s axes and legend by matplotlib's constrained layout, once: room for the tick labels, the axis
    labels and a legend outside the axes, nothing cut."""
    ConstrainedLayoutEngine().execute(fig)


def inline_svg(svg: str, plot_id: str, title: str, tips: Mapping[str, str | Sequence[str]]) -> Markup:
    """Return matplotlib's SVG document ``svg`` as an element for an HTML page: no XML prolog, namespaces or
    metadata (creator, date: the same figure gives the same bytes), no fixed width and height (the ``viewBox``
    stays: the page scales it), ``class="plot"``, ``id="<plot_id>-svg"``, ``role="img"`` named ``title``; every id
    (and reference to one) prefixed with ``<plot_id>-`` so several plots share a page; text without its font family
    (the page's font, narrower than the one measured); and ``<title>`` tooltips from ``tips`` (gid → one title for
    the group, or one per marker of the group in order)."""
    root = ElementTree.fromstring(svg)
    for element in root.iter():
        element.tag = element.tag.rpartition("}")[2]
        for key in [k for k in element.attrib if k.startswith("{")]:  # xlink:href -> href (SVG 2)
            element.attrib[key.rpartition("}")[2]] = element.attrib.pop(key)
    for child in [c for c in root if c.tag == "metadata" or (c.tag == "defs" and c.find("style") is not None)]:
        root.remove(child)  # the metadata; the defs' page-wide style, set on the root below
    ids: dict[str, ElementTree.Element] = {}
    for element in root.iter():
        attrib = element.attrib
        if "id" in attrib:
            attrib["id"] = f"{plot_id}-{attrib['id']}"
            ids[attrib["id"]] = element
        if attrib.get("href", "").startswith("#"):
            attrib["href"] = f"#{plot_id}-{attrib['href'][1:]}"
        if attrib.get("clip-path", "").startswith("url(#"):
            attrib["clip-path"] = f"url(#{plot_id}-{attrib['clip-path'][5:]}"
        if "d" in attrib:
            attrib["d"] = " ".join(attrib["d"].split())
        if element.tag == "text":
            attrib["style"] = "; ".join(p for p in attrib["style"].split("; ") if not p.startswith("font-family"))
    for gid, tip in tips.items():
        group = ids.get(f"{plot_id}-{gid}")
        if group is None:
            continue
        if isinstance(tip, str):
            group.insert(0, _title(tip))
            continue
        marks = [e for e in group.iter() if e.tag == "use"]
        if len(marks) == len(tip):  # the markers matplotlib drew: one per point, in order
            for mark, text in zip(marks, tip, strict=True):
                mark.append(_title(text))
    for key in ("width", "height", "version"):
        root.attrib.pop(key, None)
    root.attrib.update({"id": f"{plot_id}-svg", "class": "plot", "role": "img", "aria-label": title,
                        "stroke-linejoin": "round", "stroke-linecap": "butt"})
    root.insert(0, _title(title))
    return Markup(ElementTree.tostring(root, encoding="unicode"))


def _title(text: str) -> ElementTree.Element:
    element = ElementTree.Element("title")
    element.text = text
    return element


# --- charts ---------------------------------------------------------------------------------------------------


def _log_scale(values: Sequence[float], axis: Axis) -> bool:
    """Return whether ``axis`` is logarithmic for ``values``: as asked (``axis.log``), else when they span more than
    :data:`LOG_SPAN`; never on a time axis or with a value ≤ 0."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if axis.time or finite.size == 0 or finite.min() <= 0:
        return False
    return bool(finite.max() / finite.min() > LOG_SPAN) if axis.log is None else axis.log


def _set_axis(ax: Axes, which: str, axis: Axis, log: bool) -> None:
    """Give ``ax``'s ``which`` ("x" or "y") axis the label of ``axis`` (" (log scale)" appended on a log axis) and its
    ticks: explicit ones, dates on a time axis, or plain numbers at 1, 2, 5 × the powers of ten a log axis's data
    span (only the powers beyond three decades)."""
    target: MplAxis = ax.xaxis if which == "x" else ax.yaxis
    target.set_label_text(axis.label + (" (log scale)" if log else ""))
    if axis.time:
        locator = AutoDateLocator()
        target.set_major_locator(locator)
        target.set_major_formatter(ConciseDateFormatter(locator))
    elif log:
        low, high = ax.dataLim.intervalx if which == "x" else ax.dataLim.intervaly
        target.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if high / low <= 1000 else (1.0,)))
        target.set_major_formatter(FuncFormatter(lambda value, _: _g(value)))
        target.set_minor_locator(NullLocator())
    if axis.ticks is not None:
        target.set_ticks(list(axis.ticks), labels=[_g(v) for v in axis.ticks])
        target.set_minor_locator(NullLocator())


def _shown(points: Sequence[Point], xlog: bool, ylog: bool) -> list[Point]:
    """Return the points an axis can show: finite, and positive on a log axis."""
    return [p for p in points if math.isfinite(p.x) and math.isfinite(p.y)
            and (p.x > 0 or not xlog) and (p.y > 0 or not ylog)]


def _x_data(values: Sequence[float], time: bool) -> np.ndarray:
    """Return x values for matplotlib: numbers, or POSIX times (s) as UTC datetimes."""
    values = np.asarray(values, dtype=float)
    return (values * 1e6).astype("datetime64[us]") if time else values


def draw_chart(fig: Figure, series: Sequence[Series], x: Axis, y: Axis) -> Tips:
    """Draw ``series`` on axes ``x`` and ``y`` in ``fig`` and return their tooltips: per series (group
    ``<kind>-<i>``) a line and markers (a tooltip each; a line without markers: its name), error bars (group
    ``errorbar-<i>``: a vertical whisker with caps in the series' colour, for each point with ``y_low`` and
    ``y_high``); the points' labels placed by adjustText off the points and each other; a legend outside the axes
    when there are named series. The axes' ranges include the points (and the ends of their error bars) of the
    series that are ``scaled``, and the axes' ``include``; guide series do not widen them."""
    ax = fig.add_subplot()
    scaled = [p for s in series if s.scaled for p in s.points]
    xlog = _log_scale([p.x for p in scaled] + list(x.include), x)
    ylog = _log_scale([p.y for p in scaled] + [v for p in scaled for v in (p.bar() or ())] + list(y.include), y)
    ax.set_xscale("log" if xlog else "linear")
    ax.set_yscale("log" if ylog else "linear")
    shown = [_shown(s.points, xlog, ylog) for s in series]
    tips: Tips = {}
    for i, s in enumerate(series):
        if s.scaled:
            tips |= _draw_series(ax, s, i, shown[i], x.time)
    bounds = ax.dataLim
    ax.update_datalim([(v, bounds.y0) for v in x.include if v > 0 or not xlog]
                      + [(bounds.x0, v) for v in y.include if v > 0 or not ylog])
    _set_axis(ax, "x", x, xlog)
    _set_axis(ax, "y", y, ylog)
    ax.autoscale_view()
    ax.set_xlim(ax.get_xlim())  # the ranges of the data, fixed: the guides drawn next do not widen them
    ax.set_ylim(ax.get_ylim())
    for i, s in enumerate(series):
        if not s.scaled:
            tips |= _draw_series(ax, s, i, shown[i], x.time)
    _legend(fig, ax)
    _lay_out(fig)
    _place_labels(ax, [p for points in shown for p in points], x.time)
    return tips


def chart(plot_id: str, title: str, series: Sequence[Series], x: Axis, y: Axis) -> Markup:
    """Return the inline SVG of :func:`draw_chart`."""
    return render(plot_id, title, lambda fig: draw_chart(fig, series, x, y))


def _draw_series(ax: Axes, s: Series, i: int, points: Sequence[Point], time: bool) -> Tips:
    """Draw series ``s`` (number ``i`` of its chart; ``points``: those the axes can show) on ``ax``: its line and
    markers as one artist (group ``<kind>-<i>``), its error bars (group ``errorbar-<i>``); return its tooltips."""
    if not points:
        return {}
    gid = f"{s.kind}-{i}"
    xs, ys = _x_data([p.x for p in points], time), np.array([p.y for p in points], dtype=float)
    ax.plot(xs, ys, color=s.color, linestyle=(0, s.dash) if s.dash else "-" if s.line else "none", linewidth=1.6,
            marker="o" if s.markers else "none", markersize=2 * s.radius,
            markerfacecolor="none" if s.hollow else to_rgba(s.color, 0.8), markeredgecolor=s.color,
            markeredgewidth=1.0, label=_text(s.name) if s.legend else "_nolegend_", gid=gid,
            zorder=3 if s.markers else 2)
    bars = [(k, *bar) for k, p in enumerate(points) if (bar := p.bar()) is not None]
    if bars:
        index, low, high = (np.array(v) for v in zip(*bars, strict=True))
        y = ys[index]
        container = ax.errorbar(xs[index], y, yerr=[np.maximum(y - low, 0), np.maximum(high - y, 0)], fmt="none",
                                ecolor=s.color, elinewidth=1.2, capsize=3.5, zorder=2.5)
        container.lines[2][0].set_gid(f"errorbar-{i}")
    return {gid: [p.tip for p in points] if s.markers else s.name}


def _legend(fig: Figure, ax: Axes) -> None:
    """Put the legend of ``ax``'s named artists right of the axes (two columns beyond :data:`LEGEND_ROWS` entries),
    the figure grown to its height when it is taller."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    columns = 1 if len(handles) <= LEGEND_ROWS else 2
    lines = sum(label.count("\n") + 1 for label in labels)
    fig.set_figheight(max(fig.get_figheight(), (math.ceil(lines / columns) * 1.75 * FONT_PX + 40) / DPI))
    fig.legend(handles, labels, loc="outside right upper", ncols=columns)


def _place_labels(ax: Axes, points: Sequence[Point], time: bool) -> None:
    """Write a label beside each of ``points`` that has a name, moved by adjustText off every point and the other
    labels (a thin line back to its point when moved away): the names when at most :data:`MAX_LABELS` and they fit
    without overlapping each other or leaving the axes, else numbers (:func:`_number`); each point's ``label`` set to
    what was written. The labels take no part in the figure's layout, done before."""
    named = [p for p in points if p.name]
    if not named:
        return
    numbers = len(named) > MAX_LABELS
    texts = _adjusted_labels(ax, named, points, time, numbers)
    if not numbers and _overlapping(ax, texts):
        for artist in texts:
            artist.remove()
        _adjusted_labels(ax, named, points, time, numbers=True)


def _adjusted_labels(ax: Axes, named: Sequence[Point], points: Sequence[Point], time: bool,
                     numbers: bool) -> list[Artist]:
    """Write the names (or numbers) of ``named`` beside them, placed by adjustText off ``points`` and each other;
    return the labels (group ``label-<k>``) and their lines."""
    if numbers:
        _number(named)
    else:
        for point in named:
            point.label = point.name
    xs = ax.convert_xunits(_x_data([p.x for p in named], time))
    texts = [ax.text(x, p.y, p.label, parse_math=False, gid=f"label-{k}", zorder=4)
             for k, (x, p) in enumerate(zip(xs, named, strict=True))]
    static = np.column_stack([ax.convert_xunits(_x_data([p.x for p in points], time)), [p.y for p in points]])
    static = static[_nearest(ax.transData.transform(static), ax.transData.transform(np.column_stack([xs, [
        p.y for p in named]])), LABEL_OBSTACLES)]
    _, lines = adjust_text(texts, x=static[:, 0], y=static[:, 1], ax=ax, iter_lim=LABEL_ITERATIONS,
                           prevent_crossings=False, expand=(1.2, 1.5), force_text=(0.3, 0.5),
                           arrowprops={"arrowstyle": "-", "color": "#777777", "lw": 0.6})
    return texts + lines


def _nearest(points_px: np.ndarray, named_px: np.ndarray, limit: int) -> np.ndarray:
    """Return the indices of the at most ``limit`` of ``points_px`` nearest to one of ``named_px`` (px, in order)."""
    if len(points_px) <= limit:
        return np.arange(len(points_px))
    distance = np.sqrt(((points_px[:, None, :] - named_px[None, :, :]) ** 2).sum(-1)).min(axis=1)
    return np.sort(np.argsort(distance, kind="stable")[:limit])


def _overlapping(ax: Axes, labels: Sequence[Artist]) -> bool:
    """Return whether two of the text ``labels`` overlap, or one leaves ``ax``."""
    renderer = ax.figure.canvas.get_renderer()
    inside = ax.get_window_extent(renderer).padded(1.0)  # px: adjustText puts labels right at the edge
    boxes = [t.get_window_extent(renderer) for t in labels if isinstance(t, Text)]
    return any(not (inside.x0 <= b.x0 and b.x1 <= inside.x1 and inside.y0 <= b.y0 and b.y1 <= inside.y1)
               for b in boxes) or any(a.overlaps(b) for k, a in enumerate(boxes) for b in boxes[k + 1:])


def _number(points: Sequence[Point]) -> None:
    """Set the ``label`` of each of ``points`` to its number, 1… from left to right (then top to bottom)."""
    for number, point in enumerate(sorted(points, key=lambda p: (p.x, -p.y)), 1):
        point.label = str(number)


def label_key(points: Iterable[Point]) -> str:
    """Return the caption's key to the numbers :func:`chart` wrote at ``points`` instead of their names ("" when it
    wrote the names)."""
    numbered = sorted((int(p.label), p.name) for p in points if p.name and p.label and p.label != p.name)
    return " Numbers at the points: " + "; ".join(f"{n} {name}" for n, name in numbered) + "." if numbered else ""


def box_chart(plot_id: str, title: str, rows: Sequence[tuple[str, np.ndarray]], x: Axis) -> Markup:
    """Return the inline SVG of :func:`draw_box_chart`."""
    return render(plot_id, title, lambda fig: draw_box_chart(fig, rows, x))


def draw_box_chart(fig: Figure, rows: Sequence[tuple[str, np.ndarray]], x: Axis) -> Tips:
    """Draw a horizontal box-and-strip chart in ``fig`` (its height grown to the rows) and return its tooltips: a
    row per (label, samples), the label (whole) beside it: box from the first to the third quartile (a bar of group
    ``box-<i>``), median line, whiskers to the last sample within 1.5 × IQR (matplotlib's box statistics), and up to
    :data:`STRIP_POINTS` samples as dots (group ``samples``, evenly spaced in sorted order), each with its tooltip.
    Each kind of element is one artist for all the rows (matplotlib's boxplot makes six per row: slow)."""
    log = _log_scale(np.concatenate([np.asarray(s, dtype=float) for _, s in rows]), x)
    labels = [_text(label, 2 * WRAP) for label, _ in rows]
    row_px = 24 * max(label.count("\n") + 1 for label in labels)
    fig.set_figheight((row_px * len(rows) + 80) / DPI)
    ax = fig.add_subplot()
    ax.set_xscale("log" if log else "linear")
    drawn, stats, dots = [], [], []
    tips: Tips = {}
    for i, (label, raw) in enumerate(rows):
        samples = np.sort(np.asarray(raw, dtype=float))
        samples = samples[np.isfinite(samples) & ((samples > 0) | (not log))]
        if samples.size == 0:
            continue
        [row] = cbook.boxplot_stats(samples, whis=1.5)
        drawn.append(i)
        stats.append(row)
        tips[f"box-{i}"] = (f"{label}: median {_g(row['med'])} ms, IQR {_g(row['q1'])}–{_g(row['q3'])} ms, "
                            f"whiskers {_g(row['whislo'])}–{_g(row['whishi'])} ms, {samples.size} samples")
        picks = samples[np.unique(np.linspace(0, samples.size - 1, min(STRIP_POINTS, samples.size)).round()
                                  .astype(int))]
        dots += [(v, i + ((k * 7919) % 11 - 5) * 0.035, f"{label}: {_g(v)} ms") for k, v in enumerate(picks)]
    if stats:
        y = np.array(drawn, dtype=float)
        q1, q3, med, low, high = (np.array([row[k] for row in stats]) for k in ("q1", "q3", "med", "whislo", "whishi"))
        boxes = ax.barh(y, q3 - q1, left=q1, height=0.6, color="#cfe0f3", edgecolor="#0072B2", zorder=2)
        for i, box in zip(drawn, boxes, strict=True):
            box.set_gid(f"box-{i}")
        ax.hlines(np.r_[y, y], np.r_[low, q3], np.r_[q1, high], color="#555555", linewidth=1.0, zorder=1.5)
        ax.vlines(np.r_[low, high], np.r_[y, y] - 0.15, np.r_[y, y] + 0.15, color="#555555", linewidth=1.0)
        ax.vlines(med, y - 0.3, y + 0.3, color="#D55E00", linewidth=2.0, zorder=2.5)
        xs, ys, dot_tips = zip(*dots, strict=True)
        ax.plot(xs, ys, linestyle="none", marker="o", markersize=3.6, color=to_rgba("#333333", 0.45),
                markeredgewidth=0, gid="samples", zorder=3)
        tips["samples"] = list(dot_tips)
    ax.set_yticks(range(len(rows)), labels=labels)
    ax.yaxis.grid(False)
    _set_axis(ax, "x", x, log)
    ax.set_ylim(len(rows) - 0.5, -0.5)  # a row per case, the first on top
    _lay_out(fig)
    return tips


def name_points(named: Sequence[tuple[Point, str, bool]], key: str = "on the Pareto fronts") -> str:
    """Name the points a reader must identify (their ``name``, which :func:`chart` writes beside them or numbers),
    given ``(point, name, is key)`` triples: all when at most :data:`MAX_NAMED`, else the key ones (``key`` says which;
    evenly spaced down to :data:`MAX_NAMED`). Names leave out the words all the named points share. Return the
    caption's sentences saying so (:func:`label_key` gives the numbers' key once drawn)."""
    chosen = list(named) if len(named) <= MAX_NAMED else [n for n in named if n[2]]
    if len(chosen) > MAX_NAMED:
        chosen = [chosen[k] for k in np.linspace(0, len(chosen) - 1, MAX_NAMED).round().astype(int)]
    names, shared = _short_names([name for _, name, _ in chosen])
    for (point, _, _), name in zip(chosen, names, strict=True):
        point.name = name
    return ((f" Named: {len(chosen)} of the {len(named)} points, {key}." if len(chosen) < len(named) else "")
            + (f" Names leave out what all share: {shared}." if shared else ""))


def _short_names(names: Sequence[str]) -> tuple[list[str], str]:
    """Return ``names`` without the words all of them share (a name left empty stays whole), and those words."""
    if len(names) < 2:
        return list(names), ""
    words = [name.split() for name in names]
    shared = set(words[0]).intersection(*words[1:])
    return ([" ".join(w for w in ws if w not in shared) or name for ws, name in zip(words, names, strict=True)],
            " ".join(w for w in words[0] if w in shared))


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


def ok_records(records: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Return the ok records of ``records`` having every one of ``columns`` (none when a column is absent)."""
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
    named: list[tuple[Point, str, bool]] = []
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
        rows = kept[["latency_ms_median", "acc_top1", "acc_std", "acc_n", "label", "_front"]].to_dict("records")
        points = [_accuracy_point(r) for r in rows]
        named += [(p, str(r["label"]), bool(r["_front"])) for p, r in zip(points, rows, strict=True)]
        bars |= any(p.bar() is not None for p in points)
        series.append(Series(name, points, color))
        on_front = group[front].sort_values("latency_ms_median")
        front_points = [Point(a, 100 * b) for a, b in
                        zip(on_front["latency_ms_median"], on_front["acc_top1"], strict=True)]
        series.append(Series(f"{name} Pareto front", front_points, color, line=True, markers=False, dash=FRONT_DASH,
                             legend=False, kind="front"))
    names = name_points(named)
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
                  else "") + names + label_key(p for p, _, _ in named))
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
    column = next((c for c in ("flops", "macs") if len(ok_records(records, [c, "latency_ms_median"]))), None)
    if column is None:
        return None
    ok = ok_records(records, [column, "latency_ms_median"])
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
    named: list[tuple[Point, str, bool]] = []
    shown = 0
    for i, ((hardware, dtype), group) in enumerate(ok.groupby(["hardware", "dtype"], sort=True)):
        color = PALETTE[i % len(PALETTE)]
        front = pareto_front(group["latency_ms_median"], group[column])  # the most work in the least time
        kept = _subsample(group.assign(_front=front), front)
        shown += len(kept)
        name = f"{hardware or 'unknown hardware'} {dtype}"
        rows = kept[["latency_ms_median", column, "label", "_front"]].to_dict("records")
        points = [Point(r["latency_ms_median"], r[column] / 1e9,
                        f"{r['label']}: {_g(r['latency_ms_median'])} ms, {_g(r[column] / 1e9)} G{unit}") for r in rows]
        named += [(p, str(r["label"]), bool(r["_front"])) for p, r in zip(points, rows, strict=True)]
        series.append(Series(name, points, color))
        peak = peak_tflops(str(hardware), str(dtype)) if str(group["device"].iloc[0]).startswith("cuda") else None
        if peak is None:
            unknown.append(name)
            continue
        tflops, source = peak
        # TFLOP/s × ms = GFLOP: the roof is the work the device could do at its peak in that time
        series.append(Series(f"{name} peak {_g(tflops)} TFLOP/s", [Point(t, tflops * t * per_flop) for t in xs],
                             color, line=True, markers=False, dash=(4.0, 2.5), scaled=False, kind="roof"))
        include.append(tflops * lat.min() * per_flop)
        roofs.append(f"{name}: {_g(tflops)} TFLOP/s ({source})")
    names = name_points(named, "the most efficient (no other case of their device does more work in less time)")
    title = f"{unit} vs latency per device"
    svg = chart(plot_id, title, series, Axis("Latency median (ms per batch)"),
                Axis(f"{unit} per batch (G)", include=include))
    caption = (f"{unit} of one batch (G) against the median latency (ms per batch), a colour per hardware and dtype."
               + (" Dashed: the roof, the work the device does at its peak arithmetic rate in that time (no point "
                  "can lie above it" + ("; a MAC counted as two FLOPs" if unit == "MACs" else "") + "): "
                  + "; ".join(roofs) + "." if roofs else "")
               + (" No peak known for " + "; ".join(unknown) + ": no roof drawn." if unknown else "")
               + (f" {shown} of {len(ok)} cases drawn (the most efficient kept, the rest evenly subsampled)."
                  if shown < len(ok) else "") + names + label_key(p for p, _, _ in named))
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
    names, shared = _short_names([label for label, _ in rows])
    title = "Latency distribution per case"
    svg = box_chart(plot_id, title, [(name, samples) for name, (_, samples) in zip(names, rows, strict=True)],
                    Axis("Latency (ms per batch)"))
    caption = ("Every timed sample of the latest record of each case (ms per batch): box from the first to the third "
               "quartile, line at the median, whiskers to the last sample within 1.5 × IQR of the box (at the box "
               "when none lies beyond it), dots = "
               f"samples (at most {STRIP_POINTS} per case, evenly spaced in sorted order)."
               + (f" The first {len(rows)} of {total} cases in table order." if len(rows) < total else "")
               + (f" Names leave out what all share: {shared}." if shared else ""))
    return Plot(plot_id, title, svg, caption)


def error_batch_plot(records: pd.DataFrame, plot_id: str = "plot-error-batch") -> Plot | None:
    """Return top-1 error (%) against the batch size per process, a line per (model, norm, processes), with
    the published values as dashed lines; None unless several norms and batches have top-1 accuracy."""
    ok = ok_records(records, ["acc_top1", "batch", "norm"])
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
        series.append(Series(name, points, color, line=True, dash=(2.5, 2.0), hollow=True, kind="published"))
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
    ok = ok_records(records, ["latency_ms_median", "case_id", "run_id", "timestamp_utc"])
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
    rows = rows.assign(_front=False)
    for _, group in rows.groupby("model", sort=True):
        rows.loc[group.index, "_front"] = pareto_front(group["latency_ms_median"], group["top1_mean"])
    series: list[Series] = []
    named: list[tuple[Point, str, bool]] = []
    for i, (method, group) in enumerate(rows.groupby("compress", sort=True)):
        points = []
        for row in group.to_dict("records"):
            std = 100 * row["top1_std"] if not is_missing(row["top1_std"]) else math.nan
            acc, lat = 100 * row["top1_mean"], float(row["latency_ms_median"])
            name = f"{row['model']} {method} {row['level']}".strip()
            tip = f"{name}: {_g(lat)} ms, top-1 {_f(acc)}%"
            points.append(Point(lat, acc, tip + (f" ± {_f(std)}" if math.isfinite(std) else ""), acc - std, acc + std))
            named.append((points[-1], name, bool(row["_front"])))
        series.append(Series(str(method), points, PALETTE[i % len(PALETTE)]))
    for model, group in rows.groupby("model", sort=True):
        on_front = group[group["_front"]].sort_values("latency_ms_median")
        series.append(Series(f"{model} Pareto front", [Point(float(a), 100 * float(b)) for a, b in zip(
            on_front["latency_ms_median"], on_front["top1_mean"], strict=True)], "#999999", line=True, markers=False,
            dash=FRONT_DASH, legend=False, kind="front"))
    names = name_points(named)
    title = "Compression: top-1 accuracy vs latency"
    svg = chart(plot_id, title, series, Axis("Latency median (ms per batch, the cost case)"),
                Axis("Top-1 accuracy (%)"))
    caption = ("Each compressed model and level (a colour per method; dense: compress none) at its top-1 accuracy "
               "(mean over the seeds, bar ± one std) and its latency (the cost case: random weights compressed, the "
               "largest input size measured); the dashed grey line joins each model's Pareto front: the rows no "
               "other row of the model beats on both." + names + label_key(p for p, _, _ in named))
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
        series.append(Series(name, points, color, line=True, markers=False, kind="curve"))
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
