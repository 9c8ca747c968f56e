"""The plots' SVG as a page needs it (harness.report.plots, drawn by matplotlib): every point a reader must identify
labelled at the point (its name, or a number keyed in the caption), legends never cutting a name, axes covering every
point and error bar, the same bytes for the same data, ids unique across the plots of a page, a size the page sets
(viewBox, no fixed width), text as text of at least 12 px."""

from __future__ import annotations

import re

import matplotlib
import pandas as pd
import pytest

from harness.case import Case
from harness.report.plots import (
    FONT_PX,
    MAX_LABELS,
    MAX_NAMED,
    STYLE,
    WIDTH,
    Axis,
    Point,
    Series,
    accuracy_latency_plot,
    chart,
    draw_chart,
    figure,
    flops_latency_plot,
    label_key,
)
from tests.plot_svg import bars, frame, groups, labels, markers, parse, texts
from tests.records import make_record


def _cases(points: list[tuple[str, float, float]]) -> pd.DataFrame:
    """Records of cases (model, latency ms, top-1 accuracy), with MACs."""
    return pd.DataFrame([make_record(Case(model), latency_ms_median=lat, acc_top1=acc, macs=int(lat * 1e9))
                         for model, lat, acc in points])


def _drawn(series, x, y):
    """Return a figure with ``series`` drawn on axes ``x`` and ``y`` as the report draws it (its style)."""
    with matplotlib.rc_context(STYLE):
        fig = figure()
        draw_chart(fig, series, x, y)
        fig.draw_without_rendering()
    return fig


def _label_boxes(fig):
    """Return the window extents of the figure's point labels and of its axes."""
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    return [t.get_window_extent(renderer) for t in ax.texts if (t.get_gid() or "").startswith("label-")], \
        ax.get_window_extent(renderer)


# --- every point a reader must identify is labelled -----------------------------------------------------------


def test_a_few_cases_are_named_at_their_points():
    records = _cases([("resnet18", 9.0, 0.70), ("mobilenetv2_100", 4.0, 0.72), ("resnet50", 20.0, 0.76)])
    plot = accuracy_latency_plot(records)
    assert sorted(labels(plot.svg)) == ["mobilenetv2_100", "resnet18", "resnet50"]  # not only on hover
    assert len(markers(plot.svg)) == 3  # and each still has its tooltip
    assert "Names leave out what all share: b1 224px cpu fp32." in plot.caption
    assert "Numbers at the points" not in plot.caption


def test_more_points_than_labels_are_numbered_left_to_right_with_the_key_in_the_caption():
    n = MAX_LABELS + 4
    # slower is more accurate: every case on the front, all named; numbered by latency, not by the input's order
    records = _cases([(f"model{i}", 1.0 + i, 0.30 + 0.02 * i) for i in reversed(range(n))])
    plot = accuracy_latency_plot(records)
    assert sorted(labels(plot.svg), key=int) == [str(k) for k in range(1, n + 1)]
    key = "; ".join(f"{k + 1} model{k}" for k in range(n))
    assert f" Numbers at the points: {key}." in plot.caption


def test_beyond_the_named_limit_the_pareto_front_is_named():
    front = [(f"front{i}", 1.0 + i, 0.80 + 0.02 * i) for i in range(5)]
    beaten = [(f"beaten{i}", 10.0 + i, 0.10 + 0.001 * i) for i in range(MAX_NAMED)]
    plot = accuracy_latency_plot(_cases(front + beaten))
    assert sorted(labels(plot.svg)) == [f"front{i}" for i in range(5)]
    assert f"Named: 5 of the {5 + MAX_NAMED} points, on the Pareto fronts." in plot.caption
    assert len(markers(plot.svg)) == 5 + MAX_NAMED


@pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")  # adjustText's own logging
def test_names_that_cannot_fit_fall_back_to_numbers_keyed_in_the_caption():
    # names wider than the axes: no placement keeps them inside, so the points are numbered instead
    points = [Point(1.0 + i, 10.0 + i, f"tip {i}", name=f"case {i} " + "x" * 160) for i in range(4)]
    fig = _drawn([Series("s", points)], Axis("x"), Axis("y"))
    assert [p.label for p in points] == ["1", "2", "3", "4"]
    assert label_key(points) == " Numbers at the points: " + "; ".join(f"{i + 1} {p.name}" for i, p in
                                                                         enumerate(points)) + "."
    boxes, axes = _label_boxes(fig)
    assert len(boxes) == 4 and all(axes.contains(b.x0, b.y0) and axes.contains(b.x1, b.y1) for b in boxes)


def test_the_key_lists_only_the_points_drawn_with_a_number():
    points = [Point(1, 1, name="by name", label="by name"), Point(2, 2, name="numbered", label="2"),
              Point(3, 3, name="not drawn (off a log axis)"), Point(4, 4, label="7")]
    assert label_key(points) == " Numbers at the points: 2 numbered."
    assert label_key(points[:1]) == ""


@pytest.mark.parametrize("spread", [0.3, 1.0])
def test_labels_do_not_overlap_each_other_and_stay_in_the_axes(spread):
    # a crowd of points close together, with names of a typical length
    points = [Point(5.0 + spread * i, 50.0 + spread * (i % 3), f"tip {i}", name=f"resnet{i} compress=prune ratio=0.{i}")
              for i in range(MAX_LABELS)] + [Point(1.0, 1.0, "far"), Point(100.0, 100.0, "far")]
    boxes, axes = _label_boxes(_drawn([Series("s", points)], Axis("x"), Axis("y")))
    assert len(boxes) == MAX_LABELS
    for k, box in enumerate(boxes):
        assert axes.x0 <= box.x0 and box.x1 <= axes.x1 and axes.y0 <= box.y0 and box.y1 <= axes.y1
        assert not any(box.overlaps(other) for other in boxes[k + 1:])
    assert all(p.label in (p.name, str(n)) for n, p in enumerate(sorted(points[:MAX_LABELS], key=lambda p: p.x), 1))


# --- legends never cut a name ---------------------------------------------------------------------------------


def test_legend_keeps_every_name_whole_and_inside_the_figure():
    names = [f"series {i} with a rather long name: device, dtype, batch and more {'z' * (i + 1)}" for i in range(24)]
    series = [Series(name, [Point(1, i), Point(2, i + 1)], line=True) for i, name in enumerate(names)]
    svg = str(chart("p", "t", series, Axis("x"), Axis("y")))
    legend = next(g for g in parse(svg).iter("g") if g.get("id") == "p-legend_1")
    entries = [" ".join(t.text for t in g.iter("text")) for g in legend.iter("g") if g.find("text") is not None]
    assert entries == names and "…" not in svg
    fig = _drawn(series, Axis("x"), Axis("y"))
    box = fig.legends[0].get_window_extent(fig.canvas.get_renderer())
    assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1 and fig.bbox.y0 <= box.y0 and box.y1 <= fig.bbox.y1


# --- the axes cover every point -------------------------------------------------------------------------------


@pytest.mark.parametrize("log", [False, True])
def test_axes_cover_every_point_and_error_bar(log):
    points = [Point(1, 10, "a", 2, 60), Point(5, 300, "b"), Point(30, 1, "c", 0.5, 1.5), Point(400, 50, "d")]
    ax = _drawn([Series("s", points)], Axis("x", log=log), Axis("y", log=log)).axes[0]
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    assert x0 < 1 and x1 > 400 and y0 < 0.5 and y1 > 300  # the lowest bar end is not below the lowest tick
    assert ax.get_yscale() == ("log" if log else "linear")
    svg = str(chart("p", "t", [Series("s", points)], Axis("x", log=log), Axis("y", log=log)))
    left, top, right, bottom = frame(svg)
    assert all(left < x < right and top < y < bottom for x, y in markers(svg).values())
    assert all(top < high < low < bottom for _, low, high, _ in bars(svg))


# --- the SVG in the page ------------------------------------------------------------------------------------------


def test_same_data_give_the_same_bytes():
    records = _cases([(f"model{i}", 1.0 + i, 0.3 + 0.03 * i) for i in range(6)])
    first, second = accuracy_latency_plot(records), accuracy_latency_plot(records)
    assert str(first.svg) == str(second.svg) and first.caption == second.caption
    assert "<metadata" not in first.svg and "Date" not in first.svg


def test_ids_are_unique_across_the_plots_of_a_page_and_references_resolve():
    records = _cases([(f"model{i}", 1.0 + i, 0.3 + 0.03 * i) for i in range(6)])
    svgs = [str(accuracy_latency_plot(records).svg), str(flops_latency_plot(records).svg)]
    ids = [i for svg in svgs for i in re.findall(r'\bid="([^"]+)"', svg)]
    assert len(ids) == len(set(ids))
    for svg, prefix in zip(svgs, ("plot-accuracy-", "plot-flops-"), strict=True):
        own = set(re.findall(r'\bid="([^"]+)"', svg))
        assert all(i.startswith(prefix) for i in own)
        references = re.findall(r'href="#([^"]+)"', svg) + re.findall(r"url\(#([^)]+)\)", svg)
        assert references and set(references) <= own


def test_svg_is_sized_by_the_page_and_its_text_is_text_of_12_px_or_more():
    svg = str(accuracy_latency_plot(_cases([("a", 1.0, 0.5), ("b", 30.0, 0.7)])).svg)
    root = parse(svg)
    assert "width" not in root.attrib and "height" not in root.attrib
    assert root.get("viewBox").split()[:3] == ["0", "0", str(WIDTH)]
    assert root.get("class") == "plot" and root.get("id") == "plot-accuracy-svg" and root.get("role") == "img"
    assert "xmlns" not in svg and "<?xml" not in svg and "<!DOCTYPE" not in svg
    sizes = [float(size) for size in re.findall(r"font-size: ([\d.]+)px", svg)]
    assert sizes and min(sizes) >= FONT_PX and len(sizes) == len(texts(svg))  # each text sized, none below 12 px
    assert "Top-1 accuracy (%)" in texts(svg) and "font-family" not in svg  # text stays text, in the page's font
    assert not groups(svg, "roof")  # no peak known for a CPU
