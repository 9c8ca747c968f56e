"""Replaying ops' output metadata on meta tensors, so that a count runs each op's shape function once per shape.

On meta tensors an op computes nothing, but many still run a Python shape function (torch's refs and
decompositions for batch norm, element-wise ops with broadcasting and type promotion…), which is most of a count's
time. The output's metadata — shape, strides, dtype — is a function of the op and of its arguments' metadata and
values alone, so within one count (:func:`harness.metrics.complexity.count`, method ``meta``) the outputs of a call
are remembered under a key made of the op and every argument (tensors by shape, strides, storage offset, dtype and
device; other values by type and value), and a later call with the same key gets fresh meta tensors of the same
metadata (``torch.empty_strided``) without running the op. A transformer's twelve identical blocks run their shape
functions once.

Only what can be replayed exactly is cached: ops that return no view of an argument (their schema says so), called
with meta tensors and plain values (ints, floats, bools, strings, dtypes, devices, memory formats, None, and lists
or tuples of them), returning fresh meta tensors or the very argument they wrote in place (an in-place op's
``self``), or a list or tuple of those; an op that changes an argument's metadata in place (``t_``, ``resize_``) is
never replayed. Writing in place to a meta tensor changes nothing but metadata, so an in-place op (``relu_``, batch
norm's running statistics) is replayed as returning its argument.

A few ops are answered from their arguments' metadata without running them at all (:data:`SHORTCUTS`: in-place
activations return their argument; batch and layer norm their input's shape and their statistics), since even their
first call runs a Python decomposition on meta tensors.
``tests/test_meta_cache.py`` checks the replayed metadata against the op's own on fuzzed shapes, strides, dtypes and
broadcasts, and that counts with and without the cache are identical.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch._ops import OpOverload

aten = torch.ops.aten

#: Plain argument values a key can hold (by type and value).
_PLAIN = (int, float, bool, str, type(None), torch.dtype, torch.device, torch.memory_format, torch.layout)


class _Uncacheable(Exception):
    """An argument or output that cannot be keyed or replayed."""


def _key(value: Any, tensors: list[torch.Tensor]) -> Any:
    """Return the key of an argument, appending its tensors to ``tensors`` in order."""
    if isinstance(value, torch.Tensor):
        if value.device.type != "meta" or type(value) is not torch.Tensor:
            raise _Uncacheable
        tensors.append(value)
        return ("T", tuple(value.shape), value.stride(), value.storage_offset(), value.dtype)
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, *(_key(v, tensors) for v in value))
    if isinstance(value, _PLAIN):
        return (type(value).__name__, value)
    raise _Uncacheable


def _plan(out: Any, tensors: list[torch.Tensor]) -> Any:
    """Return how to replay ``out``: an argument returned as itself (an in-place op's ``self``) by its position in
    ``tensors``, a fresh tensor by its metadata, a list or tuple part by part."""
    if isinstance(out, torch.Tensor):
        for i, tensor in enumerate(tensors):
            if out is tensor:
                return ("arg", i)
        if out.device.type != "meta" or type(out) is not torch.Tensor or out.storage_offset() != 0:
            raise _Uncacheable
        return ("new", tuple(out.shape), out.stride(), out.dtype)
    if isinstance(out, (list, tuple)) and out:
        return ("seq", type(out), tuple(_plan(o, tensors) for o in out))
    raise _Uncacheable


def _replay(plan: Any, tensors: list[torch.Tensor]) -> Any:
    if plan[0] == "arg":
        return tensors[plan[1]]
    if plan[0] == "new":
        return torch.empty_strided(plan[1], plan[2], dtype=plan[3], device="meta")
    return plan[1](_replay(part, tensors) for part in plan[2])


def replayable(func: OpOverload) -> bool:
    """Return whether ``func``'s outputs may be replayed from metadata: it returns no view of an argument (per its
    schema; an in-place op returns the argument it wrote, which is replayed as itself)."""
    return all(ret.alias_info is None or ret.alias_info.is_write for ret in func._schema.returns)


#: Ops answered from their arguments' metadata without running them (their shape functions are Python
#: decompositions on meta tensors, the costliest of a count): op -> function of (args, kwargs) returning the outputs.
#: ``tests/test_meta_cache.py`` compares each with the op itself over fuzzed shapes, dtypes and layouts.
SHORTCUTS: dict[OpOverload, Callable[[tuple[Any, ...], dict[str, Any]], Any]] = {}

#: In-place activations: they return their first argument, its metadata unchanged.
IN_PLACE_ACTIVATIONS: tuple[OpOverload, ...] = (
    aten.relu_.default, aten.hardtanh_.default, aten.silu_.default, aten.hardswish_.default,
    aten.hardsigmoid_.default, aten.leaky_relu_.default, aten.elu_.default, aten.sigmoid_.default,
    aten.tanh_.default, aten.gelu_.default, aten.clamp_.default, aten.clamp_min_.default, aten.threshold_.default)


def _returns_self(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return args[0]


def _native_batch_norm(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """native_batch_norm's outputs: the normalised input (its layout kept), and the saved mean and inverse standard
    deviation per channel in the accumulation dtype (float64 for float64 input, else float32)."""
    x = args[0]
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    channels = (x.shape[1],)
    return (torch.empty_like(x), torch.empty(channels, dtype=acc, device=x.device),
            torch.empty(channels, dtype=acc, device=x.device))


def _native_layer_norm(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """native_layer_norm's outputs: the normalised input (contiguous, whatever the input's layout), and the mean and
    reciprocal standard deviation over the normalised dimensions (size 1 there), contiguous, in the accumulation
    dtype (float32 for half precisions)."""
    x, normalized = args[0], args[1]
    acc = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    kept = x.dim() - len(normalized)
    stats = (*x.shape[:kept], *([1] * len(normalized)))
    return (torch.empty(x.shape, dtype=x.dtype, device=x.device), torch.empty(stats, dtype=acc, device=x.device),
            torch.empty(stats, dtype=acc, device=x.device))


SHORTCUTS.update(dict.fromkeys(IN_PLACE_ACTIVATIONS, _returns_self))
SHORTCUTS[aten.native_batch_norm.default] = _native_batch_norm
SHORTCUTS[aten.native_layer_norm.default] = _native_layer_norm


@dataclass
class MetaCache:
    """The remembered outputs of one count: ``hits`` and ``misses`` count the calls replayed and run."""

    outputs: dict[Any, Any] = field(default_factory=dict)
    eligible: dict[OpOverload, bool] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0

    def call(self, func: OpOverload, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Return ``func(*args, **kwargs)``: replayed from a call with the same key when there was one, else run
        (and remembered when it can be replayed: an op that changed an argument's metadata, such as ``t_`` or
        ``resize_``, never is)."""
        shortcut = SHORTCUTS.get(func)
        if shortcut is not None and all(isinstance(a, torch.Tensor) and a.device.type == "meta" for a in args[:1]):
            self.hits += 1
            return shortcut(args, kwargs)
        allowed = self.eligible.get(func)
        if allowed is None:
            allowed = self.eligible[func] = replayable(func)
        if not allowed:
            return func(*args, **kwargs)
        tensors: list[torch.Tensor] = []
        try:
            key = (func, _key(args, tensors), _key(sorted(kwargs.items()), tensors))
        except _Uncacheable:
            return func(*args, **kwargs)
        plan = self.outputs.get(key)
        if plan is not None:
            self.hits += 1
            return _replay(plan, tensors)
        self.misses += 1
        out = func(*args, **kwargs)
        try:
            if (func, _key(args, []), _key(sorted(kwargs.items()), [])) != key:
                raise _Uncacheable  # the op changed an argument's metadata in place
            self.outputs[key] = _plan(out, tensors)
        except _Uncacheable:
            self.eligible[func] = False
        return out
