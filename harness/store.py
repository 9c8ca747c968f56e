"""The results store: a Parquet dataset of records, one file per finished case, written atomically.

Layout under the results root::

    results/<suite>/<run_id>/_run.json                 the run's manifest (environment, suite, start)
    results/<suite>/<run_id>/_run.lock                 locked by the process running the run (ResultStore.claim_run)
    results/<suite>/<run_id>/<seq>-<case_id>.parquet   one record (one row) per finished case

(``<suite>`` and ``<run_id>`` as :func:`folder_name` writes them: the name itself when it is a plain file name, else a
slug and a hash of the name, so two names never share a folder; ``<case_id>`` reduced by :func:`safe_name`; ``<seq>``
five digits or more.) Stores written before the hash kept ``safe_name`` of both, which merged names like ``a/b`` and
``a_b``: such a folder is still read, and a run still resumed there, its manifest telling whose it is.

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
folder as it was; one that cannot be read, or holds no records (another program's Parquet file, a column of
another type than in the other record files), is skipped with a warning naming it and listed by
:meth:`ResultStore.unreadable` (:func:`screen_files`).

The store knows nothing of torch: the caller passes the column types.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import json
import math
import os
import re
import socket
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
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
    """Return ``text`` reduced to a file-name-safe form (letters, digits, '.', '_', '-'); many texts give one form."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "unnamed"


#: A name that is its own folder name: a letter or digit, then letters, digits, '.', '_', '-', at most 80 in all, not
#: ending in '.', without '--' (which marks a hashed name, so that no plain name equals one).
PLAIN_NAME = re.compile(r"(?!.*--)[A-Za-z0-9][A-Za-z0-9._-]{0,79}(?<!\.)")
#: Names Windows reserves for devices, with any extension.
RESERVED_NAME = re.compile(r"(con|prn|aux|nul|com\d|lpt\d)(\..*)?", re.IGNORECASE)
#: Hex digits of the name's SHA-256 that end a hashed folder name.
NAME_HASH_DIGITS = 8


def folder_name(name: str) -> str:
    """Return the folder name of a suite or run id: ``name`` itself when it is plain (:data:`PLAIN_NAME`, not a
    reserved device name), else its :func:`safe_name` (at most 60 characters), ``--`` and 8 hex digits of the SHA-256
    of the exact name (``a/b`` -> ``a_b--c14cddc0``). Two names never get one folder (but for a hash collision);
    plain names differing only in case do on a case-insensitive disk, which the manifest check of
    :meth:`ResultStore.claim_run` catches."""
    if PLAIN_NAME.fullmatch(name) and not RESERVED_NAME.fullmatch(name):
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:NAME_HASH_DIGITS]
    return f"{safe_name(name)[:60]}--{digest}"


def _one(name: str | None) -> list[str] | None:
    """Return ``[name]``, or None for None (any)."""
    return None if name is None else [name]


def _folder_names(name: str) -> list[str]:
    """Return the folder names ``name`` may have: :func:`folder_name`'s, then the older :func:`safe_name`'s."""
    return list(dict.fromkeys([folder_name(name), safe_name(name)]))


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


class RunBusy(HarnessError):
    """Raised when another live process is running the run (and shard) this one was to run or resume."""


def write_error(path: Path, exc: OSError, kept: str, then: str = "") -> ResultWriteError:
    """Return the error to raise when ``path`` could not be written: ``cannot write PATH: REASON; KEPT; ADVICE`` (the
    advice follows the errno, e.g. "free some disk space"), with `` and THEN`` when ``then`` is given."""
    reason = f"{exc.strerror} [Errno {exc.errno}]" if exc.errno and exc.strerror else str(exc)
    advice = _WRITE_ADVICE.get(exc.errno or 0, "fix the cause")
    return ResultWriteError(f"cannot write {path}: {reason}; {kept}; {advice}" + (f" and {then}" if then else ""))


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


#: Files of fewer records count every column as filled (:func:`filled_columns`).
FILLED_MIN_ROWS = 64


def footer_schema(path: Path) -> pa.Schema:
    """Return the Arrow schema in the Parquet footer of ``path`` (raising as ``pyarrow.parquet.read_metadata``),
    read once per version of the file in a process: listing a folder and screening its files both need a compacted
    file's footer, which holds a column per metric."""
    return _footer(str(path), *_version(path))[0]


def filled_columns(path: Path) -> frozenset[str]:
    """Return the names of the top-level columns of ``path`` worth reading: those that hold a value in at least one
    row, from the footer's statistics (null counts; a column whose statistics say nothing counts as filled); every
    column of a file of fewer than :data:`FILLED_MIN_ROWS` records (walking its statistics costs more than reading
    its columns)."""
    return _footer(str(path), *_version(path))[2]


def _version(path: Path) -> tuple[int, int, int]:
    """Return what names the contents of the record file ``path``: it is published whole and never rewritten in
    place, so its inode, size and mtime (the footer caches' key)."""
    stat = path.stat()
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=1 << 18)
def _footer(path: str, _inode: int, _size: int, _mtime_ns: int) -> tuple[pa.Schema, int, frozenset[str]]:
    metadata = pq.read_metadata(path)  # not kept: a footer's metadata takes ~0.35 MB of memory for 170 columns
    stored = metadata.metadata or {}  # pyarrow's writer keeps the Arrow schema there: files that share it share one
    key = (metadata.num_columns, frozenset(stored.items())) if b"ARROW:schema" in stored else None
    schema = _SCHEMAS.get(key) if key is not None else None
    if schema is None:
        schema = metadata.schema.to_arrow_schema()
        if key is not None:
            _SCHEMAS[key] = schema
    if metadata.num_rows < FILLED_MIN_ROWS:
        filled = frozenset(schema.names)
    else:
        found: set[str] = set()
        for group in range(metadata.num_row_groups):
            row_group = metadata.row_group(group)
            for index in range(row_group.num_columns):
                chunk = row_group.column(index)
                stats = chunk.statistics
                if stats is None or not stats.has_null_count or stats.null_count < row_group.num_rows:
                    found.add(chunk.path_in_schema.split(".", 1)[0])
        filled = frozenset(name for name in schema.names if name in found)
    return schema, metadata.num_rows, _FILLED.setdefault(filled, filled)


#: One instance of each distinct schema and column set the footer cache holds, the schemas by the footer's key-value
#: metadata (the Arrow schema pyarrow stores there, and the compacted file's sources): the part files of one harness
#: version share one schema (~40 KB of memory for 170 columns, and ~0.2 ms to convert), so 100k footers cost little.
_SCHEMAS: dict[tuple[int, frozenset[tuple[bytes, bytes]]], pa.Schema] = {}
_FILLED: dict[frozenset[str], frozenset[str]] = {}


def compacted_sources(path: Path) -> set[str]:
    """Return the names of the files the compacted file ``path`` holds (read from its footer); empty when it has
    none or cannot be read."""
    try:
        metadata = footer_schema(path).metadata or {}
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


#: The columns that make a Parquet file a record file, with the type each must have (as in :data:`BASE_COLUMNS`).
IDENTITY_COLUMNS = ("run_id", "suite", "case_id", "status", "timestamp_utc")


@dataclass(frozen=True)
class SkippedFile:
    """A file a reader left out: ``path``, ``reason``, and ``readable`` (False: it cannot be read at all; True: it is
    Parquet, but holds no records of this store)."""

    path: Path
    reason: str
    readable: bool

    def warning(self) -> str:
        """Return the warning that names the file and why it is skipped."""
        what = "result file" if self.readable else "unreadable result file"
        return f"skipping {what} {self.path}: {self.reason}"


def _identity_problem(schema: pa.Schema) -> str:
    """Return why a file of ``schema`` holds no records ('' when it has every identity column at its type)."""
    missing = [name for name in IDENTITY_COLUMNS if name not in schema.names]
    if missing:
        return f"not a harness record file (no column {', '.join(missing)})"
    for name in IDENTITY_COLUMNS:
        actual = schema.field(name).type
        wanted = BASE_COLUMNS[name]
        fits = pa.types.is_timestamp(actual) if wanted == "timestamp" else \
            pa.types.is_string(actual) or pa.types.is_large_string(actual)
        if not fits:
            return f"not a harness record file (column {name!r} is {actual}, not {wanted})"
    return ""


def _promotable(actual: pa.DataType, usual: pa.DataType) -> bool:
    """Return whether a column of type ``actual`` reads together with one of type ``usual`` (int64 with float64)."""
    try:
        pa.unify_schemas([pa.schema([("c", actual)]), pa.schema([("c", usual)])], promote_options="permissive")
    except pa.ArrowException:
        return False
    return True


def _type_conflicts(schemas: list[pa.Schema]) -> dict[int, str]:
    """Return ``{index: reason}`` of the ``schemas`` having a column whose type cannot be read together with the
    type most of the others give it (empty when they all read together)."""
    try:
        pa.unify_schemas(schemas, promote_options="permissive")
        return {}
    except pa.ArrowException:
        pass
    counts = Counter((field.name, field.type) for schema in schemas for field in schema)
    usual: dict[str, pa.DataType] = {}
    for (name, kind), _count in counts.most_common():
        usual.setdefault(name, kind)
    checked: dict[tuple[pa.DataType, pa.DataType], bool] = {}
    conflicts = {}
    for index, schema in enumerate(schemas):
        for field in schema:
            pair = (field.type, usual[field.name])
            if pair[0] != pair[1] and not checked.setdefault(pair, _promotable(*pair)):
                conflicts[index] = (f"column {field.name!r} is {field.type} here but {pair[1]} in the other record "
                                    "files")
                break
    return conflicts


def screen_schemas(files: list[tuple[Path, pa.Schema]]) -> tuple[list[tuple[Path, pa.Schema]], list[SkippedFile]]:
    """Return the ``(path, schema)`` of ``files`` that hold records and the others, each order kept: a file without
    the identity columns (:data:`IDENTITY_COLUMNS`: another program's Parquet file) and one with a column whose type
    cannot be read together with the type most of the other files give it."""
    found, skipped = [], []
    for path, schema in files:
        problem = _identity_problem(schema)
        if problem:
            skipped.append(SkippedFile(path, problem, readable=True))
        else:
            found.append((path, schema))
    conflicts = _type_conflicts([schema for _, schema in found])
    skipped += [SkippedFile(found[i][0], reason, readable=True) for i, reason in conflicts.items()]
    order = {path: i for i, (path, _) in enumerate(files)}
    return [item for i, item in enumerate(found) if i not in conflicts], sorted(skipped, key=lambda s: order[s.path])


def screen_files(paths: list[Path]) -> tuple[list[tuple[Path, pa.Schema]], list[SkippedFile]]:
    """Return the files of ``paths`` that hold records, each with its schema (read from the footer), and the others,
    in name order: a file that cannot be read (truncated, corrupt, empty) and those :func:`screen_schemas` leaves
    out. Raises FileNotFoundError when a file vanished since it was listed (a compaction merged it: list again)."""
    found: list[tuple[Path, pa.Schema]] = []
    unreadable: list[SkippedFile] = []
    for path in paths:
        try:
            found.append((path, footer_schema(path)))
        except (pa.ArrowException, OSError) as exc:
            if not path.exists():
                raise FileNotFoundError(errno.ENOENT, "vanished while being read", str(path)) from exc
            unreadable.append(SkippedFile(path, str(exc), readable=False))
    kept, skipped = screen_schemas(found)
    return kept, sorted([*unreadable, *skipped], key=lambda item: item.path)


def read_manifests(paths: list[Path]) -> list[tuple[Path, dict[str, Any]]]:
    """Return ``(path, manifest)`` of the run manifests ``paths``, in the order given; one that cannot be read or
    is not a JSON object is skipped with a warning naming it."""
    manifests = []
    for path in paths:
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:  # ValueError: bad JSON or bad UTF-8
            warnings.warn(f"skipping unreadable run manifest {path}: {exc}", stacklevel=3)
            continue
        if not isinstance(manifest, dict):
            warnings.warn(f"skipping run manifest {path}: not a JSON object", stacklevel=3)
            continue
        manifests.append((path, manifest))
    return manifests


def _holds_run(folder: Path, suite: str, run_id: str) -> bool:
    """Return whether ``folder`` holds run ``run_id`` of ``suite``: a manifest there names both, or, without any
    manifest, a record there does."""
    manifests = read_manifests(sorted(folder.glob("_run*.json")))
    if manifests:
        return any(m.get("suite") == suite and m.get("run_id") == run_id for _, m in manifests)
    for path in live_files(folder):
        try:
            table = pq.read_table(path, columns=["suite", "run_id"])
        except (pa.ArrowException, OSError):
            continue
        return (suite, run_id) in set(zip(table["suite"].to_pylist(), table["run_id"].to_pylist(), strict=True))
    return False


class ResultStore:
    """A results directory: append records of a run, read everything back as a DataFrame."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._unreadable: list[tuple[Path, str]] = []  # found by the last call that read part files

    def run_dir(self, suite: str, run_id: str) -> Path:
        """Return the folder holding the part files of ``run_id`` of ``suite``: ``<root>/<suite>/<run_id>`` by
        :func:`folder_name`, or, when only it exists and holds this run, the folder an older version gave it
        (:func:`safe_name` of both)."""
        current = self.root / folder_name(suite) / folder_name(run_id)
        older = self.root / safe_name(suite) / safe_name(run_id)
        if older != current and not current.is_dir() and older.is_dir() and _holds_run(older, suite, run_id):
            return older
        return current

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
            raise write_error(path, exc, "the files already in its folder are kept", "run again") from exc
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
            raise write_error(path, exc, kept, "rerun with --resume") from exc

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
        """Return the tables of the record files ``files()`` lists (only ``columns`` of them, those a file has);
        each file left out (it cannot be read, or :func:`screen_schemas` leaves it out) is warned about and kept for
        :meth:`unreadable` (which then lists exactly the files of this call). A file that vanished while being read
        (a compaction merged it) makes the files be listed and read again."""
        for _ in range(VANISHED_RETRIES):
            loaded: dict[Path, tuple[pa.Schema, pa.Table]] = {}
            unreadable: list[SkippedFile] = []
            for path in files():
                try:
                    with pq.ParquetFile(path) as handle:
                        schema = handle.schema_arrow
                        wanted = None if columns is None else [c for c in columns if c in schema.names]
                        loaded[path] = schema, handle.read(columns=wanted)
                except (pa.ArrowException, OSError) as exc:
                    if not path.exists():
                        break  # merged into a compacted file since it was listed: list again
                    unreadable.append(SkippedFile(path, str(exc), readable=False))
            else:
                kept, skipped = screen_schemas([(path, schema) for path, (schema, _) in loaded.items()])
                skipped = sorted([*unreadable, *skipped], key=lambda item: item.path)
                self._unreadable = [(item.path, item.reason) for item in skipped]
                for item in skipped:
                    warnings.warn(item.warning(), stacklevel=3)
                return [loaded[path][1] for path, _ in kept]
        raise HarnessError(f"the records under {self.root} kept changing while being read "
                           f"({VANISHED_RETRIES} tries): is a compaction looping? read again")

    def unreadable(self) -> list[tuple[Path, str]]:
        """Return ``(path, reason)`` of each part file that the last call reading part files (:meth:`read`,
        :meth:`case_ids_in_run`) skipped because it could not be read (truncated, corrupt, empty) or holds no
        records (:func:`screen_files`), in name order; empty before any such call."""
        return list(self._unreadable)

    def read(self, columns: list[str] | None = None, *, suite: str | None = None,
             run_id: str | None = None) -> pd.DataFrame:
        """Return the records under the root as a DataFrame (union of columns, or only ``columns``), only those of
        ``suite`` and/or ``run_id`` when given: the other suites' and runs' folders are not read at all.

        A part file that cannot be read (truncated, corrupt) or holds no records (another program's Parquet file, a
        column of another type) is skipped with a warning naming it, and listed by :meth:`unreadable` until the next
        read.
        """
        tables = self._read_tables(lambda: self.files_of(_one(suite), _one(run_id)), columns)
        if not tables:
            return pd.DataFrame(columns=columns or list(BASE_COLUMNS))
        frame = pa.concat_tables(tables, promote_options="permissive").to_pandas()
        for column, wanted in (("suite", suite), ("run_id", run_id)):
            if wanted is not None and column in frame:  # a folder name is the value made safe: check the value
                frame = frame[frame[column] == wanted].reset_index(drop=True)
        return frame

    def files_of(self, suites: Collection[str] | None = None, runs: Collection[str] | None = None) -> list[Path]:
        """Return the record files a reader counts in the folders of ``suites`` / ``runs`` (any when None), under
        either of the names each may have (:func:`_folder_names`): the other folders are not listed. A folder name is
        a value made safe: a reader checks the records' values."""
        folders = sorted({self.root / n for s in suites for n in _folder_names(s)}) if suites is not None else \
            sorted(p for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []
        names = [None] if runs is None else list(dict.fromkeys(n for r in runs for n in _folder_names(r)))
        return [path for folder in folders for name in names
                for path in self._part_files_in(folder if name is None else folder / name)]

    def run_folders(self, suite: str | None = None) -> list[Path]:
        """Return the run folders of ``suite`` (of every suite when None) that hold a record file, sorted: a listing
        of folders, no file is read (a folder holding any record file holds a live one: a compacted file counts)."""
        suites = [self.root / name for name in _folder_names(suite)] if suite is not None else \
            [p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))] \
            if self.root.is_dir() else []
        return sorted(run for folder in suites if folder.is_dir() for run in folder.iterdir()
                      if run.is_dir() and not run.name.startswith((".", "_")) and record_files(run))

    def read_folder(self, folder: Path, columns: list[str] | None = None) -> pd.DataFrame:
        """Return the records of the run folder ``folder`` (only ``columns``, those a file has); files left out are
        skipped with a warning as in :meth:`read`."""
        tables = self._read_tables(lambda: self._part_files_in(folder), columns)
        if not tables:
            return pd.DataFrame(columns=columns or list(BASE_COLUMNS))
        return pa.concat_tables(tables, promote_options="permissive").to_pandas()

    def case_ids_in_run(self, suite: str, run_id: str) -> set[str]:
        """Return the case_ids having a readable record (whatever its status) of run ``run_id`` of ``suite``; only
        the ``case_id``, ``suite`` and ``run_id`` columns are read. Files left out are skipped as in :meth:`read`."""
        tables = self._read_tables(lambda: self.files_of([suite], [run_id]), ["case_id", "suite", "run_id"])
        return {case_id for table in tables
                for case_id, of_suite, of_run in zip(*(table.column(c).to_pylist() for c in
                                                       ("case_id", "suite", "run_id")), strict=True)
                if case_id is not None and (of_suite, of_run) == (suite, run_id)}

    def run_manifests(self, suite: str) -> list[tuple[Path, dict[str, Any]]]:
        """Return ``(path, manifest)`` for every ``_run*.json`` manifest of ``suite`` in its run folders (a manifest
        naming another suite, in a folder an older version shared between names, is left out), sorted by the
        manifest's ``started_utc`` text (missing first), then path. A manifest that cannot be read or is not a JSON
        object is skipped with a warning naming it."""
        paths = sorted({path for name in _folder_names(suite) for path in (self.root / name).glob("*/_run*.json")})
        manifests = [(path, m) for path, m in read_manifests(paths) if m.get("suite", suite) == suite]
        return sorted(manifests, key=lambda item: (str(item[1].get("started_utc") or ""), str(item[0])))

    @contextmanager
    def claim_run(self, suite: str, run_id: str, lock: str = "_run.lock") -> Iterator[Path]:
        """Yield the folder of run ``run_id`` of ``suite`` (:meth:`run_dir`, made if missing) while holding its lock
        file ``lock`` (one per shard of a run): what keeps two processes from running, or resuming, one run at once.

        The lock is the kernel's (``flock``) and dies with the process holding it, so a killed run leaves no stale
        claim; the file keeps the holder's pid, host and start for the message. Raises :class:`RunBusy` naming the
        holder when another process holds it, HarnessError when a manifest in the folder names another suite or
        run (a folder shared by names, copied by hand, or two names differing in case on a case-insensitive disk),
        :class:`ResultWriteError` when the lock file cannot be made.
        """
        folder = self.run_dir(suite, run_id)
        for path, manifest in read_manifests(sorted(folder.glob("_run*.json"))):
            owner = (manifest.get("suite", suite), manifest.get("run_id", run_id))
            if owner != (suite, run_id):
                raise HarnessError(f"{path} is the manifest of run {owner[1]!r} of suite {owner[0]!r}, not of run "
                                   f"{run_id!r} of suite {suite!r}: the folder {folder} belongs to another run; "
                                   "choose another --run-id or --results")
        path = folder / lock
        try:
            folder.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise write_error(path, exc, "nothing was run", "run again") from exc
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunBusy(f"run {run_id!r} of suite {suite!r} is being run by another process "
                              f"({_holder(descriptor)}): wait for it to end; then --resume runs what it left") from None
            except OSError as exc:  # a file system without locks (some network mounts)
                warnings.warn(f"cannot lock {path} ({exc}): nothing keeps another process from running this run "
                              "at the same time", stacklevel=3)
            holder = {"pid": os.getpid(), "host": socket.gethostname(),
                      "since_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            with contextlib.suppress(OSError):  # who holds it is only for the message of a process refused
                os.ftruncate(descriptor, 0)
                os.pwrite(descriptor, json.dumps(holder).encode(), 0)
            yield folder
        finally:
            os.close(descriptor)


def _holder(descriptor: int) -> str:
    """Return who holds the lock file open as ``descriptor`` (``pid 123 on HOST, since TIME``), from its text."""
    try:
        holder = json.loads(os.pread(descriptor, 4096, 0))
        return f"pid {holder['pid']} on {holder['host']}, since {holder['since_utc']}"
    except (OSError, ValueError, TypeError, KeyError):
        return "its pid is not written yet"


def read_results(path: str | Path = "results") -> pd.DataFrame:
    """Return every record stored under ``path`` as a pandas DataFrame, one row per case and run."""
    return ResultStore(path).read()
