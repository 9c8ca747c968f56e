"""Quantization-aware training to int8 (Jacob et al. 2018, "Quantization and Training of Neural Networks for
Efficient Integer-Arithmetic-Only Inference").

The network fine-tunes with its weights and activations fake-quantized — rounded to the int8 grid in the forward,
the rounding passed through unchanged in the backward (straight-through estimator) — so that it learns weights that
survive the rounding; then it is converted to real int8 kernels. Built on torch.ao FX graph mode like the
post-training path :mod:`harness.zoo.quantize` (same fusion rewrite, backend, int8 kernels, reasons and limits):

- ``apply``: timm's ``BatchNormAct2d`` is split (:func:`~harness.zoo.quantize.rewrite_for_fusion`), the model put in
  train mode and ``prepare_qat_fx`` run with the backend's default QAT mapping (``get_default_qat_qconfig_mapping``):
  conv + BN (+ ReLU) become QAT modules that fold BN into the fake-quantized weight in the forward (the paper's
  §3.2), linear layers QAT linears, and every activation gets a fake-quant whose range is a moving average of the
  observed min/max (the paper's §3.1). Activations are per-tensor uint8, 7-bit on x86/fbgemm (``reduce_range``: the
  same choice and reason as :data:`~harness.zoo.quantize.BACKEND_REDUCE_RANGE`, the AVX2 kernels saturate
  otherwise); weights per-channel symmetric int8 (the backend's default; the paper's are per-tensor). With
  ``finetune`` the fake-quantized model is returned, in train mode, for the harness's SGD fine-tuning; without
  (cost metrics, random weights) the calibration images run through it in eval mode, observers and fake-quant on,
  which sets the ranges and changes no weight.
- ``finish``: eval mode, ``convert_fx``: BN folded with its running statistics, weights packed, ops replaced by the
  backend's int8 kernels (``quantized::conv2d(_relu)``, ``quantized::linear``, ``quantized::add(_relu)``); the result
  takes and returns fp32 tensors, like :func:`~harness.zoo.quantize.quantize_int8`'s. It computes what the
  fake-quantized model computed, except where an activation exceeds its learned range: fake-quant clips it at the
  7-bit top, the int8 kernels' uint8 outputs only at 255 (``reduce_range`` narrows the observed range only).

Choices within torch's defaults, and why (measured with torch 2.14.1):

- The mapping's version 0 (``FakeQuantize`` + ``MovingAverage*MinMaxObserver``) rather than its default version 1
  (the fused ``FusedMovingAvgObsFakeQuantize``): the fused kernel computes a symmetric weight scale as
  max(|min|/128, max/127) in training while ``convert_fx`` computes max(|min|, max)/127.5 (pytorch/pytorch#88800),
  so the int8 weights lie on another grid than the one trained — on one linear layer the int8 output differed
  from the fake-quantized one in 11% of its elements (SQNR 37 dB); with version 0 they are equal. It costs ~5-15%
  more time per training step.
- BN folding by torch's exact variant (``_forward_slow``: the weight folded with the running σ, the output rescaled
  by σ_running/σ_batch in training; Krishnamoorthi 2018, arXiv:1806.08342) rather than its default approximation,
  which divides by the BN scale γ and so gives NaN where γ = 0 — as timm initialises the last BN of every ResNet
  block (``zero_init_last``). It costs a second convolution per fused layer in training only (~40% per step on
  MobileNetV2).

Departures from the paper: weight ranges are moving averages of min/max too (torch's QAT default; the paper takes
the current min/max); BN statistics are not frozen late in the fine-tuning as the paper does (the harness has no hook
at a chosen fine-tuning step), so they update to the end. The post-training path's ``observer`` option (min/max or
histogram over the calibration) is not offered: a plain min/max observer would keep the widest range seen over the
whole fine-tuning however the network changed, and torch deems the histogram observer too slow for QAT.

A model FX cannot trace, or whose converted graph fails to run, raises :class:`~harness.errors.SkipCase`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from pydantic import field_validator
from torch import nn

from harness.zoo.compress import CompressContext, Compressed, CompressOptions, register_compression
from harness.zoo.quantize import (
    BACKEND_REDUCE_RANGE,
    INT8_REQUIREMENTS,
    carry_data_attributes,
    require_engine,
    rewrite_for_fusion,
    skip_unquantizable,
)

if TYPE_CHECKING:
    from torch.fx import GraphModule

#: Case fields a QAT case must hold: int8's (fp32 on the CPU, inference), and no post-training quantization on top.
REQUIREMENTS: dict[str, str] = INT8_REQUIREMENTS | {"quant": "none"}
#: Packages of the modules that run int8 kernels in a converted model.
QUANTIZED_MODULE_PACKAGES = ("torch.ao.nn.quantized.", "torch.ao.nn.intrinsic.quantized.")
#: Key of the fake-quantized GraphModule's ``meta`` (which, unlike attributes, a deep copy keeps) holding one example
#: image, which ``finish`` runs through the int8 model.
EXAMPLE_META_KEY = "harness_qat_example_inputs"


class Options(CompressOptions):
    """QAT options: ``backend``, the quantized engine whose QAT defaults and int8 kernels are used."""

    backend: str = "x86"

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, backend: str) -> str:
        if backend not in BACKEND_REDUCE_RANGE:
            raise ValueError(f"unknown quantized backend {backend!r}; expected one of {sorted(BACKEND_REDUCE_RANGE)}")
        return backend


def _what(options: Options) -> str:
    return f"qat_int8 ({options.backend})"


def quantized_op_count(model: GraphModule) -> int:
    """Return how many nodes of the converted ``model``'s graph run an int8 kernel: calls of torch.ao quantized
    modules (``Conv2d``, ``ConvReLU2d``, ``Linear``...) and of ``torch.ops.quantized`` operators (``add_relu``...)."""
    modules = dict(model.named_modules())
    return sum(
        (node.op == "call_module" and type(modules[node.target]).__module__.startswith(QUANTIZED_MODULE_PACKAGES))
        or (node.op == "call_function" and str(node.target).startswith("quantized."))  # torch.ops.quantized.<op>
        for node in model.graph.nodes
    )


def finish(model: GraphModule, options: Options) -> Compressed:
    """Return the int8 model converted from ``apply``'s fake-quantized ``model`` (eval mode, fp32 in and out, the
    quantized engine set to the backend) and its info: ``quantized_ops`` (:func:`quantized_op_count`)."""
    from torch.ao.quantization.quantize_fx import convert_fx

    torch.backends.quantized.engine = options.backend
    with skip_unquantizable(model, _what(options)):
        quantized = convert_fx(model.eval())
        with torch.no_grad():
            quantized(model.meta[EXAMPLE_META_KEY])  # an op without an int8 kernel fails here, not in a metric
    carry_data_attributes(model, quantized)
    return Compressed(quantized.eval(), {"quantized_ops": quantized_op_count(quantized)})


@register_compression("qat_int8", Options, finish=finish, requirements=REQUIREMENTS)
def apply(model: nn.Module, options: Options, context: CompressContext) -> Compressed:
    """Quantization-aware training (Jacob et al. 2018): return ``model`` (fp32, CPU; its ``BatchNormAct2d`` split in
    place) as an FX graph with fake-quantized weights and activations and BN folded into the convolutions — in train
    mode when a fine-tuning follows, else calibrated on ``context.calibration()`` (``context.example_inputs`` when
    there is none) and in eval mode — and its info: ``backend``. ``finish`` converts it to int8 kernels."""
    from torch.ao.nn.intrinsic import qat as nniqat
    from torch.ao.quantization import get_default_qat_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_qat_fx

    require_engine(options.backend, _what(options))
    batches = None if context.finetune or context.calibration is None else context.calibration()
    with skip_unquantizable(model, _what(options)):
        prepared = prepare_qat_fx(
            rewrite_for_fusion(model).train(),
            get_default_qat_qconfig_mapping(options.backend, version=0),
            example_inputs=(context.example_inputs,),
        )
        for module in prepared.modules():
            if isinstance(module, (nniqat.ConvBn1d, nniqat.ConvBn2d, nniqat.ConvBn3d)):  # and their +ReLU subclasses
                module._enable_slow_path_for_better_numerical_stability = True  # exact folding, safe at γ = 0
        if not context.finetune:
            prepared.eval()
            with torch.no_grad():
                for batch in batches or [context.example_inputs]:
                    prepared(batch)
    prepared.meta[EXAMPLE_META_KEY] = context.example_inputs[:1]
    info: dict[str, Any] = {"backend": options.backend}
    return Compressed(carry_data_attributes(model, prepared), info)
