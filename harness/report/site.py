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
inline SVG, so the folder works from ``file://``. The store's part files are read together (a pyarrow dataset),
without the few columns no page shows; the latency samples (the largest column) are read only for the records
a distribution plot shows, from the row groups holding them.
"""

from __future__ import annotations

import hashlib
import itertools
import shutil
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from harness.case import CASE_COLUMNS
from harness.errors import HarnessError
from harness.report import RUN_TABLES
from harness.report.plots import MAX_BOXES, suite_plots
from harness.report.tables import (
    ROW_ORDER,
    leaderboard,
    run_summaries,
    run_tables,
    suite_table,
    tabled_runs,
)
from harness.store import BASE_COLUMNS, VANISHED_RETRIES, ResultStore, safe_name, screen_files, write_text_atomically
from harness.store_query import latest_per_case

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


@dataclass
class StoreData:
    """The records of a store without their samples; ``_part`` and ``_row`` locate each record in
    ``paths`` (part file, row) so that its samples can be read later."""

    frame: pd.DataFrame
    paths: list[Path]
    has_samples: bool


def read_store(results_dir: str | Path) -> StoreData:
    """Return every record under ``results_dir`` without the columns of :data:`UNREAD` (the part files are read
    together by a pyarrow dataset, columns missing from older files as nulls; a file that cannot be read or holds no
    records — another program's Parquet file, a column of another type — is skipped with a warning naming it, as
    :meth:`ResultStore.read` does (:func:`harness.store.screen_files`); should the data of one be unreadable, file by
    file; listed again when a compaction merged a file while it was read)."""
    store = ResultStore(results_dir)
    for _ in range(VANISHED_RETRIES):
        try:
            kept, skipped = screen_files(list(store.part_files()))
        except FileNotFoundError:
            continue  # a compaction merged a file since the listing: list again
        for item in skipped:
            warnings.warn(item.warning(), stacklevel=2)
        paths = [path for path, _schema in kept]
        if not paths:
            return StoreData(pd.DataFrame(columns=[*BASE_COLUMNS, "_part", "_row"]), [], False)
        try:
            return _read_dataset(kept)
        except (pa.ArrowException, OSError):
            if all(p.exists() for p in paths):
                return _read_files(paths)
            # a file vanished: a compaction merged it since the listing; list again
    raise HarnessError(f"the records under {results_dir} kept changing while being read: read again")


def _frame(tables: list[pa.Table], parts: list[np.ndarray], rows: list[np.ndarray]) -> pd.DataFrame:
    frame = pa.concat_tables(tables, promote_options="permissive").to_pandas()
    frame["_part"] = np.concatenate(parts) if parts else np.zeros(0, np.int32)
    frame["_row"] = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    return frame


def _read_dataset(files: list[tuple[Path, pa.Schema]]) -> StoreData:
    """Read the screened ``(path, schema)`` files together: their footers were read by the screening, so the
    dataset's schema is their union, not a second reading of every footer."""
    paths = [path for path, _schema in files]
    schema = pa.unify_schemas([schema for _path, schema in files], promote_options="permissive")
    factory = ds.FileSystemDatasetFactory(pafs.LocalFileSystem(), [str(p) for p in paths], ds.ParquetFileFormat())
    dataset = factory.finish(schema)
    columns = [name for name in schema.names if name not in UNREAD]
    index = {str(p): i for i, p in enumerate(paths)}
    batches, parts, rows, seen = [], [], [], {}
    for tagged in dataset.scanner(columns=columns).scan_batches():  # in file order, each file's rows in order
        batch, part = _without_empty_columns(tagged.record_batch), index[tagged.fragment.path]
        start = seen.get(part, 0)
        seen[part] = start + batch.num_rows
        batches.append(batch)
        parts.append(np.full(batch.num_rows, part, dtype=np.int32))
        rows.append(np.arange(start, start + batch.num_rows, dtype=np.int64))
    tables = [pa.Table.from_batches(list(same)) for _schema, same in itertools.groupby(batches, lambda b: b.schema)]
    return StoreData(_frame(tables, parts, rows), paths, SAMPLES in schema.names)


def _without_empty_columns(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Return ``batch`` without the columns null in every row, but for the base and case columns: a store holds a
    column for every metric of every suite, most of them empty in most runs, and the site keeps the records in
    memory (a column absent from every batch is absent from the frame; one absent from some is null there)."""
    keep = [i for i, (name, column) in enumerate(zip(batch.schema.names, batch.columns, strict=True))
            if column.null_count < batch.num_rows or name in ALWAYS_READ]
    return batch if len(keep) == batch.num_columns else batch.select(keep)


def _read_files(paths: list[Path]) -> StoreData:
    tables, parts, rows, kept, has_samples = [], [], [], [], False
    for path in paths:
        try:
            handle = pq.ParquetFile(path)
            names = handle.schema_arrow.names
            table = handle.read(columns=[n for n in names if n not in UNREAD])
        except (pa.ArrowException, OSError) as exc:
            warnings.warn(f"skipping unreadable result file {path}: {exc}", stacklevel=3)
            continue
        has_samples = has_samples or SAMPLES in names
        parts.append(np.full(table.num_rows, len(kept), dtype=np.int32))
        rows.append(np.arange(table.num_rows, dtype=np.int64))
        tables.append(table)
        kept.append(path)
    if not tables:
        return StoreData(pd.DataFrame(columns=[*BASE_COLUMNS, "_part", "_row"]), [], False)
    return StoreData(_frame(tables, parts, rows), kept, has_samples)


def read_samples(data: StoreData, records: pd.DataFrame) -> pd.Series:
    """Return the ``latency_ms_samples`` of ``records`` (rows of ``data.frame``), aligned to their index:
    only the row groups holding them are read."""
    out = pd.Series([None] * len(records), index=records.index, dtype=object)
    for part, group in records.groupby("_part", sort=True):
        try:
            handle = pq.ParquetFile(data.paths[int(part)])
        except FileNotFoundError:  # merged by a compaction since the store was read: these samples are not shown
            continue
        if SAMPLES not in handle.schema_arrow.names:
            continue
        sizes = [handle.metadata.row_group(i).num_rows for i in range(handle.num_row_groups)]
        starts = np.concatenate([[0], np.cumsum(sizes)])
        rows = group["_row"].to_numpy(dtype=np.int64)
        groups = np.searchsorted(starts, rows, side="right") - 1
        needed = sorted(set(groups.tolist()))
        offset = dict(zip(needed, np.concatenate([[0], np.cumsum([sizes[g] for g in needed])[:-1]]), strict=True))
        local = rows - starts[groups] + np.array([offset[g] for g in groups], dtype=np.int64)
        column = handle.read_row_groups(needed, columns=[SAMPLES]).column(0).take(pa.array(local))
        out.loc[group.index] = pd.Series(column.to_pylist(), index=group.index, dtype=object)
    return out


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


def _samples_frame(data: StoreData, records: pd.DataFrame) -> tuple[pd.DataFrame | None, int]:
    """Return the latest ok records with latency to draw as distributions (table order, at most MAX_BOXES)
    with their samples, and how many there were."""
    if not data.has_samples or "latency_ms_median" not in records:
        return None, 0
    timed = records[(records["status"] == "ok") & records["latency_ms_median"].notna()]
    if timed.empty:
        return None, 0
    timed = timed.sort_values([c for c in ROW_ORDER if c in timed], kind="stable")
    chosen = timed.head(MAX_BOXES)
    return chosen.assign(**{SAMPLES: read_samples(data, chosen)}), len(timed)


def _history_by_suite(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Return, per suite, the few columns of its ok records with a latency that a history plot reads."""
    if "latency_ms_median" not in frame:
        return {}
    timed = ((frame["status"] == "ok") & frame["latency_ms_median"].notna()).to_numpy(dtype=bool, na_value=False)
    history = frame[[c for c in HISTORY_COLUMNS if c in frame]].iloc[np.flatnonzero(timed)]
    suites, names = pd.factorize(history["suite"], use_na_sentinel=False)
    order = np.argsort(suites, kind="stable")
    bounds = np.searchsorted(suites[order], np.arange(len(names) + 1))
    return {str(name): history.iloc[order[bounds[i]:bounds[i + 1]]] for i, name in enumerate(names)}


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
        records_by_run = run_tables(frame, tabled)
        history = _history_by_suite(frame)
        for name, records in latest.groupby("suite", sort=True):
            name = str(name)
            table = suite_table(records)
            samples, samples_total = _samples_frame(data, records)
            plots = suite_plots(records, history.get(name), samples, samples_total)
            page = suite_pages[name]
            html = env.get_template("suite.html.j2").render(
                **common, nav_suites=nav, t=table, plots=plots, run_pages=run_pages, page_title=f"suite {name}")
            (out / page).write_text(html, encoding="utf-8")
            written.add(page)
        for run in runs:
            page = run_pages[run.run_id]
            html = env.get_template("run.html.j2").render(**common, nav_suites=nav, run=run,
                                                          tables=records_by_run.get(run.run_id, {}),
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
