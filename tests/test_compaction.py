"""Compaction of the results store: a finished run's part files merged into one file, readers that never see a
record twice or lose one (a compaction killed at any point, a reader racing it), resume after compaction, old stores
and pandas' own reader."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from harness import compaction
from harness.case import Case
from harness.compaction import compact_run, compact_store
from harness.store import ResultStore, compacted_sources, live_files
from tests.records import COLUMNS, make_record

MODELS = ["tiny_cnn", "resnet18", "mobilenetv2_100", "resnet50"]


def _fill(root: Path, n: int = 4, run_id: str = "run-a", finished: bool = True) -> ResultStore:
    store = ResultStore(root)
    for i in range(n):
        store.append(make_record(Case(MODELS[i % len(MODELS)], batch=i + 1), run_id=run_id, params=i,
                                 latency_ms_samples=[float(i), i + 0.5], minutes=i), COLUMNS)
    manifest = {"run_id": run_id, "started_utc": "2026-12-05T00:00:00+00:00"}
    if finished:
        manifest["finished_utc"] = "2026-12-05T01:00:00+00:00"
    store.write_manifest("demo", run_id, manifest)
    return store


def _rows(frame: pd.DataFrame) -> list[tuple]:
    return sorted(zip(frame["case_id"], frame["params"], frame["latency_ms_samples"].map(tuple), strict=True))


def test_a_finished_run_becomes_one_file_holding_every_record_sorted_by_case(tmp_path):
    store = _fill(tmp_path, 6)
    before = store.read()
    folder = store.run_dir("demo", "run-a")
    done = compact_run(folder)
    assert done.files == 6 and done.records == 6 and done.deleted == 6
    files = [p.name for p in folder.iterdir() if p.suffix == ".parquet"]
    assert files == [done.path.name] and done.path.name.startswith("00005-compacted-")
    after = store.read()
    assert _rows(after) == _rows(before)
    assert list(after["case_id"]) == sorted(after["case_id"])
    assert len(compacted_sources(done.path)) == 6
    assert len(pd.read_parquet(tmp_path)) == 6  # pandas' own reader: the compacted file only
    assert store.case_ids_in_run("demo", "run-a") == set(before["case_id"])
    assert compact_run(folder).reason == "already compacted"


def test_a_run_still_being_written_is_left_alone_unless_forced(tmp_path):
    store = _fill(tmp_path, 3, finished=False)
    folder = store.run_dir("demo", "run-a")
    done = compact_run(folder)
    assert done.path is None and "finished_utc" in done.reason
    assert len(live_files(folder)) == 3
    assert compact_run(folder, force=True).records == 3


def test_records_appended_after_a_compaction_come_after_it_and_a_second_compaction_merges_all(tmp_path):
    store = _fill(tmp_path, 3)
    folder = store.run_dir("demo", "run-a")
    first = compact_run(folder)
    again = make_record(Case("tiny_cnn", batch=1), run_id="run-a", params=99, minutes=10)  # same case re-measured
    path = store.append(again, COLUMNS)
    assert path.name.startswith("00003-")  # after the compacted file's 00002: never a name it holds
    frame = store.read()
    assert len(frame) == 4 and sorted(frame["params"]) == [0, 1, 2, 99]
    second = compact_run(folder)
    assert second.records == 4 and not first.path.exists() and not path.exists()
    assert compacted_sources(second.path) >= compacted_sources(first.path) | {first.path.name, path.name}
    assert sorted(store.read()["params"]) == [0, 1, 2, 99]


def test_files_a_compaction_killed_before_deleting_them_are_not_counted_and_cleaned_next_time(tmp_path, monkeypatch):
    store = _fill(tmp_path, 4)
    folder = store.run_dir("demo", "run-a")
    monkeypatch.setattr(compaction, "_delete", lambda paths: 0)  # dies after publishing, before deleting
    compact_run(folder)
    assert len(list(folder.glob("*.parquet"))) == 5
    assert len(store.read()) == 4
    monkeypatch.undo()
    done = compact_run(folder)
    assert done.reason == "already compacted" and done.deleted == 4
    assert len(list(folder.glob("*.parquet"))) == 1 and len(store.read()) == 4


def test_a_reader_whose_listed_file_vanishes_under_it_reads_again(tmp_path, monkeypatch):
    store = _fill(tmp_path, 4)
    folder = store.run_dir("demo", "run-a")
    real_open = pq.ParquetFile
    calls = {"n": 0}

    def open_racing_a_compaction(path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the folder was listed, one file read: now a compaction merges them all
            compact_run(folder)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("harness.store.pq.ParquetFile", open_racing_a_compaction)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = store.read()
    assert calls["n"] == 3  # two files opened, the second vanished: listed again, the compacted file opened
    assert len(frame) == 4 and frame["case_id"].is_unique
    assert not [w for w in caught if "unreadable" in str(w.message)]
    assert store.unreadable() == []


def test_the_reports_and_exports_readers_read_again_when_a_compaction_races_them(tmp_path, monkeypatch):
    import harness.store_reader as reader
    from harness.report.site import read_store

    store = _fill(tmp_path, 4)
    folder = store.run_dir("demo", "run-a")
    real_screen = reader.screen_files

    def screen_then_compact(paths):
        screened = real_screen(paths)
        if not list(folder.glob("*-compacted-*.parquet")):
            compact_run(folder)  # the files just screened are merged before they are read
        return screened

    monkeypatch.setattr(reader, "screen_files", screen_then_compact)
    data = read_store(store.root)
    assert len(data.frame) == 4 and data.frame["case_id"].is_unique and len(data.paths) == 1

    store = _fill(tmp_path / "other", 4)
    folder = store.run_dir("demo", "run-a")
    real_rows = reader.read_rows

    def compact_then_read_rows(located, records, *args, **kwargs):
        if not list(folder.glob("*-compacted-*.parquet")):
            compact_run(folder)  # the records were located in the part files, now merged
        return real_rows(located, records, *args, **kwargs)

    monkeypatch.setattr(reader, "screen_files", real_screen)
    monkeypatch.setattr(reader, "read_rows", compact_then_read_rows)
    chosen = reader.read_selected(store)
    assert len(chosen) == 4 and sorted(chosen["params"]) == [0, 1, 2, 3]
    assert [list(s) for s in chosen.sort_values("params")["latency_ms_samples"]] == [[i, i + 0.5] for i in range(4)]


def test_columns_added_later_are_null_in_older_records_of_the_merged_file(tmp_path):
    store = _fill(tmp_path, 2)
    newer = COLUMNS | {"acc_top1": "float64"}
    store.append(make_record(Case("resnet18", batch=7), run_id="run-a", acc_top1=0.5), newer)
    frame_before = store.read()
    compact_run(store.run_dir("demo", "run-a"))
    frame = store.read().set_index("batch")
    assert frame.loc[7, "acc_top1"] == 0.5 and frame["acc_top1"].isna().sum() == 2
    assert len(frame_before) == 3


def test_compact_store_walks_every_run_and_the_cli_says_what_it_did(tmp_path):
    _fill(tmp_path, 3, run_id="run-a")
    _fill(tmp_path, 2, run_id="run-b")
    _fill(tmp_path, 2, run_id="run-c", finished=False)
    done = {d.folder.name: d for d in compact_store(tmp_path)}
    assert done["run-a"].records == 3 and done["run-b"].records == 2 and done["run-c"].path is None
    assert len(ResultStore(tmp_path).read()) == 7
    result = subprocess.run([sys.executable, "-m", "harness.cli", "compact", "--results", str(tmp_path), "--force"],
                            capture_output=True, text=True, check=True)
    assert "compacted 1 of 3 run(s): 2 part file(s) → 1 file(s)" in result.stdout


KILL_SCRIPT = """
import sys
from pathlib import Path
from harness.compaction import compact_run
compact_run(Path(sys.argv[1]))
"""


@pytest.mark.parametrize("window", ["BEFORE", "AFTER"])
def test_kill_9_during_a_compaction_loses_nothing_and_counts_nothing_twice(tmp_path, window):
    store = _fill(tmp_path, 5)
    folder = store.run_dir("demo", "run-a")
    before = _rows(store.read())
    env = {**os.environ, f"HARNESS_TEST_COMPACT_PAUSE_{window}_PUBLISH_S": "30"}
    process = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(folder)], env=env)
    deadline = time.monotonic() + 60
    # wait until it is inside the window: a temporary file written (BEFORE) or the compacted file published (AFTER)
    probe = (lambda: list(folder.glob(".*.tmp"))) if window == "BEFORE" else (lambda: list(folder.glob("*compacted*")))
    while not probe() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert probe(), "the compaction never reached the window"
    assert _rows(store.read()) == before  # a reader during the compaction
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert _rows(store.read()) == before
    compact_run(folder)  # the next compaction finishes the job
    assert _rows(store.read()) == before
    assert [p.name for p in folder.glob("*.parquet")] == [p.name for p in live_files(folder)]
    assert len(live_files(folder)) == 1


def test_a_comparison_reads_whole_only_the_two_runs_it_compares(tmp_path, monkeypatch):
    from harness.compare import load_side
    from harness.run_index import RECORD_COLUMNS

    for i, run in enumerate(["run-a", "run-b", "run-c"]):
        store = ResultStore(tmp_path)
        for j in range(2):
            store.append(make_record(Case(MODELS[j]), run_id=run, params=j, minutes=10 * i + j), COLUMNS)
    whole: list[str] = []

    class SpyingFile(pq.ParquetFile):
        def __init__(self, source, *args, **kwargs):
            super().__init__(source, *args, **kwargs)
            self.folder = Path(source).parent.name

        def read(self, columns=None, **kwargs):
            if columns != RECORD_COLUMNS:  # runs without a manifest: indexed from three columns
                whole.append(self.folder)
            return super().read(columns=columns, **kwargs)

    monkeypatch.setattr("harness.store.pq.ParquetFile", SpyingFile)
    latest, before = load_side("latest", tmp_path), load_side("latest~1", tmp_path)
    assert set(latest["run_id"]) == {"run-c"} and set(before["run_id"]) == {"run-b"}
    assert sorted(set(whole)) == ["run-b", "run-c"]  # run-a's records were read for three columns only
    assert ResultStore(tmp_path).read(suite="demo", run_id="run-a")["params"].tolist() == [0, 1]
