"""The run index: which runs a store holds and in what order, from their manifests, without reading records."""

from __future__ import annotations

from datetime import timedelta

import pyarrow.parquet as pq
import pytest

from harness.case import Case
from harness.compare import load_side
from harness.run_index import run_entries, run_ids
from harness.store import ResultStore
from tests.records import COLUMNS, T0, make_record


def _run(store: ResultStore, run_id: str, minutes: int, *, suite: str = "demo", manifest: bool = True) -> None:
    """Two records of ``run_id`` at T0 + ``minutes``; its manifest says it started then and ended 30 minutes on."""
    for batch in (1, 2):
        store.append(make_record(Case("resnet18", batch=batch), run_id=run_id, suite=suite, minutes=minutes), COLUMNS)
    if manifest:
        store.write_manifest(suite, run_id, {"suite": suite, "run_id": run_id, "started_utc": _at(minutes),
                                             "finished_utc": _at(minutes + 30)})


def _at(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


@pytest.fixture
def store(tmp_path):
    store = ResultStore(tmp_path / "results")
    _run(store, "night-1", 60)
    _run(store, "night-3", 180)
    _run(store, "night-2", 120)
    _run(store, "other-1", 240, suite="other")
    return store


def test_runs_come_from_the_manifests_most_recent_first_and_no_record_is_read(store, monkeypatch):
    opened = []
    real = pq.ParquetFile
    monkeypatch.setattr(pq, "ParquetFile", lambda path, *a, **k: opened.append(path) or real(path, *a, **k))
    assert run_ids(store, "demo") == ["night-3", "night-2", "night-1"]
    assert [e.run_id for e in run_entries(store)] == ["other-1", "night-3", "night-2", "night-1"]
    assert run_entries(store, "demo")[0].last_utc == _at(210)  # night-3's end
    assert opened == []
    latest = load_side("latest~1", store.root, suite="demo")  # reads the chosen run's files only
    assert set(latest["run_id"]) == {"night-2"}
    assert opened and all("night-2" in str(path) for path in opened)


def test_a_run_without_a_manifest_is_indexed_from_its_records_and_one_without_records_is_no_run(store):
    _run(store, "copied-by-hand", 165, manifest=False)  # its records: after night-2's end, before night-3's start
    store.write_manifest("demo", "killed-at-start", {"suite": "demo", "run_id": "killed-at-start",
                                                      "started_utc": _at(600)})
    assert run_ids(store, "demo") == ["night-3", "copied-by-hand", "night-2", "night-1"]
    assert set(load_side("latest", store.root, suite="demo")["run_id"]) == {"night-3"}


def test_unreadable_or_foreign_manifests_are_skipped_with_a_warning_and_the_records_index_the_run(store):
    folder = store.run_dir("demo", "night-3")
    (folder / "_run.json").write_text("{not json", encoding="utf-8")
    with pytest.warns(UserWarning, match="skipping unreadable run manifest"):
        entries = run_entries(store, "demo")
    assert [e.run_id for e in entries][:1] == ["night-3"]  # its records' time (T0 + 3 h) still places it first
    assert {e.run_id for e in entries} == {"night-1", "night-2", "night-3"}
