"""The timm zoo counted into the store (``harness zoo``): cases at each architecture's default input on the meta
device, parallel workers, the suite checks of the meta device, and the zoo's report page."""

from __future__ import annotations

import dataclasses
import json

import pytest
import timm

from harness.case import Case
from harness.cli import main
from harness.errors import HarnessError
from harness.metrics.complexity import Options
from harness.report.complexity_plots import survey_plots
from harness.report.tables import leaderboard
from harness.runner import run_suite
from harness.runner.executors import LocalExecutor
from harness.store import ResultStore
from harness.suite import Suite, SuiteError, load_suite
from harness.zoo.build import build_model
from harness.zoo_suite import ZOO_SUITE, coverage_summary, zoo_case, zoo_suite
from tests.records import make_record


def test_a_zoo_case_takes_the_architectures_default_input_also_when_not_square():
    assert zoo_case("resnet50d") == Case("resnet50d", resolution=224, device="meta")
    assert zoo_case("efficientnet_b3").resolution == timm.get_pretrained_cfg("efficientnet_b3").input_size[1]
    sapiens = zoo_case("vit_base_patch16_sapiens2")
    assert sapiens.input_shape == (1, 3, 1024, 768)
    assert sapiens.label == "vit_base_patch16_sapiens2 b1 1024x768px meta fp32"


def test_the_zoo_suite_has_a_case_per_matching_architecture():
    suite = zoo_suite("resnet1*", "bf16")
    names = [n for n in timm.list_models() if n.startswith("resnet1")]
    assert [c.model for c in suite.cases] == names and len(names) > 5
    assert {(c.device, c.dtype, c.batch) for c in suite.cases} == {("meta", "bf16", 1)}
    assert suite.name == ZOO_SUITE and list(suite.metrics) == ["complexity"]


def test_a_width_leaves_square_cases_ids_unchanged_and_names_non_square_ones():
    assert Case("resnet18", batch=8, width=None).case_id == "3833056951861ebb"
    assert Case("resnet18", width=224).case_id != Case("resnet18").case_id
    case = Case.from_dict(Case("resnet18", resolution=96, width=64).to_dict())
    assert case.input_shape == (1, 3, 96, 64) and case.input_text == "96x64"


def test_a_detector_refuses_a_non_square_input():
    with pytest.raises(HarnessError, match="takes a square input"):
        build_model(Case("ssd300_vgg16", resolution=300, width=200))


def test_a_model_on_the_meta_device_has_no_weights_and_counts_like_on_the_cpu():
    from harness.runner.worker import execute_case

    meta, cpu = (execute_case(Case("resnet18", resolution=64, device=d).to_dict(), {"complexity": {}})
                 for d in ("meta", "cpu"))
    assert build_model(Case("resnet18", device="meta")).conv1.weight.is_meta
    assert meta["status"] == cpu["status"] == "ok"
    keys = ("params", "macs", "flops", "mac_bytes", "activations", "complexity_coverage")
    assert {k: meta["values"][k] for k in keys} == {k: cpu["values"][k] for k in keys}


@pytest.mark.parametrize(("extra", "said"), [
    ("  latency: {}\n", "metric 'latency'"),
    ("defaults: {quant: int8}\n", "quant 'int8'"),
    ("defaults: {compress: magnitude_prune}\n", "compress 'magnitude_prune'"),
])
def test_a_meta_case_takes_only_what_counting_needs(write_suite, extra, said):
    metrics, defaults = (extra, "") if extra.startswith("  ") else ("", extra)
    path = write_suite(f"{defaults}matrix:\n  model: [resnet18]\n  device: [cpu, meta]\nmetrics:\n  complexity: {{}}\n"
                       + metrics)
    with pytest.raises(SuiteError) as caught:
        load_suite(path)
    (problem,) = caught.value.problems
    assert (problem.line, problem.where) == (4 if defaults else 3, "matrix.device[1]")
    assert said in problem.message and "without weights" in problem.message


def test_a_where_filter_keeps_a_timed_metric_off_the_meta_cases(write_suite):
    suite = load_suite(write_suite("matrix:\n  model: [resnet18]\n  device: [cpu, meta]\nmetrics:\n"
                                   "  complexity: {}\n  latency: {where: {device: cpu}}\n"))
    assert {c.device: list(suite.metrics_for(c)) for c in suite.cases} == {
        "cpu": ["complexity", "latency"], "meta": ["complexity"]}


def _suite(models: list[str], device: str = "meta") -> Suite:
    return Suite(name="zoo_test", path="<test>", description="", timeout_s=120, published=(),
                 cases=tuple(Case(m, resolution=32, device=device) for m in models),
                 metrics={"complexity": Options()})


def test_two_jobs_record_every_case_and_a_failure_does_not_stop_the_others(tmp_path):
    models = ["tiny_cnn", "fault_raise", "fault_abort", "resnet18", "tiny_cnn", "mobilenetv2_100"]
    suite = dataclasses.replace(_suite(models, "cpu"), cases=tuple(
        Case(m, resolution=32, batch=b) for b, m in enumerate(models, 1)))
    executor = LocalExecutor(jobs=2)
    try:
        summary = run_suite(suite, tmp_path, executor=executor, show_progress=False)
        pids = {w.pid for w in executor.workers}
    finally:
        executor.stop()
    frame = ResultStore(tmp_path).read().set_index("batch")
    assert summary.counts == {"ok": 4, "failed": 2}
    assert sorted(frame.index) == list(range(1, 7))
    assert frame.loc[3, "error"].startswith("WorkerCrash") and "fault_raise: this model raises" in frame.loc[2, "error"]
    assert len(pids) == 2 and None not in pids  # both workers ran (one restarted after the abort)
    assert (frame.loc[[1, 4, 5, 6], "macs"] > 0).all()


def test_jobs_below_one_are_refused():
    with pytest.raises(HarnessError, match="at least one"):
        LocalExecutor(jobs=0)


def test_harness_zoo_counts_the_matching_architectures_into_the_store(tmp_path, capsys):
    status = main(["zoo", "resnet1[08]*", "--jobs", "2", "--results", str(tmp_path / "r"), "--report",
                   str(tmp_path / "site"), "--no-progress"])
    out = capsys.readouterr().out
    assert status == 0
    frame = ResultStore(tmp_path / "r").read()
    assert sorted(frame["model"]) == sorted(n for n in timm.list_models() if n.startswith(("resnet10", "resnet18")))
    assert set(frame["suite"]) == {ZOO_SUITE} and set(frame["device"]) == {"meta"}
    assert (frame["complexity_coverage"] == 1.0).all()
    assert frame.set_index("model").loc["resnet18", "macs"] == 1_814_073_344  # torchvision's documented 1.81 G
    assert json.loads(frame["complexity_breakdown"].iloc[0])  # per op: what a comparison with fvcore reads
    assert f"{len(frame)} architecture(s)" in out and f"{len(frame)} ok" in out and f"coverage 1.0: {len(frame)}" in out
    page = (tmp_path / "site" / "suite-timm_zoo.html").read_text()
    assert 'id="plot-macs-params"' in page and 'id="plot-macbytes-macs"' in page
    index = (tmp_path / "site" / "index.html").read_text()
    assert 'href="suite-timm_zoo.html">timm_zoo</a>' in index and "resnet10t" not in index
    assert main(["zoo", "resnet1[08]*", "--results", str(tmp_path / "r"), "--resume", "--no-progress"]) == 0
    out = capsys.readouterr().out  # nothing left to count; the coverage is the run's
    assert f"{len(frame)} already recorded (resume)" in out and f"in the run, coverage 1.0: {len(frame)}," in out


def test_harness_zoo_says_when_no_architecture_matches(tmp_path, capsys):
    assert main(["zoo", "no_such_architecture_*", "--results", str(tmp_path)]) == 2
    assert "no timm architecture matches" in capsys.readouterr().err


def _survey_records(**extra: object) -> list[dict]:
    return [make_record(Case(m, device="meta"), suite=ZOO_SUITE, params=p, macs=macs, mac_bytes=b,
                        complexity_coverage=cov, **extra)
            for m, p, macs, b, cov in (("a", 1e6, 1e9, 1e7, 1.0), ("b", 2e6, 1e8, 5e7, 1.0),
                                       ("c", 5e7, 4e9, 1e8, 0.98))]


def test_survey_plots_colour_by_coverage_and_name_the_extremes():
    import pandas as pd

    plots = survey_plots(pd.DataFrame(_survey_records()))
    assert [p.id for p in plots] == ["plot-macs-params", "plot-macbytes-macs"]
    assert "coverage 98.0%" in plots[0].svg and "op coverage &lt; 1.0" in plots[0].svg
    assert "1e+03 MACs per parameter" in plots[0].svg  # a: 1 G / 1 M
    assert survey_plots(pd.DataFrame(_survey_records(latency_ms_median=3.0))) == []  # a timed suite: its own plots


def test_the_leaderboard_leaves_meta_counts_to_their_page():
    import pandas as pd

    timed = make_record(Case("resnet18"), suite="smoke", macs=1.8e9, latency_ms_median=20.0)
    records = pd.DataFrame([*_survey_records(), timed])
    board = leaderboard(records)
    assert [row.cells[0].text for row in board.rows] == ["resnet18"]
    assert board.counted_only == [ZOO_SUITE]


def test_coverage_summary_counts_full_near_and_low():
    records = [{"status": "ok", "complexity_coverage": c} for c in (1.0, 1.0, 0.995, 0.5)]
    assert coverage_summary([*records, {"status": "failed"}]) == "coverage 1.0: 2, 0.99–1: 1, below 0.99: 1"


def _fvcore_tool():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "tools" / "zoo_vs_fvcore.py"
    spec = importlib.util.spec_from_file_location("zoo_vs_fvcore", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_fvcore_comparison_groups_both_counters_ops_and_ranks_the_disagreements(tmp_path):
    tool = _fvcore_tool()
    breakdown = json.dumps({"aten.convolution": {"macs": 6, "calls": 1}, "aten.mm": {"macs": 3, "calls": 1},
                            "aten.relu": {"macs": 0, "calls": 2},
                            "aten._scaled_dot_product_flash_attention_for_cpu": {"macs": 1, "calls": 1}})
    ours = tool.ours_by_op(breakdown)
    assert ours == {"aten.convolution": 6, "aten.mm": 3, "aten._scaled_dot_product_flash_attention_for_cpu": 1}
    assert tool.grouped(ours) == {"conv": 6, "linear/matmul": 3, "attention": 1}
    rows = [  # a: fvcore skips attention and adds norms; b: agrees
        {"model": "a", "ours_macs": 10_000_000_000, "ours_by_op": {k: v * 10**9 for k, v in ours.items()},
         "fvcore_total": 10_000_000_000, "fvcore_attention": 10**9, "fvcore_unsupported": {"aten::add": 3},
         "fvcore_by_operator": {"conv": 6 * 10**9, "linear": 3 * 10**9, "batch_norm": 10**9}},
        {"model": "b", "ours_macs": 4, "ours_by_op": {"aten.addmm": 4}, "fvcore_total": 4, "fvcore_attention": 0,
         "fvcore_unsupported": {}, "fvcore_by_operator": {"linear": 4}},
        {"model": "c", "ours_macs": 4, "ours_by_op": {}, "fvcore_error": "RuntimeError: cannot trace"},
    ]
    out = tmp_path / "f.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = tool.summarize(str(out), top=1)
    assert "3 architecture(s) compared: 2 counted by both, 1 fvcore could not trace" in text
    assert "as timm's tables give it, against our MACs: within 1% for 2 of 2" in text  # a's norms offset attention
    assert "| a | 10.000 | 10.000 | 1.000 | attention 1 → 0; batch_norm 0 → 1 | aten::add ×3 |" in text
    assert "without its norm, pooling and upsampling counts, against our MACs: within 1% for 2 of 2" in text
    assert "c (RuntimeError: cannot trace)" in text


def test_a_suite_page_of_ten_rows_or_more_has_a_filter_box(tmp_path):
    from harness.report.site import render_site
    from tests.records import COLUMNS

    store = ResultStore(tmp_path / "r")
    for k in range(12):
        store.append(make_record(Case(f"m{k}", device="meta"), suite="many", params=10**6 * (k + 1),
                                 macs=10**8 * (k + 1), mac_bytes=10**7), COLUMNS | {"mac_bytes": "int64"})
    for k in range(3):
        store.append(make_record(Case(f"m{k}"), suite="few", macs=10**8), COLUMNS)
    render_site(tmp_path / "r", tmp_path / "site")
    many = (tmp_path / "site" / "suite-many.html").read_text()
    assert 'class="table-filter" data-table="suite-table"' in many and ">12 of 12 rows<" in many
    assert "table-filter" not in (tmp_path / "site" / "suite-few.html").read_text()
