"""The site's layout markup: run pages with their run's records, tables in scroll boxes, collapsed columns.

What a browser makes of it (widths at 1366×768, sticky cells, the button) is tested in
``tests/browser/test_site_in_chromium.py``.
"""

from __future__ import annotations

import re

import pandas as pd
import pyarrow.parquet as pq
import pytest

from harness.case import Case
from harness.report import render_report
from harness.report.tables import (
    detail_columns,
    leaderboard,
    record_table,
    run_summaries,
    run_tables,
    suite_table,
    tabled_runs,
)
from harness.store import ResultStore
from harness.store_query import latest_per_case
from tests.records import COLUMNS, EVIL, RICH_COLUMNS, make_record, rich_store
from tests.site_records import add_wide_suite

ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> ResultStore:
    store = rich_store(tmp_path_factory.mktemp("layout") / "results")
    add_wide_suite(store)
    return store


@pytest.fixture(scope="module")
def pages(store, tmp_path_factory) -> dict[str, str]:
    index = render_report(store.root, tmp_path_factory.mktemp("layout-site"))
    return {p.name: p.read_text(encoding="utf-8") for p in index.parent.glob("*.html")}


def _table(html: str, table_id: str) -> str:
    return re.search(rf'<table id="{table_id}".*?</table>', html, re.S).group(0)


def _rows(table: str) -> list[list[str]]:
    """Return the texts of the body rows' cells."""
    body = table.split("<tbody>", 1)[1]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)]


def test_run_page_shows_its_runs_records_and_links_to_the_suite(pages):
    r1, r2 = _table(pages["run-r1.html"], "run-records-1"), _table(pages["run-r2.html"], "run-records-1")
    assert sorted(row[0] for row in _rows(r1)) == sorted([ESCAPED, "mobilenetv2_100", "resnet18", "resnet18",
                                                          "resnet50"])
    assert sorted(row[0] for row in _rows(r2)) == ["mobilenetv2_100", "resnet18", "resnet50", "vgg16"]
    assert 'data-value="9.0">9.00</td>' in r1 and ">8.00</td>" not in r1  # r1's resnet18, not r2's later one
    assert 'data-value="8.0">8.00</td>' in r2 and ">failed</td>" in r2  # the run's own records, failures included
    assert '<h3 class="run-suite" id="records-1">Suite <a href="suite-cnn.html">cnn</a>: 5 case(s)</h3>' in \
        pages["run-r1.html"]
    assert EVIL not in pages["run-r1.html"]


def test_a_run_of_several_suites_gets_a_table_per_suite(tmp_path):
    store = ResultStore(tmp_path / "results")
    for suite in ("b", "a"):
        store.append(make_record(Case("resnet18"), run_id="r", suite=suite, latency_ms_median=1.0), COLUMNS)
    html = (render_report(store.root, tmp_path / "site").parent / "run-r.html").read_text(encoding="utf-8")
    headings = re.findall(r'<h3 class="run-suite" id="records-(\d)">Suite <a href="(suite-\w+\.html)">', html)
    assert headings == [("1", "suite-a.html"), ("2", "suite-b.html")]
    assert 'id="run-records-1"' in html and 'id="run-records-2"' in html


def _tables_of_runs(frame, runs):
    return {run: run_tables(frame[frame["run_id"] == run]) for run in sorted(runs)}


def test_run_tables_are_the_suite_tables_builder_on_the_runs_records(store):
    frame = store.read()
    tables = _tables_of_runs(frame, tabled_runs(run_summaries(frame), None))
    assert sorted(tables) == ["g1", "n1", "r1", "r2", "w1", "x1"] and list(tables["r1"]) == ["cnn"]
    wide = suite_table(latest_per_case(frame[frame["suite"] == "wide"]))  # one run: the same records
    table = tables["w1"]["wide"]
    assert table.headers == wide.headers and table.detail == wide.detail
    assert [[c.text for c in row] for row in table.rows] == [[c.text for c in row] for row in wide.rows]


def test_run_tables_keep_a_cases_latest_record_in_the_run_an_ok_one_first(tmp_path):
    store = ResultStore(tmp_path / "results")
    case = Case("resnet18")
    store.append(make_record(case, run_id="r", latency_ms_median=3.0), COLUMNS)
    store.append(make_record(case, run_id="r", minutes=1, status="failed", error="late"), COLUMNS)
    store.append(make_record(case, run_id="r", minutes=2, latency_ms_median=2.0), COLUMNS)
    store.append(make_record(case, run_id="later", minutes=3, latency_ms_median=1.0), COLUMNS)
    tables = _tables_of_runs(store.read(), {"r", "later"})
    (row,) = tables["r"]["demo"].rows
    latency = tables["r"]["demo"].headers.index("Latency median (ms)")
    assert row[latency].value == 2.0 and row[tables["r"]["demo"].headers.index("Status")].text == "ok"
    assert [row[latency].value for row in tables["later"]["demo"].rows] == [1.0]


def test_suite_table_collapses_constant_fields_and_protocol_metrics(store):
    frame = store.read()
    table = suite_table(latest_per_case(frame[frame["suite"] == "wide"]))
    collapsed = [h for h, d in zip(table.headers, table.detail, strict=True) if d]
    assert collapsed == ["Batch", "Input (px)", "Device", "Dtype", "Status", "Op coverage (%)", "Latency IQR (ms)",
                         "Samples"]
    assert "input (px): 224" in " ".join(f"{k}: {v}" for k, v in table.environment.items())  # said in the caption
    cnn = suite_table(latest_per_case(frame[frame["suite"] == "cnn"]))
    shown = [h for h, d in zip(cnn.headers, cnn.detail, strict=True) if not d]
    assert {"Model", "Device", "Batch", "Status", "Params (M) published (Δ)", "Latency median (ms)"} <= set(shown)
    assert "Latency IQR (ms)" not in shown


def test_one_row_collapses_no_case_field_and_the_first_column_never():
    case = Case("resnet18")
    table = record_table(pd.DataFrame([make_record(case, latency_ms_iqr=0.1, latency_ms_median=1.0)]))
    assert [h for h, d in zip(table.headers, table.detail, strict=True) if d] == ["Latency IQR (ms)"]
    assert detail_columns([], [True, True], [True, True]) == [False, True]


def test_leaderboard_collapses_the_time_and_fields_the_same_in_every_row(store):
    board = leaderboard(store.read())
    collapsed = [h for h, d in zip(board.headers, board.detail, strict=True) if d]
    assert collapsed == ["Measured (UTC)"]  # two devices, two dtypes, a GPU and a CPU: those stay
    frame = store.read()
    cpu = leaderboard(frame[(frame["device"] == "cpu") & (frame["status"] == "ok")])
    assert [h for h, d in zip(cpu.headers, cpu.detail, strict=True) if d] == ["Device", "Hardware", "Dtype",
                                                                               "Measured (UTC)"]


def test_tables_sit_in_scroll_boxes_and_mark_their_collapsed_columns(pages):
    for name, html in pages.items():
        assert html.count("<table") == html.count('<div class="table-scroll">\n<table'), name
    suite = _table(pages["suite-wide.html"], "suite-table")
    headers = re.findall(r"<th [^>]*>([^<]*)<span", suite)
    cols = re.search(r"<colgroup>(.*?)</colgroup>", suite).group(1)
    marks = re.findall(r"<col( class=\"detail\")?>", cols)
    assert len(marks) == len(headers)
    assert [h for h, m in zip(headers, marks, strict=True) if m][-3:] == ["Op coverage (%)", "Latency IQR (ms)",
                                                                           "Samples"]
    board = _table(pages["index.html"], "leaderboard")
    assert len(re.findall(r"<col[ >]", board)) == board.count('<th scope="col"') and '<col class="detail">' in board
    assert "<colgroup>" not in _table(pages["index.html"], "runs-table")  # nothing to collapse: no colgroup



def test_only_each_suites_most_recent_runs_table_their_records_and_the_others_say_how_to_see_them(tmp_path):
    store = ResultStore(tmp_path / "results")
    for night in range(4):
        for suite in ("a", "b"):
            if suite == "b" and night == 3:
                continue  # suite b's latest run is night 2
            store.append(make_record(Case("resnet18"), run_id=f"{suite}{night}", suite=suite, minutes=night,
                                     latency_ms_median=1.0 + night), COLUMNS)
    runs = run_summaries(store.read())
    assert tabled_runs(runs, 2) == {"a3", "a2", "b2", "b1"} and tabled_runs(runs, 0) == set()
    render_report(store.root, tmp_path / "site", run_tables_per_suite=2)
    recent, old = (tmp_path / "site" / page for page in ("run-a3.html", "run-a1.html"))
    assert 'id="run-records-1"' in recent.read_text() and 'id="records-not-tabled"' not in recent.read_text()
    assert 'id="run-records-1"' not in old.read_text()
    assert "harness export --run a1" in old.read_text() and "the 2 most recent runs" in old.read_text()


def test_the_site_keeps_no_column_empty_in_every_record_but_the_case_fields(tmp_path):
    from harness.report.site import read_store

    store = ResultStore(tmp_path / "results")
    store.append(make_record(Case("resnet18"), run_id="a", latency_ms_median=2.0), RICH_COLUMNS)
    store.append(make_record(Case("resnet50"), run_id="b", acc_top1=0.7), RICH_COLUMNS)
    frame = read_store(store.root).frame.set_index("model")
    assert "flops" not in frame and "norm" in frame  # no record has flops; norm is a case field
    assert frame.loc["resnet18", "latency_ms_median"] == 2.0 and pd.isna(frame.loc["resnet50", "latency_ms_median"])
    assert frame.loc["resnet50", "acc_top1"] == 0.7 and pd.isna(frame.loc["resnet18", "acc_top1"])


def test_a_compacted_files_empty_columns_are_left_unread_and_read_as_null_beside_runs_that_fill_them(tmp_path):
    from harness.compaction import compact_run
    from harness.report.site import read_store
    from harness.store import FILLED_MIN_ROWS, filled_columns

    store = ResultStore(tmp_path / "results")
    for run, metric in (("a", "latency_ms_median"), ("b", "acc_top1")):
        for batch in range(1, FILLED_MIN_ROWS + 1):
            store.append(make_record(Case("resnet18", batch=batch), run_id=run, **{metric: float(batch)}), RICH_COLUMNS)
        compact_run(store.run_dir("demo", run), force=True)
    store.append(make_record(Case("resnet50"), run_id="c", latency_ms_median=9.0), RICH_COLUMNS)  # one part file
    compacted_a, compacted_b, part_c = (next(store.run_dir("demo", run).glob("*.parquet")) for run in "abc")
    assert "latency_ms_median" in filled_columns(compacted_a) and "acc_top1" not in filled_columns(compacted_a)
    assert "acc_top1" in filled_columns(compacted_b) and "latency_ms_median" not in filled_columns(compacted_b)
    assert filled_columns(part_c) == frozenset(pq.read_schema(part_c).names)  # too small to walk its statistics
    frame = read_store(store.root).frame
    assert len(frame) == 2 * FILLED_MIN_ROWS + 1 and "flops" not in frame
    by_run = {run: records.set_index("batch") for run, records in frame.groupby("run_id")}
    assert by_run["a"].loc[7, "latency_ms_median"] == 7.0 and by_run["a"]["acc_top1"].isna().all()
    assert by_run["b"].loc[7, "acc_top1"] == 7.0 and by_run["b"]["latency_ms_median"].isna().all()
    assert by_run["c"]["latency_ms_median"].tolist() == [9.0]


def test_a_contended_timing_is_marked_on_the_page_with_why(tmp_path):
    store = ResultStore(tmp_path / "results")
    columns = COLUMNS | {"latency_contended": "bool", "latency_noisy_reason": "string"}
    why = "contended: other processes took 1.20 of 2 cores > 0.1 of them"
    store.append(make_record(Case("resnet18"), latency_ms_median=9.0, latency_contended=True,
                             latency_noisy_reason=why), columns)
    store.append(make_record(Case("resnet50"), latency_ms_median=30.0, latency_contended=False), columns)
    page = (render_report(store.root, tmp_path / "site").parent / "suite-demo.html").read_text(encoding="utf-8")
    marked = re.findall(r'<td class="contended[^"]*" data-value="([\d.]+)" title="([^"]*)">', page)
    assert marked == [("9.0", why.replace(">", "&gt;"))]
