"""The GPU tier for a short slot (suites/gpu_quick*.yaml) and the timm parity check (tools/timm_parity.py): what
runs without a GPU — the suites' cases, the parity script's commands, parsing and both sides on the CPU."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.suite import load_suite

TOOL = Path(__file__).resolve().parent.parent / "tools" / "timm_parity.py"


def _tool():
    spec = importlib.util.spec_from_file_location("timm_parity", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_quick_suites_hold_the_matrix_asked_for():
    quick, graphs = load_suite("suites/gpu_quick.yaml"), load_suite("suites/gpu_quick_graphs.yaml")
    models = {"resnet50", "mobilenetv2_100", "shufflenet_v2_x1_0", "darknet53"}
    assert {(c.model, c.batch, c.dtype) for c in quick.cases} == {
        (m, b, d) for m in models for b in (1, 64, 256) for d in ("fp32", "bf16")}
    assert all(c.device == "cuda" and c.channels_last for c in quick.cases + graphs.cases)
    assert set(quick.metrics) == {"complexity", "latency", "memory", "energy"}
    assert {(c.model, c.batch, c.dtype) for c in graphs.cases} == {(m, 1, d) for m in models for d in ("fp32", "bf16")}
    assert graphs.metrics["latency"].cuda_graph and not quick.metrics["latency"].cuda_graph


def test_parity_reads_each_sides_throughput():
    tool = _tool()
    assert tool.throughput("harness", json.dumps({"throughput_samples_per_s": 812.5})) == 812.5
    printed = "Benchmarking...\n--result\n" + json.dumps({"model": "resnet50", "infer_samples_per_sec": 900.0})
    assert tool.throughput("timm", printed) == 900.0
    assert tool.throughput("timm", json.dumps({"samples_per_sec": 10.0})) == 10.0
    with pytest.raises(ValueError, match="out of memory"):
        tool.throughput("timm", "--result\n" + json.dumps({"model": "resnet50", "error": "out of memory"}))


def test_parity_runs_a_timm_checkouts_benchmark_script_interleaved(tmp_path):
    repo = tmp_path / "pytorch-image-models"
    repo.mkdir()
    calls = tmp_path / "calls.txt"
    (repo / "benchmark.py").write_text(
        "import json, sys\n"
        f"open({str(calls)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
        "print('--result'); print(json.dumps({'model': 'tiny_cnn', 'infer_samples_per_sec': 100.0}))\n")
    out = tmp_path / "parity.json"
    done = subprocess.run([sys.executable, str(TOOL), "--model", "tiny_cnn", "--batch", "2", "--dtype", "fp32",
                           "--device", "cpu", "--rounds", "2", "--timm-repo", str(repo), "--json", str(out)],
                          capture_output=True, text=True, check=True)
    assert "ratio harness/timm" in done.stdout
    assert calls.read_text().splitlines() == [
        "--model tiny_cnn --bench inference -b 2 --precision float32 --num-warm-iter 10 --num-bench-iter 40 "
        "--channels-last"] * 2
    result = json.loads(out.read_text())
    assert result["medians"]["timm"] == 100.0 and result["medians"]["harness"] > 0
    assert result["ratio"] == pytest.approx(result["medians"]["harness"] / 100.0)


def test_the_timm_protocol_loop_runs_on_the_cpu():
    done = subprocess.run([sys.executable, str(TOOL), "loop", "--model", "resnet18", "--batch", "1", "--dtype",
                           "fp32", "--device", "cpu", "--warm-iter", "1", "--bench-iter", "2"],
                          capture_output=True, text=True, check=True)
    assert json.loads(done.stdout)["samples_per_sec"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_parity_says_no_cuda_device(tmp_path):
    done = subprocess.run([sys.executable, str(TOOL)], capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "no CUDA device" in done.stderr
    missing = subprocess.run([sys.executable, str(TOOL), "--device", "cpu", "--timm-repo", str(tmp_path)],
                             capture_output=True, text=True, check=False)
    assert missing.returncode == 2 and "no benchmark.py there" in missing.stderr
