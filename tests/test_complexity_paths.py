"""The meta, fake and real counting paths give the same counts, on transformers as on convolutions.

On meta tensors torch takes other kernels than on a real device: scaled_dot_product_attention runs its math
backend (q·kᵀ, ``_safe_softmax``, ·v, the scores written to memory) instead of the fused kernel, and
nn.MultiheadAttention and nn.TransformerEncoderLayer skip their fused fast paths. The meta count refuses those
models, so the default count falls back to fake tensors, which see the device's kernels.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from harness.metrics import complexity
from harness.metrics.complexity import ComplexityCount, CountError, count

#: timm's smallest variants at small inputs: (name, constructor arguments, input side in pixels).
TIMM_MODELS: dict[str, tuple[dict[str, object], int]] = {
    "vit_tiny_patch16_224": ({"img_size": 32}, 32),
    "swin_tiny_patch4_window7_224": ({"img_size": 56}, 56),
    "convnext_atto": ({}, 32),
    "mobilenetv3_small_050": ({}, 32),  # eval batch norms, in-place hard-swish, squeeze-excite
}


@functools.cache
def timm_model(name: str) -> tuple[nn.Module, torch.Tensor]:
    """Return the timm model ``name`` (random weights, eval mode) and an input for it, built once."""
    kwargs, side = TIMM_MODELS[name]
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, **kwargs).eval(), torch.randn(1, 3, side, side)


@functools.cache
def real_count(name: str) -> ComplexityCount:
    """Return the count of ``name`` on real tensors (the reference), taken once."""
    return count(*timm_model(name), method="real")


def totals(result: ComplexityCount) -> tuple[int, int, int, int, float]:
    """Return (macs, flops, mac_bytes, activations, coverage) of a count."""
    return (result.total.macs, result.total.flops, result.total.mac_bytes, result.total.activations,
            result.coverage)


@pytest.mark.parametrize("name", TIMM_MODELS)
def test_real_count_covers_every_op(name: str) -> None:
    result = real_count(name)
    assert result.uncounted == {}
    assert result.coverage == 1.0
    assert result.total.macs > 0


@pytest.mark.parametrize("name", TIMM_MODELS)
def test_fake_count_equals_real_count(name: str) -> None:
    assert totals(count(*timm_model(name), method="fake")) == totals(real_count(name))


@pytest.mark.parametrize(("name", "method"), [("vit_tiny_patch16_224", "meta"),
                                              ("swin_tiny_patch4_window7_224", "meta"),
                                              ("convnext_atto", "meta"),
                                              ("mobilenetv3_small_050", "meta")])
def test_default_count_equals_real_count(name: str, method: str) -> None:
    """Swin (attention written out as matmuls and softmax), ConvNeXt, the ViT (scaled_dot_product_attention, given
    the CPU's fused kernel on meta tensors as the CPU would choose it) and MobileNetV3 (eval batch norms, whose meta
    kernel alone returns saved statistics) are counted on meta tensors, with the same counts as on real ones."""
    result = count(*timm_model(name))
    assert result.method == method
    assert totals(result) == totals(real_count(name))


def test_meta_count_refuses_the_math_attention_backend_off_the_cpu(monkeypatch) -> None:
    """A model on a GPU would take a fused kernel its meta tensors cannot ask for: the meta count stops at attention's
    math backend (the default count then uses fake tensors). No GPU here: the CPU is made to look like another
    device."""
    monkeypatch.setattr(complexity, "CPU_LIKE", frozenset())
    with pytest.raises(RuntimeError, match=r"scaled_dot_product_attention runs its math backend on meta tensors"):
        count(*timm_model("vit_tiny_patch16_224"), method="meta")


def test_a_model_built_on_the_meta_device_counts_as_on_the_cpu() -> None:
    """The zoo builds models on the meta device (no weights): their counts are those of the same model on the CPU."""
    on_cpu = count(*timm_model("vit_tiny_patch16_224"))
    kwargs, side = TIMM_MODELS["vit_tiny_patch16_224"]
    with torch.device("meta"):
        model = timm.create_model("vit_tiny_patch16_224", pretrained=False, **kwargs).eval()
    on_meta = count(model, torch.empty(1, 3, side, side, device="meta"))
    assert on_meta.method == on_cpu.method == "meta"
    assert (on_meta.total, on_meta.by_op, on_meta.calls) == (on_cpu.total, on_cpu.by_op, on_cpu.calls)


class Attention(nn.Module):
    """F.scaled_dot_product_attention with q = k = v = x."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(x, x, x)


def test_math_attention_backend_is_counted() -> None:
    """Where the device runs the math backend, its ``_safe_softmax`` counts as softmax: 5 flops per score."""
    b, h, s, d = 2, 3, 10, 8
    scores = b * h * s * s
    with sdpa_kernel(SDPBackend.MATH):
        result = count(Attention().eval(), torch.randn(b, h, s, d), method="real")
    assert result.calls["aten._safe_softmax"] == 1
    assert result.coverage == 1.0
    assert result.by_op["aten._safe_softmax"].flops == 5 * scores
    assert result.by_op["aten._safe_softmax"].mac_bytes == 2 * 4 * scores
    assert result.total.macs == 2 * scores * d


class SelfAttention(nn.Module):
    """nn.MultiheadAttention on its input (q = k = v), batch first: its fast path applies in eval mode."""

    def __init__(self, need_weights: bool) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(32, 4, batch_first=True)
        self.need_weights = need_weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(x, x, x, need_weights=self.need_weights)[0]


def _encoder_layer(norm_first: bool, activation: str) -> nn.Module:
    """Return an nn.TransformerEncoderLayer (E 32, 4 heads, FFN 64), eval mode."""
    return nn.TransformerEncoderLayer(32, 4, 64, activation=activation, batch_first=True, norm_first=norm_first).eval()


TRANSFORMER_MODULES: dict[str, Callable[[], nn.Module]] = {
    "mha": lambda: SelfAttention(need_weights=False).eval(),
    "mha_weights": lambda: SelfAttention(need_weights=True).eval(),
    "encoder_relu": lambda: _encoder_layer(norm_first=False, activation="relu"),
    "encoder_gelu_norm_first": lambda: _encoder_layer(norm_first=True, activation="gelu"),
}


@pytest.mark.parametrize("name", TRANSFORMER_MODULES)
def test_fused_transformer_fast_paths_count_like_the_device(name: str) -> None:
    """The default count falls back to fake tensors, which take the fast path as the CPU does, and counts
    every op of it."""
    torch.manual_seed(0)
    model, x = TRANSFORMER_MODULES[name](), torch.randn(2, 10, 32)
    with pytest.raises(RuntimeError, match=r"nn\.MultiheadAttention takes its fused fast path"):
        count(model, x, method="meta")
    result = count(model, x)
    assert result.method == "fake"
    assert totals(result) == totals(count(model, x, method="real"))
    assert result.coverage == 1.0


@pytest.mark.parametrize("name", ["mha", "encoder_relu", "encoder_gelu_norm_first"])
def test_fused_transformer_fast_paths_equal_their_parts(name: str) -> None:
    """The formulas of the fused fast paths give the macs, flops and activations of the same layer run op by
    op (fast path disabled: in-projection, fused attention, out-projection, residual adds, layer norms, FFN)."""
    torch.manual_seed(0)
    model, x = TRANSFORMER_MODULES[name](), torch.randn(2, 10, 32)
    fused = count(model, x, method="real")
    assert len(fused.calls) == 1  # one fused op
    fast_path = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        parts = count(model, x, method="real")
    finally:
        torch.backends.mha.set_fastpath_enabled(fast_path)
    assert len(parts.calls) > 1
    assert totals(fused)[:2] == totals(parts)[:2]
    assert fused.total.activations == parts.total.activations


class _LatentPool(nn.Module):
    """An attention-pooling head's pattern (SigLIP's ``AttentionPoolLatent``): a learned query, expanded to the batch
    under no_grad in an eval count, enters a submodule."""

    def __init__(self) -> None:
        super().__init__()
        self.latent = nn.Parameter(torch.zeros(1, 1, 8))
        self.q = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.q(self.latent.expand(x.shape[0], -1, -1)).squeeze(1) + x


@pytest.mark.parametrize("method", ["meta", "fake", "real"])
def test_a_parameter_expanded_into_a_submodule_is_counted_and_its_grad_flag_kept(method):
    model = _LatentPool()
    model.q.bias.requires_grad_(False)  # flags as the model had them are restored, frozen ones too
    result = count(model, torch.zeros(3, 8), method=method)
    assert result.method == method and result.total.macs == 3 * 8 * 8
    assert [p.requires_grad for p in model.parameters()] == [True, True, False]
    trained = count(model, torch.zeros(3, 8), method=method, training=True)
    assert trained.total.macs > result.total.macs  # the backward is counted too


class _Raiser(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise ValueError("no such shape\nsecond line of the message")


def test_a_count_that_cannot_finish_says_in_one_line_which_module_and_op_it_stopped_at():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), _Raiser())
    with pytest.raises(CountError) as raised:
        count(model, torch.zeros(1, 3, 8, 8), method="real")
    message = str(raised.value)
    assert "\n" not in message and message.startswith("ValueError: no such shape (in module ")
    assert raised.value.where == "module Sequential.1, after op aten.convolution"


def test_profile_says_where_a_count_stopped_in_one_line(capsys):
    from harness.cli import main

    assert main(["profile", "fault_raise"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: counting fault_raise stopped: RuntimeError: fault_raise: this model raises on "
                          "purpose (in module ") and "Traceback" not in err
