"""The CUDA paths on a real NVIDIA GPU: event timing, allocator peaks, NVML energy, CUDA graphs, a detector on the
GPU against the CPU, the runner's failure classes (out-of-memory retry, illegal memory access, NaN) and SyncBN over
NCCL. Marked ``gpu`` and run by ``tox -e gpu``, which refuses to start without a GPU; off the default run, where
there is none.
"""

from __future__ import annotations

import time

import pytest
import torch

from harness.case import Case
from harness.metrics import energy, latency, memory
from harness.runner import run_suite
from harness.runner.worker import release_cuda_memory
from harness.store import ResultStore
from harness.suite import load_suite
from harness.zoo.build import build_inputs, build_model

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (run by tox -e gpu)"),
]

FAST_LATENCY = {"warmup_min": 2, "warmup_max_s": 1, "min_repeats": 5, "min_time_s": 0.2, "max_time_s": 1}


def test_cuda_event_timer_agrees_with_the_synchronised_wall_clock():
    a = torch.randn(4096, 4096, device="cuda")

    def work() -> None:
        for _ in range(20):
            a @ a

    work()
    events_ms = latency.cuda_time_ms(work, 5) / 5  # the timer returns the time of all the calls
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(5):
        work()
    torch.cuda.synchronize()
    wall_ms = (time.perf_counter() - start) * 1e3 / 5
    print(f"events {events_ms:.2f} ms, wall {wall_ms:.2f} ms per call")
    assert 0.8 < events_ms / wall_ms < 1.2


class _Scratch(torch.nn.Module):
    """A forward that holds a 256 MiB scratch tensor, so the allocator's peak is known."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scratch = torch.ones(64 << 20, device=x.device)  # 64 Mi floats = 256 MiB
        return x + scratch[0]


def test_cuda_peak_memory_sees_a_known_allocation():
    release_cuda_memory()  # what earlier tests left (cuBLAS workspaces) counts as live, as in a worker between cases
    before = torch.cuda.memory_allocated()
    case = Case("scratch", resolution=8, device="cuda")
    out = memory.measure(_Scratch().cuda(), torch.zeros(1, 3, 8, 8, device="cuda"), case, memory.Options())
    assert 256 << 20 <= out["mem_peak_cuda_bytes"] - before < (256 << 20) + (1 << 20), (out, before)


def test_nvml_energy_of_a_real_model_is_positive_and_plausible():
    case = Case("resnet18", batch=32, device="cuda")
    out = energy.measure(build_model(case), build_inputs(case), case, energy.Options(min_window_s=0.5))
    print(out)
    assert out["energy_status"].startswith("ok") and out["energy_j_per_batch"] > 0
    assert 20 < out["energy_power_w_mean"] < 1500
    assert out["energy_j_per_image"] == pytest.approx(out["energy_j_per_batch"] / 32)


def test_cuda_graph_replay_is_timed_and_faster_than_eager_for_a_small_model():
    case = Case("tiny_cnn", resolution=32, device="cuda")
    model, inputs = build_model(case), build_inputs(case)
    eager = latency.measure(model, inputs, case, latency.Options(**FAST_LATENCY))
    graph = latency.measure(model, inputs, case, latency.Options(**FAST_LATENCY, cuda_graph=True))
    print(f"eager {eager['latency_ms_median']:.4f} ms, graph {graph['latency_ms_median']:.4f} ms")
    assert graph["latency_cuda_graph"] is True and graph["latency_timer"] == eager["latency_timer"]
    assert graph["latency_ms_median"] < eager["latency_ms_median"]  # launch overhead is what a graph removes


def test_a_detector_on_cuda_gives_the_cpu_outputs():
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    case = Case("centernet_resnet18", resolution=128, batch=2, model_kwargs=(("num_classes", 10),))
    torch.manual_seed(0)
    model = build_model(case).eval()
    images = build_inputs(case)
    with torch.inference_mode():
        on_cpu = model(images)
        on_gpu = model.cuda()(images.cuda())
    cpu_leaves = torch.utils._pytree.tree_leaves(on_cpu)
    gpu_leaves = torch.utils._pytree.tree_leaves(on_gpu)
    assert len(cpu_leaves) == len(gpu_leaves) > 0
    for c, g in zip(cpu_leaves, gpu_leaves, strict=True):
        torch.testing.assert_close(g.cpu(), c, rtol=1e-3, atol=1e-3)


def test_the_runner_classifies_cuda_failures_and_goes_on(write_suite, tmp_path):
    suite = load_suite(write_suite(
        "defaults: {device: cuda, resolution: 32}\n"
        "matrix:\n  model: [tiny_cnn]\n"
        "include:\n"
        "  - {model: fault_oom, batch: 8, model_kwargs: {fits_batch: 2}}\n"
        "  - {model: fault_illegal_memory}\n"
        "  - {model: tiny_cnn, batch: 2}\n"
        "  - {model: fault_nan}\n"
        "metrics:\n  latency: {warmup_min: 1, warmup_max_s: 0.2, min_repeats: 3, min_time_s: 0.05, max_time_s: 0.3}\n"
        "timeout_s: 120\n"
    ))
    summary = run_suite(suite, tmp_path, show_progress=False)
    frame = ResultStore(tmp_path).read().set_index("model")
    print(frame[["status", "failure_class", "batch", "batch_used", "oom_retries", "error"]].to_string())
    assert summary.failure_classes == {"illegal_memory_access": 1, "nonfinite": 1}
    oom = frame.loc["fault_oom"]
    assert (oom["status"], oom["batch"], oom["batch_used"], oom["oom_retries"]) == ("ok", 8, 2, 2)
    assert frame.loc["fault_illegal_memory", "failure_class"] == "illegal_memory_access"
    assert (frame.loc["tiny_cnn", "status"] == "ok").all()  # the case after the lost CUDA context ran in a new worker
    assert frame.loc["fault_nan", "failure_class"] == "nonfinite"


def test_syncbn_runs_over_nccl_and_a_group_larger_than_the_gpus_is_skipped(write_suite, tmp_path):
    gpus = torch.cuda.device_count()
    suite = load_suite(write_suite(
        "defaults: {device: cuda, model: resnet18, resolution: 64, batch: 8, norm: syncbn, mode: train}\n"
        f"matrix:\n  world_size: [1, {gpus + 1}]\n"
        "metrics:\n  latency: {warmup_min: 1, warmup_max_s: 1, min_repeats: 3, min_time_s: 0.1, max_time_s: 1}\n"
        "timeout_s: 300\n"
    ))
    summary = run_suite(suite, tmp_path, show_progress=False)
    frame = ResultStore(tmp_path).read().set_index("world_size")
    print(frame[["status", "error", "latency_ms_median"]].to_string())
    assert summary.counts == {"ok": 1, "skipped": 1}
    assert frame.loc[1, "latency_ms_median"] > 0
    assert f"needs {gpus + 1} CUDA device(s)" in frame.loc[gpus + 1, "error"]
