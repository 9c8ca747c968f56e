"""The Parquet results store: round trip, schema, atomic and concurrent writes, write failures, unreadable files,
resume and run lookups."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.case import Case
from harness.errors import HarnessError
from harness.store import ResultStore, ResultWriteError, arrow_schema, read_results, write_text_atomically
from tests.records import COLUMNS, make_record


def test_round_trip_keeps_values_types_and_samples(tmp_path):
    store = ResultStore(tmp_path)
    case = Case("tiny_cnn", batch=4)
    path = store.append(make_record(case, params=314, latency_ms_median=1.5, latency_ms_samples=[1.4, 1.5, 1.7]),
                        COLUMNS)
    assert pq.read_schema(path) == arrow_schema(COLUMNS)
    frame = read_results(tmp_path)
    assert len(frame) == 1
    row = frame.iloc[0]
    assert row["case_id"] == case.case_id and row["batch"] == 4 and row["params"] == 314
    assert list(row["latency_ms_samples"]) == [1.4, 1.5, 1.7]
    assert pd.isna(row["macs"])
    assert str(row["timestamp_utc"].tz) == "UTC"


def test_pandas_reads_the_results_directory_directly(tmp_path):
    store = ResultStore(tmp_path)
    for i, model in enumerate(["tiny_cnn", "resnet18"]):
        store.append(make_record(Case(model), run_id=f"run-{i}", params=i), COLUMNS)
    store.write_manifest("demo", "run-0", {"run_id": "run-0"})
    frame = pd.read_parquet(tmp_path)
    assert sorted(frame["model"]) == ["resnet18", "tiny_cnn"]


def test_undeclared_column_is_refused(tmp_path):
    with pytest.raises(KeyError, match="without a declared type"):
        ResultStore(tmp_path).append(make_record(Case("tiny_cnn"), new_metric=1.0), COLUMNS)


def test_atomic_write_leaves_no_temporary_file(tmp_path):
    store = ResultStore(tmp_path)
    store.append(make_record(Case("tiny_cnn")), COLUMNS)
    names = [p.name for p in tmp_path.rglob("*") if p.is_file()]
    assert len(names) == 1 and names[0].endswith(".parquet") and not names[0].startswith(".")


def test_unreadable_part_file_is_skipped_with_a_warning(tmp_path):
    store = ResultStore(tmp_path)
    good = store.append(make_record(Case("tiny_cnn")), COLUMNS)
    (good.parent / "00099-broken.parquet").write_bytes(b"PAR1 truncated")
    with pytest.warns(UserWarning, match="00099-broken.parquet"):
        frame = store.read()
    assert len(frame) == 1


def test_empty_or_missing_directory_reads_as_empty_frame(tmp_path):
    assert read_results(tmp_path / "nothing").empty


# --- several processes writing one run folder ----------------------------------------------------------------

_START: Any = None  # the barrier the spawned writers wait at, so that they append at the same time


def _hold_barrier(barrier: Any) -> None:
    global _START
    _START = barrier


def _append_many(args: tuple[str, int, int]) -> list[str]:
    """Append ``count`` records of writer ``worker`` (cycling over 4 case ids shared by every writer, params
    ``worker * 1000 + i``) into run-a of suite demo; return the part files' names in the order written."""
    root, worker, count = args
    store = ResultStore(root)
    _START.wait(timeout=60)
    return [store.append(make_record(Case("tiny_cnn", batch=1 + i % 4), params=worker * 1000 + i), COLUMNS).name
            for i in range(count)]


def test_processes_appending_to_one_run_folder_lose_no_record(tmp_path):
    writers, count = 3, 100
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(writers)
    with ctx.Pool(writers, initializer=_hold_barrier, initargs=(barrier,)) as pool:
        names = pool.map(_append_many, [(str(tmp_path), w, count) for w in range(writers)], chunksize=1)
    store = ResultStore(tmp_path)
    frame = store.read()
    assert sorted(frame["params"]) == sorted(w * 1000 + i for w in range(writers) for i in range(count))
    assert store.unreadable() == []
    files = [p.name for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == len(set(files)) == writers * count and all(n.endswith(".parquet") for n in files)
    assert not [n for n in files if n.startswith(".")]  # no temporary file left
    for written in names:  # each writer's records sort in the order it wrote them
        assert written == sorted(written) and len(set(written)) == count
    assert store.case_ids_in_run("demo", "run-a") == {Case("tiny_cnn", batch=b).case_id for b in (1, 2, 3, 4)}


def test_two_stores_on_one_run_folder_keep_every_record_in_write_order(tmp_path):
    first, second = ResultStore(tmp_path), ResultStore(tmp_path)  # as two processes sharing a run id
    case = Case("tiny_cnn")
    paths = [store.append(make_record(case, params=i), COLUMNS) for i, store in enumerate([first, second] * 3)]
    assert [p.name for p in paths] == [f"{seq:05d}-{case.case_id}.parquet" for seq in range(6)]
    assert sorted(read_results(tmp_path)["params"]) == list(range(6))


def test_append_never_replaces_a_file_published_meanwhile(tmp_path, monkeypatch):
    store, case = ResultStore(tmp_path), Case("tiny_cnn")
    taken = store.run_dir("demo", "run-a") / f"00000-{case.case_id}.parquet"
    write_table = pq.write_table

    def another_process_publishes_first(table, where, **kwargs):
        if not taken.exists():  # while this process writes its temporary file, another one takes the name
            write_table(pa.Table.from_pylist([make_record(case, params=1)], schema=arrow_schema(COLUMNS)), taken)
        write_table(table, where, **kwargs)

    monkeypatch.setattr(pq, "write_table", another_process_publishes_first)
    path = store.append(make_record(case, params=2), COLUMNS)
    assert path.name == f"00001-{case.case_id}.parquet"
    assert pq.read_table(taken)["params"].to_pylist() == [1]
    assert sorted(read_results(tmp_path)["params"]) == [1, 2]
    assert not [p for p in tmp_path.rglob(".*") if p.is_file()]


# --- write failures -------------------------------------------------------------------------------------------

def _no_space(*args: Any, **kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _fail_on_call(monkeypatch, owner: Any, name: str, call: int) -> None:
    """Make ``owner.name`` raise ENOSPC on its ``call``-th call (counting from 1)."""
    real, calls = getattr(owner, name), []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        if len(calls) == call:
            _no_space()
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, flaky)


def _write_half_then_fail(table: pa.Table, where: Path, **kwargs: Any) -> None:
    Path(where).write_bytes(b"PAR1 half a file")
    _no_space()


@pytest.mark.parametrize("failing", ["write_table", "fsync", "link"])
def test_disk_full_while_appending_keeps_earlier_records_and_no_temporary_file(tmp_path, monkeypatch, failing):
    store = ResultStore(tmp_path)
    written = [store.append(make_record(Case("tiny_cnn", batch=b), params=b), COLUMNS) for b in (1, 2, 3)]
    before = {p: p.read_bytes() for p in written}
    if failing == "write_table":
        monkeypatch.setattr(pq, "write_table", _write_half_then_fail)
    else:
        _fail_on_call(monkeypatch, os, failing, 1)
    case = Case("tiny_cnn", batch=4)
    with pytest.raises(ResultWriteError) as caught:
        store.append(make_record(case, params=4), COLUMNS)
    message = str(caught.value)
    assert isinstance(caught.value, HarnessError)
    assert str(store.run_dir("demo", "run-a") / f"00003-{case.case_id}.parquet") in message
    assert "No space left on device [Errno 28]" in message
    assert "the 3 record(s) already in" in message and "free some disk space and rerun with --resume" in message
    assert isinstance(caught.value.__cause__, OSError)
    assert sorted(tmp_path.rglob("*")) == sorted([*written, written[0].parent, written[0].parent.parent])
    assert {p: p.read_bytes() for p in written} == before
    monkeypatch.undo()
    assert sorted(read_results(tmp_path)["params"]) == [1, 2, 3]
    assert store.append(make_record(case, params=4), COLUMNS).name.startswith("00003-")  # the name is free


def test_write_error_advice_follows_the_errno(tmp_path, monkeypatch):
    def read_only(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(pq, "write_table", read_only)
    with pytest.raises(ResultWriteError, match=r"Read-only file system \[Errno 30\].*choose a writable results"):
        ResultStore(tmp_path).append(make_record(Case("tiny_cnn")), COLUMNS)


def test_disk_full_while_writing_the_manifest_keeps_the_old_one(tmp_path, monkeypatch):
    store = ResultStore(tmp_path)
    path = store.write_manifest("demo", "run-a", {"run_id": "run-a", "started_utc": "2026-11-23T00:00:00+00:00"})
    before = path.read_bytes()
    _fail_on_call(monkeypatch, os, "fsync", 1)
    with pytest.raises(ResultWriteError) as caught:
        store.write_manifest("demo", "run-a", {"run_id": "run-a", "started_utc": "later"})
    message = str(caught.value)
    assert f"cannot write {path}: No space left on device [Errno 28]" in message
    assert "free some disk space and run again" in message
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["_run.json"]


# --- unreadable files -----------------------------------------------------------------------------------------

def test_truncated_garbage_and_empty_part_files_are_warned_about_and_listed(tmp_path):
    store = ResultStore(tmp_path)
    good = [store.append(make_record(Case("tiny_cnn", batch=b), params=b), COLUMNS) for b in (1, 2)]
    folder = good[0].parent
    whole = good[0].read_bytes()
    bad = [folder / "00010-truncated.parquet", folder / "00011-garbage.parquet", folder / "00012-empty.parquet"]
    bad[0].write_bytes(whole[: len(whole) // 2])
    bad[1].write_bytes(bytes(range(256)) * 8)
    bad[2].write_bytes(b"")
    assert store.unreadable() == []
    with pytest.warns(UserWarning) as caught:
        frame = store.read()
    assert sorted(frame["params"]) == [1, 2]
    messages = [str(w.message) for w in caught]
    for path in bad:
        assert sum(str(path) in m and "skipping unreadable result file" in m for m in messages) == 1
    listed = store.unreadable()
    assert [path for path, _ in listed] == bad
    assert all(reason for _, reason in listed)
    assert "0 bytes" in listed[2][1]
    for path in bad:
        path.unlink()
    store.read()
    assert store.unreadable() == []  # the list is that of the last read


def test_temporary_file_of_a_killed_writer_is_never_read(tmp_path):
    store = ResultStore(tmp_path)
    kept = store.append(make_record(Case("tiny_cnn"), params=1), COLUMNS)
    orphan = kept.parent / f".00001-{Case('resnet18').case_id}.parquet.{'0' * 32}.tmp"
    pq.write_table(pa.Table.from_pylist([make_record(Case("resnet18"), params=2)], schema=arrow_schema(COLUMNS)),
                   orphan)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frame = store.read()
        assert store.case_ids_in_run("demo", "run-a") == {Case("tiny_cnn").case_id}
    assert list(frame["params"]) == [1] and store.unreadable() == []
    assert list(pd.read_parquet(tmp_path)["params"]) == [1]
    assert store.append(make_record(Case("vgg16")), COLUMNS).name.startswith("00001-")


# --- run lookups ----------------------------------------------------------------------------------------------

def test_case_ids_in_run_lists_the_readable_records_of_that_run_only(tmp_path):
    store = ResultStore(tmp_path)
    ok, failed, elsewhere = Case("tiny_cnn"), Case("resnet18"), Case("vgg16")
    store.append(make_record(ok), COLUMNS)
    store.append(make_record(failed, status="failed", error="boom"), COLUMNS)
    store.append(make_record(elsewhere, run_id="run-b"), COLUMNS)
    store.append(make_record(elsewhere, suite="another"), COLUMNS)
    (store.run_dir("demo", "run-a") / "00009-broken.parquet").write_bytes(b"PAR1 broken")
    with pytest.warns(UserWarning, match="00009-broken.parquet"):
        assert store.case_ids_in_run("demo", "run-a") == {ok.case_id, failed.case_id}
    assert [p.name for p, _ in store.unreadable()] == ["00009-broken.parquet"]
    assert store.case_ids_in_run("demo", "run-b") == {elsewhere.case_id}
    assert store.case_ids_in_run("demo", "no-such-run") == set()


def test_run_manifests_are_parsed_and_sorted_by_start(tmp_path):
    store = ResultStore(tmp_path)
    late = store.write_manifest("demo", "run-a", {"run_id": "run-a", "started_utc": "2026-11-24T10:00:00+00:00"})
    early = store.write_manifest("demo", "run-b", {"run_id": "run-b", "started_utc": "2026-11-23T10:00:00+00:00"})
    shard = write_text_atomically(store.run_dir("demo", "run-b") / "_run-1.json",
                                  json.dumps({"run_id": "run-b", "started_utc": "2026-11-23T11:00:00+00:00"}))
    store.write_manifest("another", "run-c", {"run_id": "run-c", "started_utc": "2026-11-22T10:00:00+00:00"})
    broken = write_text_atomically(store.run_dir("demo", "run-d") / "_run.json", '{"run_id": ')
    listed = write_text_atomically(store.run_dir("demo", "run-e") / "_run.json", "[1, 2]")
    with pytest.warns(UserWarning) as caught:
        manifests = store.run_manifests("demo")
    assert [path for path, _ in manifests] == [early, shard, late]
    assert manifests[0][1] == {"run_id": "run-b", "started_utc": "2026-11-23T10:00:00+00:00"}
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2
    assert str(broken) in messages[0] and str(listed) in messages[1] and "not a JSON object" in messages[1]
    assert ResultStore(tmp_path / "nothing").run_manifests("demo") == []


def test_a_compacted_files_footer_is_read_once_to_list_and_screen_it(tmp_path, monkeypatch):
    from harness.compaction import compact_run
    from harness.store import screen_files

    store = ResultStore(tmp_path)
    for batch in (1, 2):
        store.append(make_record(Case("resnet18", batch=batch), run_id="once"), COLUMNS)
    store.write_manifest("demo", "once", {"suite": "demo", "run_id": "once", "finished_utc": "2026-12-06T00:00:00Z"})
    compacted = compact_run(store.run_dir("demo", "once")).path
    reads: list[str] = []
    real = pq.read_metadata
    monkeypatch.setattr(pq, "read_metadata", lambda path, *a, **k: reads.append(str(path)) or real(path, *a, **k))
    kept, _skipped = screen_files(list(store.part_files()))
    assert [path for path, _schema in kept] == [compacted] and reads == [str(compacted)]


def test_footers_of_one_schema_share_it_and_a_compacted_files_sources_stay_its_own(tmp_path):
    from harness.compaction import compact_run
    from harness.store import compacted_sources, footer_schema

    store = ResultStore(tmp_path)
    for run in ("a", "b"):
        for batch in (1, 2):
            store.append(make_record(Case("resnet18", batch=batch), run_id=run), COLUMNS)
    parts = sorted(store.run_dir("demo", "b").glob("*.parquet"))
    assert footer_schema(parts[0]) is footer_schema(parts[1])  # one schema object for files written alike
    store.write_manifest("demo", "a", {"suite": "demo", "run_id": "a", "finished_utc": "2026-12-06T00:00:00Z"})
    held = {p.name for p in store.run_dir("demo", "a").glob("*.parquet")}
    compacted = compact_run(store.run_dir("demo", "a")).path
    assert compacted_sources(compacted) == held and compacted_sources(parts[0]) == set()
    assert footer_schema(compacted).equals(pq.read_schema(compacted), check_metadata=True)
