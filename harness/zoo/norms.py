"""Normalization-layer swaps: replace every BatchNorm of a timm or torchvision model by another kind.

:func:`swap_norm` walks the model (``named_children`` recursion, so models without a ``norm_layer``
argument, such as DLA, work too) and replaces each BatchNorm-like module — an instance of torch's
``_BatchNorm``, which includes ``nn.SyncBatchNorm`` and timm's fused ``BatchNormAct2d`` — by the layer the
kind's builder in :data:`NORM_KINDS` makes. Kinds (all for NCHW inputs; a model holding ``BatchNorm1d`` or
``BatchNorm3d`` is refused):

- ``bn``: plain ``nn.BatchNorm2d`` (un-fuses timm's ``BatchNormAct2d``, un-syncs ``SyncBatchNorm``).
- ``gn``: ``nn.GroupNorm(groups, C)``, option ``groups`` (default 32, as in the GN paper). When ``C`` is not
  divisible by ``groups`` (``C < groups`` included), the largest divisor of ``C`` that is ``<= groups`` is used
  (C=24: 24 groups at ``groups=32``, 12 at ``groups=16``; a prime C > groups gets 1 group, i.e. LN).
- ``ln``: GroupNorm with one group: statistics over (C, H, W) per sample, affine per channel (GN paper's LN).
- ``ln2d``: timm ``LayerNorm2d``: per-position LayerNorm over the channels, as in ConvNeXt.
- ``in``: ``nn.InstanceNorm2d(C, affine=True, track_running_stats=False)``: statistics over (H, W) per sample
  and channel, in training and in eval.
- ``sn``: :class:`SwitchableNorm2d` (Luo et al., ICLR 2019), options ``moving_average`` (default True) and
  ``momentum`` (default 0.1, torch convention).
- ``syncbn``: synchronised BatchNorm, options ``process_group`` (None: the default group) and ``device``,
  which picks the implementation: ``"cpu"`` (default) uses :func:`harness.zoo.syncbn.convert_cpu_syncbn`
  (torch's ``SyncBatchNorm`` raises on CPU tensors once a process group exists); ``"cuda"`` uses timm's
  ``convert_sync_batchnorm`` (``SyncBatchNorm``, or ``SyncBatchNormAct`` keeping the fused activation; torch's
  own converter drops it). Without an initialised process group both behave like ``bn``.

Every replacement keeps the original's affine parameters (``weight``, ``bias``, and whether they require a
gradient), its ``eps`` and ``affine`` flag; ``bn``, ``syncbn`` and ``sn`` also keep the running statistics
(``running_mean``, ``running_var``, ``num_batches_tracked``), and ``bn``/``syncbn`` the momentum and
``track_running_stats``. The replacement is on the original's device and dtype and in its train/eval mode.
A fused ``BatchNormAct2d`` (a BN with ``drop`` and ``act`` submodules applied after the norm) becomes
:class:`NormAct` (``act(drop(norm(x)))``) re-using the original ``drop`` and ``act`` modules, for every kind
whose layer does not apply them itself (the two syncbn implementations do). Wrapping moves the norm's
state-dict keys under ``.norm.``, so load checkpoints before swapping, not after.
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import LayerNorm2d, convert_sync_batchnorm
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from harness.zoo.syncbn import convert_cpu_syncbn

#: A kind's builder: takes the BatchNorm-like module to replace and the kind's options (keyword-only).
NormBuilder = Callable[..., nn.Module]

#: Registered kinds: name -> builder of the replacement layer for one BatchNorm-like module.
NORM_KINDS: dict[str, NormBuilder] = {}

_AFFINE: tuple[str, ...] = ("weight", "bias")
_STATS: tuple[str, ...] = (*_AFFINE, "running_mean", "running_var", "num_batches_tracked")
#: The three statistics a SwitchableNorm2d mixes, in the order of ``mean_weight`` / ``var_weight``.
SN_TERMS: tuple[str, ...] = ("in", "ln", "bn")


def register_norm(name: str) -> Callable[[NormBuilder], NormBuilder]:
    """Return a decorator registering a builder under ``name`` in :data:`NORM_KINDS` (the builder is returned)."""

    def decorate(builder: NormBuilder) -> NormBuilder:
        if name in NORM_KINDS:
            raise ValueError(f"norm kind {name!r} is already registered")
        NORM_KINDS[name] = builder
        return builder

    return decorate


def norm_kinds() -> list[str]:
    """Return the registered norm kinds' names, sorted."""
    return sorted(NORM_KINDS)


def kind_options(kind: str) -> list[str]:
    """Return the option names ``kind`` accepts (its builder's keyword-only parameters); ValueError if unknown."""
    if kind not in NORM_KINDS:
        raise ValueError(f"unknown norm kind {kind!r}; known kinds: {', '.join(norm_kinds())}")
    parameters = inspect.signature(NORM_KINDS[kind]).parameters.values()
    return [p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]


class NormAct(nn.Module):
    """A norm followed by the dropout and activation of the timm ``BatchNormAct2d`` it replaced."""

    def __init__(self, norm: nn.Module, drop: nn.Module, act: nn.Module) -> None:
        super().__init__()
        self.norm = norm
        self.drop = drop
        self.act = act

    def forward(self, x: Tensor) -> Tensor:
        """Return ``act(drop(norm(x)))``."""
        return self.act(self.drop(self.norm(x)))


class SwitchableNorm2d(nn.Module):
    """Switchable Normalization (Luo et al., ICLR 2019) for NCHW inputs, re-implemented from its description.

    Statistics, all per channel: IN — mean and *unbiased* variance over H·W per (sample, channel); LN — derived
    from IN over the channels (``mean_ln = mean_c(mean_in)``, ``var_ln = mean_c(var_in + mean_in²) − mean_ln²``);
    BN — in training derived from IN over the batch (``mean_bn = mean_n(mean_in)``,
    ``var_bn = mean_n(var_in + mean_in²) − mean_bn²``), in eval the running statistics. IN and LN always come
    from the current input. Because ``var_in`` is unbiased, ``var_bn`` exceeds the biased batch variance by
    ``mean_n(biased var_in)/(H·W − 1)``. The mean and the variance are mixed with ``softmax(mean_weight)`` and
    ``softmax(var_weight)`` (order IN, LN, BN; :data:`SN_TERMS`), and ``y = (x − mean)/sqrt(var + eps)·weight + bias``.
    ``var_ln`` and ``var_bn`` are clamped at 0 against rounding in the subtraction.

    Running statistics: with ``moving_average=True`` each training pass updates them with the torch convention,
    ``running = (1 − momentum)·running + momentum·batch`` (the SN paper's code uses the opposite convention: its
    momentum 0.9 is 0.1 here). With ``moving_average=False`` ("batch average") training leaves them alone and
    :func:`recompute_batch_average` sets them from a set of batches. ``num_batches_tracked`` counts the batches
    the running statistics come from (moving-average updates, or the batches of the last batch average).
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        moving_average: bool = True,
        affine: bool = True,
    ) -> None:
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"SwitchableNorm2d momentum must be in [0, 1], got {momentum}")
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.moving_average = moving_average
        self.affine = affine
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.mean_weight = nn.Parameter(torch.ones(len(SN_TERMS)))
        self.var_weight = nn.Parameter(torch.ones(len(SN_TERMS)))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        #: Set by :func:`recompute_batch_average`: training passes add their BN statistics to the buffers.
        self._accumulating = False

    def mixing_weights(self) -> tuple[Tensor, Tensor]:
        """Return ``(softmax(mean_weight), softmax(var_weight))``: the IN, LN, BN shares of the mean and variance."""
        return F.softmax(self.mean_weight, dim=0), F.softmax(self.var_weight, dim=0)

    def reset_running_stats(self) -> None:
        """Reset the running statistics to mean 0, variance 1, no batches tracked (returns None)."""
        self.running_mean.zero_()
        self.running_var.fill_(1.0)
        self.num_batches_tracked.zero_()

    def forward(self, x: Tensor) -> Tensor:
        """Return the switchably normalised ``x`` (N, C, H, W); in training also update the running statistics."""
        n, c = x.shape[:2]
        flat = x.reshape(n, c, -1)
        var_in, mean_in = torch.var_mean(flat, dim=-1, keepdim=True)  # (N, C, 1); unbiased
        square_in = var_in + mean_in**2
        mean_ln = mean_in.mean(1, keepdim=True)  # (N, 1, 1)
        var_ln = (square_in.mean(1, keepdim=True) - mean_ln**2).clamp_min(0.0)
        if self.training:
            mean_bn = mean_in.mean(0, keepdim=True)  # (1, C, 1)
            var_bn = (square_in.mean(0, keepdim=True) - mean_bn**2).clamp_min(0.0)
            self._track(mean_bn.detach().flatten(), var_bn.detach().flatten())
        else:
            mean_bn = self.running_mean.view(1, c, 1)
            var_bn = self.running_var.view(1, c, 1)
        mean_mix, var_mix = self.mixing_weights()
        mean = mean_mix[0] * mean_in + mean_mix[1] * mean_ln + mean_mix[2] * mean_bn
        var = var_mix[0] * var_in + var_mix[1] * var_ln + var_mix[2] * var_bn
        y = ((flat - mean) * torch.rsqrt(var + self.eps)).view_as(x)
        if self.affine:
            y = y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        return y

    @torch.no_grad()
    def _track(self, mean_bn: Tensor, var_bn: Tensor) -> None:
        """Fold one training batch's BN statistics into the buffers (accumulate or moving average)."""
        if self._accumulating:
            self.running_mean.add_(mean_bn)
            self.running_var.add_(var_bn + mean_bn**2)
        elif self.moving_average:
            self.running_mean.lerp_(mean_bn, self.momentum)
            self.running_var.lerp_(var_bn, self.momentum)
        else:
            return
        self.num_batches_tracked.add_(1)

    @torch.no_grad()
    def _begin_batch_average(self) -> None:
        """Zero the buffers and make training passes accumulate E[mean_bn] and E[var_bn + mean_bn²] in them."""
        self.running_mean.zero_()
        self.running_var.zero_()
        self.num_batches_tracked.zero_()
        self._accumulating = True

    @torch.no_grad()
    def _end_batch_average(self, batches: int) -> None:
        """Stop accumulating; set ``running_mean = E[mean_bn]``, ``running_var = E[var_bn + mean_bn²] − E²``.

        The statistics are reset instead when no batch was run (``batches == 0``, e.g. after an error). A layer
        that ran in fewer batches than the model (not used in every forward) averages over its own count.
        """
        self._accumulating = False
        count = int(self.num_batches_tracked)
        if batches == 0 or count == 0:
            self.reset_running_stats()
            return
        self.running_mean.div_(count)
        self.running_var.div_(count).sub_(self.running_mean**2).clamp_min_(0.0)

    def extra_repr(self) -> str:
        """Return the constructor arguments, for ``repr``."""
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"moving_average={self.moving_average}, affine={self.affine}"
        )


@torch.no_grad()
def recompute_batch_average(model: nn.Module, batches: Iterable[Tensor]) -> int:
    """Set the running statistics of the model's batch-average SwitchableNorm2d layers from ``batches``.

    Every :class:`SwitchableNorm2d` with ``moving_average=False`` is reset; each batch (already on the model's
    device) runs forward in train mode without gradients, and each such layer ends with
    ``running_mean = E[mean_bn]`` and ``running_var = E[var_bn + mean_bn²] − running_mean²`` over the batches
    (the SN paper's "batch average"). All other buffers of the model (BatchNorm and moving-average SN running
    statistics) are restored afterwards, and so is the model's train/eval mode of every module.

    Returns the number of batches used: 0, without reading ``batches``, when the model has no batch-average SN
    layer. ValueError when it has some and ``batches`` is empty; on any error their statistics are left reset.
    """
    layers = [m for m in model.modules() if isinstance(m, SwitchableNorm2d) and not m.moving_average]
    if not layers:
        return 0
    owned = {id(buffer) for layer in layers for buffer in layer.buffers()}
    others = [(buffer, buffer.clone()) for buffer in model.buffers() if id(buffer) not in owned]
    modes = [(module, module.training) for module in model.modules()]
    for layer in layers:
        layer._begin_batch_average()
    completed = 0  # stays 0 when a forward raises: the layers are then reset
    try:
        model.train()
        count = 0
        for batch in batches:
            model(batch)
            count += 1
        completed = count
    finally:
        for layer in layers:
            layer._end_batch_average(completed)
        for buffer, saved in others:
            buffer.copy_(saved)
        for module, training in modes:
            module.training = training
    if completed == 0:
        raise ValueError("recompute_batch_average needs at least one batch")
    return completed


def _adopt(source: nn.Module, target: nn.Module, names: tuple[str, ...]) -> nn.Module:
    """Move ``target`` to the device and dtype of ``source``, copy the named state both hold; return target.

    Parameters also take over ``requires_grad``. Moving first lets meta-device models be swapped too.
    """
    reference = next((t for t in (*source.parameters(), *source.buffers()) if t.is_floating_point()), None)
    if reference is not None:
        target.to(device=reference.device, dtype=reference.dtype)
    with torch.no_grad():
        for name in names:
            value, slot = getattr(source, name, None), getattr(target, name, None)
            if value is not None and slot is not None:
                slot.copy_(value)
                if isinstance(slot, nn.Parameter):
                    slot.requires_grad_(value.requires_grad)
    return target


@register_norm("bn")
def _build_bn(bn: _BatchNorm) -> nn.Module:
    """Return an ``nn.BatchNorm2d`` with the original's settings and state."""
    layer = nn.BatchNorm2d(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    return _adopt(bn, layer, _STATS)


def _largest_divisor(n: int, at_most: int) -> int:
    """Return the largest divisor of ``n`` that is ``<= at_most``."""
    return next(d for d in range(min(n, at_most), 0, -1) if n % d == 0)


@register_norm("gn")
def _build_gn(bn: _BatchNorm, *, groups: int = 32) -> nn.Module:
    """Return an ``nn.GroupNorm`` with the largest divisor of C that is <= ``groups`` as its number of groups."""
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"norm kind 'gn': groups must be a positive int, got {groups!r}")
    layer = nn.GroupNorm(_largest_divisor(bn.num_features, groups), bn.num_features, bn.eps, bn.affine)
    return _adopt(bn, layer, _AFFINE)


@register_norm("ln")
def _build_ln(bn: _BatchNorm) -> nn.Module:
    """Return an ``nn.GroupNorm`` with one group (LayerNorm over C, H, W with a per-channel affine)."""
    return _adopt(bn, nn.GroupNorm(1, bn.num_features, bn.eps, bn.affine), _AFFINE)


@register_norm("ln2d")
def _build_ln2d(bn: _BatchNorm) -> nn.Module:
    """Return a timm ``LayerNorm2d`` (LayerNorm over C at each position)."""
    return _adopt(bn, LayerNorm2d(bn.num_features, eps=bn.eps, affine=bn.affine), _AFFINE)


@register_norm("in")
def _build_in(bn: _BatchNorm) -> nn.Module:
    """Return an ``nn.InstanceNorm2d`` without running statistics."""
    layer = nn.InstanceNorm2d(bn.num_features, bn.eps, affine=bn.affine, track_running_stats=False)
    return _adopt(bn, layer, _AFFINE)


@register_norm("sn")
def _build_sn(bn: _BatchNorm, *, moving_average: bool = True, momentum: float = 0.1) -> nn.Module:
    """Return a :class:`SwitchableNorm2d` starting from the original's affine parameters and running statistics."""
    layer = SwitchableNorm2d(bn.num_features, bn.eps, momentum, moving_average, bn.affine)
    return _adopt(bn, layer, _STATS)


#: syncbn implementations by ``device`` option. Both converters share the original's parameters and
#: buffers, and for a ``BatchNormAct2d`` return a layer holding its ``drop`` and ``act`` (timm's
#: ``SyncBatchNormAct``, our ``CpuSyncBatchNormAct2d``), so both give the same state-dict keys.
_SYNC_BN: dict[str, Callable[[_BatchNorm, Any], nn.Module]] = {
    "cpu": convert_cpu_syncbn,
    "cuda": convert_sync_batchnorm,
}


@register_norm("syncbn")
def _build_syncbn(bn: _BatchNorm, *, process_group: Any = None, device: str = "cpu") -> nn.Module:
    """Return the synchronised BatchNorm of the ``device`` implementation, over ``process_group``."""
    if device not in _SYNC_BN:
        raise ValueError(f"norm kind 'syncbn': device must be one of {sorted(_SYNC_BN)}, got {device!r}")
    return _SYNC_BN[device](bn, process_group)


#: BatchNorms whose input is not NCHW: every kind's layer is 2-D, so models holding these are refused.
_NOT_2D: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm3d)


def _replacement(bn: _BatchNorm, builder: NormBuilder, options: dict[str, Any]) -> nn.Module:
    """Return the built replacement of ``bn`` (on its device and dtype), wrapped with its activation, in its mode."""
    layer = builder(bn, **options)
    act = getattr(bn, "act", None)
    if act is not None and getattr(layer, "act", None) is not act:
        layer = NormAct(layer, bn.drop, act)
    return layer.train(bn.training)


def _norm_slots(module: nn.Module) -> list[tuple[nn.Module, str, _BatchNorm]]:
    """Return (parent, attribute name, module) for every BatchNorm-like module below ``module``.

    Walks ``_modules`` rather than ``named_children()``, which yields a module held twice by one parent once.
    """
    slots = []
    for name, child in module._modules.items():
        if isinstance(child, _BatchNorm):
            slots.append((module, name, child))
        elif child is not None:  # a registered None slot
            slots.extend(_norm_slots(child))
    return slots


def swap_norm(model: nn.Module, kind: str, **options: Any) -> nn.Module:
    """Replace every BatchNorm-like module of ``model`` in place by a layer of ``kind``; return the model.

    ``options`` are the kind's options (:func:`kind_options`). Unknown kind: ValueError listing the known
    kinds; unknown option: TypeError naming the kind and its options; a bad option value: ValueError; a
    ``BatchNorm1d``/``BatchNorm3d`` in the model (e.g. timm's LeViT): ValueError naming them. All
    replacements are built before any is put in, so an error leaves the model unchanged. A module shared by
    several parents gets one shared replacement. When ``model`` itself is BatchNorm-like, its replacement is
    returned.
    """
    accepted = kind_options(kind)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(
            f"norm kind {kind!r} got unknown option(s) {', '.join(unknown)}; "
            f"it accepts {', '.join(accepted) if accepted else 'no options'}"
        )
    not_2d = [name or type(m).__name__ for name, m in model.named_modules() if isinstance(m, _NOT_2D)]
    if not_2d:
        shown = ", ".join(not_2d[:3]) + (f" and {len(not_2d) - 3} more" if len(not_2d) > 3 else "")
        raise ValueError(f"swap_norm replaces 2-D BatchNorms only; not 2-D: {shown}")
    builder = NORM_KINDS[kind]
    if isinstance(model, _BatchNorm):
        return _replacement(model, builder, options)
    slots = _norm_slots(model)
    replacements: dict[int, nn.Module] = {}
    for _, _, bn in slots:
        if id(bn) not in replacements:
            replacements[id(bn)] = _replacement(bn, builder, options)
    for parent, name, bn in slots:
        setattr(parent, name, replacements[id(bn)])
    return model


#: Module classes counted by :func:`count_norms` (subclasses included: BatchNormAct2d, LayerNorm2d, ...).
NORM_CLASSES: tuple[type[nn.Module], ...] = (_BatchNorm, nn.GroupNorm, nn.LayerNorm, _InstanceNorm, SwitchableNorm2d)


def count_norms(model: nn.Module) -> dict[str, int]:
    """Return class name -> number of normalization modules in ``model`` (keys sorted; :data:`NORM_CLASSES`)."""
    counts = Counter(type(m).__name__ for m in model.modules() if isinstance(m, NORM_CLASSES))
    return dict(sorted(counts.items()))
