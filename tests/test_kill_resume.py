"""Durability of a real `harness run`: `kill -9` of the CLI at random moments, then `--resume`, leaves exactly one ok
record per case; `kill -9` of the worker loses only the case in flight and the run goes on; shards split a suite
with no case in two and merge by copying directories."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.runner.shard import Shard, estimate_cost_s, select_shard
from harness.store import ResultStore
from harness.suite import load_suite

pytestmark = pytest.mark.slow  # kill -9 of real runs at random moments, shards (70 s)

SUITE = """\
name: durable
matrix:
  model: [tiny_cnn]
  resolution: [16, 20, 24, 28, 32, 36, 40, 44]
metrics:
  latency: {warmup_min: 1, warmup_max_s: 0.2, min_repeats: 3, min_time_s: 0.2, max_time_s: 0.4}
"""


def _harness(*args: str, **kwargs) -> subprocess.Popen:
    env = os.environ | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "harness.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


def _children(pid: int) -> list[int]:
    """Return the pids of ``pid``'s child processes (Linux /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def test_kill_9_of_the_cli_at_random_moments_then_resume_leaves_one_ok_record_per_case(write_suite, tmp_path):
    suite_path = write_suite(SUITE)
    results = tmp_path / "results"
    rng = random.Random(8)
    kills = 0
    for trial in range(4):
        proc = _harness("run", str(suite_path), "--results", str(results), "--no-progress", "--run-id", "night",
                        *(["--resume"] if trial else []))
        time.sleep(rng.uniform(2.0, 7.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.communicate(timeout=60)
    assert kills >= 2  # the trials did interrupt runs
    done = _harness("run", str(suite_path), "--results", str(results), "--no-progress", "--run-id", "night",
                    "--resume")
    output, _ = done.communicate(timeout=180)
    assert done.returncode == 0, output
    frame = ResultStore(results).read()
    cases = load_suite(suite_path).cases
    assert sorted(frame["case_id"]) == sorted(c.case_id for c in cases), output  # exactly one record per case
    assert (frame["status"] == "ok").all() and set(frame["run_id"]) == {"night"}
    assert not list(results.rglob("*.tmp")) or all(p.name.startswith(".") for p in results.rglob("*.tmp"))


def test_kill_9_of_the_worker_loses_only_the_case_in_flight(write_suite, tmp_path):
    suite_path = write_suite(SUITE.replace("max_time_s: 0.4", "max_time_s: 1.5").replace("min_time_s: 0.2",
                                                                                        "min_time_s: 1.0"))
    results = tmp_path / "results"
    proc = _harness("run", str(suite_path), "--results", str(results), "--no-progress")
    deadline = time.time() + 60
    while not list(results.rglob("*.parquet")) and time.time() < deadline:  # the first case is stored
        time.sleep(0.1)
    workers = _children(proc.pid)
    assert workers, "the CLI has no worker process"
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    output, _ = proc.communicate(timeout=180)
    frame = ResultStore(results).read()
    assert len(frame) == 8 and frame["case_id"].is_unique, output
    failed = frame[frame["status"] == "failed"]
    assert len(failed) == 1 and "SIGKILL" in failed["error"].iloc[0], output  # the case in flight, and only it
    assert (frame["status"] == "ok").sum() == 7 and proc.returncode == 1


def test_shards_split_the_suite_and_merge_by_copying_directories(write_suite, tmp_path):
    suite_path = write_suite(SUITE.replace("min_time_s: 0.2, max_time_s: 0.4", "min_time_s: 0.05, max_time_s: 0.1"))
    suite = load_suite(suite_path)
    shards = [Shard(i, 3) for i in (1, 2, 3)]
    for shard in shards:  # each "machine" writes its own results directory
        proc = _harness("run", str(suite_path), "--results", str(tmp_path / f"machine{shard.index}"),
                        "--no-progress", "--shard", str(shard), "--run-id", "night")
        output, _ = proc.communicate(timeout=180)
        assert proc.returncode == 0, output
        assert f"shard {shard}" in output
    merged = tmp_path / "merged"
    for shard in shards:
        shutil.copytree(tmp_path / f"machine{shard.index}", merged, dirs_exist_ok=True)
    frame = ResultStore(merged).read()
    assert sorted(frame["case_id"]) == sorted(c.case_id for c in suite.cases)
    assert set(frame["shard"]) == {"1/3", "2/3", "3/3"} and set(frame["run_id"]) == {"night"}
    cost = {c.case_id: estimate_cost_s(c, {"latency": {"min_time_s": 0.05, "max_time_s": 0.1}}) for c in suite.cases}
    per_shard = [sorted(c.case_id for c in select_shard(suite.cases, lambda c: cost[c.case_id], s)) for s in shards]
    assert [sorted(frame[frame["shard"] == str(s)]["case_id"]) for s in shards] == per_shard
    manifests = sorted(p.name for p in (merged / "durable" / "night").glob("_run*.json"))
    assert manifests == ["_run.shard-1-of-3.json", "_run.shard-2-of-3.json", "_run.shard-3-of-3.json"]
