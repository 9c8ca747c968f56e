"""The `harness` command: help, validate, list, env, run + report through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness.cli import build_parser, main

COMMANDS = ["run", "validate", "report", "list", "env", "export", "profile", "bench", "compare", "coco-eval"]


@pytest.mark.parametrize("command", [[], *[[c] for c in COMMANDS]])
def test_help_explains_every_command(command, capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args([*command, "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "usage: harness" in text
    if not command:
        assert all(c in text for c in COMMANDS) and "exit status" in text


def test_validate_reports_problems_on_stderr_with_exit_2(write_suite):
    path = write_suite("matrix:\n  model: [resnet18]\n  batch: [one]\n")
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "validate", str(path)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert f"{path}:3: matrix.batch[0]: expected an integer, got 'one'" in proc.stderr


def test_validate_says_unknown_models_in_the_same_pass_as_schema_errors(write_suite, capsys):
    path = write_suite("matrix:\n  model: [resnet18, resnet5O]\n  batch: [one]\ninclude:\n"
                       "  - {model: mobilenet_v9, batch: 2}\nmetrics: [latancy]\n")
    assert main(["validate", str(path)]) == 2
    lines = [line.removeprefix("error: ") for line in capsys.readouterr().err.splitlines()]
    # the shape errors first (said before torch is imported), then the unknown models, each in the file's order
    assert [line.split(": ")[0] for line in lines] == [f"{path}:{n}" for n in (3, 6, 2, 5)]
    assert "matrix.batch[0]: expected an integer, got 'one'" in lines[0]
    assert "metrics[0]: unknown metric 'latancy'" in lines[1]
    assert "matrix.model[1]: unknown model 'resnet5O' (did you mean 'resnet50'?)" in lines[2]
    assert "include[0].model: unknown model 'mobilenet_v9'" in lines[3]
    assert main(["run", str(path), "--results", str(path.parent / "results")]) == 2  # run says the shape errors
    assert "unknown model" not in capsys.readouterr().err  # first, without importing the zoo


def test_validate_accepts_the_shipped_suites(capsys):
    import glob

    assert main(["validate", *sorted(glob.glob("suites/*.yaml"))]) == 0
    assert "smoke.yaml: ok" in capsys.readouterr().out


def test_list_models_includes_zoo_and_timm(capsys):
    assert main(["list", "models", "*tiny_cnn*"]) == 0
    assert "tiny_cnn\ttesting" in capsys.readouterr().out
    assert main(["list", "models", "resnet1?"]) == 0
    assert "resnet18\ttimm" in capsys.readouterr().out
    assert main(["list", "models", "no-such-model*"]) == 2


def test_env_json_has_the_recorded_keys(capsys):
    assert main(["env", "--json"]) == 0
    env = json.loads(capsys.readouterr().out)
    assert {"env_torch", "env_python", "env_cpu", "env_hostname", "env_git_sha"} <= set(env)


def test_run_then_report_through_the_cli(write_suite, tmp_path, capsys):
    path = write_suite("name: cli\nmatrix:\n  model: [tiny_cnn]\n  resolution: [32]\nmetrics:\n"
                       "  latency: {min_repeats: 3, min_time_s: 0.05, max_time_s: 0.3}\n")
    results, reports = tmp_path / "results", tmp_path / "reports"
    assert main(["run", str(path), "--results", str(results), "--report", str(reports), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "cli: 1 ok" in out and (reports / "index.html").exists()
    assert "tiny_cnn" in (reports / "index.html").read_text()
    assert main(["run", str(path), "--results", str(results), "--resume", "--no-progress",
                 "--summary-json", str(tmp_path / "summary.json")]) == 0
    assert "cli: 1 already recorded (resume)" in capsys.readouterr().out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary[0]["suite"] == "cli" and summary[0]["skipped_by_resume"] == 1 and summary[0]["counts"] == {}


def test_run_options_are_checked_before_anything_runs(write_suite, capsys):
    path = str(write_suite("matrix:\n  model: [tiny_cnn]\n"))
    assert main(["run", path, "--shard", "3/2"]) == 2
    assert "--shard '3/2': I must be between 1 and N" in capsys.readouterr().err
    assert main(["run", path, "--address", "auto"]) == 2
    assert "--address is for --executor ray" in capsys.readouterr().err
    assert main(["run", path, "--cases", "nope"]) == 2
    assert "--cases: no case nope in the suite(s)" in capsys.readouterr().err


def test_report_without_results_is_a_clear_error(tmp_path, capsys):
    assert main(["report", "--results", str(tmp_path / "none"), "--out", str(tmp_path / "r")]) == 2
    assert "no results directory" in capsys.readouterr().err


def test_report_run_tables_takes_a_count_or_all(tmp_path, capsys):
    from harness.cli.report import run_tables_count

    assert run_tables_count("0") == 0 and run_tables_count("12") == 12 and run_tables_count("all") is None
    with pytest.raises(SystemExit) as exit_:
        main(["report", "--run-tables", "many", "--results", str(tmp_path)])
    assert exit_.value.code == 2 and "expected a number of runs or 'all', got 'many'" in capsys.readouterr().err


def test_report_says_compacting_is_faster_when_many_part_files_are_left(tmp_path, capsys, monkeypatch):
    from harness.case import Case
    from harness.cli import report
    from harness.compaction import compact_store
    from harness.store import ResultStore
    from tests.records import COLUMNS, make_record

    monkeypatch.setattr(report, "MANY_PART_FILES", 3)
    store = ResultStore(tmp_path / "results")
    for batch in (1, 2, 3):
        store.append(make_record(Case("resnet18", batch=batch)), COLUMNS)
    command = ["report", "--results", str(store.root), "--out", str(tmp_path / "site")]
    assert main(command) == 0
    assert "3 record files of runs not compacted" in capsys.readouterr().err
    compact_store(store.root, force=True)
    assert main(command) == 0 and "not compacted" not in capsys.readouterr().err


def test_profile_json_has_exact_counts_of_a_small_model(capsys):
    assert main(["profile", "tiny_cnn", "--input", "1x3x32x32", "--json"]) == 0
    prof = json.loads(capsys.readouterr().out)
    # conv 3->8, 3x3, 32x32 output: 8*32*32*27 MACs; fc 8->10: 80 MACs
    assert prof["macs"] == 8 * 32 * 32 * 27 + 80
    assert prof["params"] == 3 * 8 * 9 + 2 * 8 + 8 * 10 + 10
    assert {"params", "macs", "flops", "mac_bytes", "coverage"} <= set(prof) and prof["coverage"] == 1.0
    assert sum(row["macs"] for row in prof["breakdown"]) == prof["macs"]


def test_profile_table_by_op_and_bad_arguments(capsys):
    assert main(["profile", "tiny_cnn", "--input", "2x3x16x16", "--by", "op"]) == 0
    out = capsys.readouterr().out
    assert "aten.convolution" in out and "coverage 100.0%" in out
    assert main(["profile", "no_such_model"]) == 2
    with pytest.raises(SystemExit) as info:
        main(["profile", "tiny_cnn", "--input", "3x224"])
    assert info.value.code == 2


def test_run_can_take_only_some_of_the_suite_metrics(write_suite, tmp_path, capsys):
    path = write_suite("matrix: {model: [tiny_cnn], resolution: [32]}\nmetrics: [complexity, latency]\n")
    assert main(["run", str(path), "--results", str(tmp_path), "--metrics", "nope", "--no-progress"]) == 2
    assert "takes no metric 'nope'" in capsys.readouterr().err
    assert main(["run", str(path), "--results", str(tmp_path), "--metrics", "complexity", "--no-progress"]) == 0
    from harness.store import read_results

    row = read_results(tmp_path).iloc[0]
    assert row["macs"] == 8 * 32 * 32 * 27 + 80 and row["metrics_taken"] == "complexity"
    assert row["latency_ms_median"] != row["latency_ms_median"]  # NaN: latency was not taken


def test_bench_json_has_latency_throughput_and_samples(capsys):
    args = ["bench", "tiny_cnn", "--input", "3x16x16", "--batch", "2", "--min-time", "0.05", "--max-time", "0.3",
            "--json"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"latency_ms_median", "latency_ms_iqr", "throughput_samples_per_s", "latency_ms_samples"} <= set(result)
    assert not {"throughput", "samples"} & set(result)  # one key per value
    assert result["throughput_samples_per_s"] == pytest.approx(2 / (result["latency_ms_median"] / 1e3))
    assert len(result["latency_ms_samples"]) == result["latency_repeats"] and result["batch"] == 2


def test_bench_reports_a_case_that_cannot_run(capsys):
    assert main(["bench", "tiny_cnn", "--precision", "autocast"]) == 1
    assert "skipped: precision autocast needs dtype fp16 or bf16" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "tiny_cnn", "--input", "2x3x16x16"])


def test_profile_counts_the_swapped_norm(capsys):
    counts = {}
    for norm in ("native", "gn", "sn"):
        assert main(["profile", "tiny_cnn", "--input", "1x3x16x16", "--norm", norm, "--json"]) == 0
        counts[norm] = json.loads(capsys.readouterr().out)
    assert counts["gn"]["norm"] == "gn"
    assert counts["gn"]["macs"] == counts["native"]["macs"]  # norms add no multiply-accumulates ...
    assert counts["gn"]["flops"] != counts["native"]["flops"]  # ... but their own arithmetic (eval BN vs GN)
    assert counts["sn"]["params"] == counts["native"]["params"] + 6  # SN's two 3-way mixing weights
    assert counts["sn"]["coverage"] == 1.0
    with pytest.raises(SystemExit):
        main(["profile", "tiny_cnn", "--norm", "batchnorm"])


def test_list_models_takes_a_part_of_the_name_or_a_pattern(capsys):
    assert main(["list", "models", "res2net50_26"]) == 0
    names = [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()]
    assert "res2net50_26w_4s" in names and all("res2net50_26" in n for n in names)
    assert main(["list", "models", "resnet5?"]) == 0  # a wildcard: the whole name must match
    assert [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()] == ["resnet50"]


def test_a_closed_pipe_ends_the_command_quietly():
    """`harness list models | head -1`: the reader leaves while harness writes; no traceback, exit status 1."""
    import fcntl
    import os

    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, 1031, 4096)  # F_SETPIPE_SZ: a 4 KiB pipe, so the ~40 KB list blocks on it
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "list", "models"], stdout=write_end,
                            stderr=subprocess.PIPE)
    os.close(write_end)
    assert os.read(read_end, 64)
    os.close(read_end)
    _, err = proc.communicate(timeout=120)
    assert b"Traceback" not in err and proc.returncode == 1, err.decode()


def test_profile_lists_the_top_20_with_full_names(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")  # a narrow terminal: the widest names must fold, not be cut
    assert main(["profile", "resnet18"]) == 0
    out = capsys.readouterr().out
    assert "(the 20 modules with most MACs; --top 0 lists all)" in out
    names = "".join(line.split("│")[1].strip() for line in out.splitlines() if line.startswith("│"))
    assert "ResNet.layer4.0.downsample.0" in names and "…" not in out  # long names folded over lines, not cut
