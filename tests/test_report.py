"""The HTML report: escaping, best values, published beside measured, failed cases listed."""

from __future__ import annotations

import json
import re

from harness.case import Case
from harness.report import render_report
from harness.report.tables import latest_per_case, suite_tables
from harness.store import ResultStore
from tests.records import COLUMNS, make_record


def _store(tmp_path, records):
    store = ResultStore(tmp_path / "results")
    for record in records:
        store.append(record, COLUMNS)
    return store


def test_model_name_and_error_with_html_are_escaped(tmp_path):
    evil = "<script>alert(1)</script>"
    error = f"ValueError: {evil} <img src=x onerror=alert(2)>"
    _store(tmp_path, [make_record(Case(evil), status="failed", error=error)])
    html = render_report(tmp_path / "results", tmp_path / "reports").read_text()
    assert evil not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_best_value_per_column_is_bold(tmp_path):
    store = _store(tmp_path, [
        make_record(Case("tiny_cnn"), latency_ms_median=2.0, throughput_samples_per_s=500.0),
        make_record(Case("resnet18"), latency_ms_median=9.0, throughput_samples_per_s=111.0),
    ])
    html = render_report(store.root, tmp_path / "reports").read_text()
    assert re.search(r'<td class=" best">2\.00</td>', html)
    assert re.search(r'<td class=" best">500\.0</td>', html)
    assert not re.search(r'<td class=" best">9\.00</td>', html)


def test_published_value_is_shown_beside_measured_with_delta(tmp_path):
    published = json.dumps([{"metric": "params", "value": 10e6, "source": "Paper, Table 1", "convention": ""}])
    store = _store(tmp_path, [make_record(Case("resnet18"), params=11_000_000, published_json=published)])
    (table,) = suite_tables(store.read())
    assert "Params (M) published (Δ)" in table.headers
    texts = [c.text for c in table.rows[0]]
    assert "11.00" in texts and "10.00 (+10.0%)" in texts


def test_latest_record_per_case_wins_and_ok_beats_failed(tmp_path):
    case = Case("tiny_cnn")
    store = _store(tmp_path, [
        make_record(case, run_id="r1", minutes=0, latency_ms_median=5.0),
        make_record(case, run_id="r2", minutes=5, latency_ms_median=4.0),
        make_record(case, run_id="r3", minutes=9, status="failed", error="boom"),
    ])
    latest = latest_per_case(store.read())
    assert list(latest["run_id"]) == ["r2"]


def test_report_of_an_empty_store_says_how_to_get_results(tmp_path):
    html = render_report(tmp_path / "results", tmp_path / "reports").read_text()
    assert "No results yet" in html


def test_protocol_columns_appear_only_when_rows_differ(tmp_path):
    store = _store(tmp_path, [make_record(Case("tiny_cnn")), make_record(Case("resnet18"))])
    (table,) = suite_tables(store.read())
    assert "Quant" not in table.headers and "Channels last" not in table.headers
    store.append(make_record(Case("resnet18", quant="int8", channels_last=True), run_id="run-b"), COLUMNS)
    (table,) = suite_tables(store.read())
    assert "Quant" in table.headers and "Channels last" in table.headers and "Compile" not in table.headers


def _norm_record(norm: str, batch: int, acc: float, **values):
    case = Case("resnet50", batch=batch, norm=norm, resolution=32)
    return make_record(case, acc_top1=acc, **values)


def test_error_by_batch_per_norm_reads_like_the_gn_paper(tmp_path):
    published = json.dumps([{"metric": "acc_top1", "value": 0.653, "source": "Wu & He 2018, Table 2",
                             "convention": "", "comparable": False}])
    columns = COLUMNS | {"acc_top1": "float64"}
    store = ResultStore(tmp_path / "results")
    for record in [_norm_record("bn", 32, 0.98), _norm_record("bn", 2, 0.40, published_json=published),
                   _norm_record("gn", 32, 0.76), _norm_record("gn", 2, 0.83)]:
        store.append(record, columns)
    (table,) = suite_tables(store.read())
    (view,) = table.views
    assert view.headers == ["Model", "Norm", "Processes", "batch 32", "batch 2", "Δ batch 2 − 32"]
    rows = [[c.text for c in row] for row in view.rows]
    assert rows[0] == ["resnet50", "bn", "1", "2.0", "60.0", "+58.0"]  # error % = 100 × (1 − top-1)
    assert rows[1] == ["resnet50", "gn", "1", "24.0", "17.0", "-7.0"]
    assert rows[2] == ["resnet50", "bn (published)", "", "–", "34.7", "–"]
    html = render_report(store.root, tmp_path / "reports").read_text()
    assert "Top-1 error (%) by batch size per normalization" in html
    # a published value from another setting is shown without a Δ against ours
    assert "34.7" in html and "65.3 (" not in html and "no Δ" in html


def test_no_norm_view_without_several_norms_and_batches(tmp_path):
    store = ResultStore(tmp_path / "results")
    for record in [_norm_record("bn", 32, 0.9), _norm_record("bn", 2, 0.5)]:
        store.append(record, COLUMNS | {"acc_top1": "float64"})
    (table,) = suite_tables(store.read())
    assert table.views == []
