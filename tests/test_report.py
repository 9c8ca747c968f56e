"""The HTML report site: leaderboard, suite and run pages, plots, escaping, page names, no external URL."""

from __future__ import annotations

import json
import re
import warnings
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.case import Case
from harness.report import render_report
from harness.report.plots import (
    accuracy_latency_plot,
    error_batch_plot,
    flops_latency_plot,
    history_plot,
    latency_distribution_plot,
    pareto_front,
    peak_tflops,
)
from harness.report.site import page_names, read_store
from harness.report.tables import latest_per_case, leaderboard, run_summaries, suite_tables
from harness.store import ResultStore, arrow_schema
from harness.store_reader import read_rows
from tests.plot_svg import groups, labels, markers
from tests.records import COLUMNS, EVIL, RICH_COLUMNS, make_record, rich_store

ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def _store(tmp_path, records, columns=COLUMNS):
    store = ResultStore(tmp_path / "results")
    for record in records:
        store.append(record, columns)
    return store


def _render(store, tmp_path) -> Path:
    return render_report(store.root, tmp_path / "reports")


def _pages(index: Path) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(index.parent.glob("*.html"))}


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.urls += [value or "" for name, value in attrs if name in ("href", "src", "xlink:href", "action")]


def _urls(html: str) -> list[str]:
    parser = _Links()
    parser.feed(html)
    return parser.urls


@pytest.fixture(scope="module")
def site_dir(tmp_path_factory) -> Path:
    """The rich store's site, rendered once for the tests that only read it."""
    root = tmp_path_factory.mktemp("site")
    return _render(rich_store(root / "results"), root).parent


@pytest.fixture
def site(site_dir) -> dict[str, str]:
    return _pages(site_dir / "index.html")


# --- escaping -------------------------------------------------------------------------------------------


def test_model_name_and_error_with_html_are_escaped_on_every_page(tmp_path):
    error = f"ValueError: {EVIL} <img src=x onerror=alert(2)>"
    _store(tmp_path, [make_record(Case(EVIL), status="failed", error=error, suite=EVIL, run_id=EVIL),
                      make_record(Case(EVIL, batch=2), suite=EVIL, run_id=EVIL, latency_ms_median=3.0,
                                  latency_ms_samples=[3.0, 3.5], macs=10)])
    index = render_report(tmp_path / "results", tmp_path / "reports")
    assert index == tmp_path / "reports" / "index.html"
    pages = _pages(index)
    assert len(pages) == 3  # index, the suite's page, the run's page
    for name, html in pages.items():
        assert EVIL not in html and "<img src=x" not in html, name
        assert ESCAPED in html, name
        assert "<" not in name and ">" not in name
    suite_page = next(html for name, html in pages.items() if name.startswith("suite-"))
    assert f"<title>suite {ESCAPED} — harness</title>" in suite_page
    assert f"<title>{ESCAPED} b2 224px cpu fp32: 3 ms" in suite_page  # a plot's tooltip


def test_rich_site_has_no_unescaped_script(site):
    for name, html in site.items():
        assert EVIL not in html, name
        assert len(re.findall(r"<script\b", html)) == 1, name  # only the site's own script


# --- layout, links, no external URL ---------------------------------------------------------------------


def test_site_layout_pages_assets_and_links_resolve(site_dir):
    index = site_dir / "index.html"
    names = set(_pages(index))
    assert names == {"index.html", "suite-cnn.html", "suite-gpu.html", "suite-extra.html", "suite-norms.html",
                     "run-r1.html", "run-r2.html", "run-g1.html", "run-x1.html", "run-n1.html"}
    assert (index.parent / "assets" / "report.css").is_file() and (index.parent / "assets" / "report.js").is_file()
    for name, html in _pages(index).items():
        for url in _urls(html):
            target = url.split("#")[0]
            if not target:  # within the page (a plot's marker): the id it names is on the page
                assert f'id="{url[1:]}"' in html, f"{name} refers to missing {url!r}"
                continue
            assert (index.parent / target).is_file(), f"{name} links to missing {url!r}"


def test_site_has_no_external_url(site, site_dir):
    for name, html in site.items():
        assert "https://arxiv.org" in html or name != "suite-cnn.html"  # a citation stays as text
        for url in _urls(html):
            assert not re.match(r"^[a-z]+:|^//", url), f"{name}: external or absolute url {url!r}"
        assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html), name
        assert "xmlns" not in html and "@import" not in html
    assets = site_dir / "assets"
    for asset in assets.iterdir():
        text = asset.read_text()
        assert "http" not in text and "url(" not in text and "fetch(" not in text and "XMLHttpRequest" not in text


def test_page_names_are_safe_unique_and_stable():
    names = ["demo", "a b", "a_b", "../../etc/passwd", EVIL, "Smoke", "smoke", "x" * 300, ""]
    pages = page_names(names, "suite")
    assert set(pages) == set(names)
    files = list(pages.values())
    assert len({f.lower() for f in files}) == len(files)
    for f in files:
        assert re.fullmatch(r"suite-[A-Za-z0-9._-]+\.html", f) and ".." not in f.removeprefix("suite-")[:2]
        assert len(f) < 120
    assert pages["demo"] == "suite-demo.html" and page_names(names, "suite") == pages


def test_stale_pages_are_removed_on_the_next_render(tmp_path):
    store = _store(tmp_path, [make_record(Case("tiny_cnn"), suite="old", run_id="r-old")])
    reports = tmp_path / "reports"
    render_report(store.root, reports)
    assert (reports / "suite-old.html").exists()
    for path in (store.root / "old").rglob("*.parquet"):
        path.unlink()
    store.append(make_record(Case("tiny_cnn"), suite="new", run_id="r-new"), COLUMNS)
    render_report(store.root, reports)
    assert not (reports / "suite-old.html").exists() and not (reports / "run-r-old.html").exists()
    assert (reports / "suite-new.html").exists()


def test_report_of_an_empty_store_says_how_to_get_results(tmp_path):
    html = render_report(tmp_path / "results", tmp_path / "reports").read_text()
    assert "No results yet" in html


# --- the leaderboard ------------------------------------------------------------------------------------


def test_leaderboard_row_per_variant_device_dtype_batch_latest_wins_across_suites(tmp_path):
    r18 = Case("resnet18")
    store = _store(tmp_path, [
        make_record(r18, suite="a", run_id="ra", minutes=0, latency_ms_median=5.0),
        make_record(r18, suite="b", run_id="rb", minutes=5, latency_ms_median=4.0),       # same case, later: wins
        make_record(r18, suite="a", run_id="ra2", minutes=9, status="failed", error="x"),  # failed never wins
        make_record(Case("resnet18", quant="int8"), suite="a", run_id="ra", latency_ms_median=3.0),
        make_record(Case("resnet18", batch=8), suite="a", run_id="ra", latency_ms_median=30.0),
        make_record(Case("resnet18", dtype="bf16"), suite="a", run_id="ra", latency_ms_median=6.0),
        make_record(Case("resnet18", norm="gn", norm_kwargs=(("groups", 16),)), suite="a", run_id="ra",
                    latency_ms_median=7.0),
        make_record(Case("vgg16"), suite="a", run_id="ra", status="failed", error="boom"),
    ])
    board = leaderboard(store.read())
    rows = {(r.cells[0].text, r.cells[2].text, r.device, r.dtype): r for r in board.rows}
    assert set(rows) == {("resnet18", "1", "cpu", "fp32"), ("resnet18 int8", "1", "cpu", "fp32"),
                         ("resnet18", "8", "cpu", "fp32"), ("resnet18", "1", "cpu", "bf16"),
                         ('resnet18 norm=gn {"groups": 16}', "1", "cpu", "fp32")}
    latency = board.keys.index("latency_ms_median")
    main = rows[("resnet18", "1", "cpu", "fp32")]
    assert main.cells[latency].text == "4.00" and main.cells[latency].value == 4.0
    assert main.suites == ["a", "b"]
    assert board.unranked == 1  # vgg16: no ok record
    assert leaderboard(latest_per_case(store.read())).rows[0].suites == board.rows[0].suites


def test_leaderboard_keeps_the_latest_value_of_each_metric(tmp_path):
    case = Case("resnet18")
    store = _store(tmp_path, [make_record(case, run_id="r1", minutes=0, params=11_700_000, latency_ms_median=9.0),
                              make_record(case, run_id="r2", minutes=5, latency_ms_median=8.0)])
    (row,) = leaderboard(store.read()).rows
    texts = [c.text for c in row.cells]
    assert "11.70" in texts and "8.00" in texts and "9.00" not in texts


def test_leaderboard_page_has_sortable_headers_filters_and_summary(site):
    html = site["index.html"]
    assert '<table id="leaderboard" class="sortable">' in html
    for key in ("latency_ms_median", "macs", "flops", "params", "acc_top1", "batch"):
        assert re.search(rf'<th [^>]*data-sort="number" data-key="{key}">', html), key
    assert re.search(r'<th [^>]*data-sort="text" data-key="variant">Model<span class="sort-arrow"', html)
    assert re.search(r'<td data-value="7.5">7.50</td>', html)
    assert '<input type="search" id="leaderboard-filter" class="table-filter" data-table="leaderboard"' in html
    assert re.search(r'<select id="leaderboard-device" [^>]*data-column="device"><option value="">all</option>'
                     r'<option value="cpu">cpu</option><option value="cuda">cuda</option></select>', html)
    assert re.search(r'<select id="leaderboard-dtype" [^>]*data-column="dtype">', html)
    assert 'id="leaderboard-count"' in html
    assert '<tr data-device="cuda" data-dtype="fp16">' in html
    assert '<span id="summary-records">15 record(s)</span>' in html
    assert '<span id="summary-suites">4 suite(s)</span>' in html and '<span id="summary-runs">5 run(s)</span>' in html
    assert '<span id="summary-last">2026-11-23 01:30 UTC</span>' in html
    row = re.search(r"<tr[^>]*><td>resnet18</td><td data-value=\"224.0\">224</td><td data-value=\"1.0\">1</td>"
                    r"<td>cpu</td>.*?</tr>", html).group(0)
    assert '<a href="suite-cnn.html">cnn</a>, <a href="suite-extra.html">extra</a>' in row
    assert '<script src="assets/report.js"></script>' in html


def test_leaderboard_latest_wins_over_suites_in_the_page(site):
    # resnet18 b1 cpu fp32: cnn at r2 (8.0 ms, 60 min) and extra at x1 (7.5 ms, 90 min): extra's is the latest
    html = site["index.html"]
    row = re.search(r"<tr[^>]*><td>resnet18</td><td data-value=\"224.0\">224</td><td data-value=\"1.0\">1</td>"
                    r".*?</tr>", html).group(0)
    assert "7.50" in row and "8.00" not in row and "9.00" not in row


# --- suite pages ----------------------------------------------------------------------------------------


def test_best_value_per_column_is_bold(tmp_path):
    store = _store(tmp_path, [
        make_record(Case("tiny_cnn"), latency_ms_median=2.0, throughput_samples_per_s=500.0),
        make_record(Case("resnet18"), latency_ms_median=9.0, throughput_samples_per_s=111.0),
    ])
    html = (_render(store, tmp_path).parent / "suite-demo.html").read_text()
    assert re.search(r'<td class="best" data-value="2.0">2\.00</td>', html)
    assert re.search(r'<td class="best" data-value="500.0">500\.0</td>', html)
    assert re.search(r'<td data-value="9.0">9\.00</td>', html)


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


def test_latest_per_case_keeps_one_record_per_suite_and_case(tmp_path):
    a, b = Case("a"), Case("b")
    store = _store(tmp_path, [
        make_record(a, suite="s1", run_id="r1", minutes=0), make_record(a, suite="s2", run_id="r1", minutes=1),
        make_record(b, suite="s1", run_id="r1", minutes=2, status="failed", error="e"),
        make_record(b, suite="s1", run_id="r2", minutes=3, status="skipped", error="e"),
    ])
    latest = latest_per_case(store.read())
    assert sorted(zip(latest["suite"], latest["label"], latest["run_id"], strict=True)) == [
        ("s1", "a b1 224px cpu fp32", "r1"), ("s1", "b b1 224px cpu fp32", "r2"), ("s2", "a b1 224px cpu fp32", "r1")]


def test_suite_page_has_table_caption_problems_and_plots(site):
    html = site["suite-cnn.html"]
    assert "<title>suite cnn — harness</title>" in html
    caption = re.search(r"<caption>(.*?)</caption>", html, re.S).group(1)
    for part in ("device: cpu, cuda", "dtype: fp32", "batch: 1, 8", "threads: 2", "timer: perf_counter",
                 "cpu: test cpu", "torch: 2.x", '<a href="run-r1.html">r1</a>', '<a href="run-r2.html">r2</a>'):
        assert part in caption, part
    assert re.search(r'<th [^>]*data-sort="number">Latency median \(ms\)', html)
    assert "Params (M) published (Δ)" in html and "11.70 (+0.0%)" in html
    assert '<details class="problem status-failed"><summary><span class="status-failed">failed (oom)</span>: ' \
           f"vgg16 b1 224px cpu fp32 — RuntimeError: boom {ESCAPED}</summary>" in html
    assert "flaky" not in html  # mobilenetv2_100 failed in r2 but has an ok record: its row is the ok one
    assert "skipped</span>: resnet50 b1 224px cuda fp32 — no CUDA device</summary>" in html
    for plot in ("plot-accuracy", "plot-flops", "plot-latency-distribution", "plot-history"):
        assert f'<figure id="{plot}" class="plot">' in html, plot
    assert 'id="plot-error-batch"' not in html  # one norm only


def test_norm_suite_page_has_the_gn_view_and_its_plot(site):
    html = site["suite-norms.html"]
    assert "Top-1 error (%) by batch size per normalization" in html
    assert '<figure id="plot-error-batch" class="plot">' in html
    assert "<title>resnet50 bn: batch 2, top-1 error 60.0%</title>" in html
    for plot in ("plot-history", "plot-latency-distribution", "plot-accuracy"):
        assert f'id="{plot}"' not in html, plot


def test_gpu_suite_page_draws_the_roof_of_a_known_gpu(site):
    html = site["suite-gpu.html"]
    assert '<figure id="plot-flops" class="plot">' in html
    assert "NVIDIA H100 80GB HBM3 fp16: 989.4 TFLOP/s (NVIDIA H100 Tensor Core GPU datasheet (SXM5))" in html
    assert "No peak known" not in html
    assert "No peak known for test cpu fp32: no roof drawn." in site["suite-cnn.html"]


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
    html = (_render(store, tmp_path).parent / "suite-demo.html").read_text()
    assert "Top-1 error (%) by batch size per normalization" in html
    # a published value from another setting is shown without a Δ against ours
    assert "34.7" in html and "65.3 (" not in html and "no Δ" in html
    assert "resnet50 bn published (Wu &amp; He 2018, Table 2): batch 2, top-1 error 34.7%" in html


def test_no_norm_view_without_several_norms_and_batches(tmp_path):
    store = ResultStore(tmp_path / "results")
    for record in [_norm_record("bn", 32, 0.9), _norm_record("bn", 2, 0.5)]:
        store.append(record, COLUMNS | {"acc_top1": "float64"})
    (table,) = suite_tables(store.read())
    assert table.views == []
    assert error_batch_plot(latest_per_case(store.read())) is None


def test_protocol_columns_appear_only_when_rows_differ(tmp_path):
    store = _store(tmp_path, [make_record(Case("tiny_cnn")), make_record(Case("resnet18"))])
    (table,) = suite_tables(store.read())
    assert "Quant" not in table.headers and "Channels last" not in table.headers
    store.append(make_record(Case("resnet18", quant="int8", channels_last=True), run_id="run-b"), COLUMNS)
    (table,) = suite_tables(store.read())
    assert "Quant" in table.headers and "Channels last" in table.headers and "Compile" not in table.headers


# --- run pages ------------------------------------------------------------------------------------------


def test_run_page_has_environment_counts_and_problems(site):
    html = site["run-r2.html"]
    assert "<title>run r2 — harness</title>" in html
    assert ('<span id="run-counts">4 record(s): <span class="status-failed">2 failed</span>, '
            '<span class="status-ok">1 ok</span>, <span class="status-skipped">1 skipped</span></span>') in html
    assert '<tr><th scope="row">cpu</th><td>test cpu</td></tr>' in html
    assert '<tr><th scope="row">torch</th><td>2.x</td></tr>' in html
    assert f"RuntimeError: boom {ESCAPED}\nTraceback line 2</pre></details>" in html
    assert '(<a href="suite-cnn.html">cnn</a>) — no CUDA device</summary>' in html
    assert 'Suite(s): <a href="suite-cnn.html">cnn</a>' in html
    assert "Every case of this run is ok." in site["run-r1.html"]


def test_run_summaries_join_environment_values_that_differ_within_a_run(tmp_path):
    store = _store(tmp_path, [make_record(Case("a"), run_id="r", env_torch="2.1"),
                              make_record(Case("b"), run_id="r", minutes=1, env_torch="2.2"),
                              make_record(Case("c"), run_id="old", minutes=-5)])
    summaries = run_summaries(store.read())
    assert [s.run_id for s in summaries] == ["r", "old"]  # newest first
    assert summaries[0].environment["torch"] == "2.1 | 2.2" and summaries[0].counts == {"ok": 2}


# --- plots ----------------------------------------------------------------------------------------------


def test_pareto_front_is_exactly_the_non_dominated_points():
    assert list(pareto_front([1, 2, 3, 2, 4], [0.5, 0.7, 0.6, 0.7, 0.9])) == [True, True, False, True, True]
    rng = np.random.default_rng(0)
    for _ in range(50):
        x, y = rng.integers(0, 6, 25).astype(float), rng.integers(0, 6, 25).astype(float)  # many ties
        expected = [not any(x[j] <= x[i] and y[j] >= y[i] and (x[j] < x[i] or y[j] > y[i]) for j in range(len(x)))
                    for i in range(len(x))]
        assert list(pareto_front(x, y)) == expected
    assert pareto_front([], []).size == 0


def test_peak_table_matches_gpu_names_and_knows_no_cpu():
    assert peak_tflops("NVIDIA H100 PCIe", "fp32")[0] == 51.2
    assert peak_tflops("NVIDIA H100 80GB HBM3", "fp32")[0] == 66.9
    assert peak_tflops("NVIDIA A100-SXM4-80GB", "bf16")[0] == 312.0
    assert peak_tflops("NVIDIA Tesla V100-SXM2-16GB", "bf16") is None  # no bf16 on Volta
    assert peak_tflops("AMD EPYC 7B13", "fp32") is None


def _frame(tmp_path, records, columns=RICH_COLUMNS):
    return latest_per_case(_store(tmp_path, records, columns).read())


def test_each_plot_only_when_its_data_exist(tmp_path):
    plain = _frame(tmp_path, [make_record(Case("a"), latency_ms_median=1.0),
                              make_record(Case("b"), latency_ms_median=2.0)])
    assert accuracy_latency_plot(plain) is None and flops_latency_plot(plain) is None
    assert error_batch_plot(plain) is None and history_plot(plain) is None
    assert latency_distribution_plot(plain) is None


def test_accuracy_plot_draws_points_front_and_log_axis(tmp_path):
    frame = _frame(tmp_path, [make_record(Case(m), latency_ms_median=lat, acc_top1=acc) for m, lat, acc in
                              [("fast", 1.0, 0.5), ("slow", 100.0, 0.9), ("bad", 50.0, 0.4), (EVIL, 2.0, 0.6)]])
    plot = accuracy_latency_plot(frame)
    svg = str(plot.svg)
    assert len(markers(svg)) == 4
    assert "Latency median (ms per batch) (log scale)</text>" in svg and "Top-1 accuracy (%)</text>" in svg
    assert f"<title>{ESCAPED} b1 224px cpu fp32: 2 ms, top-1 60.0% — on the Pareto front</title>" in svg
    assert "<title>bad b1 224px cpu fp32: 50 ms, top-1 40.0%</title>" in svg
    assert len(groups(svg, "front")) == 1 and EVIL not in svg
    assert sorted(labels(svg)) == sorted(["fast", "slow", "bad", EVIL])  # each case named at its point
    assert "Names leave out what all share: b1 224px cpu fp32." in plot.caption


def test_flops_plot_falls_back_to_macs_and_says_when_no_peak_is_known(tmp_path):
    frame = _frame(tmp_path, [make_record(Case("a"), latency_ms_median=1.0, macs=1_000_000_000),
                              make_record(Case("b"), latency_ms_median=3.0, macs=5_000_000_000)])
    plot = flops_latency_plot(frame)
    assert plot.title == "MACs vs latency per device" and "MACs per batch (G)" in str(plot.svg)
    assert "No peak known for test cpu fp32: no roof drawn." in plot.caption
    assert not groups(plot.svg, "roof") and sorted(labels(plot.svg)) == ["a", "b"]


def test_distribution_plot_from_samples_with_escaped_tooltips(tmp_path):
    frame = _frame(tmp_path, [make_record(Case(EVIL), latency_ms_median=2.0, latency_ms_samples=[1.0, 2.0, 3.0, 9.0]),
                              make_record(Case("b"), latency_ms_median=2.0, latency_ms_samples=None)])
    plot = latency_distribution_plot(frame)
    svg = str(plot.svg)
    assert len(groups(svg, "box")) == 1 and len(markers(svg)) == 4  # the samples
    assert f"<title>{ESCAPED} b1 224px cpu fp32: 9 ms</title>" in svg and EVIL not in svg
    # 9 lies beyond q3 + 1.5 × IQR = 8.6 and no other sample beyond the box: the upper whisker stops at the box
    assert f"<title>{ESCAPED} b1 224px cpu fp32: median 2.5 ms, IQR 1.75–4.5 ms, whiskers 1–4.5 ms, 4 samples" \
           "</title>" in svg
    assert "Latency (ms per batch)</text>" in svg


def test_history_plot_needs_two_runs_of_a_case_and_uses_per_run_medians(tmp_path):
    case = Case("a")
    records = [make_record(case, run_id="r1", minutes=0, latency_ms_median=10.0),
               make_record(case, run_id="r2", minutes=60, latency_ms_median=8.0),
               make_record(case, run_id="r2", minutes=61, latency_ms_median=6.0),
               make_record(Case("b"), run_id="r1", latency_ms_median=1.0)]
    frame = _store(tmp_path, records).read()
    assert history_plot(frame[frame["run_id"] == "r1"]) is None
    svg = str(history_plot(frame).svg)
    assert len(groups(svg, "series")) == 1 and len(markers(svg)) == 2 and "Run time (UTC)</text>" in svg
    assert "<title>a b1 224px cpu fp32: 7 ms, run r2, 2026-11-23 01:01 UTC</title>" in svg  # median of 8 and 6


# --- reading the store ----------------------------------------------------------------------------------


def test_samples_are_read_only_for_the_records_drawn(tmp_path):
    columns = {"run_id": "string", "suite": "string", "case_id": "string", "label": "string", "status": "string",
               "timestamp_utc": "timestamp", "latency_ms_median": "float64", "latency_ms_samples": "list<float64>"}
    folder = tmp_path / "results" / "s" / "r"
    folder.mkdir(parents=True)
    n = 10
    for part in range(2):
        table = pa.table({
            "run_id": ["r"] * n, "suite": ["s"] * n, "case_id": [f"c{part}-{i}" for i in range(n)],
            "label": [f"case {part}-{i}" for i in range(n)], "status": ["ok"] * n,
            "timestamp_utc": pa.array([i * 1_000_000 for i in range(n)], pa.timestamp("us", tz="UTC")),
            "latency_ms_median": [float(i) for i in range(n)],
            "latency_ms_samples": [[float(part), float(i)] for i in range(n)]}, schema=arrow_schema(columns))
        pq.write_table(table, folder / f"{part:05d}-bulk.parquet", row_group_size=3)
    (folder / "00002-old.parquet").write_bytes(b"")  # unreadable: skipped with a warning
    with pytest.warns(UserWarning, match="skipping unreadable result file"):
        data = read_store(tmp_path / "results")
    assert "latency_ms_samples" not in data.frame and "latency_ms_samples" in data.columns
    assert len(data.frame) == 2 * n
    chosen = data.frame[data.frame["case_id"].isin(["c1-7", "c0-2", "c1-0"])].iloc[::-1]
    samples = read_rows(data, chosen, ["latency_ms_samples"])["latency_ms_samples"]
    assert samples.index.equals(chosen.index)
    assert {c: list(s) for c, s in zip(chosen["case_id"], samples, strict=True)} == {
        "c0-2": [0.0, 2.0], "c1-0": [1.0, 0.0], "c1-7": [1.0, 7.0]}
    data.paths[1].unlink()  # merged by a compaction since it was read
    with pytest.raises(FileNotFoundError):
        read_rows(data, chosen, ["latency_ms_samples"])
    kept = read_rows(data, chosen, ["latency_ms_samples", "label"], missing_ok=True).set_index(chosen["case_id"])
    assert list(kept.loc["c0-2", "latency_ms_samples"]) == [0.0, 2.0] and kept.loc["c0-2", "label"] == "case 0-2"
    assert kept.loc["c1-7", "latency_ms_samples"] is None and kept.loc[["c1-0"], "label"].isna().all()


def test_files_with_different_columns_are_read_together(tmp_path):
    store = ResultStore(tmp_path / "results")
    store.append(make_record(Case("a")), COLUMNS)
    store.append(make_record(Case("b"), acc_top1=0.5), COLUMNS | {"acc_top1": "float64"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frame = read_store(store.root).frame
    assert sorted(frame["acc_top1"].fillna(-1)) == [-1, 0.5]
