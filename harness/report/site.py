"""The static site rendered from the results store: the leaderboard, a page per suite and per run.

Layout of the output folder::

    index.html               the leaderboard: a row per (variant, input, batch, device, dtype), latest values
    suite-<slug>.html        a suite's comparison table, its extra views, plots, cases not measured
    run-<slug>.html          a run's environment, its records (a table per suite, as on the suite's page),
                             failed and skipped cases
    assets/report.css        the style of every page
    assets/report.js         sorting (click a header) and filtering (text box, device and dtype) of tables, and
                             the button that shows a table's collapsed columns

Nothing is fetched from the network: the pages link only to each other and to ``assets/``, and plots are
inline SVG, so the folder works from ``file://``. The store is read once (:mod:`harness.store_reader`), without
the few columns no page shows and those no record fills; the latency samples (the largest column) are read only for
the records a distribution plot shows, from the row groups holding them.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterable
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.case import CASE_COLUMNS
from harness.report import RUN_TABLES
from harness.report.complexity_plots import survey_plots
from harness.report.plots import MAX_BOXES, suite_plots
from harness.report.tables import (
    ROW_ORDER,
    RecordTable,
    leaderboard,
    run_summaries,
    run_tables,
    suite_table,
    tabled_runs,
)
from harness.store import BASE_COLUMNS, ResultStore, safe_name, write_text_atomically
from harness.store_query import latest_per_case, positions_by
from harness.store_reader import LocatedRecords, read_located, read_rows

#: Files copied from ``harness/report/static`` into ``<out>/assets``.
ASSETS = ("report.css", "report.js")
#: The list column read only for the records a latency distribution plot shows.
SAMPLES = "latency_ms_samples"
#: Columns no page shows, left unread.
UNREAD = frozenset({SAMPLES, "protocol_json", "metrics_taken", "complexity_uncounted", "latency_gpu_state_start",
                    "latency_gpu_state_end"})
#: Columns kept even where every record leaves them empty (the site's code reads them by name).
ALWAYS_READ = frozenset({*BASE_COLUMNS, *CASE_COLUMNS})
#: Columns a history plot reads from every record.
HISTORY_COLUMNS = ["suite", "case_id", "run_id", "label", "status", "timestamp_utc", "latency_ms_median"]


def read_store(results_dir: str | Path) -> LocatedRecords:
    """Return every record under ``results_dir`` without the columns of :data:`UNREAD` and those no record fills (but
    the base and case columns), each located so that its samples can be read later
    (:func:`harness.store_reader.read_located`)."""
    store = ResultStore(results_dir)
    return read_located(lambda: list(store.part_files()), unread=UNREAD, keep=ALWAYS_READ)


def page_names(names: Iterable[str], prefix: str) -> dict[str, str]:
    """Return ``{name: file name}``: ``<prefix>-<slug>.html`` with the slug of :func:`safe_name` (at most 80
    characters); names whose slugs collide (ignoring case) or were cut get a hash of the name appended."""
    names = sorted(set(names))
    slugs = {name: safe_name(name)[:80] for name in names}
    seen: dict[str, int] = {}
    for slug in slugs.values():
        seen[slug.lower()] = seen.get(slug.lower(), 0) + 1
    out = {}
    for name, slug in slugs.items():
        if seen[slug.lower()] > 1 or slug != safe_name(name):
            slug += "-" + hashlib.sha1(name.encode()).hexdigest()[:8]
        out[name] = f"{prefix}-{slug}.html"
    return out


def _copy_assets(out: Path) -> None:
    folder = out / "assets"
    folder.mkdir(parents=True, exist_ok=True)
    static = resources.files("harness.report") / "static"
    for name in ASSETS:
        with resources.as_file(static / name) as source:
            shutil.copyfile(source, folder / name)


def _stamp(value: Any) -> str:
    return "–" if value is None or pd.isna(value) else pd.Timestamp(value).strftime("%Y-%m-%d %H:%M UTC")


def _suite_rows(frame: pd.DataFrame, latest: pd.DataFrame, pages: dict[str, str]) -> list[dict[str, Any]]:
    runs = frame.groupby("suite")["run_id"].nunique()
    last = frame.groupby("suite")["timestamp_utc"].max()
    counts = latest.groupby(["suite", "status"]).size()
    return [{"name": name, "page": pages[name], "runs": int(runs[name]), "last": _stamp(last[name]),
             "cases": int(counts[name].sum()), "counts": {str(k): int(v) for k, v in counts[name].items()}}
            for name in sorted(pages)]


def _samples_frame(data: LocatedRecords, records: pd.DataFrame) -> tuple[pd.DataFrame | None, int]:
    """Return the latest ok records with latency to draw as distributions (table order, at most MAX_BOXES)
    with their samples, and how many there were."""
    if SAMPLES not in data.columns or "latency_ms_median" not in records:
        return None, 0
    timed = records[(records["status"] == "ok") & records["latency_ms_median"].notna()]
    if timed.empty:
        return None, 0
    timed = timed.sort_values([c for c in ROW_ORDER if c in timed], kind="stable")
    chosen = timed.head(MAX_BOXES)
    samples = read_rows(data, chosen, [SAMPLES], missing_ok=True)[SAMPLES]  # merged since: not shown
    return chosen.assign(**{SAMPLES: samples}), len(timed)


def _history_positions(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Return, per suite, the positions in ``frame`` of its ok records with a latency (what a history plot reads)."""
    if "latency_ms_median" not in frame:
        return {}
    timed = ((frame["status"] == "ok") & frame["latency_ms_median"].notna()).to_numpy(dtype=bool, na_value=False)
    return positions_by(frame["suite"], timed)


def _rows(frame: pd.DataFrame, positions: np.ndarray | None, columns: list[str] | None = None) -> pd.DataFrame | None:
    """Return the rows of ``frame`` at ``positions`` (only ``columns``, when given); None without positions."""
    if positions is None:
        return None
    if columns is None:
        return frame.iloc[positions]
    return frame.iloc[positions, [frame.columns.get_loc(c) for c in columns if c in frame]]


def _run_tables(frame: pd.DataFrame, positions: np.ndarray | None) -> dict[str, RecordTable]:
    """Return the tables of a run's page: its records at ``positions`` in ``frame``, per suite; none when None."""
    records = _rows(frame, positions)
    return {} if records is None else run_tables(records)


def render_site(results_dir: str | Path = "results", out_dir: str | Path = "reports", *,
                run_tables_per_suite: int | None = RUN_TABLES) -> Path:
    """Render the site of every record under ``results_dir`` into ``out_dir``; return index.html's path. The pages
    of each suite's ``run_tables_per_suite`` most recent runs table their records (every run's when None); the
    other run pages give the run's summary, environment and problems.

    Pages of suites or runs no longer in the store (``suite-*.html``, ``run-*.html``) are removed.
    """
    from harness.report import template_environment

    env = template_environment()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _copy_assets(out)
    data = read_store(results_dir)
    frame = data.frame
    common = {"rendered_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "results_dir": str(results_dir)}
    written: set[str] = set()
    if frame.empty:
        suite_pages: dict[str, str] = {}
        html = env.get_template("index.html.j2").render(**common, nav_suites=[], board=None, summary=None,
                                                        suites=[], runs=[], run_pages={}, suite_pages={})
    else:
        latest = latest_per_case(frame)
        suite_pages = page_names(frame["suite"].astype(str).unique(), "suite")
        run_pages = page_names(frame["run_id"].astype(str).unique(), "run")
        nav = [(name, page) for name, page in sorted(suite_pages.items())]
        suites = _suite_rows(frame, latest, suite_pages)
        runs = run_summaries(frame)
        tabled = tabled_runs(runs, run_tables_per_suite)
        in_tables = frame["run_id"].astype(str).isin(tabled).to_numpy(dtype=bool, na_value=False)
        tabled_records = frame.iloc[np.flatnonzero(in_tables)]  # one take: the frame's columns are in many chunks
        by_run = positions_by(tabled_records["run_id"])  # each page's tables are made as it is written
        history = _history_positions(frame)
        for name, records in latest.groupby("suite", sort=True):
            name = str(name)
            table = suite_table(records)
            samples, samples_total = _samples_frame(data, records)
            plots = suite_plots(records, _rows(frame, history.get(name), HISTORY_COLUMNS), samples, samples_total)
            plots += survey_plots(records)
            page = suite_pages[name]
            html = env.get_template("suite.html.j2").render(
                **common, nav_suites=nav, t=table, plots=plots, run_pages=run_pages, page_title=f"suite {name}")
            (out / page).write_text(html, encoding="utf-8")
            written.add(page)
        for run in runs:
            page = run_pages[run.run_id]
            html = env.get_template("run.html.j2").render(**common, nav_suites=nav, run=run,
                                                          tables=_run_tables(tabled_records, by_run.get(run.run_id)),
                                                          tabled=run.run_id in tabled, per_suite=run_tables_per_suite,
                                                          suite_pages=suite_pages, page_title=f"run {run.run_id}")
            (out / page).write_text(html, encoding="utf-8")
            written.add(page)
        summary = {"records": len(frame), "suites": len(suite_pages), "runs": len(run_pages),
                   "last": _stamp(frame["timestamp_utc"].max()),
                   "counts": {str(k): int(v) for k, v in frame["status"].value_counts().sort_index().items()}}
        html = env.get_template("index.html.j2").render(
            **common, nav_suites=nav, board=leaderboard(frame), summary=summary, suites=suites, runs=runs,
            run_pages=run_pages, suite_pages=suite_pages)
    page = out / "index.html"
    write_text_atomically(page, html)  # written last: a reader of index.html finds every page it links to
    for stale in [*out.glob("suite-*.html"), *out.glob("run-*.html")]:
        if stale.name not in written:
            stale.unlink(missing_ok=True)
    return page
