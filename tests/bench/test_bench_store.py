"""How the store's readers scale: `harness report`, `harness export --format csv`, `harness compare` of two runs and
the planning of `harness run --resume`, on synthetic stores of 10k, 100k and 1M records (compacted, as every
finished run is) and 100k records in one part file each (runs kept with `--no-compact`, or a store from before
compaction). See :mod:`tests.bench.synthetic_store` for the stores' shape (a 1M store holds 5 suites × 224 runs of
892 cases).

Run by `tox -e bench` (or ``pytest tests/bench/test_bench_store.py -m slow -s``). Each command runs in a process of
its own, as a user runs it; its wall time and peak resident memory (the kernel's ``ru_maxrss`` of that process) are
printed as a table with the growth exponent of each command from 10k to 1M (time ∝ records^k) and stored in the
benchmark's extra_info. The targets, printed beside the figures: 1M compacted records report in < 30 s and < 2 GB;
100k part files report without a crash in < 4 GB; a compare of two ~1k-case runs of the 1M store in < 5 s. Memory
and the exponents are asserted (times are machine-dependent and only printed).
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.bench.synthetic_store import StoreShape, write_store

pytestmark = pytest.mark.slow

STORES = (("compacted", 10_000), ("compacted", 100_000), ("compacted", 1_000_000), ("parts", 100_000))
HARNESS = [sys.executable, "-m", "harness.cli"]
#: What `harness run --resume` reads before it runs anything: the suite's latest run and the cases it recorded.
RESUME_PLAN = ("import sys\n"
               "from harness.runner.run import _latest_run_id\n"
               "from harness.store import ResultStore\n"
               "store = ResultStore(sys.argv[1])\n"
               "run_id = _latest_run_id(store, 'suite0', None)\n"
               "print(run_id, len(store.case_ids_in_run('suite0', run_id)))\n")
GB = 1024 ** 3


#: Runs the command in argv and prints its wall seconds and peak resident kilobytes: a small process of its own
#: starts it, so the figure is not the benchmark's own memory (a forked child keeps its parent's peak, even past exec).
LAUNCHER = ("import os, subprocess, sys, time\n"
            "start = time.perf_counter()\n"
            "process = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
            "_pid, status, usage = os.wait4(process.pid, 0)\n"
            "print(time.perf_counter() - start, usage.ru_maxrss, os.waitstatus_to_exitcode(status))\n")


def measure(command: list[str]) -> tuple[float, int]:
    """Run ``command`` to its end; return (wall seconds, peak resident bytes of its process)."""
    done = subprocess.run([sys.executable, "-c", LAUNCHER, *command], capture_output=True, text=True, check=True)
    seconds, kilobytes, code = done.stdout.split()
    assert code == "0", f"{command[3:]} failed: {done.stderr[-2000:]}"
    return float(seconds), int(kilobytes) * 1024  # ru_maxrss is in kilobytes on Linux


def commands(root: Path, out: Path, shape: StoreShape) -> dict[str, list[str]]:
    """Return each measured command on the store at ``root``."""
    results = ["--results", str(root)]
    return {
        "report": [*HARNESS, "report", *results, "--out", str(out / "site")],
        "export csv": [*HARNESS, "export", *results, "--format", "csv", "--out", str(out / "records.csv")],
        "compare": [*HARNESS, "compare", shape.run_id(0, shape.runs - 2), shape.run_id(0, shape.runs - 1),
                    *results, "--fail-on", ""],
        "compare latest": [*HARNESS, "compare", "latest~1", "latest", *results, "--suite", "suite0",
                           "--fail-on", ""],
        "resume plan": [sys.executable, "-c", RESUME_PLAN, str(root)],
    }


@pytest.fixture(scope="module")
def figures() -> dict[tuple[str, int], dict[str, tuple[float, int]]]:
    return {}


@pytest.mark.parametrize(("layout", "rows"), STORES, ids=[f"{layout}-{rows}" for layout, rows in STORES])
def test_store_commands_by_size(layout, rows, tmp_path, figures, benchmark):
    start = time.perf_counter()
    shape = write_store(tmp_path / "results", rows, layout=layout)
    print(f"\n{layout} store of {shape.records:,} records ({shape.suites} suites × {shape.runs} runs × "
          f"{shape.cases} cases) written in {time.perf_counter() - start:.0f} s")
    taken: dict[str, tuple[float, int]] = {}

    def run_all() -> None:
        for name, command in commands(tmp_path / "results", tmp_path, shape).items():
            taken[name] = measure(command)
            print(f"  {name:<15} {taken[name][0]:7.1f} s  {taken[name][1] / GB:5.2f} GB", flush=True)

    benchmark.pedantic(run_all, rounds=1, iterations=1)
    figures[layout, rows] = taken
    benchmark.extra_info.update({f"{name} {unit}": value for name, (s, rss) in taken.items()
                                 for unit, value in (("s", s), ("peak GB", rss / GB))})
    if (layout, rows) == ("compacted", 1_000_000):
        print(f"  targets: report < 30 s ({taken['report'][0]:.1f} s), < 2 GB ({taken['report'][1] / GB:.2f} GB); "
              f"compare < 5 s ({taken['compare'][0]:.1f} s)")
        assert taken["report"][1] < 2 * GB
    if layout == "parts":
        print(f"  target: 100k part files report in < 4 GB ({taken['report'][1] / GB:.2f} GB)")
        assert taken["report"][1] < 4 * GB
    if ("compacted", 10_000) in figures and (layout, rows) == ("compacted", 1_000_000):
        small = figures["compacted", 10_000]
        print("  growth from 10k to 1M records, time ∝ records^k:")
        for name, (seconds, _rss) in taken.items():
            k = math.log(seconds / small[name][0]) / math.log(100)
            print(f"    {name:<15} k = {k:.2f}")
            benchmark.extra_info[f"{name} exponent"] = k
            assert k < 1.2, f"{name} grows faster than linearly with the store: k = {k:.2f}"
