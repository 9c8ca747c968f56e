"""Reading many records in two steps: first the few columns every record is needed for, each record *located*
(file and row); then the other columns of only the records chosen, from the row groups holding them.

The report reads every column but the largest for every record (and the latency samples only for the records a
plot shows); ``harness export`` reads four columns of every record to find each case's latest, then those records
whole. Both go through :func:`read_located` and :func:`read_rows`:

- the files are read together by pyarrow datasets (C++ threads, columns missing from older files as nulls), at most
  :data:`DATASET_FILES` files per dataset: a dataset keeps each file's footer until it is dropped;
- a column a file's footer says holds no value (:func:`harness.store.filled_columns`: a store holds a column for
  every metric of every suite, most of them empty in most runs) is not read at all, so the frame leaves out the
  columns no record fills (but those the caller names to keep);
- a file that cannot be read or holds no records (another program's Parquet file, a column of another type) is
  skipped with a warning naming it (:func:`harness.store.screen_files`); a file merged by a compaction while it
  was read makes the files be listed again.

pyarrow datasets over DuckDB: the harness already depends on pyarrow, and what it needs pushed down (columns, and
files chosen by suite and run folder) a dataset does; DuckDB would add a dependency for SQL that pandas does here.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from harness.errors import HarnessError
from harness.store import BASE_COLUMNS, VANISHED_RETRIES, ResultStore, filled_columns, screen_files
from harness.store_query import latest_per_case

#: Files read by one pyarrow dataset: a dataset keeps the footer of each file it read (~0.35 MB of memory for a file
#: of 170 columns) until it is dropped.
DATASET_FILES = 256
#: The most chunks a column of the records read is left in (each file read alone is a chunk).
MAX_CHUNKS = 64
#: The columns locating a record in :attr:`LocatedRecords.paths`: its file's position there and its row in the file.
LOCATION = ["_part", "_row"]


@dataclass
class LocatedRecords:
    """Records read in part: ``frame`` holds the columns read and :data:`LOCATION` (file position in ``paths``, row
    in the file), so that other columns of chosen records can be read later (:func:`read_rows`); ``columns`` is every
    column the files hold."""

    frame: pd.DataFrame
    paths: list[Path]
    columns: frozenset[str]


def read_located(list_files: Callable[[], list[Path]], *, columns: Collection[str] | None = None,
                 unread: Collection[str] = (), keep: Collection[str] = ()) -> LocatedRecords:
    """Return the records of the files ``list_files()`` lists: only ``columns`` (every column when None) but those
    of ``unread``, and of those only the columns some record fills, but for ``keep`` (kept, null, where no record
    fills them). Raises HarnessError when the files kept changing (a compaction merged files at every try)."""
    for _ in range(VANISHED_RETRIES):
        try:
            kept, skipped = screen_files(list_files())
        except FileNotFoundError:
            continue  # a compaction merged a file since the listing: list again
        for item in skipped:
            warnings.warn(item.warning(), stacklevel=2)
        if not kept:
            return _no_records()
        wanted = _Wanted(columns, frozenset(unread), frozenset(keep))
        try:
            return _read_datasets(kept, wanted)
        except (pa.ArrowException, OSError):
            if all(path.exists() for path, _schema in kept):
                return _read_files(kept, wanted)
            # a file vanished: a compaction merged it since the listing; list again
    raise HarnessError("the records kept changing while being read (a compaction merged files at every try): "
                       "read again")


def read_rows(located: LocatedRecords, records: pd.DataFrame, columns: Collection[str] | None = None, *,
              missing_ok: bool = False) -> pd.DataFrame:
    """Return ``columns`` (every column of the files when None) of ``records`` (rows of ``located.frame``), indexed
    and ordered as ``records``: only the row groups holding them are read, a column a file lacks is null. A file
    merged by a compaction since ``located`` was read raises FileNotFoundError, or, with ``missing_ok``, leaves its
    records' values null."""
    pieces: list[pa.Table] = []
    labels: list[np.ndarray] = []
    for part, group in records.groupby("_part", sort=True):
        try:
            handle = pq.ParquetFile(located.paths[int(part)])
        except FileNotFoundError:
            if missing_ok:
                continue
            raise
        names = handle.schema_arrow.names
        wanted = names if columns is None else [c for c in columns if c in names]
        pieces.append(_take_rows(handle, group["_row"].to_numpy(dtype=np.int64), wanted))
        labels.append(group.index.to_numpy())
    names = list(dict.fromkeys(n for piece in pieces for n in piece.column_names)) if columns is None else list(columns)
    if not pieces:
        return pd.DataFrame({name: pd.Series([None] * len(records), dtype=object) for name in names},
                            index=records.index)
    frame = pa.concat_tables(pieces, promote_options="permissive").to_pandas()
    frame.index = np.concatenate(labels)
    out = frame.reindex(index=records.index, columns=names)
    missing = ~records.index.isin(frame.index)
    if missing.any():  # their files were merged since: None, not NaN, in a column of lists or texts
        for name in names:
            if out[name].dtype == object:
                out.loc[missing, name] = None
    return out


def _take_rows(handle: pq.ParquetFile, rows: np.ndarray, columns: list[str]) -> pa.Table:
    """Return ``columns`` of the file's ``rows`` (in that order), reading only the row groups holding them."""
    sizes = [handle.metadata.row_group(i).num_rows for i in range(handle.num_row_groups)]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    groups = np.searchsorted(starts, rows, side="right") - 1
    needed = sorted(set(groups.tolist()))
    offset = dict(zip(needed, np.concatenate([[0], np.cumsum([sizes[g] for g in needed])[:-1]]), strict=True))
    local = rows - starts[groups] + np.array([offset[g] for g in groups], dtype=np.int64)
    return handle.read_row_groups(needed, columns=columns).take(pa.array(local))


@dataclass(frozen=True)
class _Wanted:
    """Which columns to read of a file (see :func:`read_located`)."""

    columns: Collection[str] | None
    unread: frozenset[str]
    keep: frozenset[str]

    def of(self, path: Path, names: list[str]) -> list[str]:
        """Return the columns to read of the file ``path``, whose columns are ``names``."""
        filled = filled_columns(path)
        return [name for name in names if (self.columns is None or name in self.columns)
                and name not in self.unread and (name in filled or name in self.keep)]

    def of_table(self, table: pa.Table) -> pa.Table:
        """Return ``table`` without the columns null in every row (but those to keep): a file too small for its
        footer to be walked (:data:`harness.store.FILLED_MIN_ROWS`) has all its columns read."""
        keep = [name for name, column in zip(table.column_names, table.columns, strict=True)
                if column.null_count < table.num_rows or name in self.keep]
        return table if len(keep) == table.num_columns else table.select(keep)


def _read_datasets(files: list[tuple[Path, pa.Schema]], wanted: _Wanted) -> LocatedRecords:
    """Read the screened ``(path, schema)`` files, a dataset per set of columns to read and per
    :data:`DATASET_FILES` files: their footers were read by the screening, so a dataset's schema is the union of its
    files' schemas, not a second reading of every footer."""
    paths = [path for path, _schema in files]
    index = {str(p): i for i, p in enumerate(paths)}
    groups: dict[tuple[str, ...], list[int]] = {}
    for position, (path, schema) in enumerate(files):
        groups.setdefault(tuple(wanted.of(path, schema.names)), []).append(position)
    tables, parts, rows = [], [], []
    for names, members in groups.items():
        schema = pa.unify_schemas([files[i][1] for i in members], promote_options="permissive")
        for first in range(0, len(members), DATASET_FILES):
            chunk = [str(paths[i]) for i in members[first:first + DATASET_FILES]]
            dataset = ds.FileSystemDatasetFactory(pafs.LocalFileSystem(), chunk, ds.ParquetFileFormat()).finish(schema)
            batches, seen = [], {}
            for tagged in dataset.scanner(columns=list(names)).scan_batches():  # a file's rows in order
                batch, part = tagged.record_batch, index[tagged.fragment.path]
                start = seen.get(part, 0)
                seen[part] = start + batch.num_rows
                batches.append(batch)
                parts.append(np.full(batch.num_rows, part, dtype=np.int32))
                rows.append(np.arange(start, start + batch.num_rows, dtype=np.int64))
            if batches:  # one chunk per column: a record file is a batch, and 100k one-row chunks cost gigabytes
                tables.append(wanted.of_table(pa.Table.from_batches(batches).combine_chunks()))
    return LocatedRecords(_frame(tables, parts, rows), paths, _all_columns(files))


def _read_files(files: list[tuple[Path, pa.Schema]], wanted: _Wanted) -> LocatedRecords:
    """Read the files one by one (when the data of one cannot be read: it is skipped with a warning)."""
    tables, parts, rows, kept = [], [], [], []
    for path, schema in files:
        try:
            table = pq.read_table(path, columns=wanted.of(path, schema.names))
        except (pa.ArrowException, OSError) as exc:
            warnings.warn(f"skipping unreadable result file {path}: {exc}", stacklevel=4)
            continue
        parts.append(np.full(table.num_rows, len(kept), dtype=np.int32))
        rows.append(np.arange(table.num_rows, dtype=np.int64))
        tables.append(table)
        kept.append((path, schema))
    if not tables:
        return _no_records()
    return LocatedRecords(_frame(tables, parts, rows), [path for path, _schema in kept], _all_columns(kept))


def _no_records() -> LocatedRecords:
    """Return what a store without a readable record file holds: no row, the base columns."""
    return LocatedRecords(pd.DataFrame(columns=[*BASE_COLUMNS, *LOCATION]), [], frozenset())


def _all_columns(files: list[tuple[Path, pa.Schema]]) -> frozenset[str]:
    return frozenset(name for _path, schema in files for name in schema.names)


def _frame(tables: list[pa.Table], parts: list[np.ndarray], rows: list[np.ndarray]) -> pd.DataFrame:
    """Return the records of ``tables`` as one frame with their :data:`LOCATION`; ``tables`` is emptied so that each
    column's Arrow memory is given back as it is converted."""
    table = pa.concat_tables(tables, promote_options="permissive")
    tables.clear()
    if table.num_columns and table.column(0).num_chunks > MAX_CHUNKS:
        table = table.combine_chunks()  # taking rows from a column of many chunks is slow
    frame = table.to_pandas(self_destruct=True, split_blocks=True)
    del table
    frame["_part"] = np.concatenate(parts) if parts else np.zeros(0, np.int32)
    frame["_row"] = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    return frame


#: The columns that choose each case's latest record (:func:`harness.store_query.latest_per_case`).
LATEST_KEYS = ["suite", "run_id", "case_id", "status", "timestamp_utc"]


def read_selected(store: ResultStore, *, suites: Collection[str] | None = None, runs: Collection[str] | None = None,
                  latest: bool = True) -> pd.DataFrame:
    """Return the records of ``suites`` and ``runs`` (any when None; only their folders are listed), every column the
    files holding them have: each case's latest (:func:`harness.store_query.latest_per_case`) when ``latest``, found
    from :data:`LATEST_KEYS` alone before the records chosen are read whole; all of them otherwise. Raises
    HarnessError when the files kept changing."""
    for _ in range(VANISHED_RETRIES):
        located = read_located(lambda: store.files_of(suites, runs), columns=LATEST_KEYS, keep=LATEST_KEYS)
        keys = located.frame
        for column, wanted in (("suite", suites), ("run_id", runs)):
            if wanted is not None:  # a folder name is the value made safe: check the value
                keys = keys[keys[column].isin(list(wanted)).to_numpy(dtype=bool, na_value=False)]
        chosen = latest_per_case(keys) if latest else keys
        try:
            return read_rows(located, chosen).reset_index(drop=True)
        except FileNotFoundError:
            continue  # a compaction merged a file since it was read: read again
    raise HarnessError(f"the records under {store.root} kept changing while being read: read again")
