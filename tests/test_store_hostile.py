"""The store against hostile names, foreign files and concurrent or killed processes: folder names that never merge two
suites or runs (and stores written with the old names still read, resume and report), Parquet files that are not
records, two resumes of one run, a worker outliving its killed parent, a full disk under --summary-json, and a file
given where a results directory belongs."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness import cli
from harness.case import Case
from harness.compaction import compact_run
from harness.errors import HarnessError
from harness.report.site import read_store
from harness.runner import run_suite
from harness.runner.process import WorkerProcess
from harness.store import ResultStore, RunBusy, arrow_schema, folder_name, safe_name
from harness.suite import load_suite
from tests.records import COLUMNS, make_record

TINY = """\
matrix:
  model: [tiny_cnn]
  resolution: [16, 20, 24]
metrics: [complexity]
"""


class FakeExecutor:
    """Runs nothing: each case is 'ok' with params 1; ``gate`` (when given) holds the first case until it is set."""

    name = "local"

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.gate, self.started, self.ran = gate, threading.Event(), []

    def start(self) -> dict[str, Any]:
        self.started.set()
        return {}

    def run(self, tasks: list) -> Any:
        for task in tasks:
            if self.gate is not None:
                assert self.gate.wait(30)
            self.ran.append(task.case.case_id)
            yield task, {"status": "ok", "error": "", "failure_class": None, "values": {"params": 1},
                         "duration_s": 0.01}

    def stop(self) -> None:
        pass


def _run(suite, results: Path, **kwargs: Any):
    executor = kwargs.pop("executor", None) or FakeExecutor()
    return run_suite(suite, results, show_progress=False, executor=executor, **kwargs), executor


# --- folder names ---------------------------------------------------------------------------------------------

def test_names_that_reduce_alike_get_folders_of_their_own():
    names = ["a/b", "a_b", "a b", "a\\b", ".", "..", "", "_", "Smoke", "smoke", "a--b", "con", "x.", "é"]
    folders = [folder_name(n) for n in names]
    assert len(set(folders)) == len(names)
    assert len({f.lower() for f in folders if "--" in f}) == len([f for f in folders if "--" in f])
    assert folder_name("smoke") == "smoke" and folder_name("20261123T183208Z-cbb836") == "20261123T183208Z-cbb836"
    assert folder_name("a/b").startswith("a_b--") and len(folder_name("a/b")) == len("a_b--") + 8
    for folder in folders:
        assert folder == safe_name(folder) and folder not in (".", "..")  # a safe, plain file name


def test_two_suites_whose_names_reduce_alike_never_share_a_folder_or_a_resume(tmp_path, write_suite):
    suite = load_suite(write_suite(TINY))
    slash, underscore = dataclasses.replace(suite, name="a/b"), dataclasses.replace(suite, name="a_b")
    store = ResultStore(tmp_path)
    assert store.run_dir("a/b", "night") != store.run_dir("a_b", "night")
    _run(slash, tmp_path, run_id="night")
    summary, executor = _run(underscore, tmp_path, run_id="night", resume=True)
    assert len(executor.ran) == 3 and summary.skipped_by_resume == 0  # a_b's cases ran: a/b's records are not its
    for name in ("a/b", "a_b"):
        manifests = store.run_manifests(name)
        assert [m["suite"] for _, m in manifests] == [name]
        assert len(store.read(suite=name)) == 3 and set(store.read(suite=name)["suite"]) == {name}
    same_run_ids = dataclasses.replace(suite, name="s")
    _run(same_run_ids, tmp_path, run_id="x/1")
    _, executor = _run(same_run_ids, tmp_path, run_id="x_1", resume=True)
    assert len(executor.ran) == 3  # run x_1 is not run x/1


def _old_layout(root: Path) -> tuple[Path, list[Case]]:
    """Write a run as the previous version did for suite ``a/b`` and run ``night/1``: folder ``a_b/night_1``, a
    manifest and two of the three TINY cases; return its folder and the cases."""
    cases = [Case("tiny_cnn", resolution=r) for r in (16, 20, 24)]
    folder = root / "a_b" / "night_1"
    folder.mkdir(parents=True)
    for seq, case in enumerate(cases[:2]):
        record = make_record(case, suite="a/b", run_id="night/1", params=seq)
        pq.write_table(pa.Table.from_pylist([record], schema=arrow_schema(COLUMNS)),
                       folder / f"{seq:05d}-{case.case_id}.parquet")
    manifest = {"run_id": "night/1", "suite": "a/b", "shard": None, "started_utc": "2026-11-23T00:00:00+00:00"}
    (folder / "_run.json").write_text(json.dumps(manifest), encoding="utf-8")
    return folder, cases


def test_a_store_written_with_the_old_folder_names_still_reads_resumes_and_reports(tmp_path, write_suite):
    folder, cases = _old_layout(tmp_path / "results")
    store = ResultStore(tmp_path / "results")
    assert store.run_dir("a/b", "night/1") == folder
    assert len(store.read(suite="a/b")) == 2 and len(store.read(suite="a/b", run_id="night/1")) == 2
    assert store.case_ids_in_run("a/b", "night/1") == {c.case_id for c in cases[:2]}
    suite = dataclasses.replace(load_suite(write_suite(TINY)), name="a/b")
    summary, executor = _run(suite, tmp_path / "results", resume=True)
    assert summary.run_id == "night/1" and executor.ran == [cases[2].case_id]  # only the missing case
    assert len(list(folder.glob("*.parquet"))) == 1  # written into the old folder, then compacted with the others
    assert sorted(store.read(suite="a/b")["case_id"]) == sorted(c.case_id for c in cases)
    assert not (tmp_path / "results" / folder_name("a/b")).exists()
    assert cli.main(["report", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "site")]) == 0
    assert "tiny_cnn" in (tmp_path / "site" / "index.html").read_text(encoding="utf-8")


def test_an_old_folder_shared_by_two_suites_serves_each_only_its_own_runs(tmp_path):
    _, cases = _old_layout(tmp_path)
    other = make_record(cases[2], suite="a_b", run_id="day")
    ResultStore(tmp_path).append(other, COLUMNS)  # a_b is plain: its folder is a_b, as before
    (tmp_path / "a_b" / "day" / "_run.json").write_text(json.dumps({"run_id": "day", "suite": "a_b"}))
    store = ResultStore(tmp_path)
    assert [m["run_id"] for _, m in store.run_manifests("a/b")] == ["night/1"]
    assert [m["run_id"] for _, m in store.run_manifests("a_b")] == ["day"]
    assert set(store.read(suite="a/b")["run_id"]) == {"night/1"} and set(store.read(suite="a_b")["run_id"]) == {"day"}
    assert store.run_dir("a/b", "day") == tmp_path / folder_name("a/b") / "day"  # a_b's run is not a/b's


def test_resume_refuses_a_run_folder_whose_manifest_names_another_suite_or_run(tmp_path, write_suite):
    suite = load_suite(write_suite(TINY))
    store = ResultStore(tmp_path)
    path = store.write_manifest(suite.name, "night", {"run_id": "night", "suite": "other"})
    with pytest.raises(HarnessError) as caught:
        _run(suite, tmp_path, run_id="night", resume=True)
    assert str(caught.value) == (
        f"{path} is the manifest of run 'night' of suite 'other', not of run 'night' of suite 'suite': the folder "
        f"{path.parent} belongs to another run; choose another --run-id or --results")
    store.write_manifest(suite.name, "night", {"run_id": "night-2", "suite": "suite"})
    with pytest.raises(HarnessError, match="manifest of run 'night-2' of suite 'suite', not of run 'night'"):
        _run(suite, tmp_path, run_id="night")
    assert json.loads(path.read_text())["run_id"] == "night-2"  # left as it was
    assert store.read().empty


# --- Parquet files that are not records -----------------------------------------------------------------------

def _store_with_strangers(root: Path) -> tuple[ResultStore, list[Path]]:
    """Two records of a run, and beside them: another program's Parquet file, a record file whose ``params`` is
    text, and one whose ``suite`` is a number; return the store and the three strangers."""
    store = ResultStore(root)
    good = [store.append(make_record(Case("tiny_cnn", batch=b), params=b, latency_ms_samples=[1.0, 2.0]), COLUMNS)
            for b in (1, 2)]
    folder = good[0].parent
    foreign = folder / "00010-foreign.parquet"
    pq.write_table(pa.table({"x": [1, 2], "y": ["a", "b"]}), foreign)
    text_params = folder / "00011-text-params.parquet"
    record = make_record(Case("resnet18"), params="many")
    pq.write_table(pa.Table.from_pylist([record], schema=arrow_schema(COLUMNS | {"params": "string"})), text_params)
    number_suite = root / "other" / "run" / "00000-x.parquet"
    number_suite.parent.mkdir(parents=True)
    pq.write_table(pa.table({"run_id": ["r"], "suite": [7], "case_id": ["c"], "status": ["ok"],
                             "timestamp_utc": pa.array([pd.Timestamp("2026-11-23", tz="UTC")])}), number_suite)
    return store, [foreign, text_params, number_suite]


def test_parquet_files_that_hold_no_records_are_named_and_skipped(tmp_path):
    store, (foreign, text_params, number_suite) = _store_with_strangers(tmp_path)
    with pytest.warns(UserWarning) as caught:
        frame = store.read()
    assert sorted(frame["params"]) == [1, 2]
    messages = sorted(str(w.message) for w in caught)
    assert messages == sorted([
        f"skipping result file {foreign}: not a harness record file (no column run_id, suite, case_id, status, "
        "timestamp_utc)",
        f"skipping result file {text_params}: column 'params' is string here but int64 in the other record files",
        f"skipping result file {number_suite}: not a harness record file (column 'suite' is int64, not string)",
    ])
    assert sorted(p for p, _ in store.unreadable()) == sorted([foreign, text_params, number_suite])
    in_run = [foreign, text_params]  # the run folder's strangers
    with pytest.warns(UserWarning) as caught:
        assert store.case_ids_in_run("demo", "run-a") == {Case("tiny_cnn", batch=b).case_id for b in (1, 2)}
    assert _named(caught) == in_run
    with pytest.warns(UserWarning) as caught:
        data = read_store(tmp_path)
    assert _named(caught) == [foreign, text_params, number_suite]
    assert sorted(data.frame["params"]) == [1, 2] and "latency_ms_samples" in data.columns and len(data.paths) == 2


def _named(caught: Any) -> list[Path]:
    """Return the files the warnings ``caught`` skip, in order."""
    return [Path(str(w.message).split(": ")[0].removeprefix("skipping result file ")) for w in caught]


def test_compaction_leaves_files_that_hold_no_records_in_place(tmp_path):
    store, (foreign, text_params, _) = _store_with_strangers(tmp_path)
    done = compact_run(foreign.parent, force=True)
    assert done.files == 2 and done.records == 2
    assert foreign.exists() and text_params.exists()
    with pytest.warns(UserWarning):
        assert sorted(store.read()["params"]) == [1, 2]


def test_report_export_and_compare_name_the_stranger_and_go_on(tmp_path, capsys):
    _, strangers = _store_with_strangers(tmp_path / "results")
    results = str(tmp_path / "results")
    with pytest.warns(UserWarning) as caught:
        assert cli.main(["report", "--results", results, "--out", str(tmp_path / "site")]) == 0
    assert sorted(set(_named(caught))) == sorted(strangers)
    capsys.readouterr()
    with pytest.warns(UserWarning) as caught:
        assert cli.main(["export", "--results", results, "--format", "csv"]) == 0
    assert sorted(_named(caught)) == sorted(strangers)
    assert len(capsys.readouterr().out.strip().splitlines()) == 3  # the header and two records
    with pytest.warns(UserWarning) as caught:
        assert cli.main(["compare", results, results]) == 0
    assert sorted(set(_named(caught))) == sorted(strangers)
    assert "compare: 2 inconclusive" in capsys.readouterr().out


# --- two processes on one run ---------------------------------------------------------------------------------

def test_two_concurrent_resumes_of_one_run_never_run_a_case_twice(tmp_path, write_suite):
    suite = load_suite(write_suite(TINY))
    gate = threading.Event()
    first = FakeExecutor(gate)
    outcome: dict[str, Any] = {}

    def resume_first() -> None:
        outcome["summary"], _ = _run(suite, tmp_path, run_id="night", resume=True, executor=first)

    thread = threading.Thread(target=resume_first)
    thread.start()
    try:
        assert first.started.wait(30)  # the first resume has planned its cases and is running them
        second = FakeExecutor()
        with pytest.raises(RunBusy) as caught:
            _run(suite, tmp_path, run_id="night", resume=True, executor=second)
    finally:
        gate.set()
        thread.join(30)
    assert second.ran == [] and len(first.ran) == 3
    message = str(caught.value)
    assert message.startswith(f"run 'night' of suite 'suite' is being run by another process (pid {os.getpid()} on ")
    assert message.endswith("): wait for it to end; then --resume runs what it left")
    frame = ResultStore(tmp_path).read()
    assert sorted(frame["case_id"]) == sorted(c.case_id for c in suite.cases)  # each case once
    _, third = _run(suite, tmp_path, run_id="night", resume=True)
    assert third.ran == []  # the lock is free again once the run ended


def test_the_claim_of_a_killed_process_is_taken_over(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom harness.store import ResultStore\n"
         "claim = ResultStore(sys.argv[1]).claim_run('demo', 'night')\nclaim.__enter__()\n"
         "print('held', flush=True)\ntime.sleep(120)\n", str(tmp_path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunBusy, match=f"pid {holder.pid} on "):
            with ResultStore(tmp_path).claim_run("demo", "night"):
                pass
    finally:
        holder.kill()
        holder.wait(10)
    with ResultStore(tmp_path).claim_run("demo", "night") as folder:  # kill -9 released it
        assert folder == ResultStore(tmp_path).run_dir("demo", "night")


# --- the worker dies with its parent --------------------------------------------------------------------------

def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] != "Z"
    except FileNotFoundError:
        return False


def _wait_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(map(_alive, pids)):
        time.sleep(0.1)
    return [pid for pid in pids if _alive(pid)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the worker through Linux's /proc")
def test_kill_9_of_harness_run_takes_its_worker_down(tmp_path, write_suite):
    suite = write_suite("timeout_s: 600\nmatrix:\n  model: [tiny_cnn, fault_hang]\n  resolution: [16]\n"
                        "metrics: [complexity]\n")
    results = tmp_path / "results"
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(suite), "--results", str(results),
                             "--no-progress"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not list(results.rglob("*.parquet")) and time.monotonic() < deadline:  # tiny_cnn is stored
            time.sleep(0.1)
        workers = [pid for pid in _children(proc.pid)
                   if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")]
        assert workers, "the CLI has no worker process"
        time.sleep(1.0)  # the worker is now inside fault_hang's hour of sleep
        proc.kill()
        proc.wait(10)
        assert _wait_gone(workers, 5.0) == []
    finally:
        proc.kill()
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_worker_whose_parent_died_exits_without_the_linux_signal(tmp_path):
    watching = tmp_path / "watching"
    child_code = ("import os, pathlib, sys, time\nfrom harness.runner.process import watch_parent\n"
                  "os.setpgid(0, 0)\nwatch_parent(os.getppid(), 0.05)\npathlib.Path(sys.argv[1]).touch()\n"
                  "time.sleep(120)\n")
    parent = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time\n"
         "child = subprocess.Popen([sys.executable, '-c', sys.argv[1], sys.argv[2]])\n"
         "print(child.pid, flush=True)\ntime.sleep(120)\n", child_code, str(watching)],
        stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    try:
        deadline = time.monotonic() + 30
        while not watching.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert watching.exists(), "the child never watched its parent"
        parent.kill()
        parent.wait(10)
        assert _wait_gone([child], 5.0) == []
    finally:
        parent.kill()
        if _alive(child):
            os.kill(child, signal.SIGKILL)


# --- the CLI: a full disk under --summary-json, a file as --results --------------------------------------------

def _no_space(*args: Any, **kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


SUMMARY_NOT_WRITTEN = ("No space left on device [Errno 28]; no run summary (--summary-json) is written; the records "
                       "already written are kept; free some disk space")


def test_summary_json_on_a_full_disk_keeps_the_clean_message(tmp_path, write_suite, monkeypatch, capsys):
    suite = write_suite(TINY)
    monkeypatch.setattr(WorkerProcess, "launch", lambda self: None)
    monkeypatch.setattr(WorkerProcess, "start", lambda self: {})
    monkeypatch.setattr("harness.store.write_text_atomically", _no_space)  # the manifest's write and the summary's
    summary = tmp_path / "summary.json"
    status = cli.main(["run", str(suite), "--results", str(tmp_path / "results"), "--no-progress",
                       "--summary-json", str(summary)])
    err = capsys.readouterr().err
    assert status == 1 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[0] == f"error: cannot write {summary}: {SUMMARY_NOT_WRITTEN}"
    suite_folder = tmp_path / "results" / "suite"
    assert lines[1].startswith(f"error: cannot write {suite_folder}/") and lines[1].endswith(
        "/_run.json: No space left on device [Errno 28]; the files already in its folder are kept; free some disk "
        "space and run again")
    assert len(lines) == 2 and not summary.exists()


def test_summary_json_that_cannot_be_written_after_a_good_run_exits_1(tmp_path, write_suite, monkeypatch, capsys):
    suite = write_suite(TINY)
    store = ResultStore(tmp_path / "results")
    store.write_manifest("suite", "night", {"run_id": "night", "suite": "suite", "shard": None})
    for case in load_suite(suite).cases:  # every case is recorded: the resume has nothing to run
        store.append(make_record(case, suite="suite", run_id="night"), COLUMNS)
    monkeypatch.setattr(WorkerProcess, "launch", lambda self: None)
    monkeypatch.setattr("harness.store.write_text_atomically", _no_space)
    summary = tmp_path / "summary.json"
    status = cli.main(["run", str(suite), "--results", str(tmp_path / "results"), "--no-progress", "--resume",
                       "--summary-json", str(summary)])
    captured = capsys.readouterr()
    assert status == 1 and "Traceback" not in captured.err
    assert "suite: 3 already recorded (resume)" in captured.out
    assert captured.err.strip().splitlines()[-1] == f"error: cannot write {summary}: {SUMMARY_NOT_WRITTEN}"


@pytest.mark.parametrize("command", [["report"], ["compare", "latest~1", "latest"]])
def test_a_file_given_as_results_directory_is_refused(tmp_path, capsys, command):
    path = tmp_path / "results.parquet"
    path.write_bytes(b"PAR1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        status = cli.main([*command, "--results", str(path), *(["--out", str(tmp_path / "site")] if
                                                                   command == ["report"] else [])])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err
    assert err.strip() == f"error: --results {path} is not a directory (a results directory holds <suite>/<run>/" \
                          "*.parquet)"
