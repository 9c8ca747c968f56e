"""The rendered site in a real browser: headless Chromium (Debian's) driven by Playwright.

Run by ``tox -e browser``, which installs Playwright and, where missing, Chromium; deselected from the
default run (marker ``browser``). The browser is ``$HARNESS_CHROMIUM`` or the first ``chromium`` /
``chromium-browser`` on the PATH; Playwright's own browser download is never used. Pages open in a laptop's
window, 1366×768; screenshots of the leaderboard, a suite page and a run page (``leaderboard.png``, ``suite.png``,
``run.png``) are written to ``$HARNESS_SCREENSHOT_DIR`` (default: the test's temporary folder).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.report import render_report
from tests.records import EVIL, rich_store
from tests.site_records import add_wide_suite

pytestmark = pytest.mark.browser

#: A laptop's window: the site must fit it.
VIEWPORT = {"width": 1366, "height": 768}
#: Chromium's options for a closed network (no background connections) as root in a container.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def _chromium() -> str:
    path = os.environ.get("HARNESS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("no Chromium: install Debian's `chromium` (tox -e browser does) or set HARNESS_CHROMIUM")
    return path


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    store = rich_store(root / "results")
    add_wide_suite(store)
    return render_report(store.root, root / "reports")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=_chromium(), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def opened(browser, site):
    """Return a function opening a page of the site that collects console errors and uncaught exceptions."""
    pages, problems = [], []

    def open_page(name: str = "index.html"):
        page = browser.new_page(viewport=VIEWPORT)
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.goto(site.parent.joinpath(name).as_uri())
        page.wait_for_load_state("load")
        pages.append(page)
        return page

    yield open_page, problems
    for page in pages:
        page.close()


def test_every_page_loads_without_console_errors(opened, site):
    open_page, problems = opened
    names = sorted(p.name for p in site.parent.glob("*.html"))
    assert len(names) >= 12  # index, 5 suites, 6 runs
    for name in names:
        open_page(name)
    assert problems == []


def _column(page, key: str) -> list[str]:
    """Return the data-value of every row's cell in the leaderboard column whose header has data-key ``key``."""
    index = page.eval_on_selector_all(
        "#leaderboard thead th", f"(ths) => ths.findIndex(th => th.getAttribute('data-key') === {key!r})")
    assert index >= 0, f"no column {key!r}"
    return page.eval_on_selector_all(
        "#leaderboard tbody tr", f"(rows) => rows.map(r => r.cells[{index}].getAttribute('data-value') ?? '')")


def test_clicking_a_header_sorts_rows_and_again_reverses_them(opened):
    open_page, problems = opened
    page = open_page()
    header = page.locator("#leaderboard thead th[data-key=latency_ms_median]")
    before = [float(v) for v in _column(page, "latency_ms_median") if v]
    header.first.click()
    ascending = [float(v) for v in _column(page, "latency_ms_median") if v]
    assert ascending == sorted(before) and ascending != before
    assert header.first.get_attribute("aria-sort") == "ascending"
    header.first.click()
    assert [float(v) for v in _column(page, "latency_ms_median") if v] == sorted(before, reverse=True)
    assert header.first.get_attribute("aria-sort") == "descending"
    assert problems == []


def test_filter_box_and_device_select_hide_rows(opened):
    open_page, problems = opened
    page = open_page()
    total = page.locator("#leaderboard tbody tr").count()
    page.fill("#leaderboard-filter", "mobilenet")
    shown = page.locator("#leaderboard tbody tr:not([hidden])")
    assert 0 < shown.count() < total
    assert all("mobilenet" in text.lower() for text in shown.all_inner_texts())
    assert page.inner_text("#leaderboard-count") == f"{shown.count()} of {total} rows"
    page.fill("#leaderboard-filter", "")
    page.select_option("#leaderboard-device", "cuda")
    cuda_rows = page.locator("#leaderboard tbody tr:not([hidden])")
    assert cuda_rows.count() == 1 and "resnet50" in cuda_rows.inner_text()  # the skipped CUDA case has no row
    assert page.inner_text("#leaderboard-count") == f"1 of {total} rows"
    assert problems == []


def test_script_in_a_model_name_or_an_error_shows_as_text(opened, site):
    open_page, problems = opened
    page = open_page()
    page.evaluate("window.alerted = false; window.alert = () => { window.alerted = true; }")
    assert page.locator("#leaderboard tbody td", has_text=EVIL).count() >= 1  # the text itself is visible
    assert page.locator("script:not([src])").count() == 0  # no inline script made it into the DOM
    suite = next(site.parent.glob("suite-cnn*.html")).name
    page = open_page(suite)
    assert page.locator("details.problem summary", has_text=f"boom {EVIL}").count() == 1
    assert page.locator("script:not([src])").count() == 0
    assert page.evaluate("typeof window.alerted") == "undefined"  # a fresh page: nothing ran alert()
    assert problems == []


# --- layout at 1366×768 ------------------------------------------------------------------------------------

#: Returns the box of the table with id ``arguments[0]``'s scroll container: its sizes, scroll offsets and edges.
BOX = """(id) => { const box = document.getElementById(id).closest('.table-scroll');
  const r = box.getBoundingClientRect();
  return {scrollWidth: box.scrollWidth, clientWidth: box.clientWidth, scrollHeight: box.scrollHeight,
          clientHeight: box.clientHeight, scrollLeft: box.scrollLeft, scrollTop: box.scrollTop,
          left: r.left, top: r.top, right: r.right}; }"""
#: The headers of the table with id ``arguments[0]``: their text and whether they are shown.
HEADERS = """(id) => Array.from(document.getElementById(id).tHead.rows[0].cells).map(
  th => [th.textContent.trim(), th.getBoundingClientRect().width > 0])"""
#: The columns of the wide suite that start collapsed: its constant case fields and status, and the protocol metrics.
WIDE_COLLAPSED = ["Batch", "Input (px)", "Device", "Dtype", "Status", "Op coverage (%)", "Latency IQR (ms)", "Samples"]
#: The screenshots and their pages: the leaderboard, the wide suite and a run with failures.
SCREENSHOTS = {"leaderboard": "index.html", "suite": "suite-wide.html", "run": "run-r2.html"}


@pytest.mark.parametrize("name", ["index.html", "suite-cnn.html", "suite-wide.html", "run-r2.html", "run-w1.html"])
def test_pages_fit_a_laptop_screen(opened, name):
    open_page, problems = opened
    page = open_page(name)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # the page never scrolls sideways
    boxes = page.eval_on_selector_all(".table-scroll", "(boxes) => boxes.map(b => b.getBoundingClientRect().right)")
    assert boxes and max(boxes) <= VIEWPORT["width"]
    widths = page.eval_on_selector_all("figure.plot svg", "(svgs) => svgs.map(s => s.getBoundingClientRect().width)")
    assert all(100 < w <= 1100 for w in widths), widths  # plots sized to the page
    assert problems == []


def test_default_columns_fit_and_the_button_shows_and_hides_the_rest(opened):
    open_page, problems = opened
    page = open_page("suite-wide.html")
    headers = page.evaluate(HEADERS, "suite-table")
    assert [h for h, shown in headers if not shown] == WIDE_COLLAPSED
    box = page.evaluate(BOX, "suite-table")
    assert box["scrollWidth"] <= box["clientWidth"]  # the default columns fit: no column is off-screen
    button = page.locator("button.column-toggle[aria-controls=suite-table]")
    assert button.get_attribute("aria-expanded") == "false" and "Latency IQR (ms)" in button.inner_text()
    button.click()
    assert all(shown for _, shown in page.evaluate(HEADERS, "suite-table"))  # nothing is lost
    assert button.get_attribute("aria-expanded") == "true"
    button.click()
    assert [h for h, shown in page.evaluate(HEADERS, "suite-table") if not shown] == WIDE_COLLAPSED
    page = open_page()
    box = page.evaluate(BOX, "leaderboard")
    assert box["scrollWidth"] <= box["clientWidth"]
    assert "Measured (UTC)" in page.inner_text("button.column-toggle[aria-controls=leaderboard]")
    assert problems == []


def test_first_column_and_header_stay_in_view_while_the_table_scrolls(opened):
    open_page, problems = opened
    page = open_page("suite-wide.html")
    page.click("button.column-toggle[aria-controls=suite-table]")  # every column: wider than the window
    page.eval_on_selector("#suite-table", "t => { const b = t.closest('.table-scroll'); b.scrollIntoView(); "
                                          "b.scrollLeft = b.scrollWidth; b.scrollTop = b.scrollHeight; }")
    box = page.evaluate(BOX, "suite-table")
    assert box["scrollLeft"] > 0 and box["scrollTop"] > 0  # it did scroll both ways, inside its box
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    rows = page.locator("#suite-table tbody tr")
    last = rows.nth(rows.count() - 1).locator("td").first
    cell, corner = last.bounding_box(), page.locator("#suite-table thead th").first.bounding_box()
    assert abs(cell["x"] - box["left"]) < 1 and abs(corner["x"] - box["left"]) < 1  # the model column stuck left
    assert abs(corner["y"] - box["top"]) < 1  # the header row stuck on top
    hit = page.evaluate("([x, y]) => document.elementFromPoint(x, y).closest('td')?.textContent",
                        [cell["x"] + cell["width"] / 2, cell["y"] + cell["height"] / 2])
    assert hit == last.inner_text() and hit.startswith("resnet18")  # drawn above the scrolled cells
    assert problems == []


def test_run_page_shows_the_runs_records_and_links_to_its_suite(opened):
    open_page, problems = opened
    page = open_page("run-r1.html")
    link = page.locator("h3.run-suite a")
    assert link.inner_text() == "cnn" and link.get_attribute("href") == "suite-cnn.html" and link.is_visible()
    models = page.eval_on_selector_all("#run-records-1 tbody tr", "(rows) => rows.map(r => r.cells[0].textContent)")
    assert sorted(models) == sorted([EVIL, "mobilenetv2_100", "resnet18", "resnet18", "resnet50"])
    index = page.evaluate(HEADERS, "run-records-1").index(["Latency median (ms)", True])
    latency = page.locator("#run-records-1 thead th").nth(index)
    latency.click()  # sorts like the suite's table
    values = page.eval_on_selector_all(
        "#run-records-1 tbody tr", f"(rows) => rows.map(r => parseFloat(r.cells[{index}].getAttribute('data-value')))")
    assert values == sorted(values) == [1.0, 4.0, 9.0, 20.0, 50.0]
    assert page.locator("#run-records-1 td", has_text="9.00").count() == 1  # r1's resnet18, not r2's 8.00
    assert page.locator("#run-records-1 td", has_text="8.00").count() == 0
    link.click()
    assert page.url.endswith("suite-cnn.html")
    assert problems == []


def test_screenshots_at_1366x768_are_saved(opened, tmp_path):
    open_page, problems = opened
    folder = Path(os.environ.get("HARNESS_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    for kind, name in SCREENSHOTS.items():
        page = open_page(name)
        path = folder / f"{kind}.png"
        page.screenshot(path=str(path))  # the window, as a laptop shows it
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    assert problems == []
