"""Building a case: precision, layout, quantization and compilation axes, and what cannot run here."""

from __future__ import annotations

import pytest
import torch

from harness.case import Case
from harness.errors import SkipCase
from harness.metrics import latency
from harness.zoo.build import Autocast, build_inputs, build_model

FAST = latency.Options(min_repeats=3, min_time_s=0.02, max_time_s=0.3, warmup_max_s=0.2, timer_overhead_samples=10)


def test_convert_changes_weights_and_input_dtype():
    case = Case("tiny_cnn", resolution=16, dtype="bf16")
    model, x = build_model(case), build_inputs(case)
    assert x.dtype == torch.bfloat16 and next(model.parameters()).dtype == torch.bfloat16


def test_autocast_keeps_fp32_weights_and_computes_in_low_precision():
    case = Case("tiny_cnn", resolution=16, dtype="bf16", precision="autocast")
    model, x = build_model(case), build_inputs(case)
    assert isinstance(model, Autocast) and x.dtype == torch.float32
    assert next(model.parameters()).dtype == torch.float32
    assert model(x).dtype == torch.bfloat16


def test_channels_last_applies_to_model_and_input():
    case = Case("tiny_cnn", resolution=16, channels_last=True)
    model, x = build_model(case), build_inputs(case)
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert model.conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_inputs_are_seeded():
    assert torch.equal(build_inputs(Case("tiny_cnn", resolution=8)), build_inputs(Case("tiny_cnn", resolution=8)))


@pytest.mark.parametrize(("fields", "reason"), [
    ({"quant": "int8", "dtype": "bf16"}, "needs dtype=fp32, not bf16"),
    ({"quant": "int8", "mode": "train"}, "needs mode=inference, not train"),
    ({"precision": "autocast"}, "needs dtype fp16 or bf16"),
])
def test_combinations_that_cannot_run_are_skipped_with_the_reason(fields, reason):
    with pytest.raises(SkipCase, match=reason):
        build_model(Case("tiny_cnn", **fields))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the skip on machines without CUDA")
def test_cuda_without_a_device_is_skipped():
    with pytest.raises(SkipCase, match="no CUDA device"):
        build_model(Case("tiny_cnn", device="cuda", quant="int8"))


def test_training_step_is_timed_in_phases_and_leaves_eval_mode():
    case = Case("tiny_cnn", resolution=16, batch=4, mode="train")
    model, x = build_model(case), build_inputs(case)
    before = model.conv.weight.detach().clone()
    out = latency.measure(model, x, case, FAST)
    phases = [out[f"latency_ms_{p}_median"] for p in ("forward", "backward", "optimizer")]
    assert all(p > 0 for p in phases)
    assert max(phases) <= max(out["latency_ms_samples"])
    assert not torch.equal(before, model.conv.weight)  # the optimizer really stepped
    assert not model.training


def test_timer_overhead_and_protocol_are_recorded():
    case = Case("tiny_cnn", resolution=16)
    out = latency.measure(build_model(case), build_inputs(case), case, FAST)
    assert 0 < out["latency_timer_overhead_ms"] < out["latency_ms_median"]
    assert out["latency_threads"] == torch.get_num_threads() and out["latency_timer"] == "perf_counter_ns"
    assert out["latency_cuda_graph"] is None and out["latency_cudnn_benchmark"] is None


@pytest.mark.slow
def test_compiled_model_runs_and_is_counted_uncompiled():
    from harness.metrics import complexity

    case = Case("tiny_cnn", resolution=16, compile="default")
    model, x = build_model(case), build_inputs(case)
    counted = complexity.measure(model, x, case, complexity.Options())
    assert counted["macs"] == 8 * 16 * 16 * 27 + 80 and counted["complexity_coverage"] == 1.0
    assert latency.measure(model, x, case, FAST)["latency_ms_median"] > 0
