"""Seeds as a case axis: suites (`seed`, `repeats`, `baseline`), exact repeatability of one seed on the CPU, resume
within a seed list, and the aggregation over seeds with its t-tests (equal to scipy's)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from harness.case import Case
from harness.report.tables import seeds_table
from harness.runner import run_suite
from harness.seed_stats import PAIRED, WELCH, against_baseline, judge, seed_groups, summarize_seeds
from harness.store import ResultStore
from harness.store_query import latest_per_case
from harness.suite import SuiteError, load_suite, parse_suite
from tests.records import RICH_COLUMNS, make_record

TRAIN = "accuracy: {train_images: 128, limit: 40, batch_size: 40, lr: 0.05, lr_reference_batch: 8}"


# --- suites ---------------------------------------------------------------------------------------------------


def test_repeats_run_each_case_at_every_seed_for_the_seeded_metrics_only(write_suite):
    suite = load_suite(write_suite(f"""
        matrix:
          model: [tiny_cnn]
          batch: [8, 2]
          mode: [inference, train]
        repeats: {{seeds: [3, 1, 2]}}
        metrics:
          complexity: {{}}
          {TRAIN.replace('}', ', where: {mode: inference}}')}
        """))
    taken = {(c.batch, c.mode, c.seed): sorted(suite.metrics_for(c)) for c in suite.cases}
    assert taken == {
        (8, "inference", 3): ["accuracy", "complexity"], (8, "inference", 1): ["accuracy"],
        (8, "inference", 2): ["accuracy"], (8, "train", 3): ["complexity"],
        (2, "inference", 3): ["accuracy", "complexity"], (2, "inference", 1): ["accuracy"],
        (2, "inference", 2): ["accuracy"], (2, "train", 3): ["complexity"],
    }
    groups = {}
    for case in suite.cases:
        groups.setdefault(case.group_id, set()).add(case.case_id)
    assert sorted(len(ids) for ids in groups.values()) == [1, 1, 3, 3]  # seeds share a group, not a case_id


def test_seed_zero_keeps_the_case_id_and_other_seeds_get_their_own():
    case = Case("resnet18", batch=8)
    assert case.case_id == Case("resnet18", batch=8, seed=0).case_id == case.group_id
    assert "seed" not in case.identity() and "seed" not in case.label
    seeded = Case("resnet18", batch=8, seed=4)
    assert seeded.case_id != case.case_id and seeded.group_id == case.case_id
    assert seeded.label.endswith("seed=4")


def test_seed_as_a_matrix_axis_takes_every_metric(write_suite):
    suite = load_suite(write_suite(f"matrix:\n  model: [tiny_cnn]\n  seed: [0, 7]\nmetrics:\n  complexity: {{}}\n"
                                   f"  {TRAIN}\n"))
    assert [(c.seed, sorted(suite.metrics_for(c))) for c in suite.cases] == [
        (0, ["accuracy", "complexity"]), (7, ["accuracy", "complexity"])]


@pytest.mark.parametrize(("text", "expected"), [
    ("matrix:\n  model: [tiny_cnn]\n  seed: [0, -1]\nmetrics: [complexity]\n",
     "s.yaml:3: matrix.seed[1]: Input should be greater than or equal to 0"),
    ("matrix:\n  model: [tiny_cnn]\n  seed: [0, 1, 0]\nmetrics: [complexity]\n",
     "s.yaml:3: matrix.seed[2]: duplicate seed 0 (also item 0)"),
    (f"matrix:\n  model: [tiny_cnn]\nrepeats:\n  seeds: [1, 2, 1]\nmetrics:\n  {TRAIN}\n",
     "s.yaml:4: repeats.seeds[2]: duplicate seed 1 (also item 0)"),
    ("matrix:\n  model: [tiny_cnn]\nrepeats: {seeds: [0, 1]}\nmetrics: [complexity, latency]\n",
     "s.yaml:3: repeats: repeats seeds for the seeded metrics (accuracy, box_simulation, detection), and the "
     "suite takes none"),
    (f"matrix:\n  model: [tiny_cnn]\n  seed: [0, 1]\nrepeats: {{seeds: [0, 1]}}\nmetrics:\n  {TRAIN}\n",
     "s.yaml:4: repeats: give the seeds either as `repeats: {seeds: [...]}`"),
    ("matrix:\n  model: [tiny_cnn]\nrepeats: {seeds: []}\nmetrics: [accuracy]\n",
     "s.yaml:3: repeats.seeds: expected a non-empty list"),
    ("matrix:\n  model: [tiny_cnn]\n  norm: [bn, gn]\nbaseline: {norm: ln}\nmetrics: [accuracy]\n",
     "s.yaml:4: baseline: no case has norm: ln: the baseline row must be one of the suite's cases"),
    ("matrix:\n  model: [tiny_cnn]\nbaseline:\n  seed: 1\nmetrics: [accuracy]\n",
     "s.yaml:4: baseline.seed: a baseline names the fields that tell its row apart"),
    ("matrix:\n  model: [tiny_cnn]\nalpha: 1.5\nmetrics: [accuracy]\n", "s.yaml:3: alpha: Input should be less than 1"),
    ("matrix:\n  model: [tiny_cnn]\nmetrics:\n  accuracy:\n    seed: 3\n",
     "s.yaml:5: metrics.accuracy.seed: `seed` is a field of the case, not a metric option"),
])
def test_seed_problems_name_their_line(text, expected):
    with pytest.raises(SuiteError) as caught:
        parse_suite(text, "s.yaml")
    assert any(str(p).startswith(expected) for p in caught.value.problems), str(caught.value)


# --- exact repeatability and resume (worker processes) ----------------------------------------------------------


def test_one_seed_repeats_exactly_on_the_cpu_and_another_seed_differs():
    from harness.runner.worker import measure_case

    metrics = {"accuracy": {"train_images": 256, "limit": 64, "batch_size": 64, "lr": 0.05,
                            "lr_reference_batch": 8}}
    case = Case("tiny_cnn", resolution=16, batch=8, model_kwargs=(("num_classes", 10),))
    first, again = measure_case(case, metrics), measure_case(case, metrics)
    other = measure_case(Case("tiny_cnn", resolution=16, batch=8, model_kwargs=(("num_classes", 10),), seed=1),
                         metrics)
    assert first["acc_train_steps"] == 32 and first["deterministic"] is True
    for column in ("acc_top1", "acc_top5", "acc_train_loss_first", "acc_train_loss_last"):
        assert first[column] == again[column], column  # exactly, not approximately
    assert other["acc_train_loss_first"] != first["acc_train_loss_first"]  # the seed reaches the weights and order


def test_resume_continues_a_partly_done_seed_list(write_suite, tmp_path):
    suite = load_suite(write_suite(f"""
        defaults: {{resolution: 16, batch: 8, model_kwargs: {{num_classes: 10}}}}
        matrix:
          model: [tiny_cnn]
        repeats: {{seeds: [0, 1, 2, 3]}}
        baseline: {{model: tiny_cnn}}
        alpha: 0.1
        metrics:
          {TRAIN}
        """))

    def stop_after_two(record):
        if len(ResultStore(tmp_path).read()) == 2:
            raise KeyboardInterrupt

    first = run_suite(suite, tmp_path, show_progress=False, on_record=stop_after_two)
    assert first.interrupted and sum(first.counts.values()) == 2
    resumed = run_suite(suite, tmp_path, show_progress=False, resume=True)
    assert resumed.run_id == first.run_id and resumed.skipped_by_resume == 2 and resumed.counts == {"ok": 2}
    frame = ResultStore(tmp_path).read()
    assert sorted(frame["seed"]) == [0, 1, 2, 3] and frame["case_id"].is_unique
    assert frame["group_id"].nunique() == 1 and frame["deterministic"].all()
    assert set(frame["baseline_json"]) == {'{"model": "tiny_cnn"}'} and set(frame["alpha"]) == {0.1}


# --- aggregation and significance --------------------------------------------------------------------------------


def test_summary_over_seeds_equals_numpy_and_scipy():
    values = [0.912, 0.874, 0.903, 0.889, 0.921]
    got = summarize_seeds(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert got.n == 5 and got.mean == pytest.approx(np.mean(values), rel=1e-15)
    assert got.std == pytest.approx(np.std(values, ddof=1), rel=1e-15)
    assert (got.ci_low, got.ci_high) == (pytest.approx(low, rel=1e-12), pytest.approx(high, rel=1e-12))
    assert (got.min, got.max) == (0.874, 0.921)
    single = summarize_seeds([0.5])
    assert single.n == 1 and single.mean == 0.5 and math.isnan(single.std) and math.isnan(single.ci_low)


def test_paired_and_welch_p_values_equal_scipys():
    base = {0: 0.689, 1: 0.671, 2: 0.702, 3: 0.684, 4: 0.699}
    other = {0: 0.618, 1: 0.633, 2: 0.597, 3: 0.640, 4: 0.602}
    paired = judge(base, other)
    seeds = sorted(base)
    assert paired.test == PAIRED
    assert paired.p_value == pytest.approx(
        stats.ttest_rel([other[s] for s in seeds], [base[s] for s in seeds]).pvalue, rel=1e-12)
    assert paired.delta_rel == pytest.approx((np.mean(list(other.values())) - np.mean(list(base.values())))
                                             / np.mean(list(base.values())), rel=1e-12)
    welch = judge(base, {s + 10: v for s, v in other.items()})  # other seeds: not paired
    assert welch.test == WELCH
    assert welch.p_value == pytest.approx(
        stats.ttest_ind(list(other.values()), list(base.values()), equal_var=False).pvalue, rel=1e-12)
    assert judge(base, other, same_data=False).test == WELCH


def test_rows_that_cannot_be_tested_say_why():
    one = judge({0: 0.5}, {0: 0.6, 1: 0.7})
    assert one.p_value is None and "one seed in the baseline row" in one.reason and one.delta_rel == pytest.approx(0.3)
    same = judge({0: 0.5, 1: 0.6}, {0: 0.5, 1: 0.6})
    assert same.p_value is None and same.delta_rel == 0 and "same value at every seed" in same.reason


def _norm_records(seeds_by_norm: dict[str, dict[int, float]], batch: int = 2, baseline: str = '{"norm": "bn"}'):
    out = []
    for norm, values in seeds_by_norm.items():
        for seed, acc in values.items():
            out.append(make_record(Case("resnet18", batch=batch, norm=norm, resolution=32, seed=seed), suite="norms",
                                   acc_top1=acc, baseline_json=baseline, alpha=0.05, acc_dataset="digits/test"))
    return out


def _frame(records) -> pd.DataFrame:
    frame = pd.DataFrame(records)
    for column in RICH_COLUMNS:
        if column not in frame:
            frame[column] = None
    return frame


def test_groups_judge_each_row_against_the_baseline_row_of_its_batch():
    bn = {0: 0.40, 1: 0.45, 2: 0.42}
    gn = {0: 0.80, 1: 0.83, 2: 0.82}
    records = _norm_records({"bn": bn, "gn": gn}) + _norm_records({"gn": {0: 0.9, 1: 0.91}}, batch=32)
    groups = against_baseline(seed_groups(latest_per_case(_frame(records))))
    by = groups.set_index(["norm", "batch"])
    assert by.loc[("bn", 2), "is_baseline"] and by.loc[("bn", 2), "acc_top1_judgement"] is None
    judged = by.loc[("gn", 2), "acc_top1_judgement"]
    assert judged.p_value == pytest.approx(stats.ttest_rel(list(gn.values()), list(bn.values())).pvalue, rel=1e-12)
    assert by.loc[("gn", 2), "acc_top1_mean"] == pytest.approx(np.mean(list(gn.values())))
    assert by.loc[("gn", 32), "acc_top1_judgement"] is None
    assert "no baseline row (norm=bn) measured" in by.loc[("gn", 32), "baseline_reason"]


def test_the_seeds_view_prints_mean_std_delta_and_p_and_n_a_with_reasons():
    records = _norm_records({"bn": {0: 0.689, 1: 0.671, 2: 0.702}, "gn": {0: 0.618, 1: 0.633, 2: 0.597}})
    records += _norm_records({"gn": {0: 0.9}}, batch=32)  # one seed, no baseline row at batch 32
    view = seeds_table(latest_per_case(_frame(records)))
    assert view is not None
    rows = {tuple(c.text for c in row[:3]): row for row in view.rows}
    header = view.headers.index("Top-1 (%)")
    bn = rows[("resnet18", "2", "bn")]
    assert bn[header].text == "68.7 ± 1.6" and bn[header + 1].text == "baseline"
    gn = rows[("resnet18", "2", "gn")]
    assert gn[header].text == "61.6 ± 1.8 (-10.4%)"
    p = stats.ttest_rel([0.618, 0.633, 0.597], [0.689, 0.671, 0.702]).pvalue
    assert gn[header + 1].text == f"{p:.3f}" and gn[header + 1].best == (p < 0.05)
    alone = rows[("resnet18", "32", "gn")]
    assert alone[header].text == "90.0" and alone[header + 1].text == "n/a"
    assert "no baseline row" in alone[header + 1].note


def test_a_store_without_seeds_or_baseline_has_no_seeds_view_and_old_records_still_group():
    records = [make_record(Case("resnet18", norm=n), suite="s", acc_top1=0.5) for n in ("bn", "gn")]
    frame = _frame(records).drop(columns=["group_id", "seed", "baseline_json", "alpha"])
    assert seeds_table(latest_per_case(frame)) is None
    groups = seed_groups(latest_per_case(frame))
    assert list(groups["n_seeds"]) == [1, 1] and list(groups["seeds"]) == [[0], [0]]


def test_the_seeds_view_judges_ap75_and_shows_the_published_row_beneath_its_case():
    published = json.dumps([{"metric": "acc_ap", "value": 0.4657, "source": "DIoU Table 1", "convention": "VOC",
                             "comparable": False}])
    records = []
    for loss, aps in {"iou": (0.10, 0.12, 0.11), "ciou": (0.14, 0.15, 0.16)}.items():
        for seed, ap in enumerate(aps):
            records.append(make_record(
                Case("yolov3_darknet53", resolution=128, box_loss=loss, seed=seed), suite="losses", acc_ap=ap,
                acc_ap75=ap / 2, acc_aps=ap / 3, baseline_json='{"box_loss": "iou"}', alpha=0.05,
                det_dataset="digit_boxes/val", published_json=published if loss == "iou" else "[]"))
    view = seeds_table(latest_per_case(_frame(records)))
    assert view is not None
    for header in ("AP (%)", "AP75 (%)", "p (AP75)", "APs (%)"):
        assert header in view.headers
    texts = [[c.text for c in row] for row in view.rows]
    ap, ap75 = view.headers.index("AP (%)"), view.headers.index("AP75 (%)")
    iou_row = next(i for i, row in enumerate(texts) if row[1] == "iou")
    assert texts[iou_row][ap] == "11.0 ± 1.0" and texts[iou_row][ap75 + 1] == "baseline"
    assert texts[iou_row + 1][0] == "yolov3_darknet53 (published)" and texts[iou_row + 1][ap] == "46.6"
    assert all(c.kind == "published" for c in view.rows[iou_row + 1])
    ciou = next(row for row in texts if row[1] == "ciou")
    assert ciou[ap75] == "7.5 ± 0.5 (+36.4%)"
    p = stats.ttest_rel([0.07, 0.075, 0.08], [0.05, 0.06, 0.055]).pvalue
    assert ciou[ap75 + 1] == f"{p:.3f}"
    assert sum(row[0].endswith("(published)") for row in texts) == 1  # ciou publishes nothing here
