"""The Parquet results store: round trip, schema, atomic writes, unreadable files, resume lookup."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest

from harness.case import Case
from harness.store import ResultStore, arrow_schema, read_results
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


def test_ok_case_ids_only_counts_ok_records_of_the_suite(tmp_path):
    store = ResultStore(tmp_path)
    ok, failed, other = Case("tiny_cnn"), Case("resnet18"), Case("mobilenetv2_100")
    store.append(make_record(ok), COLUMNS)
    store.append(make_record(failed, status="failed", error="boom"), COLUMNS)
    store.append(make_record(other, suite="another"), COLUMNS)
    assert store.ok_case_ids("demo") == {ok.case_id}


def test_empty_or_missing_directory_reads_as_empty_frame(tmp_path):
    assert read_results(tmp_path / "nothing").empty
