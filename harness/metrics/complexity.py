"""Model complexity: parameters, MACs, FLOPs, memory access cost, counted per ATen op without compute.

How it counts
-------------
The model's forward runs on meta tensors (shapes and dtypes, no data: torch's shape functions
run, nothing is computed; each op's once per argument metadata, its outputs' metadata replayed after that:
:mod:`harness.metrics.meta_cache`) and every ATen op that executes is seen by a
:class:`~torch.utils._python_dispatch.TorchDispatchMode`, which looks the op up in :data:`FORMULAS`
(one formula per op, registered with :func:`~harness.metrics.formulas.register_formula` in
:mod:`harness.metrics.formulas`) or in :data:`ZERO_COST`. The caller's
parameters and buffers are replaced by meta copies through :func:`torch.func.functional_call`, so the
model's weights, device and buffers are never touched; train/eval flags are restored afterwards.
scaled_dot_product_attention of a model on the CPU takes, on meta tensors, the backend the CPU would choose
(the CPU's ``_fused_sdp_choice`` kernel reads only metadata; its fused kernel has a meta function), so
transformers count on meta tensors too.
When a model mixes in tensors of a real device (a constant made on the CPU in forward), or would take
other kernels on meta tensors than on its device (a GPU's fused attention, which meta tensors cannot ask for:
their math backend is stopped at its first op; nn.MultiheadAttention and nn.TransformerEncoderLayer skip their
fused fast paths), the count is taken again under :class:`~torch._subclasses.fake_tensor.FakeTensorMode`
(method ``"fake"``, slower);
when that raises too (data-dependent ops such as ``nonzero`` and NMS have no fake kernel, so detectors
fail there), on real tensors, which does compute (method ``"real"``). Ops run by ``torch.compile``d
graphs and custom kernels are only seen if they dispatch through ATen.

What is counted (units: counts of operations, bytes)
----------------------------------------------------
- ``macs``: multiply-accumulates of convolution (any groups, stride, dilation, padding, transposed),
  ``mm``/``addmm``/``bmm``/``baddbmm``/``mv``/``dot`` (so ``linear`` and ``matmul``) and scaled
  dot-product attention, without bias. This is torchvision's "GFLOPS" column and
  ``torch.utils.flop_counter.FlopCounterMode`` ÷ 2 (which, unlike this module, misses CPU attention).
- ``flops``: 2 × macs, + 1 per output element for a bias / ``addmm`` input, + the arithmetic of every
  other op: per-element constants for element-wise ops (:data:`POINTWISE_FLOPS`: 1 for add, mul,
  relu; transcendental functions such as exp, erf, tanh count 1, composites are the sum of their
  parts, e.g. sigmoid = 4, silu = 5), reductions (n − 1 additions per n-element sum, + 1 division
  for a mean), pooling, normalisation, softmax and resampling as documented on each formula.
  Data movement (copies, concatenation, padding, indexing) costs 0 flops.
- ``mac_bytes``: memory access cost after ShuffleNet V2 §2: per op, the bytes of every tensor it
  reads (activations and weights) plus the bytes of every tensor it writes (outputs and tensors it
  mutates in place). Floating-point tensors count at the case's dtype (fp32 4 bytes, fp16/bf16 2),
  whatever dtype the model runs in; integer and bool tensors (indices, masks) at their own size.
  In-place ops (``add_``, ``relu_``) read their inputs and write their output like the out-of-place
  op. No fusion is assumed: batch norm is not folded into the convolution and activations are not
  fused, so BN at inference costs 2 flops and 2·numel + 4·C elements. Views, reshapes, expands,
  transposes, ``detach`` and allocations without initialisation move no data: they cost 0 and
  count as covered. A 1×1 convolution, stride 1, batch 1, no bias: (h·w·(c1 + c2) + c1·c2) × bytes.
- ``activations``: output elements of convolution, matmul-family and attention ops (fvcore/timm
  "acts").
- coverage: every executed op call (metadata queries such as ``size`` excluded) is either counted
  by a formula or in :data:`ZERO_COST`; other ops count nothing and are reported by name with their
  call counts, and ``complexity_coverage`` is the counted share of calls.
- training (``Options.training``): the model runs forward in train mode and backward from an
  all-ones gradient of its floating-point outputs (no loss op, no optimizer step); ``train_*`` are
  that whole step, the plain columns the inference forward. Backward ops have their own formulas;
  a convolution's grad_input and grad_weight each cost its forward MACs. (FlopCounterMode's
  grad_weight formula ignores groups and counts a depth-wise convolution C times over.)
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import inspect
import json
import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn
from torch._ops import OpOverload
from torch._subclasses.fake_tensor import DataDependentOutputException, DynamicOutputShapeException, FakeTensorMode
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map_only
from torch.utils.module_tracker import ModuleTracker

from harness.case import Case
from harness.metrics import complexity_quantized  # noqa: F401  (registers the int8 ops' formulas)
from harness.metrics.formulas import FORMULAS, METADATA_OPS, ZERO_COST, OpCall, OpCost
from harness.metrics.meta_cache import MetaCache

log = logging.getLogger(__name__)

NAME = "complexity"

aten = torch.ops.aten


class Options(BaseModel):
    """Options of the complexity metric."""

    model_config = ConfigDict(extra="forbid")

    training: bool = False
    """Also count one training step (forward + backward) into the ``train_*`` columns."""
    by: Literal["none", "op", "module"] = "none"
    """Fill ``complexity_breakdown`` with a JSON breakdown per ATen op or per module."""


COLUMNS: dict[str, str] = {
    "params": "int64",
    "params_trainable": "int64",
    "macs": "int64",
    "flops": "int64",
    "mac_bytes": "int64",
    "activations": "int64",
    "complexity_coverage": "float64",
    "complexity_uncounted": "string",
    "complexity_data_dependent": "string",
    "complexity_method": "string",
    "complexity_breakdown": "string",
    "train_macs": "int64",
    "train_flops": "int64",
    "train_mac_bytes": "int64",
}

DTYPE_BYTES: dict[str, int] = {"fp32": 4, "fp16": 2, "bf16": 2}

#: Ops whose output size depends on the values of their inputs, not only on their shapes (a detector's
#: region proposals after NMS, the peaks above a threshold), and ``_local_scalar_dense``, a value read back
#: into Python (``.item()``, ``bool(t)``: control flow that depends on the data): every count downstream of
#: one of them holds for the input it was counted on, not for every input. Reported by name with their calls
#: (``complexity_data_dependent``), so a detector's count says which parts are data-dependent.
DATA_DEPENDENT: frozenset[str] = frozenset({
    "aten._local_scalar_dense",
    "aten.nonzero", "aten.argwhere", "aten.masked_select", "aten._unique2", "aten.unique_dim",
    "aten.unique_consecutive", "aten.masked_scatter", "torchvision.nms", "torchvision.batched_nms",
})


# --------------------------------------------------------------------------------------------------
# Counting


@dataclass(frozen=True)
class ComplexityCount:
    """What one counted run produced.

    ``total`` sums every counted op; ``by_op`` and ``by_module`` split it by ATen op name and by the
    innermost module running the op (``torch.utils.module_tracker`` names, e.g.
    ``ResNet.layer1.0.conv1``; ``Global`` outside any module). ``calls`` holds every executed op call
    (counted, zero-cost and uncounted), ``uncounted`` those without a formula. ``method`` is ``fake``
    or ``real``; ``fallback_reason`` says why the fake run failed when it is ``real``, and ``stopped_at``
    names the data-dependent ops that stopped it.
    """

    total: OpCost
    by_op: dict[str, OpCost]
    by_module: dict[str, OpCost]
    calls: dict[str, int]
    uncounted: dict[str, int]
    method: str
    fallback_reason: str | None = None
    stopped_at: tuple[str, ...] = ()

    @property
    def data_dependent(self) -> dict[str, int]:
        """Return ``{op: calls}`` of the executed ops in :data:`DATA_DEPENDENT` (empty for a plain network),
        and of the data-dependent ops that stopped the fake-tensor count (``stopped_at``; 0 calls when the
        real run, on this input, took another branch)."""
        found = {name: n for name, n in self.calls.items() if name in DATA_DEPENDENT}
        return dict(sorted(({name: 0 for name in self.stopped_at} | found).items()))

    @property
    def coverage(self) -> float:
        """Return the share (0..1) of executed op calls that had a formula or were zero-cost."""
        calls = sum(self.calls.values())
        return 1.0 - sum(self.uncounted.values()) / calls if calls else 1.0


@dataclass
class _Tally:
    """Running sums of one count, filled by :class:`_CountingMode`."""

    dtype_bytes: int
    tracker: ModuleTracker
    by_op: dict[str, OpCost] = field(default_factory=dict)
    by_module: dict[str, OpCost] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    uncounted: Counter[str] = field(default_factory=Counter)
    last_op: str = ""
    #: on meta tensors: the outputs replayed by op and argument metadata (None: every op runs)
    meta_cache: MetaCache | None = None
    #: on meta tensors of a model on the CPU: attention takes the backend the CPU would choose (its
    #: ``_fused_sdp_choice`` kernel asked with the meta tensors), not the math backend meta tensors get
    cpu_attention: bool = False

    def where(self) -> str:
        """Return where the count is: the innermost module entered and the last op dispatched."""
        module = _innermost(self.tracker.parents) if self.tracker.parents else "the model"
        return f"module {module}" + (f", after op {self.last_op}" if self.last_op else "")

    def record(self, func: OpOverload, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        """Add the cost of one executed op call."""
        packet = func.overloadpacket
        name = str(packet)
        self.calls[name] += 1
        formula = FORMULAS.get(packet)
        if formula is None:
            if packet not in ZERO_COST:
                self.uncounted[name] += 1
            return
        cost = formula(OpCall(func, args, kwargs, out, self.dtype_bytes))
        self.by_op[name] = self.by_op.get(name, OpCost()) + cost
        module = _innermost(self.tracker.parents)
        self.by_module[module] = self.by_module.get(module, OpCost()) + cost

    def result(self, method: str) -> ComplexityCount:
        """Return the finished count."""
        total = sum(self.by_op.values(), OpCost())
        return ComplexityCount(total, dict(self.by_op), dict(self.by_module), dict(self.calls),
                               dict(self.uncounted), method)


def _innermost(parents: set[str]) -> str:
    """Return the innermost module name among ``parents`` (the deepest dotted path; ``Global`` last)."""
    return max(parents, key=lambda name: (name != "Global", name.count(".")))


class _CountingMode(TorchDispatchMode):
    """Dispatch mode that runs each ATen op and records its cost in a :class:`_Tally`.

    An op without a formula that has a composite (implicit) decomposition is decomposed, so its parts
    are counted, as FlopCounterMode does (this happens under ``torch.inference_mode``)."""

    def __init__(self, tally: _Tally) -> None:
        super().__init__()
        self.tally = tally

    def __torch_dispatch__(self, func: OpOverload, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        if func in METADATA_OPS:
            return func(*args, **kwargs)
        packet = func.overloadpacket
        self.tally.last_op = str(packet)
        cache = self.tally.meta_cache
        if cache is not None and packet is aten._safe_softmax and not self.tally.cpu_attention:
            raise MathAttentionOnMeta(SDPA_ON_META)  # stop at once: counted again (CPU attention, or fake tensors)
        if packet not in FORMULAS and packet not in ZERO_COST:
            with self:
                decomposed = func.decompose(*args, **kwargs)
            if decomposed is not NotImplemented:
                return decomposed
        out = func(*args, **kwargs) if cache is None else cache.call(func, args, kwargs)
        self.tally.record(func, args, kwargs, out)
        return out


@contextmanager
def _module_modes(model: nn.Module, training: bool) -> Iterator[None]:
    """Put ``model`` in train or eval mode for the block, then restore every submodule's own flag."""
    flags = [(module, module.training) for module in model.modules()]
    model.train(training)
    try:
        yield
    finally:
        for module, flag in flags:
            module.training = flag


@contextmanager
def _tensor_attributes_kept(model: nn.Module) -> Iterator[None]:
    """Restore, after the block, every module attribute holding a tensor or a list/tuple of tensors that is
    neither a parameter nor a buffer (caches such as torchvision's anchor generator's ``cell_anchors``, which
    a forward on meta or fake tensors would otherwise leave holding meta or fake tensors)."""
    kept = []
    for module in model.modules():
        for name, value in vars(module).items():
            items = value if isinstance(value, (list, tuple)) else (value,)
            if items and all(isinstance(item, torch.Tensor) for item in items):
                kept.append((module, name, value))
    try:
        yield
    finally:
        for module, name, value in kept:
            setattr(module, name, value)


@contextmanager
def _grad_flags(model: nn.Module, training: bool) -> Iterator[None]:
    """For an eval count, clear every parameter's requires_grad for the block (restored after): a view made under
    no_grad of a parameter that requires grad (an attention-pooling head's ``latent.expand(B, -1, -1)``) has no
    gradient function, and torch's ModuleTracker asserts one when such a view enters a module."""
    flags = [(p, p.requires_grad) for p in model.parameters()] if not training else []
    for param, _flag in flags:
        param.requires_grad_(False)
    try:
        yield
    finally:
        for param, flag in flags:
            param.requires_grad_(flag)


def _to_fake(mode: FakeTensorMode, tensor: torch.Tensor) -> torch.Tensor:
    """Return a fake tensor with ``tensor``'s shape, strides, dtype, device and requires_grad flag.

    Built from a meta tensor (no data copied), several times faster than ``mode.from_tensor``."""
    return mode.fake_tensor_converter.from_meta_and_device(mode, _to_meta(tensor), tensor.device)


def _run(model: nn.Module, state: dict[str, torch.Tensor] | None, inputs: Any, tally: _Tally,
         training: bool) -> None:
    """Run the forward (with ``state`` in place of the model's tensors when given) under counting;
    when ``training``, also the backward from all-ones gradients of the floating-point outputs."""
    try:
        with _CountingMode(tally), torch.set_grad_enabled(training):
            out = model(inputs) if state is None else torch.func.functional_call(model, state, (inputs,))
        outputs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor) and t.requires_grad]
        if outputs:  # none when not training, or when every parameter is frozen
            seeds = [torch.ones_like(t) for t in outputs]
            with _CountingMode(tally):
                torch.autograd.backward(outputs, seeds)
    except Exception as exc:
        raise CountError(f"{type(exc).__name__}: {_first_line(exc)}", tally.where()) from exc


class CountError(RuntimeError):
    """A count that could not be finished: ``where`` names the module entered and the last op dispatched."""

    def __init__(self, reason: str, where: str) -> None:
        super().__init__(f"{reason} (in {where})")
        self.reason = reason
        self.where = where


def _first_line(exc: BaseException) -> str:
    """Return the first non-empty line of ``exc``'s message ('' when it has none)."""
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), "")


def _count_fake(model: nn.Module, inputs: Any, dtype_bytes: int, training: bool) -> ComplexityCount:
    """Count on fake tensors: the model's parameters and buffers replaced by fakes; nothing computed."""
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    with _grad_flags(model, training):
        named = [*model.named_parameters(), *model.named_buffers()]
        state = {name: _to_fake(mode, tensor) for name, tensor in named}
    fake_inputs = tree_map_only(torch.Tensor, lambda t: _to_fake(mode, t), inputs)
    with _module_modes(model, training), _tensor_attributes_kept(model), mode, ModuleTracker() as tracker:
        tally = _Tally(dtype_bytes, tracker)
        _run(model, state, fake_inputs, tally, training)
    return tally.result("fake")


def _to_meta(tensor: torch.Tensor) -> torch.Tensor:
    """Return a meta tensor with ``tensor``'s shape, strides, dtype and requires_grad flag (no data)."""
    return torch.empty_strided(tensor.shape, tensor.stride(), dtype=tensor.dtype, device="meta",
                               requires_grad=tensor.requires_grad)


#: Devices whose models count as on the CPU: the CPU, and the meta device (a model built there, without weights, as
#: the zoo is, counts as the same model built on the CPU).
CPU_LIKE = frozenset({"cpu", "meta"})

#: The dispatch keys of the CPU's kernels (attention's backend choice asked of the CPU with meta tensors).
CPU_KEYS = torch._C.DispatchKeySet(torch._C.DispatchKey.CPU)

class _CpuAttention(TorchFunctionMode):
    """On meta tensors, ``scaled_dot_product_attention`` takes the fused CPU kernel when the CPU would (its
    ``_fused_sdp_choice`` kernel, asked with the meta tensors, reads only their metadata), as a model on the CPU
    does; otherwise it runs as it is (the math backend)."""

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        if func in SDPA_FUNCTIONS:
            bound = _SDPA_SIGNATURE.bind(*args, **kwargs)
            bound.apply_defaults()
            q, k, v, mask, dropout, causal, scale, gqa = bound.args
            choice = aten._fused_sdp_choice.default.redispatch(CPU_KEYS, q, k, v, mask, dropout, causal, scale=scale,
                                                                enable_gqa=gqa)
            if choice == FLASH_CPU and not gqa:
                return aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, dropout, causal, attn_mask=mask,
                                                                        scale=scale)[0]
        return func(*args, **kwargs)


FLASH_CPU = 1  # the value of sdp::SDPBackend::flash_attention
SDPA_FUNCTIONS = (torch.nn.functional.scaled_dot_product_attention, torch._C._nn.scaled_dot_product_attention)
_SDPA_SIGNATURE = inspect.Signature([
    inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default)
    for name, default in (("query", inspect.Parameter.empty), ("key", inspect.Parameter.empty),
                          ("value", inspect.Parameter.empty), ("attn_mask", None), ("dropout_p", 0.0),
                          ("is_causal", False), ("scale", None), ("enable_gqa", False))])


class MathAttentionOnMeta(RuntimeError):
    """scaled_dot_product_attention took its math backend on meta tensors, which the model's device would not."""


#: Why a count on meta tensors stops at the first ``_safe_softmax``.
SDPA_ON_META = ("scaled_dot_product_attention runs its math backend on meta tensors (q·kᵀ, _safe_softmax, ·v, the "
                "scores written out), not the device's fused kernel")


def _count_meta(model: nn.Module, inputs: Any, dtype_bytes: int, training: bool,
                replay: bool = True) -> ComplexityCount:
    """Count on meta tensors: parameters, buffers and inputs replaced by meta tensors, whose ops run
    torch's shape functions (several times faster than fake tensors), each once per argument metadata when
    ``replay`` (:mod:`harness.metrics.meta_cache`). Raises when the model mixes in tensors of a real device (a
    constant made on the CPU in forward, say), or when it would take other kernels on meta tensors than on its
    device (nn.MultiheadAttention's fast path, the fused kernels of scaled_dot_product_attention on a GPU: stopped
    at its first ``_safe_softmax``); the caller falls back. A model on the CPU (or the meta device) whose count
    stopped there is counted again with the attention backend the CPU would choose (its ``_fused_sdp_choice`` kernel
    reads only the tensors' metadata: :class:`_CpuAttention`), so it counts on meta tensors as on fake ones; the
    first pass goes without that torch-function mode, which costs every torch call of a model without attention
    ~30%, unless one of the model's modules says it calls that attention (timm's ``fused_attn``)."""
    if not training and any(isinstance(module, nn.MultiheadAttention) for module in model.modules()):
        raise RuntimeError("nn.MultiheadAttention takes its fused fast path (and nn.TransformerEncoderLayer its "
                           "own) in eval mode on cpu and cuda tensors, not on meta tensors")
    with _grad_flags(model, training):
        named = [*model.named_parameters(), *model.named_buffers()]
        state = {name: _to_meta(t) for name, t in named}
    on_cpu = all(t.device.type in CPU_LIKE for t in [*(t for _, t in named), *tree_flatten(inputs)[0]]
                 if isinstance(t, torch.Tensor))
    meta_inputs = tree_map_only(torch.Tensor, _to_meta, inputs)

    def counted(cpu_attention: bool) -> ComplexityCount:
        attention = _CpuAttention() if cpu_attention else contextlib.nullcontext()
        with _module_modes(model, training), _tensor_attributes_kept(model), ModuleTracker() as tracker, attention:
            tally = _Tally(dtype_bytes, tracker, meta_cache=MetaCache() if replay else None,
                           cpu_attention=cpu_attention)
            _run(model, state, meta_inputs, tally, training)
        return tally.result("meta")

    if on_cpu and any(getattr(module, "fused_attn", False) for module in model.modules()):
        return counted(cpu_attention=True)  # timm's attention blocks say they call scaled_dot_product_attention
    try:
        return counted(cpu_attention=False)  # no torch-function mode: most models call no attention
    except CountError as exc:
        if not (on_cpu and isinstance(exc.__cause__, MathAttentionOnMeta)):
            raise
    return counted(cpu_attention=True)


def _count_real(model: nn.Module, inputs: Any, dtype_bytes: int, training: bool) -> ComplexityCount:
    """Count on real tensors (computes the forward, and backward on a deep copy when ``training``)."""
    if training:
        model = copy.deepcopy(model)
    with _module_modes(model, training), _grad_flags(model, training), ModuleTracker() as tracker:
        tally = _Tally(dtype_bytes, tracker)
        _run(model, None, inputs, tally, training)
    return tally.result("real")


def count(model: nn.Module, inputs: Any, *, dtype_bytes: int = 4, training: bool = False,
          method: Literal["auto", "meta", "fake", "real"] = "auto") -> ComplexityCount:
    """Count the complexity of ``model(inputs)``: one eval-mode forward, or with ``training`` one
    train-mode forward and its backward.

    ``dtype_bytes`` is the size in bytes of a floating-point element for ``mac_bytes``. ``method``
    "auto" counts on meta tensors, falls back to fake tensors when that raises (a model mixing in
    tensors of a real device) and to real tensors when that raises too (data-dependent ops such as
    nonzero and NMS); "meta", "fake" or "real" force one. The model is left as it was (weights,
    buffers, device, train/eval flags).
    Returns a :class:`ComplexityCount` (operation counts and bytes).
    """
    attempts = {"meta": _count_meta, "fake": _count_fake, "real": _count_real}
    order = {"auto": ("meta", "fake", "real"), "meta": ("meta",), "fake": ("fake",), "real": ("real",)}[method]
    reasons: list[str] = []
    stopped_at: list[str] = []
    for name in order[:-1]:
        try:
            return attempts[name](model, inputs, dtype_bytes, training)
        except Exception as exc:
            reasons.append(f"{name}: {exc}" if isinstance(exc, CountError) else
                           f"{name}: {type(exc).__name__}: {_first_line(exc)}")
            cause = exc.__cause__ if isinstance(exc, CountError) else exc
            if isinstance(cause, (DynamicOutputShapeException, DataDependentOutputException)):
                stopped_at.append(str(cause.func.overloadpacket))
            log.info("complexity: %s count failed (%s); trying the next method", name, reasons[-1])
    result = attempts[order[-1]](model, inputs, dtype_bytes, training)
    return dataclasses.replace(result, fallback_reason="; ".join(reasons) or None, stopped_at=tuple(stopped_at))


# --------------------------------------------------------------------------------------------------
# The metric


def _breakdown(result: ComplexityCount, by: str) -> str:
    """Return the JSON breakdown of ``result`` per op (with calls) or per module."""
    if by == "op":
        rows = {name: {"calls": result.calls[name], "macs": c.macs, "flops": c.flops,
                       "mac_bytes": c.mac_bytes} for name, c in result.by_op.items()}
    else:
        rows = {name: {"macs": c.macs, "flops": c.flops, "mac_bytes": c.mac_bytes}
                for name, c in result.by_module.items()}
    return json.dumps(rows)


def _method(forward: ComplexityCount, train: ComplexityCount | None) -> str:
    """Return the method column: the forward's method, and the training count's when it differs."""
    if train is None or train.method == forward.method:
        return forward.method
    return f"{forward.method}; train {train.method}"


def packed_params(model: nn.Module) -> int:
    """Return the elements of the weights and biases that ``model``'s quantized layers hold packed (their ``weight()``
    and ``bias()`` are methods, not parameters: ``torch.ao.nn.quantized`` Conv and Linear, fused forms included)."""
    total = 0
    for module in model.modules():
        if callable(getattr(type(module), "weight", None)):
            bias = module.bias() if callable(getattr(type(module), "bias", None)) else None
            total += module.weight().numel() + (bias.numel() if bias is not None else 0)
    return total


def param_counts(model: nn.Module) -> dict[str, int]:
    """Return ``{"params": all parameters, quantized layers' packed weights and biases included,
    "params_trainable": the parameters requiring grad}`` (element counts)."""
    params = list(model.parameters())
    return {"params": sum(p.numel() for p in params) + packed_params(model),
            "params_trainable": sum(p.numel() for p in params if p.requires_grad)}


def measure(model: nn.Module, inputs: Any, case: Case, options: Options) -> dict[str, Any]:
    """Return the complexity columns of ``model(inputs)`` for ``case`` (see :data:`COLUMNS`): counts
    of parameters, MACs, FLOPs and activations, memory access cost in bytes at ``case.dtype``."""
    dtype_bytes = DTYPE_BYTES[case.dtype]
    model = getattr(model, "_orig_mod", model)  # count what torch.compile wraps, not its compiled graph
    forward = count(model, inputs, dtype_bytes=dtype_bytes)
    train = count(model, inputs, dtype_bytes=dtype_bytes, training=True) if options.training else None
    return {
        **param_counts(model),
        "macs": forward.total.macs,
        "flops": forward.total.flops,
        "mac_bytes": forward.total.mac_bytes,
        "activations": forward.total.activations,
        "complexity_coverage": forward.coverage,
        "complexity_uncounted": json.dumps(dict(sorted(forward.uncounted.items()))),
        "complexity_data_dependent": json.dumps(forward.data_dependent),
        "complexity_method": _method(forward, train),
        "complexity_breakdown": None if options.by == "none" else _breakdown(forward, options.by),
        "train_macs": train.total.macs if train else None,
        "train_flops": train.total.flops if train else None,
        "train_mac_bytes": train.total.mac_bytes if train else None,
    }


