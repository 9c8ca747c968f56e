"""Counting formulas of the quantized (int8) ops an FX-quantized model runs: ``quantized::conv2d``, ``linear`` and
their fused ReLU forms, ``quantized::add``/``mul`` (with ReLU), ``quantize_per_tensor``, ``dequantize`` and
``quantized_max_pool2d``.

These ops have no meta or fake kernels, so :func:`harness.metrics.complexity.count` counts a quantized model on real
tensors (method ``real``; an int8 forward is cheap). A quantized convolution or linear layer holds its weight in a
packed object (not a tensor argument of the op): its formula unpacks it to count the same MACs as the float layer
(one per weight element per output position per batch item) and to add the bytes of the weight (int8, 1 byte each)
and bias (a floating-point tensor, at the case's dtype) to what the op reads. Activations are quint8 tensors and
count 1 byte an element, so ``mac_bytes`` shows what int8 saves in memory traffic. Flops follow the float ops: a
convolution 2·macs + 1 per output element for its bias + 1 for a fused ReLU; add/mul 1 per element (+ 1 fused ReLU);
quantize x/s + z and dequantize (q − z)·s 2 each. Requantization of outputs (a multiply and round per element) is
not counted, as a float op's rounding is not.
"""

from __future__ import annotations

from typing import Any

import torch

from harness.metrics.formulas import OpCall, OpCost, _conv_macs, max_pool_formula, register_formula

quantized = torch.ops.quantized
aten = torch.ops.aten

#: Quantized convolutions: op -> whether a ReLU is fused into it.
CONV_OPS: dict[Any, bool] = {quantized.conv1d: False, quantized.conv2d: False, quantized.conv3d: False,
                             quantized.conv1d_relu: True, quantized.conv2d_relu: True, quantized.conv3d_relu: True}
#: Quantized linear layers: op -> whether a ReLU is fused into it.
LINEAR_OPS: dict[Any, bool] = {quantized.linear: False, quantized.linear_relu: True}
#: Quantized element-wise binary ops: op -> flops per output element.
BINARY_OPS: dict[Any, int] = {quantized.add: 1, quantized.mul: 1, quantized.add_relu: 2, quantized.mul_relu: 2}


def packed_weight_bias(packed: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Return the (quantized weight, float bias or None) held by a quantized layer's packed parameters."""
    weight, bias = packed.unpack()
    return weight, bias


def _packed_layer_cost(call: OpCall, macs: int, relu: bool) -> OpCost:
    """Return the cost of a quantized conv/linear call with ``macs``: flops 2·macs + bias + fused ReLU per output
    element; reads the input, the weight and the bias, writes the output."""
    weight, bias = packed_weight_bias(call.args[1])
    out = call.output
    flops = 2 * macs + out.numel() * (int(bias is not None) + int(relu))
    read_bytes = call.nbytes(call.args[0]) + call.nbytes([weight, bias])
    return OpCost(macs, flops, read_bytes, call.written_bytes(), out.numel())


@register_formula(*CONV_OPS)
def quantized_conv_formula(call: OpCall) -> OpCost:
    """Quantized convolution: the float convolution's MACs from the packed weight's shape (groups included)."""
    weight, _ = packed_weight_bias(call.args[1])
    macs = _conv_macs(call.args[0], weight, call.output, transposed=False)
    return _packed_layer_cost(call, macs, CONV_OPS[call.func.overloadpacket])


@register_formula(*LINEAR_OPS)
def quantized_linear_formula(call: OpCall) -> OpCost:
    """Quantized linear layer: in_features MACs per output element."""
    weight, _ = packed_weight_bias(call.args[1])
    macs = call.output.numel() * weight.shape[1]
    return _packed_layer_cost(call, macs, LINEAR_OPS[call.func.overloadpacket])


@register_formula(*BINARY_OPS)
def quantized_binary_formula(call: OpCall) -> OpCost:
    """Quantized add / mul (with fused ReLU): 1 flop per output element, 2 with the ReLU."""
    return call.io(flops=BINARY_OPS[call.func.overloadpacket] * call.output.numel())


@register_formula(aten.quantize_per_tensor, aten.quantize_per_channel, aten.dequantize)
def quantize_formula(call: OpCall) -> OpCost:
    """Quantize (x / s + z, rounded) or dequantize ((q − z) · s): 2 flops per element."""
    return call.io(flops=2 * call.output.numel())


register_formula(aten.quantized_max_pool2d, aten.quantized_max_pool1d)(max_pool_formula)
