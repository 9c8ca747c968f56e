"""Reading in two steps (harness/store_reader.py): the few columns every record is needed for, then the chosen
records whole; only the folders of the suites and runs asked for are listed."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from harness.case import Case
from harness.compaction import compact_run
from harness.store import ResultStore
from harness.store_query import latest_per_case
from harness.store_reader import read_selected
from tests.records import COLUMNS, make_record

SAMPLED = COLUMNS | {"latency_ms_samples": "list<float64>"}


@pytest.fixture
def store(tmp_path):
    """Suite a: two runs of two cases (run 2 compacted; its resnet50 failed); suite b: one run."""
    store = ResultStore(tmp_path / "results")
    for minute, run in enumerate(("r1", "r2")):
        for model in ("resnet18", "resnet50"):
            failed = run == "r2" and model == "resnet50"
            store.append(make_record(Case(model), run_id=run, suite="a", minutes=minute,
                                     status="failed" if failed else "ok", error="boom" if failed else None,
                                     latency_ms_median=None if failed else 10.0 * (minute + 1),
                                     latency_ms_samples=None if failed else [float(minute), 1.0]), SAMPLED)
    store.write_manifest("a", "r2", {"suite": "a", "run_id": "r2", "finished_utc": "2026-12-06T00:00:00Z"})
    compact_run(store.run_dir("a", "r2"))
    store.append(make_record(Case("resnet18"), run_id="r3", suite="b", latency_ms_median=5.0), COLUMNS)
    return store


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["suite", "case_id"]).reset_index(drop=True)


def test_the_latest_records_are_the_same_as_from_a_whole_read_every_column_included(store):
    whole = _sorted(latest_per_case(store.read()))
    chosen = _sorted(read_selected(store))
    assert sorted(chosen.columns) == sorted(whole.columns)
    assert chosen["run_id"].tolist() == ["r2", "r1", "r3"]  # resnet50 of r2 failed: its ok record of r1 is latest
    for column in ("case_id", "status", "latency_ms_median", "timestamp_utc"):
        assert chosen[column].equals(whole[column]), column
    assert [None if s is None else list(s) for s in chosen["latency_ms_samples"]] == [[1.0, 1.0], [0.0, 1.0], None]
    every = read_selected(store, latest=False)
    assert len(every) == 5 and sorted(every.columns) == sorted(store.read().columns)


def test_only_the_folders_asked_for_are_listed_and_records_are_checked_by_value(store):
    (store.root / "b" / "r3" / "00099-junk.parquet").write_bytes(b"not parquet")  # would be warned about
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        only_a = read_selected(store, suites=["a"])
    assert set(only_a["suite"]) == {"a"} and len(only_a) == 2
    assert read_selected(store, suites=["a"], runs=["r1"])["run_id"].tolist() == ["r1", "r1"]
    assert read_selected(store, runs=["r9"]).empty and read_selected(store, suites=["c"]).empty


def test_the_chosen_records_whole_are_read_from_their_files_only(store, monkeypatch):
    r1_resnet50 = [p for p in (store.root / "a" / "r1").glob("*.parquet")
                   if pq.read_table(p, columns=["model"])["model"][0].as_py() == "resnet50"]
    opened: list[str] = []
    real = pq.ParquetFile
    monkeypatch.setattr(pq, "ParquetFile", lambda path, *a, **k: opened.append(str(path)) or real(path, *a, **k))
    chosen = read_selected(store, suites=["a"])
    assert sorted(chosen["run_id"]) == ["r1", "r2"]
    compacted = list((store.root / "a" / "r2").glob("*.parquet"))
    assert sorted(opened) == sorted(map(str, [*r1_resnet50, *compacted]))  # not r1's superseded resnet18
    again = read_selected(store, suites=["a"], runs=["r2"])
    assert sorted(again["status"]) == ["failed", "ok"]
    assert np.isnan(again.set_index("status").loc["failed", "latency_ms_median"])
