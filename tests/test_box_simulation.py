"""The Distance-IoU paper's box-regression simulation: placeholder model, metric, suite, report view and plot."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from harness.case import Case
from harness.errors import HarnessError, SkipCase
from harness.metrics import box_simulation as bs
from harness.metrics import metric_columns
from harness.report import render_report
from harness.report.plots import box_simulation_plot, suite_plots
from harness.report.tables import SUITE_VIEWS, box_simulation_table
from harness.runner.worker import execute_case
from harness.store import ResultStore
from harness.suite import load_suite, parse_suite
from harness.zoo.box_simulation import BoxRegressionSimulation
from harness.zoo.build import build_model
from tests.plot_svg import groups
from tests.records import COLUMNS, make_record

SUITE = Path(__file__).resolve().parents[1] / "suites" / "diou_simulation.yaml"
MODEL = "box_regression_simulation"
#: A tiny set-up: 6 points × 3 target ratios × 2 scales × 3 anchor ratios = 108 cases, 30 iterations.
TINY = {"points": 6, "iterations": 30, "scales": [0.5, 2.0], "aspect_ratios": [0.5, 1.0, 2.0]}


def _measure(loss: str, seed: int = 0, **options) -> dict:
    case = Case(MODEL, box_loss=loss, seed=seed)
    return bs.measure(build_model(case), None, case, bs.Options(**(TINY | options)))


@pytest.mark.parametrize("loss", bs.LOSSES)
def test_metric_returns_every_column_per_loss(loss):
    values = _measure(loss)
    assert set(values) == set(bs.COLUMNS)
    assert values["boxsim_loss"] == loss
    assert values["boxsim_cases"] == 6 * 3 * 2 * 3
    assert values["boxsim_iterations"] == 30
    assert len(values["boxsim_error_per_iter"]) == 30
    assert values["boxsim_error_final"] == values["boxsim_error_per_iter"][-1]
    assert all(math.isfinite(v) and v >= 0 for v in values["boxsim_error_per_iter"])
    assert 0 <= values["boxsim_iou_final_mean"] <= 1
    assert values["boxsim_s"] > 0
    assert set(bs.COLUMNS) <= set(metric_columns())  # registered: suites may publish its columns


@pytest.mark.parametrize("loss", ["giou", "diou", "ciou"])
def test_error_decreases_for_losses_with_a_gradient_everywhere(loss):
    values = _measure(loss, iterations=60)
    errors = values["boxsim_error_per_iter"]
    assert errors[-1] < 0.5 * values["boxsim_error_initial"]
    assert errors[-1] < errors[9] < errors[0]
    assert values["boxsim_iou_final_mean"] > 0.5


def test_iou_loss_stalls_far_above_the_others():
    iou, diou = _measure("iou", iterations=60), _measure("diou", iterations=60)
    assert iou["boxsim_error_final"] > 2 * diou["boxsim_error_final"]


def test_same_seed_repeats_exactly_and_another_seed_differs():
    first, again, other = _measure("ciou"), _measure("ciou"), _measure("ciou", seed=1)
    assert first["boxsim_error_per_iter"] == again["boxsim_error_per_iter"]
    assert first["boxsim_error_initial"] == again["boxsim_error_initial"]
    assert other["boxsim_error_initial"] != first["boxsim_error_initial"]


def test_iou_loss_leaves_non_overlapping_anchors_where_giou_moves_them():
    targets = torch.tensor([[10.0, 10.0, 1.0, 1.0], [10.0, 10.0, 1.0, 1.0]])
    anchors = torch.tensor([[13.0, 10.0, 1.0, 1.0],  # no overlap: IoU loss has no gradient
                            [10.3, 10.0, 1.0, 1.0]])  # overlaps: every loss pulls it in
    rates = [0.1] * 20
    iou_final, iou_errors, _ = bs.regress(anchors, targets, "iou", rates)
    giou_final, _, _ = bs.regress(anchors, targets, "giou", rates)
    assert torch.equal(iou_final[0], anchors[0])
    assert iou_final[1, 0] < 10.3  # the overlapping one does move under IoU loss
    assert giou_final[0, 0] < 13.0 - 0.1  # GIoU moves the far one towards the target
    assert giou_final[0, 2] > 1.0  # ... and, as the paper describes, first enlarges it
    assert iou_errors[-1] < iou_errors[0]


def test_cases_follow_the_papers_geometry():
    options = bs.Options(points=50, radius=3.0)
    anchors, targets = bs.make_cases(options, seed=0)
    assert anchors.shape == targets.shape == (50 * 7 * 7 * 7, 4)
    assert torch.allclose(targets[:, 2] * targets[:, 3], torch.ones(len(targets), dtype=torch.float64))
    assert torch.all(targets[:, :2] == bs.CENTER)
    assert set((targets[:, 2] / targets[:, 3]).round(decimals=6).tolist()) == {
        round(r, 6) for r in bs.PAPER_ASPECT_RATIOS}
    relative = (anchors[:, 2] * anchors[:, 3]) / (targets[:, 2] * targets[:, 3])
    assert set(relative.round(decimals=6).tolist()) == {round(s, 6) for s in bs.PAPER_SCALES}
    assert float((anchors[:, :2] - bs.CENTER).norm(dim=1).max()) <= 3.0
    assert bs.Options(subsample=10).points == 5000
    assert len(bs.make_cases(bs.Options(points=50, subsample=10), seed=0)[0]) == 5 * 343


def test_learning_rate_schedule_of_the_authors_script():
    rates = bs.learning_rates(bs.Options())
    assert len(rates) == 200
    assert rates[0] == rates[159] == 0.1
    assert rates[160] == pytest.approx(0.01) and rates[179] == pytest.approx(0.01)
    assert rates[180] == pytest.approx(0.001) and rates[199] == pytest.approx(0.001)
    assert bs.learning_rates(bs.Options(iterations=5, lr_milestones=[])) == [0.1] * 5


def test_options_refuse_nonsense():
    with pytest.raises(ValueError):
        bs.Options(scales=[0.0])
    with pytest.raises(ValueError):
        bs.Options(lr_milestones=[1.5])
    with pytest.raises(ValueError):
        bs.Options(unknown=1)


def test_placeholder_model_takes_the_case_box_loss():
    model = build_model(Case(MODEL, box_loss="diou"))
    assert isinstance(model, BoxRegressionSimulation)
    assert model.box_loss == "diou"
    assert not list(model.parameters())
    x = torch.randn(1, 3, 4, 4)
    assert torch.equal(model(x), x)
    with pytest.raises(SkipCase, match="offers box_loss iou, giou, diou, ciou"):
        build_model(Case(MODEL, box_loss="smooth_l1"))


def test_default_box_loss_is_refused_with_a_clear_error():
    case = Case(MODEL)
    with pytest.raises(HarnessError, match="needs a box_loss of iou, giou, diou, ciou"):
        bs.measure(build_model(case), None, case, bs.Options(**TINY))


def test_suite_with_default_box_loss_fails_its_case_clearly():
    suite = parse_suite(f"matrix: {{model: [{MODEL}]}}\nmetrics: {{box_simulation: {json.dumps(TINY)}}}\n")
    (case,) = suite.cases
    result = execute_case(case.to_dict(), {"box_simulation": suite.metrics_for(case)["box_simulation"].model_dump()})
    assert result["status"] == "failed"
    assert "needs a box_loss of iou, giou, diou, ciou" in result["error"]


def test_simulation_refuses_other_models():
    with pytest.raises(SkipCase, match="box_regression_simulation"):
        bs.measure(torch.nn.Identity(), None, Case("tiny_cnn", box_loss="giou"), bs.Options(**TINY))


def test_shipped_suite_parses_with_its_published_values():
    suite = load_suite(SUITE)
    assert [c.box_loss for c in suite.cases] == list(bs.LOSSES)
    assert all(c.model == MODEL and c.threads == 1 for c in suite.cases)
    published = {c.box_loss: suite.published_for(c) for c in suite.cases}
    assert [p["value"] for p in published["iou"]] == [5.9e6]
    assert [p["value"] for p in published["giou"]] == [1.5e6]
    assert published["diou"] == published["ciou"] == []
    assert all(not p["comparable"] for p in published["iou"] + published["giou"])
    options = suite.metrics_for(suite.cases[0])["box_simulation"]
    assert (options.points, options.iterations, options.lr, options.radius) == (5000, 200, 0.1, 3.0)


# --- report --------------------------------------------------------------------------------------------------

BOXSIM_COLUMNS = COLUMNS | bs.COLUMNS
FINALS = {"iou": 5.8e6, "giou": 3.0e4, "diou": 5.0e4, "ciou": 8.0e3}


def _records() -> list[dict]:
    published = json.dumps([{"metric": "boxsim_error_final", "value": 5.9e6, "source": "Zheng et al. 2020",
                             "convention": "read by eye", "comparable": False}])
    records = []
    for i, (loss, final) in enumerate(FINALS.items()):
        curve = [6.4e6 - (6.4e6 - final) * (1 - 0.97 ** t) / (1 - 0.97 ** 200) for t in range(1, 201)]
        extra = {"published_json": published} if loss == "iou" else {}
        records.append(make_record(Case(MODEL, box_loss=loss), suite="diou_simulation", minutes=i, boxsim_loss=loss,
                                   boxsim_cases=1_715_000, boxsim_iterations=200, boxsim_error_initial=6.4e6,
                                   boxsim_error_final=curve[-1], boxsim_error_per_iter=curve,
                                   boxsim_iou_final_mean=0.9, boxsim_clamped=0, boxsim_s=120.0, **extra))
    return records


def test_view_lists_losses_in_the_papers_order_with_the_published_value():
    frame = pd.DataFrame(_records()[::-1])
    view = box_simulation_table(frame)
    assert box_simulation_table in SUITE_VIEWS
    assert view is not None and view.title == "Box-regression simulation (Zheng et al. 2020)"
    assert [row[0].text for row in view.rows] == ["IOU", "GIOU", "DIOU", "CIOU"]
    final = view.headers.index("Final error")
    assert [row[final].value for row in view.rows] == pytest.approx(list(FINALS.values()))
    assert [row[final].best for row in view.rows] == [False, False, False, True]
    published = view.rows[0][view.headers.index("Published final")]
    assert published.text == "5.9e+06" and "Zheng et al. 2020" in published.note  # not comparable: no Δ
    assert view.rows[1][view.headers.index("Published final")].text == "–"
    at_10 = view.rows[0][view.headers.index("Error @ 10")].value
    assert at_10 == pytest.approx(frame.iloc[-1]["boxsim_error_per_iter"][9])


def test_plot_draws_a_line_per_loss_and_the_published_marker():
    plot = box_simulation_plot(pd.DataFrame(_records()))
    assert plot is not None
    assert len(groups(plot.svg, "curve")) == 4
    assert "IOU published" in plot.svg and "Iteration (log scale)" not in plot.svg
    assert "all cases (log scale)</text>" in plot.svg  # the error spans decades
    assert any(p.id == "plot-box-simulation" for p in suite_plots(pd.DataFrame(_records())))


def test_view_and_plot_are_absent_without_simulation_records():
    other = pd.DataFrame([make_record(Case("resnet18"), latency_ms_median=1.0)])
    assert box_simulation_table(other) is None
    assert box_simulation_plot(other) is None
    failed = pd.DataFrame([make_record(Case(MODEL, box_loss="iou"), status="failed", error="boom",
                                       boxsim_error_final=None)])
    assert box_simulation_table(failed) is None
    assert box_simulation_plot(failed) is None


def test_report_page_shows_the_view_and_the_plot(tmp_path):
    store = ResultStore(tmp_path / "results")
    for record in _records():
        store.append(record, BOXSIM_COLUMNS)
    index = render_report(store.root, tmp_path / "reports")
    page = "\n".join(p.read_text(encoding="utf-8") for p in index.parent.glob("*.html"))
    assert "Box-regression simulation (Zheng et al. 2020)" in page
    assert 'id="plot-box-simulation"' in page
