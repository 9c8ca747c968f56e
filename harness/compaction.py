"""Compaction of the results store: a finished run's part files merged into one Parquet file.

Why: every record is its own part file (that is what makes a run durable under kill -9 and concurrent writers),
but reading pays Arrow's overhead per file, so a store of tens of thousands of part files reads slowly and, past
~50k files, not at all. Once a run is finished its part files are merged into one file per run.

How, so that a reader never sees a record twice or not at all and kill -9 loses nothing:

1. the run folder's live record files are read and written, sorted by case (then in the
   order they were written), in row groups of :data:`ROW_GROUP_ROWS`, to a synced temporary file, and published
   with a hard link as ``<seq>-compacted-<hex>.parquet``, ``<seq>`` the highest of the files it holds (so records
   appended later take higher numbers and sort after it). Its Parquet metadata lists the names of the files it
   holds (key :data:`harness.store.SOURCES_KEY`);
2. only then are those files deleted.

Readers take a folder's files minus every file a compacted file there lists, so before step 1 they read the part
files, after it the compacted file, whatever step 2 has deleted yet; a compaction killed between 1 and 2 leaves
files no reader counts, which the next compaction deletes. A reader that listed the folder before step 2 and finds
a file gone lists it again (:class:`harness.store.ResultStore`).

Only finished runs are compacted: every manifest (``_run*.json``) of the folder has ``finished_utc`` (a run still
being written, or killed, has not). ``force`` compacts a folder whatever its manifests say (a run known dead).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from harness.store import (
    COMPACTED_MARK,
    PART_NAME,
    SOURCES_KEY,
    is_compacted,
    record_files,
    screen_files,
    superseded,
    synced_temp,
)

#: Rows per row group of a compacted file (one row per record; a record with latency samples is a few KB).
ROW_GROUP_ROWS = 4096


@dataclass(frozen=True)
class Compaction:
    """What compacting one run folder did: the ``folder``, the files merged (``files``), ``records`` written,
    ``path`` of the compacted file (None when nothing was done), ``deleted`` files and ``reason`` when skipped."""

    folder: Path
    files: int = 0
    records: int = 0
    path: Path | None = None
    deleted: int = 0
    reason: str = ""


def unfinished_reason(folder: Path) -> str:
    """Return why the run in ``folder`` is not known finished ('' when every manifest of it has ``finished_utc``)."""
    manifests = sorted(folder.glob("_run*.json"))
    if not manifests:
        return "no run manifest (_run.json)"
    for path in manifests:
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return f"unreadable manifest {path.name}"
        if not isinstance(manifest, dict) or not manifest.get("finished_utc"):
            return f"{path.name} has no finished_utc (still running, or killed: --force compacts it anyway)"
    return ""


def _sorted_by_case(table: pa.Table) -> pa.Table:
    order = pa.array(range(table.num_rows), type=pa.int64())
    keyed = table.append_column("__order", order)
    keys = [("case_id", "ascending"), ("__order", "ascending")] if "case_id" in table.column_names else \
        [("__order", "ascending")]
    return keyed.sort_by(keys).drop_columns(["__order"])


def compact_run(folder: Path, *, force: bool = False) -> Compaction:
    """Merge the live record files of the run ``folder`` into one compacted file (see the module doc) and delete
    what it supersedes; return what was done. A folder whose run is not finished (and not ``force``) or with
    nothing to merge is left as it is (``reason`` says why). Part files that cannot be read or hold no records
    (:func:`harness.store.screen_files`: another program's Parquet file) are left in place, unmerged."""
    reason = "" if force else unfinished_reason(folder)
    if reason:
        return Compaction(folder, reason=reason)
    files = record_files(folder)
    held = superseded(files)
    live = [p for p in files if p.name not in held]
    leftovers = [p for p in files if p.name in held]
    if len(live) <= 1 and all(is_compacted(p) for p in live):
        return Compaction(folder, deleted=_delete(leftovers), reason="already compacted")
    try:
        kept, _skipped = screen_files(live)  # files that hold no records (or cannot be read) stay, unmerged
    except FileNotFoundError:
        return Compaction(folder, reason="its files changed while being read (another compaction?)")
    tables, merged = [], []
    for path, _schema in kept:
        try:
            tables.append(pq.read_table(path))
            merged.append(path)
        except (pa.ArrowException, OSError):
            continue  # left in place: the reader warns about it as before
    if not tables:
        return Compaction(folder, deleted=_delete(leftovers), reason="no readable record file")
    table = pa.concat_tables(tables, promote_options="permissive")
    seq = max((int(m[1]) for m in map(PART_NAME.fullmatch, (p.name for p in merged)) if m), default=0)
    path = write_compacted(folder, table, {p.name for p in merged} | held, seq)
    _pause("HARNESS_TEST_COMPACT_PAUSE_AFTER_PUBLISH_S")
    deleted = _delete([*merged, *leftovers])
    return Compaction(folder, files=len(merged), records=table.num_rows, path=path, deleted=deleted)


def write_compacted(folder: Path, table: pa.Table, sources: Iterable[str], seq: int) -> Path:
    """Publish ``table``'s records, sorted by case, as a compacted file of ``folder`` that holds the files named
    ``sources`` and is numbered ``seq`` (step 1 of the module doc: synced, then hard-linked into place); return its
    path. The files it holds are not deleted here."""
    table = _sorted_by_case(table)
    metadata = {**(table.schema.metadata or {}), SOURCES_KEY: json.dumps(sorted(sources))}
    table = table.replace_schema_metadata(metadata)
    path = folder / f"{seq:05d}{COMPACTED_MARK}{uuid.uuid4().hex[:8]}.parquet"
    with synced_temp(path, lambda tmp: pq.write_table(table, tmp, row_group_size=ROW_GROUP_ROWS)) as tmp:
        _pause("HARNESS_TEST_COMPACT_PAUSE_BEFORE_PUBLISH_S")
        os.link(tmp, path)
    return path


def _delete(paths: list[Path]) -> int:
    count = 0
    for path in paths:
        try:
            path.unlink()
            count += 1
        except FileNotFoundError:
            pass
    return count


def _pause(variable: str) -> None:
    """Sleep for the seconds in environment ``variable`` (tests widen the windows of a compaction with it)."""
    seconds = float(os.environ.get(variable) or 0)
    if seconds:
        time.sleep(seconds)


def _subfolders(folder: Path) -> list[Path]:
    """Return the folders in ``folder`` that are not hidden or ``_``, by name (none when it does not exist)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def run_folders(root: Path) -> Iterator[Path]:
    """Yield every run folder (``<root>/<suite>/<run>``), in name order."""
    for suite in _subfolders(root):
        yield from _subfolders(suite)


def compact_store(root: str | Path, *, force: bool = False) -> list[Compaction]:
    """Compact every finished run folder under the results ``root`` (``force``: every run folder); return what was
    done per folder."""
    return [compact_run(folder, force=force) for folder in run_folders(Path(root))]
