"""The complexity counter's formulas: per ATen op, its multiply-accumulates, FLOPs, bytes read and written and
activations (:class:`OpCost`), computed from the op's arguments and outputs as one call sees them (:class:`OpCall`);
registered per op with :func:`register_formula` into :data:`FORMULAS`, or listed in :data:`ZERO_COST`. The counting
itself, and what each quantity means, are in :mod:`harness.metrics.complexity`; int8 ops' formulas are in
:mod:`harness.metrics.complexity_quantized`."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any

import torch
import torchvision  # noqa: F401  (registers torch.ops.torchvision.*, used by formulas below)
from torch._ops import OpOverload, OpOverloadPacket

aten = torch.ops.aten


# --------------------------------------------------------------------------------------------------
# Costs and the view of one op call that formulas read


@dataclass(frozen=True)
class OpCost:
    """The cost of one or more op calls: operation counts and bytes moved."""

    macs: int = 0
    flops: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    activations: int = 0

    @property
    def mac_bytes(self) -> int:
        """Return the memory access cost in bytes: bytes read plus bytes written."""
        return self.bytes_read + self.bytes_written

    def __add__(self, other: OpCost) -> OpCost:
        """Return the field-wise sum of two costs."""
        return OpCost(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


@functools.cache
def _schema_info(func: OpOverload) -> tuple[dict[str, tuple[int, Any]], tuple[int, ...], frozenset[str]]:
    """Return an op's argument positions and defaults, its in-place-written positions, out= names."""
    positions: dict[str, tuple[int, Any]] = {}
    written: list[int] = []
    out_names: set[str] = set()
    for i, argument in enumerate(func._schema.arguments):
        default = argument.default_value if argument.has_default_value() else None
        positions[argument.name] = (i, default)
        if argument.alias_info is not None and argument.alias_info.is_write:
            if argument.kwarg_only:
                out_names.add(argument.name)
            else:
                written.append(i)
    return positions, tuple(written), frozenset(out_names)


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    """Yield the tensors in ``obj``: a tensor, or lists/tuples of them (nested), else nothing."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _tensors(item)


def _unique(obj: Any) -> list[torch.Tensor]:
    """Return the distinct tensor objects in ``obj`` (by identity), in order."""
    return list({id(t): t for t in _tensors(obj)}.values())


@dataclass(frozen=True)
class OpCall:
    """One executed op as its formula sees it: the op, its arguments, its output, the byte width."""

    func: OpOverload
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    out: Any
    dtype_bytes: int

    def arg(self, name: str) -> Any:
        """Return the argument called ``name`` in the op's schema (positional, keyword or default)."""
        index, default = _schema_info(self.func)[0][name]
        if index < len(self.args):
            return self.args[index]
        return self.kwargs.get(name, default)

    def nbytes(self, obj: Any) -> int:
        """Return the bytes of the tensors in ``obj``: floating point at ``dtype_bytes``, others as stored."""
        total = 0
        for t in _tensors(obj):
            total += t.numel() * (self.dtype_bytes if t.is_floating_point() else t.element_size())
        return total

    @property
    def output(self) -> torch.Tensor:
        """Return the op's (first) output tensor."""
        return next(_tensors(self.out))

    def read_bytes(self) -> int:
        """Return the bytes of every tensor argument except ``out=`` buffers; a tensor passed twice
        (``mul(x, x)``, self-attention's q = k = v) is read once."""
        out_names = _schema_info(self.func)[2]
        kwargs = [v for k, v in self.kwargs.items() if k not in out_names]
        return self.nbytes(_unique((self.args, kwargs)))

    def written_bytes(self) -> int:
        """Return the bytes of every output tensor plus every argument mutated in place, once each."""
        written = [self.args[i] for i in _schema_info(self.func)[1] if i < len(self.args)]
        return self.nbytes(_unique((self.out, written)))

    def io(self, *, macs: int = 0, flops: int = 0, activations: int = 0) -> OpCost:
        """Return a cost with these counts, reading all tensor arguments and writing all outputs."""
        return OpCost(macs, flops, self.read_bytes(), self.written_bytes(), activations)


Formula = Callable[[OpCall], OpCost]

#: ATen op (overload packet: all overloads share one formula) -> its formula.
FORMULAS: dict[OpOverloadPacket, Formula] = {}


def register_formula(*ops: OpOverloadPacket) -> Callable[[Formula], Formula]:
    """Return a decorator that registers a formula for ``ops``; a second formula for an op is an error."""

    def decorate(formula: Formula) -> Formula:
        for op in ops:
            if op in FORMULAS:
                raise ValueError(f"duplicate formula for {op}")
            FORMULAS[op] = formula
        return formula

    return decorate


#: Ops that move no data and compute nothing: views, aliases, reshapes, allocation without
#: initialisation, scalar reads, checks. They count as covered with cost 0. ``unsafe_split`` is ``split``'s views
#: without view tracking; ``_assert_async`` checks one boolean element on the device (``torch._assert_async``).
ZERO_COST: frozenset[OpOverloadPacket] = frozenset(
    {
        aten.view, aten._unsafe_view, aten._reshape_alias, aten.reshape, aten.view_as, aten.t,
        aten.transpose, aten.permute, aten.expand, aten.expand_as, aten.squeeze, aten.unsqueeze,
        aten.as_strided, aten.slice, aten.select, aten.narrow, aten.split, aten.split_with_sizes,
        aten.unbind, aten.chunk, aten.diagonal, aten.unfold, aten.alias, aten.detach, aten.lift_fresh,
        aten.as_strided_, aten.view_as_real, aten.view_as_complex, aten.movedim, aten.flatten, aten.unflatten,
        aten.empty, aten.empty_like, aten.empty_strided, aten.new_empty, aten.new_empty_strided,
        aten._local_scalar_dense, aten.resize_, aten.unsafe_split, aten.unsafe_split_with_sizes, aten._assert_async,
    }
)

#: Metadata queries: not executed ops; neither counted nor listed.
METADATA_OPS: frozenset[OpOverload] = frozenset(
    {
        torch.ops.prim.device.default, torch.ops.prim.layout.default, aten.size.default,
        aten.sym_size.default, aten.sym_size.int, aten.stride.default, aten.sym_stride.default,
        aten.numel.default, aten.sym_numel.default, aten.dim.default, aten.storage_offset.default,
        aten.sym_storage_offset.default, aten.is_contiguous.default, aten.is_contiguous.memory_format,
        aten.sym_is_contiguous.default, aten.is_strides_like_format.default,
        aten.is_non_overlapping_and_dense.default,
    }
)


# --------------------------------------------------------------------------------------------------
# Dense ops: convolution, matmul family, attention


def _conv_macs(x: torch.Tensor, w: torch.Tensor, out: torch.Tensor, transposed: bool) -> int:
    """Return the MACs of a convolution: one per weight element per (input if transposed, else output)
    position per batch item. Covers groups (the weight holds C_in/g or C_out/g), stride and dilation."""
    batched = x.dim() == w.dim()  # an unbatched input lacks the batch dimension
    positions = (x if transposed else out).shape[2 if batched else 1 :]
    return (x.shape[0] if batched else 1) * w.numel() * math.prod(positions)


@register_formula(aten.convolution, aten._convolution, aten.convolution_overrideable)
def conv_formula(call: OpCall) -> OpCost:
    """Convolution: macs as :func:`_conv_macs`; flops 2·macs + 1 per output element with a bias."""
    out = call.output
    macs = _conv_macs(call.arg("input"), call.arg("weight"), out, call.arg("transposed"))
    bias = out.numel() if call.arg("bias") is not None else 0
    return call.io(macs=macs, flops=2 * macs + bias, activations=out.numel())


@register_formula(aten.convolution_backward)
def conv_backward_formula(call: OpCall) -> OpCost:
    """Convolution backward: the forward's macs once for grad_input and once for grad_weight (each is
    a convolution of the same size); grad_bias is a sum, 1 flop per grad_output element. Reads
    grad_output, plus the weight for grad_input and the input for grad_weight."""
    grad_out, x, w = call.arg("grad_output"), call.arg("input"), call.arg("weight")
    grad_input, grad_weight, grad_bias = call.arg("output_mask")
    macs = _conv_macs(x, w, grad_out, call.arg("transposed")) * (int(grad_input) + int(grad_weight))
    flops = 2 * macs + (grad_out.numel() if grad_bias else 0)
    read = call.nbytes(grad_out) + (call.nbytes(w) if grad_input else 0)
    read += call.nbytes(x) if grad_weight else 0
    return OpCost(macs, flops, read, call.written_bytes())


@register_formula(aten.mm, aten.bmm, aten.mv, aten.dot)
def matmul_formula(call: OpCall) -> OpCost:
    """mm / bmm / mv / dot: macs = output elements × inner dimension; flops = 2·macs."""
    out, inner = call.output, call.args[0].shape[-1]
    macs = out.numel() * inner
    return call.io(macs=macs, flops=2 * macs, activations=out.numel())


@register_formula(aten.addmm, aten.baddbmm, aten.addmv)
def addmm_formula(call: OpCall) -> OpCost:
    """addmm / baddbmm / addmv (linear with bias): matmul macs; flops 2·macs + 1 per output element."""
    out, inner = call.output, call.args[1].shape[-1]
    macs = out.numel() * inner
    return call.io(macs=macs, flops=2 * macs + out.numel(), activations=out.numel())


def _attention_sizes(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[int, int, int]:
    """Return (score elements, query/key depth, value depth) of attention on [..., seq, dim] tensors.
    Grouped-query attention broadcasts key/value heads to the query's heads."""
    scores = math.prod(q.shape[:-1]) * k.shape[-2]
    return scores, q.shape[-1], v.shape[-1]


@register_formula(
    aten._scaled_dot_product_flash_attention_for_cpu, aten._scaled_dot_product_flash_attention,
    aten._scaled_dot_product_efficient_attention, aten._scaled_dot_product_cudnn_attention,
)
def attention_formula(call: OpCall) -> OpCost:
    """Fused attention softmax(q·kᵀ·scale)·v: macs = scores × (d_qk + d_v); flops 2·macs + 6 per
    score (1 scaling + 5 softmax). Reads q, k, v (and any mask), writes the output and statistics."""
    scores, d_qk, d_v = _attention_sizes(*call.args[:3])
    macs = scores * (d_qk + d_v)
    return call.io(macs=macs, flops=2 * macs + 6 * scores, activations=call.output.numel())


@register_formula(
    aten._scaled_dot_product_flash_attention_for_cpu_backward,
    aten._scaled_dot_product_flash_attention_backward,
    aten._scaled_dot_product_efficient_attention_backward,
    aten._scaled_dot_product_cudnn_attention_backward,
)
def attention_backward_formula(call: OpCall) -> OpCost:
    """Fused attention backward (arguments grad_out, q, k, v, ...): recompute q·kᵀ, then grad_v,
    grad_p, grad_q, grad_k: macs = scores × (3·d_qk + 2·d_v) (as FlopCounterMode); flops 2·macs + 10
    per score (recomputed scaled softmax 6, its backward 4)."""
    scores, d_qk, d_v = _attention_sizes(*call.args[1:4])
    macs = scores * (3 * d_qk + 2 * d_v)
    return call.io(macs=macs, flops=2 * macs + 10 * scores)


@register_formula(aten._native_multi_head_attention)
def multi_head_attention_formula(call: OpCall) -> OpCost:
    """nn.MultiheadAttention's fused inference path: q, k, v projections (E×E each, with bias), the
    attention of :func:`attention_formula` over all heads, and the output projection (E×E, bias).
    Activations: the projection outputs and the attention output."""
    q, k = call.arg("query"), call.arg("key")
    macs, flops, activations = _multi_head_attention_counts(q, k, call.arg("embed_dim"), call.arg("num_head"))
    return call.io(macs=macs, flops=flops, activations=activations)


def _multi_head_attention_counts(q: torch.Tensor, k: torch.Tensor, embed: int, heads: int) -> tuple[int, int, int]:
    """Return (macs, flops, activations) of multi-head attention of query ``q`` over key ``k`` ([..., seq, embed]):
    q, k, v and output projections (embed × embed, with bias) and :func:`attention_formula` over all heads."""
    q_rows, kv_rows = q.numel() // embed, k.numel() // embed
    projected = (2 * q_rows + 2 * kv_rows) * embed  # q, k, v and output projections
    scores = q_rows * k.shape[-2] * heads
    macs = projected * embed + scores * 2 * (embed // heads)
    return macs, 2 * macs + projected + 6 * scores, projected + q.numel()


@register_formula(aten._transformer_encoder_layer_fwd)
def transformer_encoder_layer_formula(call: OpCall) -> OpCost:
    """nn.TransformerEncoderLayer's fused inference path: self-attention as :func:`multi_head_attention_formula`,
    two residual additions (1 flop per element each), two layer norms (:func:`_norm_flops`), and the FFN: a
    linear embed → F with bias, ReLU (1 flop) or GELU (5 flops) per element, a linear F → embed with bias.
    Activations: the attention's and both linears' outputs. Reads the input and the weights, writes the output."""
    x, embed = call.arg("src"), call.arg("embed_dim")
    macs, flops, activations = _multi_head_attention_counts(x, x, embed, call.arg("num_heads"))
    rows, hidden = x.numel() // embed, call.arg("ffn_weight_1").shape[0]
    ffn_macs = 2 * rows * embed * hidden
    flops += 2 * ffn_macs + rows * (hidden + embed)  # the linears and their biases
    flops += (5 if call.arg("use_gelu") else 1) * rows * hidden + 2 * x.numel()  # activation, residual adds
    for norm in ("1", "2"):
        flops += _norm_flops(x.numel(), call.arg(f"norm_weight_{norm}"), call.arg(f"norm_bias_{norm}"))
    return call.io(macs=macs + ffn_macs, flops=flops, activations=activations + rows * (hidden + embed))


# --------------------------------------------------------------------------------------------------
# Normalisation

#: Flops per element of normalising with batch statistics: mean (1: an addition), variance (3:
#: subtract, square, add), then (x − mean) · rstd (2). A weight and a bias add 1 each.
NORM_STATS_FLOPS = 4
NORM_APPLY_FLOPS = 2
#: Flops per element of BN at inference: running statistics and affine fold into one scale and shift.
BN_INFERENCE_FLOPS = 2
#: Flops per element of a normalisation backward with batch statistics: recompute x̂ (2), grad·x̂ (1),
#: two sums (2), combine into grad_input (4); the weight and bias gradients reuse those sums.
NORM_BACKWARD_FLOPS = 9


def _norm_flops(numel: int, weight: Any, bias: Any) -> int:
    """Return the flops of normalising ``numel`` elements with batch statistics and optional affine."""
    affine = int(weight is not None) + int(bias is not None)
    return numel * (NORM_STATS_FLOPS + NORM_APPLY_FLOPS + affine)


@register_formula(
    aten.native_batch_norm, aten._native_batch_norm_legit, aten.cudnn_batch_norm,
    aten.miopen_batch_norm,
)
def batch_norm_formula(call: OpCall) -> OpCost:
    """Batch norm with a ``training`` flag: training as :func:`_norm_flops` (running-stat updates,
    per channel, not counted); inference BN_INFERENCE_FLOPS per element. Instance norm runs as this
    op in training mode on a (1, N·C, ...) view."""
    x = call.arg("input")
    if call.arg("training"):
        return call.io(flops=_norm_flops(x.numel(), call.arg("weight"), call.arg("bias")))
    return batch_norm_inference_formula(call)


@register_formula(aten._batch_norm_with_update, aten._native_batch_norm_legit_functional)
def batch_norm_train_formula(call: OpCall) -> OpCost:
    """Batch norm in training (batch statistics): as :func:`_norm_flops`."""
    return call.io(flops=_norm_flops(call.arg("input").numel(), call.arg("weight"), call.arg("bias")))


@register_formula(aten._native_batch_norm_legit_no_training, aten._batch_norm_no_update)
def batch_norm_inference_formula(call: OpCall) -> OpCost:
    """Batch norm at inference (running statistics): BN_INFERENCE_FLOPS per element; reads its arguments, writes
    only the normalised output. The CPU and CUDA kernels save no statistics at inference (they return empty ones),
    while torch's meta kernel gives them a channel each: counting the op's outputs would make a model's bytes depend
    on the device it was traced on."""
    return OpCost(flops=BN_INFERENCE_FLOPS * call.arg("input").numel(), bytes_read=call.read_bytes(),
                  bytes_written=call.nbytes(call.output))


@register_formula(aten.native_layer_norm, aten.native_group_norm)
def layer_group_norm_formula(call: OpCall) -> OpCost:
    """Layer norm and group norm (statistics per sample or group, always computed): as
    :func:`_norm_flops`."""
    return call.io(flops=_norm_flops(call.arg("input").numel(), call.arg("weight"), call.arg("bias")))


@register_formula(
    aten.native_batch_norm_backward, aten.native_layer_norm_backward, aten.native_group_norm_backward,
    aten.cudnn_batch_norm_backward, aten.miopen_batch_norm_backward, aten.batch_norm_backward,
)
def norm_backward_formula(call: OpCall) -> OpCost:
    """Normalisation backward: NORM_BACKWARD_FLOPS per input element with batch statistics; with
    running statistics (a BN backward in eval mode) 1 per element, grad times the folded scale."""
    x = call.arg("input")
    per_element = NORM_BACKWARD_FLOPS
    if call.func.overloadpacket is aten.native_batch_norm_backward and not call.arg("train"):
        per_element = 1
    return call.io(flops=per_element * x.numel())


# --------------------------------------------------------------------------------------------------
# Element-wise ops: flops per output element

#: flops per output element -> ops. Transcendentals (exp, log, erf, tanh, sqrt, ...) count 1;
#: composites are the sum of their steps (in-place variants cost the same).
POINTWISE_FLOPS: dict[int, tuple[OpOverloadPacket, ...]] = {
    # one arithmetic/compare/select/transcendental step
    1: (
        aten.add, aten.add_, aten.sub, aten.sub_, aten.rsub, aten.mul, aten.mul_, aten.div, aten.div_,
        aten.neg, aten.neg_, aten.abs, aten.abs_, aten.exp, aten.exp_, aten.log, aten.log_, aten.log2,
        aten.log1p, aten.expm1, aten.sqrt, aten.sqrt_, aten.rsqrt, aten.rsqrt_, aten.reciprocal,
        aten.reciprocal_, aten.pow, aten.pow_, aten.erf, aten.erf_, aten.tanh, aten.tanh_, aten.sin,
        aten.cos, aten.sign, aten.floor, aten.ceil, aten.round, aten.trunc, aten.frac,
        aten.maximum, aten.minimum, aten.fmod, aten.remainder, aten.floor_divide, aten.atan2,
        aten.eq, aten.ne, aten.lt, aten.le, aten.gt, aten.ge, aten.where, aten.masked_fill,
        aten.masked_fill_, aten.logical_and, aten.logical_or, aten.logical_not, aten.logical_xor,
        aten.bitwise_and, aten.bitwise_or, aten.bitwise_not, aten.bitwise_xor,
        aten.clamp_min, aten.clamp_min_, aten.clamp_max, aten.clamp_max_,
        aten.relu, aten.relu_, aten.threshold, aten.threshold_,
        aten.threshold_backward,  # grad where x > threshold: one select
        aten.bernoulli_,  # compare a uniform draw with p (drawing not counted)
    ),
    # two steps
    2: (
        aten.clamp, aten.clamp_,  # max then min
        aten.hardtanh, aten.hardtanh_,  # ReLU6: max then min
        aten.hardtanh_backward,  # two compares and a select
        aten.leaky_relu, aten.leaky_relu_, aten._prelu_kernel,  # compare, multiply
        aten.leaky_relu_backward,
        aten.addcmul, aten.addcmul_, aten.addcdiv, aten.addcdiv_, aten.lerp, aten.lerp_,
        aten.native_dropout,  # mask and scale
        aten.native_dropout_backward,
        aten.hardsigmoid_backward,  # compare-select, scale
    ),
    # three steps
    3: (
        aten.sigmoid_backward,  # grad · y · (1 − y)
        aten.tanh_backward,  # grad · (1 − y²)
        aten.softplus,  # log(1 + exp(x))
        aten.elu_backward,
    ),
    4: (
        aten.sigmoid, aten.sigmoid_,  # 1 / (1 + exp(−x)): negate, exp, add, divide
        aten.hardsigmoid, aten.hardsigmoid_,  # (x + 3) clamped to [0, 6], / 6
        aten.elu, aten.elu_,  # compare, exp, subtract 1, multiply α
        aten.hardswish_backward,  # compare-select, (2x + 3) / 6 · grad
        aten.softplus_backward,
    ),
    5: (
        aten.silu, aten.silu_,  # x · sigmoid(x)
        aten.hardswish, aten.hardswish_,  # x · hardsigmoid(x)
        aten.gelu, aten.gelu_,  # 0.5 · x · (1 + erf(x / √2))
        aten.mish, aten.mish_,  # x · tanh(log(1 + exp(x)))
    ),
    8: (aten.silu_backward,),  # σ(x) (4), then grad · σ · (1 + x · (1 − σ)) (4)
    9: (aten.gelu_backward,),  # Φ(x) (4) + x · φ(x) (4: square, exp, 2 multiplies) + grad (1)
    10: (aten.mish_backward,),
}


def _pointwise(flops_per_element: int) -> Formula:
    """Return a formula costing ``flops_per_element`` per output element, reading all inputs."""

    def formula(call: OpCall) -> OpCost:
        return call.io(flops=flops_per_element * call.output.numel())

    formula.__doc__ = f"Element-wise op: {flops_per_element} flop(s) per output element."
    return formula


def _register_pointwise() -> None:
    """Register :func:`_pointwise` formulas for every op in :data:`POINTWISE_FLOPS`."""
    for flops_per_element, ops in POINTWISE_FLOPS.items():
        register_formula(*ops)(_pointwise(flops_per_element))


_register_pointwise()


# --------------------------------------------------------------------------------------------------
# Reductions and softmax


#: Scans: one add, multiply or compare per element (CornerNet's corner pooling is a cummax).
CUMULATIVE = frozenset({aten.cumsum, aten.cumprod, aten.cummax, aten.cummin})


@register_formula(aten.sum, aten.amax, aten.amin, aten.max, aten.min, aten.argmax, aten.argmin, aten.any,
                  aten.all, aten.prod, *CUMULATIVE)
def reduction_formula(call: OpCall) -> OpCost:
    """Reduction of n elements into one: n − 1 additions (or compares/multiplies); a scan (cumulative
    sum, product, max, min) n. Binary overloads (``max(a, b)``) are element-wise: 1 per output element."""
    x, out = call.args[0], call.output
    if len(call.args) > 1 and isinstance(call.args[1], torch.Tensor):
        return call.io(flops=out.numel())
    if call.func.overloadpacket in CUMULATIVE:
        return call.io(flops=x.numel())
    return call.io(flops=max(x.numel() - out.numel(), 0))


@register_formula(aten.mean)
def mean_formula(call: OpCall) -> OpCost:
    """Mean of n elements: n − 1 additions and one division, n flops per output element."""
    return call.io(flops=call.args[0].numel())


@register_formula(aten.var, aten.std, aten.var_mean, aten.std_mean)
def variance_formula(call: OpCall) -> OpCost:
    """Variance / standard deviation: 4 flops per input element (mean, subtract, square, add)."""
    return call.io(flops=4 * call.args[0].numel())


@register_formula(aten.linalg_vector_norm, aten.norm)
def norm_formula(call: OpCall) -> OpCost:
    """Vector norm: 2 flops per input element (power and add); the final root is not counted."""
    return call.io(flops=2 * call.args[0].numel())


@register_formula(aten._softmax, aten._log_softmax, aten._safe_softmax)
def softmax_formula(call: OpCall) -> OpCost:
    """Softmax / log-softmax: 5 flops per element (max, subtract, exp, sum, divide or log-subtract). The "safe"
    softmax of scaled_dot_product_attention's math backend (0, not NaN, in a row masked out entirely) as softmax."""
    return call.io(flops=5 * call.output.numel())


@register_formula(aten._softmax_backward_data, aten._log_softmax_backward_data)
def softmax_backward_formula(call: OpCall) -> OpCost:
    """Softmax backward: 4 flops per element (grad·y, sum, subtract, multiply)."""
    return call.io(flops=4 * call.output.numel())


# --------------------------------------------------------------------------------------------------
# Pooling


def _window(kernel_size: Any, spatial_dims: int) -> int:
    """Return the number of elements in a pooling window given ``kernel_size`` (int or list)."""
    sizes = list(kernel_size) if isinstance(kernel_size, (list, tuple)) else [kernel_size]
    if len(sizes) == 1:
        sizes = sizes * spatial_dims
    return math.prod(sizes)


def _spatial_dims(call: OpCall) -> int:
    """Return 1, 2 or 3: the spatial dimensions of a pooling/resampling op, read from its name."""
    name = call.func.overloadpacket.__name__
    return 3 if "3d" in name else 1 if "1d" in name else 2


@register_formula(aten.max_pool2d_with_indices, aten.max_pool3d_with_indices, aten.max_pool2d,
                  aten.max_pool1d, aten.max_pool3d)
def max_pool_formula(call: OpCall) -> OpCost:
    """Max pooling: window − 1 compares per output element; writes the values (and int64 indices)."""
    window = _window(call.arg("kernel_size"), _spatial_dims(call))
    return call.io(flops=(window - 1) * call.output.numel())


@register_formula(aten.avg_pool2d, aten.avg_pool3d, aten.avg_pool1d)
def avg_pool_formula(call: OpCall) -> OpCost:
    """Average pooling: window flops per output element (window − 1 adds, one divide); padded
    positions count as window elements."""
    window = _window(call.arg("kernel_size"), _spatial_dims(call))
    return call.io(flops=window * call.output.numel())


@register_formula(aten.avg_pool2d_backward, aten.avg_pool3d_backward)
def avg_pool_backward_formula(call: OpCall) -> OpCost:
    """Average pooling backward: window flops per grad_output element (scale and scatter-add)."""
    window = _window(call.arg("kernel_size"), _spatial_dims(call))
    return call.io(flops=window * call.arg("grad_output").numel())


@register_formula(aten.max_pool2d_with_indices_backward, aten.max_pool3d_with_indices_backward,
                  aten.adaptive_max_pool2d_backward, aten.adaptive_max_pool3d_backward)
def max_pool_backward_formula(call: OpCall) -> OpCost:
    """Max pooling backward: 1 flop (scatter-add) per grad_output element."""
    return call.io(flops=call.arg("grad_output").numel())


def _adaptive_window_elements(in_sizes: tuple[int, ...], out_sizes: tuple[int, ...]) -> int:
    """Return the summed window sizes of adaptive pooling: per dimension, output i pools
    [floor(i·n/m), ceil((i+1)·n/m)); windows are separable, so the total is the product of sums."""
    total = 1
    for n, m in zip(in_sizes, out_sizes, strict=True):
        total *= sum(-((-(i + 1) * n) // m) - (i * n) // m for i in range(m))
    return total


def _adaptive_pool_elements(x: torch.Tensor, out: torch.Tensor, spatial_dims: int) -> int:
    """Return the window elements summed over all outputs of an adaptive pool of ``x`` into ``out``."""
    leading = math.prod(x.shape[:-spatial_dims])
    return leading * _adaptive_window_elements(tuple(x.shape[-spatial_dims:]), tuple(out.shape[-spatial_dims:]))


@register_formula(aten._adaptive_avg_pool2d, aten._adaptive_avg_pool3d)
def adaptive_avg_pool_formula(call: OpCall) -> OpCost:
    """Adaptive average pooling: per output, window flops (window − 1 adds, one divide); a global
    pool costs one flop per input element."""
    return call.io(flops=_adaptive_pool_elements(call.args[0], call.output, _spatial_dims(call)))


@register_formula(aten._adaptive_avg_pool2d_backward, aten._adaptive_avg_pool3d_backward)
def adaptive_avg_pool_backward_formula(call: OpCall) -> OpCost:
    """Adaptive average pooling backward: the forward's flops (scale and scatter-add each element)."""
    return call.io(flops=_adaptive_pool_elements(call.arg("self"), call.arg("grad_output"), _spatial_dims(call)))


@register_formula(aten.adaptive_max_pool2d, aten.adaptive_max_pool3d)
def adaptive_max_pool_formula(call: OpCall) -> OpCost:
    """Adaptive max pooling: window − 1 compares per output."""
    out = call.output
    return call.io(flops=_adaptive_pool_elements(call.args[0], out, _spatial_dims(call)) - out.numel())


# --------------------------------------------------------------------------------------------------
# Resampling

#: flops per output element of interpolation: a weighted sum of 2^d neighbours (2^d multiplies,
#: 2^d − 1 adds); bicubic: 16 neighbours. Nearest copies (0). Weight computation is not counted.
RESAMPLE_FLOPS: dict[OpOverloadPacket, int] = {
    aten.upsample_nearest1d: 0, aten.upsample_nearest2d: 0, aten.upsample_nearest3d: 0,
    aten._upsample_nearest_exact1d: 0, aten._upsample_nearest_exact2d: 0,
    aten._upsample_nearest_exact3d: 0,
    aten.upsample_linear1d: 3, aten.upsample_bilinear2d: 7, aten._upsample_bilinear2d_aa: 7,
    aten.upsample_trilinear3d: 15, aten.upsample_bicubic2d: 31, aten._upsample_bicubic2d_aa: 31,
}


@register_formula(*RESAMPLE_FLOPS)
def resample_formula(call: OpCall) -> OpCost:
    """Interpolation: RESAMPLE_FLOPS per output element (anti-aliased variants as plain ones)."""
    return call.io(flops=RESAMPLE_FLOPS[call.func.overloadpacket] * call.output.numel())


@register_formula(
    aten.upsample_nearest1d_backward, aten.upsample_nearest2d_backward, aten.upsample_nearest3d_backward,
    aten._upsample_nearest_exact1d_backward, aten._upsample_nearest_exact2d_backward,
    aten._upsample_nearest_exact3d_backward, aten.upsample_linear1d_backward,
    aten.upsample_bilinear2d_backward, aten.upsample_trilinear3d_backward, aten.upsample_bicubic2d_backward,
)
def resample_backward_formula(call: OpCall) -> OpCost:
    """Interpolation backward: each grad_output element is scattered to its neighbours with its weight:
    the forward's per-element flops, at least 1 (nearest: one add) per grad_output element."""
    forward_op = getattr(aten, call.func.overloadpacket.__name__.removesuffix("_backward"))
    per_element = max(RESAMPLE_FLOPS[forward_op], 1)
    return call.io(flops=per_element * call.arg("grad_output").numel())


# --------------------------------------------------------------------------------------------------
# torchvision ops

#: Samples per RoI bin side assumed when ``sampling_ratio`` is adaptive (<= 0): the real number,
#: ceil(RoI side / bins), depends on each box.
ROI_ALIGN_ADAPTIVE_SAMPLES = 2


def _roi_align_samples(call: OpCall) -> int:
    """Return the bilinear samples per output bin of a RoI Align call."""
    ratio = call.arg("sampling_ratio")
    return (ratio if ratio > 0 else ROI_ALIGN_ADAPTIVE_SAMPLES) ** 2


@register_formula(torch.ops.torchvision.roi_align)
def roi_align_formula(call: OpCall) -> OpCost:
    """RoI Align: per output element, samples × (7-flop bilinear interpolation + 1 add for the mean).
    Reads the boxes and the 4 neighbours of every sample (at most the whole feature map)."""
    out, samples = call.output, _roi_align_samples(call)
    touched = min(call.nbytes(call.arg("input")), call.nbytes(out) * 4 * samples)
    return OpCost(flops=8 * samples * out.numel(), bytes_read=call.nbytes(call.arg("rois")) + touched,
                  bytes_written=call.written_bytes())


@register_formula(torch.ops.torchvision._roi_align_backward)
def roi_align_backward_formula(call: OpCall) -> OpCost:
    """RoI Align backward: per grad element, samples × (4 weights × grad, 4 scatter-adds)."""
    grad, samples = call.arg("grad"), _roi_align_samples(call)
    return call.io(flops=8 * samples * grad.numel())


# --------------------------------------------------------------------------------------------------
# Data movement and initialisation: 0 flops


@register_formula(
    aten.clone, aten._to_copy, aten.cat, aten.stack, aten.constant_pad_nd, aten.reflection_pad1d,
    aten.reflection_pad2d, aten.reflection_pad3d, aten.replication_pad1d, aten.replication_pad2d,
    aten.replication_pad3d, aten.index_select, aten.gather, aten.index, aten._unsafe_index, aten.flip,
    aten.roll, aten.repeat, aten.tril, aten.triu, aten.pixel_shuffle, aten.pixel_unshuffle,
    aten.native_channel_shuffle, aten.channel_shuffle, aten.im2col, aten.col2im, aten.embedding,
    aten.slice_scatter, aten.select_scatter, aten.diagonal_scatter, aten.as_strided_scatter,
    aten.topk, aten.sort, aten.nonzero, aten.masked_select, aten.repeat_interleave, aten.lift_fresh_copy,
    aten.scatter, aten.scatter_, aten.index_put, aten.index_put_, aten._index_put_impl_, aten.alias_copy,
    aten.unfold_backward, aten.select_backward, aten.slice_backward, aten.diagonal_backward, aten._unique2,
    aten.unique_consecutive, aten.unique_dim,
)
def copy_formula(call: OpCall) -> OpCost:
    """Data movement (copies, concatenation, padding, gathers, scatters without reduction, sorting):
    0 flops; reads its inputs and writes its outputs."""
    return call.io()


#: Accumulating scatters -> the argument holding the elements added.
SCATTER_ADD_SOURCES: dict[OpOverloadPacket, str] = {
    aten.scatter_add: "src", aten.scatter_add_: "src", aten.index_add: "source", aten.index_add_: "source",
    aten.embedding_dense_backward: "grad_output",
}


@register_formula(*SCATTER_ADD_SOURCES)
def scatter_add_formula(call: OpCall) -> OpCost:
    """Scatter-add / index-add / embedding gradient: 1 flop per source (gradient) element added."""
    return call.io(flops=call.arg(SCATTER_ADD_SOURCES[call.func.overloadpacket]).numel())


@register_formula(aten.copy_)
def copy_inplace_formula(call: OpCall) -> OpCost:
    """copy_(self, src): reads src, writes self; 0 flops."""
    return OpCost(bytes_read=call.nbytes(call.arg("src")), bytes_written=call.written_bytes())


@register_formula(
    aten.zeros, aten.ones, aten.full, aten.zeros_like, aten.ones_like, aten.full_like, aten.new_zeros,
    aten.new_ones, aten.new_full, aten.fill_, aten.zero_, aten.arange, aten.linspace, aten.scalar_tensor,
    aten.eye, aten.rand, aten.randn, aten.rand_like, aten.randn_like, aten.normal_, aten.uniform_,
    aten.randperm, aten.randint,
)
def fill_formula(call: OpCall) -> OpCost:
    """Initialisation (constants, ranges, random draws): writes its output only; 0 flops."""
    return OpCost(bytes_written=call.written_bytes())
