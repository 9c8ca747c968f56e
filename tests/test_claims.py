"""Claims: a suite's "candidate / baseline within bounds" statements — validated with their lines, paired per case,
carried by the candidate's record, judged in the report and printed after a run."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest
import torch

from harness.case import Case
from harness.claims import bounds_text, claim_rows, summary_lines, verdict
from harness.cli import main
from harness.report import render_report
from harness.store import ResultStore
from harness.store_query import latest_per_case
from harness.suite import SuiteError, load_suite, parse_suite
from harness.zoo.registry import create_model
from tests.records import make_record

SUITE = """
matrix:
  device: [cpu, cuda]
  model: [resnet50, res2net50_26w_4s]
claims:
  - claim: Res2Net costs ResNet's MACs
    source: notes
    candidate: {model: res2net50_26w_4s}
    baseline: {model: resnet50}
    ratios: {macs: {min: 0.95, max: 1.05}, params: {}}
"""


def _problems(text: str) -> list[str]:
    with pytest.raises(SuiteError) as info:
        parse_suite(text, "s.yaml")
    return [str(p) for p in info.value.problems]


def test_each_candidate_is_paired_with_its_baseline_on_the_same_device() -> None:
    suite = parse_suite(SUITE)
    for device in ("cpu", "cuda"):
        [entry] = suite.claims_for(Case("res2net50_26w_4s", device=device))
        assert entry["baseline_case_id"] == Case("resnet50", device=device).case_id
        assert entry["baseline_label"] == Case("resnet50", device=device).label
        assert entry["ratios"] == {"macs": {"min": 0.95, "max": 1.05}, "params": {}}
        assert (entry["claim"], entry["source"], entry["index"]) == ("Res2Net costs ResNet's MACs", "notes", 0)
    assert suite.claims_for(Case("resnet50")) == []


def test_a_pair_keeps_the_candidates_other_fields() -> None:
    suite = parse_suite(SUITE.replace("matrix:", "defaults: {seed: 3}\nmatrix:"))
    [entry] = suite.claims_for(Case("res2net50_26w_4s", seed=3))
    assert entry["baseline_case_id"] == Case("resnet50", seed=3).case_id


@pytest.mark.parametrize(("change", "expected"), [
    (("ratios: {macs:", "ratios: {macz:"), "s.yaml:10: claims[0].ratios.macz: unknown metric column 'macz' (did you "
                                           "mean 'macs'?)"),
    (("baseline: {model: resnet50}", "baseline: {model: resnet18}"),
     "s.yaml:9: claims[0].baseline: the baseline of res2net50_26w_4s b1 224px cpu fp32 is resnet18 b1 224px cpu fp32, "
     "which is not one of the suite's cases: add it"),
    (("candidate: {model: res2net50_26w_4s}", "candidate: {model: res2net101_26w_4s}"),
     "s.yaml:8: claims[0].candidate: matches none of the suite's cases"),
    (("baseline: {model: resnet50}", "baseline: {device: cpu}"),
     "s.yaml:9: claims[0].baseline: leaves res2net50_26w_4s b1 224px cpu fp32 unchanged: a claim compares two "
     "different cases"),
    (("min: 0.95, max: 1.05", "min: 1.05, max: 0.95"), "s.yaml:10: claims[0].ratios.macs: Value error, min (1.05) is "
                                                       "above max (0.95)"),
    (("    ratios:", "    ratio:"), "s.yaml:10: claims[0].ratio: unknown key 'ratio' (did you mean 'ratios'?)"),
    (("baseline: {model: resnet50}", "baseline: {model: [resnet50]}"), "s.yaml:9: claims[0].baseline.model: "
                                                                       "expected a string"),
])
def test_a_wrong_claim_is_reported_with_its_line(change: tuple[str, str], expected: str) -> None:
    assert expected in "\n".join(_problems(SUITE.replace(*change))), _problems(SUITE.replace(*change))


@pytest.mark.parametrize(("ratio", "bounds", "interval", "expected"), [
    (1.04, {"min": 0.95, "max": 1.05}, None, "holds"),
    (1.05, {"max": 1.05}, None, "holds"),  # bounds are inclusive
    (1.06, {"max": 1.05}, None, "fails"),
    (0.90, {"min": 0.95}, None, "fails"),
    (1.20, {"min": 1.0}, (1.10, 1.30), "holds"),  # the whole interval is above the bound
    (1.02, {"min": 1.0}, (0.97, 1.08), "within noise"),  # the interval crosses it
    (0.98, {"min": 1.0}, (0.93, 1.03), "within noise"),  # either side of the bound
    (1.25, {"max": 1.1}, (1.2, 1.3), "fails"),
    (1.30, {}, None, "reported"),
    (None, {"min": 1.0}, None, "not measured"),
    (float("nan"), {}, None, "not measured"),
])
def test_verdict(ratio: float | None, bounds: dict[str, float], interval: tuple[float, float] | None,
                 expected: str) -> None:
    assert verdict(ratio, bounds, interval) == expected


def test_bounds_text() -> None:
    assert [bounds_text(b) for b in ({"min": 0.95, "max": 1.05}, {"min": 1.0}, {"max": 1.1}, {})] == [
        "0.95–1.05", "≥ 1", "≤ 1.1", "reported"]


def _claimed(case: Case, baseline: Case, ratios: dict[str, Any], **values: Any) -> dict[str, Any]:
    entry = {"index": 0, "claim": "c", "source": "s", "ratios": ratios, "baseline_case_id": baseline.case_id,
             "baseline_label": baseline.label}
    return make_record(case, claims_json=json.dumps([entry]), **values)


def test_rows_judge_each_metric_with_the_latency_interval() -> None:
    base, cand = Case("resnet50"), Case("res2net50_26w_4s")
    records = pd.DataFrame([
        make_record(base, macs=4_000_000_000, latency_ms_median=10.0, latency_ms_ci_low=9.0, latency_ms_ci_high=11.0),
        _claimed(cand, base, {"macs": {"max": 1.05}, "latency_ms_median": {"min": 1.0}, "params": {}},
                 macs=4_400_000_000, latency_ms_median=10.5, latency_ms_ci_low=10.0, latency_ms_ci_high=11.0),
    ])
    rows = claim_rows(records).set_index("metric")
    assert list(rows.index) == ["macs", "latency_ms_median", "params"]  # the claim's order
    assert rows.loc["macs", "ratio"] == pytest.approx(1.1) and rows.loc["macs", "verdict"] == "fails"
    assert rows.loc["latency_ms_median", "ratio"] == pytest.approx(1.05)
    assert (rows.loc["latency_ms_median", "ratio_low"], rows.loc["latency_ms_median", "ratio_high"]) == (
        pytest.approx(10 / 11), pytest.approx(11 / 9))
    assert rows.loc["latency_ms_median", "verdict"] == "within noise"
    assert rows.loc["params", "verdict"] == "not measured"
    assert rows.loc["params", "why"] == "the candidate case has no params"


def test_a_failed_or_missing_baseline_says_why_it_is_not_measured() -> None:
    base, cand = Case("resnet50"), Case("res2net50_26w_4s")
    claimed = _claimed(cand, base, {"macs": {}}, macs=4e9)
    failed = make_record(base, status="failed", error="RuntimeError: out of memory\nTraceback ...")
    [why] = claim_rows(pd.DataFrame([failed, claimed]))["why"]
    assert why == "the baseline case is failed: RuntimeError: out of memory"
    [why] = claim_rows(pd.DataFrame([claimed]))["why"]
    assert why == "the baseline case has no record in this suite"
    assert summary_lines(claim_rows(pd.DataFrame([claimed]))) == [
        f"claim 1 [{cand.label} vs {base.label}]: not measured (the baseline case has no record in this suite)"]


def test_records_without_claims_give_no_rows() -> None:
    assert claim_rows(pd.DataFrame([make_record(Case("resnet50"), macs=1)])).empty


TINY = """
matrix:
  model: [tiny_cnn]
include:
  - {model: tiny_cnn, model_kwargs: {num_classes: 100}}
metrics: [complexity]
claims:
  - claim: a wider classifier costs more parameters
    source: arithmetic
    candidate: {model: tiny_cnn, model_kwargs: {num_classes: 100}}
    baseline: {model_kwargs: {}}
    ratios: {params: {min: 1.5}, macs: {min: 1.5}}
"""


def test_a_run_records_its_claims_prints_them_and_the_report_judges_them(write_suite, tmp_path, capsys) -> None:
    path = write_suite(TINY)
    results, reports = tmp_path / "results", tmp_path / "reports"
    assert main(["run", str(path), "--results", str(results), "--no-progress"]) == 0
    wide, narrow = (sum(p.numel() for p in create_model("tiny_cnn", **kw).parameters())
                    for kw in ({"num_classes": 100}, {}))
    printed = capsys.readouterr().out
    assert f"claim 1 [tiny_cnn b1 224px cpu fp32 num_classes=100 vs tiny_cnn b1 224px cpu fp32]: params ×{wide / narrow:.3f} holds (≥ 1.5), macs ×" in printed  # noqa: E501
    assert "macs ×1.000 fails (≥ 1.5)" in printed  # the classifier's MACs are a sliver of the convolutions'

    suite = load_suite(path)
    records = latest_per_case(ResultStore(results).read())
    [candidate] = [r for r in records.to_dict("records") if r["case_id"] == suite.cases[1].case_id]
    assert json.loads(candidate["claims_json"])[0]["baseline_case_id"] == suite.cases[0].case_id
    rows = claim_rows(records).set_index("metric")
    assert rows.loc["params", "ratio"] == pytest.approx(wide / narrow)
    assert list(rows["verdict"]) == ["holds", "fails"]

    render_report(results, reports)
    page = next(reports.glob("suite-*.html")).read_text()
    assert "Claims (candidate / baseline, measured here)" in page
    assert "a wider classifier costs more parameters" in page and 'class="status-ok"' in page
    assert f"{wide / narrow:.3f}" in page


def test_the_notes_claims_suite_holds_its_macs_claims(tmp_path, capsys) -> None:
    """The notes' suite, counts only (latency is a measurement, judged in the report, not by a test)."""
    results = tmp_path / "results"
    assert main(["run", "suites/notes_claims.yaml", "--results", str(results), "--metrics", "complexity",
                 "--no-progress"]) == 0
    rows = claim_rows(latest_per_case(ResultStore(results).read()))
    cpu = rows[rows["candidate"].str.contains(" cpu ") & (rows["metric"] == "macs")].set_index("index")
    assert list(cpu["verdict"]) == ["holds", "holds", "holds"]
    assert cpu["ratio"].round(3).tolist() == [1.041, 1.022, 0.322]  # Res2Net, SPMs, DetNASNet-1.3G
    cuda = rows[rows["candidate"].str.contains(" cuda ") & (rows["metric"] == "macs")]
    assert list(cuda["verdict"]) == (["holds"] * 3 if torch.cuda.is_available() else ["not measured"] * 3)
    assert capsys.readouterr().out.count("notes_claims: claim ") == 6
