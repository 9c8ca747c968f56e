"""The runs a results directory holds and when, from the runs' manifests: no record file is read to answer
``latest``, ``latest~N`` or a run id prefix.

Each run writes its manifest (``_run.json``, or one per shard) into its folder when it starts and again when it
ends; together they are the index: one small file per run, written only by the run it describes, so concurrent runs
never contend for it and it cannot go stale when a folder is copied or deleted. A run folder without a manifest (a
store written before manifests, or records copied in by hand) has its entry rebuilt from its records' ``suite``,
``run_id`` and ``timestamp_utc`` columns, that folder's only. A folder holding no record file (a run killed before
its first case) is not a run here.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from harness.store import ResultStore, iso_utc, read_manifests

#: The columns a run folder without a manifest is read for.
RECORD_COLUMNS = ["suite", "run_id", "timestamp_utc"]


@dataclass(frozen=True)
class RunEntry:
    """One run of one suite: ``last_utc`` is its last activity (ISO 8601, UTC): the latest start or end its
    manifests give, or its last record's time when it has none."""

    suite: str
    run_id: str
    last_utc: str


def run_entries(store: ResultStore, suite: str | None = None) -> list[RunEntry]:
    """Return the runs under ``store``'s root (of ``suite`` only when given), most recent first."""
    entries: list[RunEntry] = []
    for folder in store.run_folders(suite):
        manifests = [m for _path, m in read_manifests(sorted(folder.glob("_run*.json")))
                     if isinstance(m.get("suite"), str) and isinstance(m.get("run_id"), str)]
        if manifests:
            last: dict[tuple[str, str], str] = defaultdict(str)
            for m in manifests:
                key = (m["suite"], m["run_id"])
                times = [_iso(m.get(k)) for k in ("started_utc", "finished_utc")]
                last[key] = max(last[key], *times)
            entries += [RunEntry(s, r, t) for (s, r), t in last.items()]
            continue
        records = store.read_folder(folder, RECORD_COLUMNS).dropna(subset=["suite", "run_id"])
        for (s, r), times in records.groupby(["suite", "run_id"])["timestamp_utc"]:
            entries.append(RunEntry(str(s), str(r), iso_utc(times.max()) or ""))
    entries = [e for e in entries if suite is None or e.suite == suite]
    return sorted(entries, key=lambda e: (e.last_utc, e.run_id), reverse=True)


def _iso(value: object) -> str:
    """Return a manifest's time as :func:`iso_utc` text; '' when missing or not a time (a hand-edited file)."""
    try:
        return iso_utc(value) or ""
    except (ValueError, TypeError):
        return ""


def run_ids(store: ResultStore, suite: str | None = None) -> list[str]:
    """Return the run ids under ``store``'s root (of ``suite`` only when given), most recent first; a run id shared
    by several suites' runs is listed once, at its most recent."""
    return list(dict.fromkeys(e.run_id for e in run_entries(store, suite)))
