"""The results store: a Parquet dataset of records, one file per finished case, written atomically.

Layout under the results root::

    results/<suite>/<run_id>/_run.json                 the run's manifest (environment, suite, start)
    results/<suite>/<run_id>/<seq>-<case_id>.parquet   one record (one row) per finished case

Each part file is written to a hidden temporary name in the same folder, flushed to disk and renamed,
so a reader never sees half a file and a run that dies loses at most the case in flight. Hidden
(``.``) and ``_`` files are skipped by pyarrow's dataset discovery, so ``pandas.read_parquet("results/")``
reads exactly the records. Every part file of one harness version has the same schema.

The store knows nothing of torch: the caller passes the column types.
"""

from __future__ import annotations

import json
import math
import os
import re
import uuid
import warnings
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

#: Columns every record has, whatever was measured.
BASE_COLUMNS: dict[str, str] = {
    "run_id": "string",
    "suite": "string",
    "case_id": "string",
    "label": "string",
    "status": "string",
    "error": "string",
    "timestamp_utc": "timestamp",
    "duration_s": "float64",
    "metrics_taken": "string",
    "protocol_json": "string",
    "published_json": "string",
}

STATUSES = ("ok", "failed", "skipped")

ARROW_TYPES: dict[str, pa.DataType] = {
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "string": pa.string(),
    "list<float64>": pa.list_(pa.float64()),
    "timestamp": pa.timestamp("us", tz="UTC"),
}


def arrow_schema(columns: dict[str, str]) -> pa.Schema:
    """Return the pyarrow schema for ``{column: type name}`` (type names as in ARROW_TYPES)."""
    return pa.schema([pa.field(name, ARROW_TYPES[kind]) for name, kind in columns.items()])


def safe_name(text: str) -> str:
    """Return ``text`` reduced to a file-name-safe form (letters, digits, '.', '_', '-')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "unnamed"


def _write_atomically(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomically(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` through a synced temporary file beside it and a
    rename, so a reader sees the old file or the new one, never half of it; return the path (folders made)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8", newline=""))
    return path


def is_missing(value: Any) -> bool:
    """Return whether a record's value is missing: None, NaN, pandas' NA or NaT."""
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value))


def json_value(value: Any) -> Any:
    """Return a record's value as plain JSON-able Python: numpy scalars and arrays, lists and dicts converted
    item by item, timestamps as ISO-8601 UTC text, missing values (:func:`is_missing`) as None."""
    if isinstance(value, dict):
        return {k: json_value(v) for k, v in value.items()}
    if isinstance(value, (np.ndarray, list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, (pd.Timestamp, datetime, np.datetime64)):
        return iso_utc(value)
    if isinstance(value, np.generic):
        value = value.item()
    return None if is_missing(value) else value


def iso_utc(value: Any) -> str | None:
    """Return a timestamp as ISO-8601 text in UTC (a naive one is taken as UTC); None when missing."""
    if is_missing(value):
        return None
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.isoformat()


class ResultStore:
    """A results directory: append records of a run, read everything back as a DataFrame."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._next_seq: dict[Path, int] = {}  # per run folder; seeded once from the files already there

    def run_dir(self, suite: str, run_id: str) -> Path:
        """Return the folder holding the part files of ``run_id`` of ``suite``."""
        return self.root / safe_name(suite) / safe_name(run_id)

    def write_manifest(self, suite: str, run_id: str, manifest: dict[str, Any]) -> Path:
        """Write the run's manifest (``_run.json``) atomically and return its path."""
        folder = self.run_dir(suite, run_id)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "_run.json"
        text = json.dumps(manifest, indent=2, sort_keys=True, default=str)
        write_text_atomically(path, text)
        return path

    def append(self, record: dict[str, Any], columns: dict[str, str]) -> Path:
        """Write one record as its own Parquet part file (atomic) and return the file's path.

        ``columns`` gives every column's type; columns the record lacks are written as nulls, keys
        not in ``columns`` are an error (so no measurement is silently dropped).
        """
        unknown = set(record) - set(columns)
        if unknown:
            raise KeyError(f"record has columns without a declared type: {sorted(unknown)}")
        folder = self.run_dir(record["suite"], record["run_id"])
        folder.mkdir(parents=True, exist_ok=True)
        if folder not in self._next_seq:
            self._next_seq[folder] = sum(1 for _ in folder.glob("*.parquet"))
        seq = self._next_seq[folder]
        path = folder / f"{seq:05d}-{safe_name(record['case_id'])}.parquet"
        table = pa.Table.from_pylist([{k: record.get(k) for k in columns}], schema=arrow_schema(columns))
        _write_atomically(path, lambda tmp: pq.write_table(table, tmp))
        self._next_seq[folder] = seq + 1
        return path

    def part_files(self) -> Iterator[Path]:
        """Yield every record file under the root, in name order, skipping hidden and ``_`` files."""
        if not self.root.exists():
            return
        for path in sorted(self.root.rglob("*.parquet")):
            if not any(part.startswith((".", "_")) for part in path.relative_to(self.root).parts):
                yield path

    def read(self, columns: list[str] | None = None) -> pd.DataFrame:
        """Return every record under the root as a DataFrame (union of columns, or only ``columns``).

        A part file that cannot be read (truncated, corrupt) is skipped with a warning naming it.
        """
        tables = []
        for path in self.part_files():
            try:
                tables.append(pq.read_table(path, columns=columns))
            except (pa.ArrowException, OSError) as exc:
                warnings.warn(f"skipping unreadable result file {path}: {exc}", stacklevel=2)
        if not tables:
            return pd.DataFrame(columns=columns or list(BASE_COLUMNS))
        return pa.concat_tables(tables, promote_options="permissive").to_pandas()

    def ok_case_ids(self, suite: str) -> set[str]:
        """Return the case_ids that already have an ``ok`` record for ``suite``."""
        frame = self.read(columns=["suite", "status", "case_id"])
        if frame.empty:
            return set()
        done = frame[(frame["suite"] == suite) & (frame["status"] == "ok")]
        return set(done["case_id"])


def read_results(path: str | Path = "results") -> pd.DataFrame:
    """Return every record stored under ``path`` as a pandas DataFrame, one row per case and run."""
    return ResultStore(path).read()
