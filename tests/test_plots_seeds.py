"""Plots of cases run at several seeds: error bars in the chart, the error-by-batch and accuracy-latency plots."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd

from harness.case import Case
from harness.report.plots import Axis, Point, Series, accuracy_latency_plot, chart, draw_chart, error_batch_plot, figure
from harness.store import ResultStore
from harness.store_query import latest_per_case
from tests.plot_svg import bars as svg_bars
from tests.plot_svg import frame as plot_frame
from tests.plot_svg import groups
from tests.plot_svg import markers as _markers
from tests.records import RICH_COLUMNS, make_record


def _frame(tmp_path, records) -> pd.DataFrame:
    store = ResultStore(tmp_path / "results")
    for record in records:
        store.append(record, RICH_COLUMNS)
    return latest_per_case(store.read())


def _bars(svg: str) -> list[tuple[float, float, float]]:
    """Return each error bar: x, the pixel of its low end and of its high end (by x)."""
    return [(x, low, high) for x, low, high, _ in svg_bars(svg)]


def _seeded(case: Case, seeds: dict[int, float], **values) -> list[dict]:
    """Records of ``case`` at each seed (seed -> top-1 accuracy), sharing the group id; ``values`` on seed 0 only
    (the later seeds repeat only the accuracy)."""
    out = []
    for seed, acc in seeds.items():
        at_seed = dataclasses.replace(case, seed=seed)
        out.append(make_record(at_seed, group_id=case.group_id, acc_top1=acc, **(values if seed == 0 else {})))
    return out


# --- the chart's error bars -----------------------------------------------------------------------------------


def test_point_has_a_bar_only_with_both_finite_ends():
    assert Point(1, 2, y_low=1, y_high=3).bar() == (1.0, 3.0)
    assert Point(1, 2).bar() is None and Point(1, 2, y_low=1).bar() is None and Point(1, 2, y_high=3).bar() is None
    assert Point(1, 2, y_low=math.nan, y_high=3).bar() is None


def test_chart_draws_a_bar_per_point_with_both_ends_in_the_series_colour():
    points = [Point(1, 10, "a", 9, 11), Point(2, 12, "b"), Point(3, 11, "c", 10.5, None), Point(4, 13, "d", 12, 15)]
    svg = str(chart("p", "t", [Series("s", points, "#123456")], Axis("x"), Axis("y")))
    bars = _bars(svg)
    assert len(bars) == 2 and len(groups(svg, "errorbar")) == 1
    assert all("stroke: #123456" in style for *_, style in svg_bars(svg))
    markers = _markers(svg)
    for (x, low, high), tip, (lo, mean, hi) in zip(bars, "ad", [(9, 10, 11), (12, 13, 15)], strict=True):
        cx, cy = markers[tip]
        assert x == cx
        assert low > cy > high  # SVG y grows downwards: the low end is below the point, the high end above
        assert math.isclose((low - cy) / (cy - high), (mean - lo) / (hi - mean), rel_tol=0.02)


def test_chart_y_range_covers_the_bars():
    points = [Point(1, 10, "a", -40, 60), Point(2, 12, "b"), Point(3, 14, "c")]
    svg = str(chart("p", "t", [Series("s", points)], Axis("x"), Axis("y", log=False)))
    [(_, low, high)] = _bars(svg)
    _, top, _, bottom = plot_frame(svg)
    assert top <= high < low <= bottom  # the axis reaches the bar's ends, not only the points'
    fig = figure()
    draw_chart(fig, [Series("s", points)], Axis("x"), Axis("y", log=False))
    low_y, high_y = fig.axes[0].get_ylim()
    assert low_y <= -40 and high_y >= 60


def test_chart_bars_of_a_guide_series_do_not_widen_the_axis():
    guide = Series("g", [Point(1, 10, "", -1000, 1000)], scaled=False)
    fig = figure()
    draw_chart(fig, [Series("s", [Point(1, 10), Point(2, 20)]), guide], Axis("x"), Axis("y", log=False))
    low_y, high_y = fig.axes[0].get_ylim()
    assert 0 <= low_y <= 10 and 20 <= high_y <= 30


# --- error vs batch -------------------------------------------------------------------------------------------


def _norm_records(seeded: bool) -> list[dict]:
    records = []
    for norm, batch, accs in [("bn", 32, [0.98, 0.96, 0.97]), ("bn", 2, [0.70, 0.72, 0.74]),
                              ("gn", 32, [0.80]), ("gn", 2, [0.82])]:
        case = Case("resnet50", batch=batch, norm=norm, resolution=32)
        records += _seeded(case, dict(enumerate(accs if seeded else accs[:1])))
    return records


def test_error_batch_plot_draws_mean_and_std_bars_for_several_seeds(tmp_path):
    plot = error_batch_plot(_frame(tmp_path, _norm_records(seeded=True)))
    svg = str(plot.svg)
    bars, markers = _bars(svg), _markers(svg)
    assert len(bars) == 2  # bn at batch 2 and 32; gn ran one seed: no bar
    assert set(markers) == {"resnet50 bn: batch 2, top-1 error 28.0% ± 2.0 over 3 seeds",
                            "resnet50 bn: batch 32, top-1 error 3.0% ± 1.0 over 3 seeds",
                            "resnet50 gn: batch 2, top-1 error 18.0%", "resnet50 gn: batch 32, top-1 error 20.0%"}
    _, top, _, bottom = plot_frame(svg)
    for x, low, high in bars:  # each bar centred on a marker, its low end below it
        assert any(cx == x and abs(cy - (low + high) / 2) <= 0.1 for cx, cy in markers.values())
        assert top <= high < low <= bottom
    # the bar of batch 2 spans 26…30 %: twice the pixels of batch 32's 2…4 %
    (_, low2, high2), (_, low32, high32) = sorted(bars)  # by x: batch 2 first
    assert math.isclose((low2 - high2) / (low32 - high32), 2.0, rel_tol=0.05)
    assert "± one standard deviation" in plot.caption


def test_error_batch_plot_of_single_seeds_has_no_bars(tmp_path):
    plot = error_batch_plot(_frame(tmp_path, _norm_records(seeded=False)))
    svg = str(plot.svg)
    assert not groups(svg, "errorbar") and "standard deviation" not in plot.caption
    assert "<title>resnet50 bn: batch 2, top-1 error 30.0%</title>" in svg


def test_error_batch_plot_of_records_without_seed_columns(tmp_path):
    frame = _frame(tmp_path, _norm_records(seeded=False))
    old = error_batch_plot(frame.drop(columns=["group_id", "seed"]))
    assert old is not None and str(old.svg) == str(error_batch_plot(frame).svg)


# --- accuracy vs latency --------------------------------------------------------------------------------------


def _accuracy_records() -> list[dict]:
    return [
        # three seeds, timed at seed 0 only: mean 72% (seed 0 alone: 76%), std √12 ≈ 3.5
        *_seeded(Case("a"), {0: 0.76, 1: 0.70, 2: 0.70}, latency_ms_median=10.0),
        make_record(Case("b"), group_id=Case("b").group_id, acc_top1=0.73, latency_ms_median=5.0),
        make_record(Case("c"), group_id=Case("c").group_id, acc_top1=0.50, latency_ms_median=20.0),
        *_seeded(Case("untimed"), {0: 0.9, 1: 0.9}),  # no latency: not drawn
    ]


def test_accuracy_plot_draws_one_point_per_case_at_the_mean_with_its_bar(tmp_path):
    plot = accuracy_latency_plot(_frame(tmp_path, _accuracy_records()))
    svg = str(plot.svg)
    markers = _markers(svg)
    assert len(markers) == 3  # a, b and c
    # the front is the means': a's mean (72%) is beaten by b (73%, faster), though its seed 0 (76%) is not
    assert set(markers) == {"a b1 224px cpu fp32: 10 ms, top-1 72.0% ± 3.5, mean of 3 seeds",
                            "b b1 224px cpu fp32: 5 ms, top-1 73.0% — on the Pareto front",
                            "c b1 224px cpu fp32: 20 ms, top-1 50.0%"}
    [(x, low, high)] = _bars(svg)
    cx, cy = markers["a b1 224px cpu fp32: 10 ms, top-1 72.0% ± 3.5, mean of 3 seeds"]
    assert x == cx and low > cy > high and abs((low + high) / 2 - cy) <= 0.1
    _, top, _, bottom = plot_frame(svg)
    assert top <= high and low <= bottom
    assert "untimed" not in svg and "seed=1" not in svg
    assert "± one standard deviation" in plot.caption


def test_accuracy_plot_joins_seeds_written_before_group_ids_existed(tmp_path):
    records = _seeded(Case("a"), {0: 0.76, 1: 0.70, 2: 0.70}, latency_ms_median=10.0)
    records[0]["group_id"] = None  # seed 0 written before seeds existed: its case_id is the group's
    records.append(make_record(Case("b"), acc_top1=0.73, latency_ms_median=5.0))
    svg = str(accuracy_latency_plot(_frame(tmp_path, records)).svg)
    assert len(_markers(svg)) == 2 and len(_bars(svg)) == 1
    assert "<title>a b1 224px cpu fp32: 10 ms, top-1 72.0% ± 3.5, mean of 3 seeds</title>" in svg


def test_accuracy_plot_of_records_without_seed_columns_is_unchanged(tmp_path):
    records = [make_record(Case(m), latency_ms_median=lat, acc_top1=acc) for m, lat, acc in
               [("fast", 1.0, 0.5), ("slow", 100.0, 0.9), ("bad", 50.0, 0.4), ("mid", 2.0, 0.6)]]
    frame = _frame(tmp_path, records)
    plot = accuracy_latency_plot(frame.drop(columns=["group_id", "seed"]))
    svg = str(plot.svg)
    assert svg == str(accuracy_latency_plot(frame).svg)
    assert len(_markers(svg)) == 4 and not groups(svg, "errorbar")
    assert "<title>mid b1 224px cpu fp32: 2 ms, top-1 60.0% — on the Pareto front</title>" in svg
    assert "<title>bad b1 224px cpu fp32: 50 ms, top-1 40.0%</title>" in svg
    assert len(groups(svg, "front")) == 1 and "standard deviation" not in plot.caption
