"""The rendered site in a real browser: headless Chromium (Debian's) driven by Playwright.

Run by ``tox -e browser``, which installs Playwright and, where missing, Chromium; deselected from the
default run (marker ``browser``). The browser is ``$HARNESS_CHROMIUM`` or the first ``chromium`` /
``chromium-browser`` on the PATH; Playwright's own browser download is never used. The leaderboard's
screenshot is written to ``$HARNESS_SCREENSHOT_DIR`` (default: the test's temporary folder).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.report import render_report
from tests.records import EVIL, rich_store

pytestmark = pytest.mark.browser

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
    return render_report(rich_store(root / "results").root, root / "reports")


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
        page = browser.new_page(viewport={"width": 1400, "height": 900})
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
    assert len(names) >= 6  # index, 4 suites, 5 runs
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


def test_leaderboard_screenshot_is_saved(opened, tmp_path):
    open_page, problems = opened
    page = open_page()
    folder = Path(os.environ.get("HARNESS_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "leaderboard.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    assert problems == []
