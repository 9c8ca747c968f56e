"""The results store: a Parquet dataset of records, one file per finished case, written atomically.

Layout under the results root::

    results/<suite>/<run_id>/_run.json                 the run's manifest (environment, suite, start)
    results/<suite>/<run_id>/<seq>-<case_id>.parquet   one record (one row) per finished case

(``<suite>``, ``<run_id>`` and ``<case_id>`` reduced by :func:`safe_name`; ``<seq>`` five digits or more.)

Each part file is written to a hidden temporary name in the same folder (``.<name>.<hex>.tmp``), flushed to
disk and then published under its final name with a hard link, which fails rather than overwrite: a reader
never sees half a file, a run that dies loses at most the case in flight, and processes writing into the
same run folder at once (shards of one run) never replace each other's files. ``<seq>`` is one more than
the highest in the folder when the record is appended, so the file names sort in the order the records
were written (two processes appending at the same time may get the same ``<seq>``: for different cases
both names stand; for the same case the second link fails and that record takes the next ``<seq>``).
Hidden (``.``) and ``_`` files are skipped by pyarrow's dataset discovery and by :class:`ResultStore`, so
``pandas.read_parquet("results/")`` reads exactly the records. A finished run's part files may be merged into one
compacted file (:mod:`harness.compaction`) that lists in its footer the files it holds: readers count a folder's
files minus those (:func:`live_files`). Every part file of one harness version has
the same schema. A file that cannot be written (disk full…) raises :class:`ResultWriteError` and leaves the
folder as it was; one that cannot be read is skipped with a warning and listed by
:meth:`ResultStore.unreadable`.

The store knows nothing of torch: the caller passes the column types.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from harness.errors import HarnessError

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


#: How often a read lists the files again when one vanished under it (merged by a compaction).
VANISHED_RETRIES = 5
#: A record file's name: ``<seq>-<case_id>.parquet`` (a compacted file's: ``<seq>-compacted-<hex>.parquet``).
PART_NAME = re.compile(r"(\d+)-.+\.parquet")

#: What to do about a failed write, by errno (anything else: "fix the cause").
_WRITE_ADVICE = {
    errno.ENOSPC: "free some disk space",
    errno.EDQUOT: "free some disk space (the disk quota is exceeded)",
    errno.EACCES: "make the results folder writable",
    errno.EPERM: "make the results folder writable",
    errno.EROFS: "choose a writable results folder (--results)",
}


class ResultWriteError(HarnessError):
    """Raised when a results file cannot be written (disk full, no permission…). Files written before it are
    kept, and no temporary file is left behind; the message says which file, why, and what to do."""


def _write_error(path: Path, exc: OSError, kept: str, then: str) -> ResultWriteError:
    reason = f"{exc.strerror} [Errno {exc.errno}]" if exc.errno and exc.strerror else str(exc)
    advice = _WRITE_ADVICE.get(exc.errno or 0, "fix the cause")
    return ResultWriteError(f"cannot write {path}: {reason}; {kept}; {advice} and {then}")


@contextmanager
def synced_temp(path: Path, write: Callable[[Path], object]) -> Iterator[Path]:
    """Yield a hidden temporary file beside ``path`` filled by ``write`` and flushed to disk; it is removed on
    leaving (publish it by renaming or linking it to ``path`` inside the ``with``)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomically(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` through a synced temporary file beside it and a
    rename (replacing any file there), so a reader sees the old file or the new one, never half of it; return
    the path (folders made). Raises OSError when it cannot be written, leaving no temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with synced_temp(path, lambda tmp: tmp.write_text(text, encoding="utf-8", newline="")) as tmp:
        os.replace(tmp, path)
    return path


def _seqs(folder: Path) -> list[int]:
    """Return the ``<seq>`` of every record file in ``folder`` (empty when it does not exist)."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    return [int(match[1]) for match in map(PART_NAME.fullmatch, names) if match]


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


#: Parquet metadata key of a compacted file: JSON list of the file names it holds.
SOURCES_KEY = b"harness.compacted_sources"
#: The name part that marks a compacted file.
COMPACTED_MARK = "-compacted-"


def is_compacted(path: Path) -> bool:
    """Return whether ``path`` is a compacted file (by its name)."""
    return COMPACTED_MARK in path.name


def compacted_sources(path: Path) -> set[str]:
    """Return the names of the files the compacted file ``path`` holds (read from its footer); empty when it has
    none or cannot be read."""
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (pa.ArrowException, OSError):
        return set()
    return set(json.loads(metadata.get(SOURCES_KEY, b"[]")))


def record_files(folder: Path) -> list[Path]:
    """Return the Parquet files directly in ``folder`` that may hold records (not hidden, not ``_``), by name."""
    try:
        names = sorted(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [folder / n for n in names if n.endswith(".parquet") and not n.startswith((".", "_"))]


def superseded(files: list[Path]) -> set[str]:
    """Return the names, among ``files`` (one folder's), that a compacted file of them holds."""
    held: set[str] = set()
    for path in files:
        if is_compacted(path):
            held |= compacted_sources(path)
    return held


def live_files(folder: Path) -> list[Path]:
    """Return the record files of ``folder`` a reader counts, by name: every Parquet file minus those a compacted
    file of the folder holds."""
    files = record_files(folder)
    held = superseded(files)
    return [p for p in files if p.name not in held]


class ResultStore:
    """A results directory: append records of a run, read everything back as a DataFrame."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._unreadable: list[tuple[Path, str]] = []  # found by the last call that read part files

    def run_dir(self, suite: str, run_id: str) -> Path:
        """Return the folder holding the part files of ``run_id`` of ``suite``."""
        return self.root / safe_name(suite) / safe_name(run_id)

    def write_manifest(self, suite: str, run_id: str, manifest: dict[str, Any], name: str = "_run.json") -> Path:
        """Write the run's manifest ``name`` (``_run.json``, or ``_run.<shard>.json`` for one shard of a run),
        replacing one there, atomically; return its path.

        Raises :class:`ResultWriteError` when it cannot be written (the folder keeps what it had).
        """
        if not (name.startswith("_run") and name.endswith(".json")):
            raise ValueError(f"a manifest's name is _run*.json, got {name!r}")
        path = self.run_dir(suite, run_id) / name
        text = json.dumps(manifest, indent=2, sort_keys=True, default=str)
        try:
            write_text_atomically(path, text)
        except OSError as exc:
            raise _write_error(path, exc, "the files already in its folder are kept", "run again") from exc
        return path

    def append(self, record: dict[str, Any], columns: dict[str, str]) -> Path:
        """Write one record as its own Parquet part file (atomic, never replacing a file) and return its path.

        ``columns`` gives every column's type; columns the record lacks are written as nulls, keys
        not in ``columns`` are an error (so no measurement is silently dropped). Raises
        :class:`ResultWriteError` when the file cannot be written (disk full…): no file of the folder is
        touched and no temporary file is left behind.
        """
        unknown = set(record) - set(columns)
        if unknown:
            raise KeyError(f"record has columns without a declared type: {sorted(unknown)}")
        table = pa.Table.from_pylist([{k: record.get(k) for k in columns}], schema=arrow_schema(columns))
        folder = self.run_dir(record["suite"], record["run_id"])
        name = safe_name(record["case_id"])
        seq = max(_seqs(folder), default=-1) + 1
        path = folder / f"{seq:05d}-{name}.parquet"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with synced_temp(path, lambda tmp: pq.write_table(table, tmp)) as tmp:
                while True:
                    try:
                        os.link(tmp, path)  # unlike a rename, fails when another process took the name
                        return path
                    except FileExistsError:
                        seq = max(seq, *_seqs(folder)) + 1
                        path = folder / f"{seq:05d}-{name}.parquet"
        except OSError as exc:
            kept = f"the {len(_seqs(folder))} record(s) already in {folder} are kept"
            raise _write_error(path, exc, kept, "rerun with --resume") from exc

    def part_files(self) -> Iterator[Path]:
        """Yield every record file under the root, in name order, skipping hidden and ``_`` files."""
        yield from self._part_files_in(self.root)

    def _part_files_in(self, folder: Path) -> list[Path]:
        """Return the record files under ``folder`` (inside the root) a reader counts, in name order: skipping any
        path with a hidden or ``_`` part below the root (temporary files, manifests) and, in each folder, the files
        a compacted file there holds (:func:`live_files`)."""
        if not folder.is_dir():
            return []
        folders = sorted({path.parent for path in folder.rglob("*.parquet")
                          if not any(part.startswith((".", "_")) for part in path.relative_to(self.root).parts)})
        return sorted(path for parent in folders for path in live_files(parent))

    def _read_tables(self, files: Callable[[], list[Path]], columns: list[str] | None) -> list[pa.Table]:
        """Return the tables of the readable record files ``files()`` lists; each unreadable one is warned about
        and kept for :meth:`unreadable` (which then lists exactly the files of this call). A file that vanished
        while being read (a compaction merged it) makes the files be listed and read again."""
        for _ in range(VANISHED_RETRIES):
            self._unreadable = []
            tables: list[pa.Table] = []
            for path in files():
                try:
                    tables.append(pq.read_table(path, columns=columns))
                except (pa.ArrowException, OSError) as exc:
                    if not path.exists():
                        break  # merged into a compacted file since it was listed: list again
                    self._unreadable.append((path, str(exc)))
                    warnings.warn(f"skipping unreadable result file {path}: {exc}", stacklevel=3)
            else:
                return tables
        raise HarnessError(f"the records under {self.root} kept changing while being read "
                           f"({VANISHED_RETRIES} tries): is a compaction looping? read again")

    def unreadable(self) -> list[tuple[Path, str]]:
        """Return ``(path, reason)`` of each part file that the last call reading part files (:meth:`read`,
        :meth:`case_ids_in_run`) skipped because it could not be read (truncated,
        corrupt, empty), in name order; empty before any such call."""
        return list(self._unreadable)

    def read(self, columns: list[str] | None = None, *, suite: str | None = None,
             run_id: str | None = None) -> pd.DataFrame:
        """Return the records under the root as a DataFrame (union of columns, or only ``columns``), only those of
        ``suite`` and/or ``run_id`` when given: the other suites' and runs' folders are not read at all.

        A part file that cannot be read (truncated, corrupt) is skipped with a warning naming it, and listed
        by :meth:`unreadable` until the next read.
        """
        tables = self._read_tables(lambda: self._files_of(suite, run_id), columns)
        if not tables:
            return pd.DataFrame(columns=columns or list(BASE_COLUMNS))
        frame = pa.concat_tables(tables, promote_options="permissive").to_pandas()
        for column, wanted in (("suite", suite), ("run_id", run_id)):
            if wanted is not None and column in frame:  # a folder name is the value made safe: check the value
                frame = frame[frame[column] == wanted].reset_index(drop=True)
        return frame

    def _files_of(self, suite: str | None, run_id: str | None) -> list[Path]:
        """Return the record files a reader counts in the folders of ``suite`` / ``run_id`` (any when None)."""
        suites = [self.root / safe_name(suite)] if suite is not None else \
            sorted(p for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []
        if run_id is None:
            return [path for folder in suites for path in self._part_files_in(folder)]
        return [path for folder in suites for path in self._part_files_in(folder / safe_name(run_id))]

    def case_ids_in_run(self, suite: str, run_id: str) -> set[str]:
        """Return the case_ids having a readable record (whatever its status) in the folder of ``run_id`` of
        ``suite``; only the ``case_id`` column is read. Unreadable files are skipped as in :meth:`read`."""
        tables = self._read_tables(lambda: self._part_files_in(self.run_dir(suite, run_id)), ["case_id"])
        return {case_id for table in tables for case_id in table.column("case_id").to_pylist() if case_id is not None}

    def run_manifests(self, suite: str) -> list[tuple[Path, dict[str, Any]]]:
        """Return ``(path, manifest)`` for every ``_run*.json`` manifest in the run folders of ``suite``, sorted
        by the manifest's ``started_utc`` text (missing first), then path. A manifest that cannot be read or
        is not a JSON object is skipped with a warning naming it."""
        manifests = []
        for path in sorted((self.root / safe_name(suite)).glob("*/_run*.json")):
            try:
                manifest = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:  # ValueError: bad JSON or bad UTF-8
                warnings.warn(f"skipping unreadable run manifest {path}: {exc}", stacklevel=2)
                continue
            if not isinstance(manifest, dict):
                warnings.warn(f"skipping run manifest {path}: not a JSON object", stacklevel=2)
                continue
            manifests.append((path, manifest))
        return sorted(manifests, key=lambda item: (str(item[1].get("started_utc") or ""), str(item[0])))


def read_results(path: str | Path = "results") -> pd.DataFrame:
    """Return every record stored under ``path`` as a pandas DataFrame, one row per case and run."""
    return ResultStore(path).read()
