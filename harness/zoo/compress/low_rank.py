"""Low-rank factorisation: each factorised layer is *replaced* by the equivalent sequence of smaller layers, so the
parameter/MAC counter and the latency timer see the real structure, and the factorised model fine-tunes as is (its
factors are ordinary parameters; no ``finish``).

- ``nn.Linear(in, out)`` → ``Linear(in, r, bias=False)`` then ``Linear(r, out)`` from the truncated SVD
  ``W ≈ U_r S_r V_rᵀ``, split as ``(U_r √S_r)(√S_r V_rᵀ)`` (Denton et al. 2014, "Exploiting Linear Structure Within
  Convolutional Networks for Efficient Evaluation"); by Eckart–Young it is the best rank-r approximation, with
  ``‖W − W_r‖_F² = Σ discarded σ²``.
- 1×1 ``nn.Conv2d`` (groups 1) → two 1×1 convolutions from the SVD of its ``[N, C]`` matrix; the first carries the
  stride and padding.
- k×k ``nn.Conv2d`` (groups 1), ``conv="tucker2"`` → Tucker-2 on the output and input channel modes (Kim et al.
  2016, "Compression of Deep Convolutional Neural Networks for Fast and Low Power Mobile Applications"; tensorly's
  ``partial_tucker``): 1×1 conv C→r_in, k×k conv r_in→r_out (the original stride, padding, dilation), 1×1 conv
  r_out→N with the original bias. The factors start from the HOSVD (each channel mode's leading left singular
  vectors, from the eigendecomposition of the unfolding's Gram matrix, several times cheaper than an SVD of the
  wide unfolding); ``tucker_iterations`` HOOI sweeps may refine them (each one a full SVD per mode: on random
  ResNet-18 weights at rank_fraction 0.5 one sweep lowers the kernels' mean relative error from 0.755 to 0.735,
  converged HOOI to 0.731, while on VGG-11's 7×7 512→4096 layer one sweep took 145 s against 40 s for the HOSVD
  on 2 CPU cores), so the default is the plain HOSVD, the fine-tuning doing the rest.
- k×k ``nn.Conv2d`` (groups 1), ``conv="cp"`` → rank-r CP decomposition (Lebedev et al. 2015, "Speeding-up
  Convolutional Neural Networks Using Fine-tuned CP-Decomposition"; tensorly's ``parafac``, ALS from an SVD start,
  up to its default 100 sweeps: about 40 s for a 256→256 3×3 kernel at rank 115 on 2 CPU cores): 1×1 conv C→r,
  depth-wise kh×1 conv, depth-wise 1×kw conv, 1×1 conv r→N with the original bias.
- grouped / depth-wise convolutions are left as they are (info ``skipped_grouped``), and so are other layers the
  factorisation cannot see through (subclasses of ``nn.Linear`` / ``nn.Conv2d`` such as timm's ``Conv2dSame`` or
  weight-standardised convolutions, ``nn.MultiheadAttention``'s output projection, Conv1d / Conv3d: info
  ``skipped_other``). The classifier (:func:`classifier_layer`) is factorised only with ``classifier`` True.

Ranks (exactly one scheme; ``rank_fraction`` 0.5 when none is given). A layer's *full rank* is the rank at which its
factorisation is exact: ``min(out, in)`` for a matrix; for Tucker-2 ``min(N, C·kh·kw)`` for r_out and
``min(C, N·kh·kw)`` for r_in; for CP the classic bound on a tensor's rank, the product of the kernel's dimensions
but the largest (``min(N, C)·kh·kw`` for usual convolutions), at which the CP is built exactly (the largest mode's
unfolding against one-hot factors) rather than by ALS. A CP of rank r has r·(C + N + kh + kw) parameters, so for a
square 3×3 layer it is smaller than the dense one only below about 0.47 of that full rank: with CP, pick ``rank``
or a ``rank_fraction`` near 0.1–0.3 (at the default 0.5 every such layer is kept dense).

- ``rank``: that rank for every layer (for Tucker-2 both r_in and r_out), capped at the layer's full rank;
- ``rank_fraction``: that share of each layer's full rank (rounded up);
- ``energy``: the smallest rank keeping that share of the squared singular values of the layer's matrix (for
  Tucker-2 of each channel mode's unfolding; for CP the larger of the two, a lower bound on the CP rank the kernel
  needs, so CP is not exact even at energy 1).

With ``only_if_smaller`` a layer whose factorised form would have at least as many parameters as it has is left
dense (info ``kept_dense``). At full rank (``rank_fraction`` 1, ``only_if_smaller`` False) the factorised model
computes the original function up to float error. The decompositions run in float64 on the weights' device.

Info: ``param_ratio`` (params after / before), ``factorised_layers``, ``kept_dense``, ``skipped_grouped``,
``skipped_other``, ``ranks`` (``mean_fraction`` / ``min_fraction`` / ``max_fraction``: the kept rank over the full
rank of the factorised layers, a Tucker-2 layer counting the mean of its two).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from harness.zoo.compress import (
    CompressContext,
    Compressed,
    CompressOptions,
    classifier_layer,
    count_params,
    prunable_layers,
    register_compression,
)

#: The rank schemes; exactly one is used (rank_fraction DEFAULT_RANK_FRACTION when none is given).
RANK_SCHEMES = ("rank", "rank_fraction", "energy")
DEFAULT_RANK_FRACTION = 0.5


class Options(CompressOptions):
    """Low-rank options: one rank scheme (``rank``, ``rank_fraction`` or ``energy``), the decomposition of k×k
    convolutions (``conv``) and the HOOI sweeps refining a Tucker-2 (``tucker_iterations``, 0: the HOSVD), whether
    the ``classifier`` is factorised and whether a layer is factorised ``only_if_smaller`` than it is."""

    rank: int | None = Field(None, ge=1)
    rank_fraction: float | None = Field(None, gt=0, le=1)
    energy: float | None = Field(None, gt=0, le=1)
    conv: Literal["tucker2", "cp"] = "tucker2"
    tucker_iterations: int = Field(0, ge=0)
    classifier: bool = False
    only_if_smaller: bool = True

    @model_validator(mode="after")
    def _one_rank_scheme(self) -> Options:
        given = [name for name in RANK_SCHEMES if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"give one rank scheme of {', '.join(RANK_SCHEMES)}; got {' and '.join(given)}")
        if not given:
            self.rank_fraction = DEFAULT_RANK_FRACTION
        return self


def gram_svd(matrix: torch.Tensor, n_eigenvecs: int | None = None, **_: Any) -> tuple[torch.Tensor, ...]:
    """Return ``(U [m, k], S [k], Vᵀ [k, n])``, the ``k = n_eigenvecs`` leading singular triplets of ``matrix``
    [m, n] from the eigendecomposition of its Gram matrix ``A Aᵀ`` [m, m]: for the wide unfoldings of a kernel
    several times cheaper than a full SVD (the signature of a tensorly SVD function)."""
    squared, u = torch.linalg.eigh(matrix @ matrix.T)
    u, s = u.flip(1)[:, :n_eigenvecs], squared.flip(0)[:n_eigenvecs].clamp(min=0).sqrt()
    return u, s, (u.T @ matrix) / s.clamp(min=torch.finfo(s.dtype).tiny)[:, None]


def energy_rank(matrix: torch.Tensor, energy: float) -> int:
    """Return the smallest rank whose leading singular values of ``matrix`` keep ``energy`` (0…1] of the sum of the
    squared singular values (1 for a zero matrix)."""
    matrix = matrix.double()
    squared = torch.linalg.eigvalsh(matrix @ matrix.T if matrix.shape[0] <= matrix.shape[1] else matrix.T @ matrix)
    squared = squared.flip(0).clamp(min=0)
    if squared.sum() == 0:
        return 1
    kept = torch.cumsum(squared, 0) / squared.sum()
    return min(int(torch.searchsorted(kept, torch.tensor(energy, dtype=kept.dtype, device=kept.device))) + 1,
               len(squared))


def kept_rank(options: Options, full: int, matrix: torch.Tensor) -> int:
    """Return the rank ``options`` keep of a factor whose full rank is ``full`` (``energy`` measured on
    ``matrix``, the matrix or unfolding that factor spans)."""
    if options.rank is not None:
        return min(options.rank, full)
    if options.energy is not None:
        return min(energy_rank(matrix, options.energy), full)
    return max(1, math.ceil(options.rank_fraction * full - 1e-9))


@contextmanager
def _tensorly() -> Iterator[None]:
    """Run tensorly on its pytorch backend (in this thread only), quiet about ranks beyond a matrix's size (its SVD
    start then completes the factors with random orthonormal columns, as the decomposition asks)."""
    import tensorly as tl

    with tl.backend_context("pytorch", local_threadsafe=True), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Trying to compute SVD with n_eigenvecs")
        yield


def svd_factors(matrix: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(first [rank, in], second [out, rank])`` with ``second @ first`` the best rank-``rank``
    approximation of ``matrix`` [out, in]: ``√S_r V_rᵀ`` and ``U_r √S_r`` of its SVD (float64)."""
    u, s, vh = torch.linalg.svd(matrix.double(), full_matrices=False)
    root = s[:rank].sqrt()
    return root[:, None] * vh[:rank], u[:, :rank] * root


def _conv(weight: torch.Tensor, like: nn.Conv2d, bias: torch.Tensor | None = None, **geometry: Any) -> nn.Conv2d:
    """Return a Conv2d holding ``weight`` [out, in / groups, kh, kw] (and ``bias``), in ``like``'s dtype and
    device and padding mode, with ``geometry`` (stride, padding, dilation, groups) as given."""
    groups = geometry.get("groups", 1)
    conv = nn.Conv2d(weight.shape[1] * groups, weight.shape[0], tuple(weight.shape[2:]), bias=bias is not None,
                     padding_mode=like.padding_mode, device=like.weight.device, dtype=like.weight.dtype, **geometry)
    with torch.no_grad():
        conv.weight.copy_(weight)
        if bias is not None:
            conv.bias.copy_(bias)
    return conv


def factorise_linear(layer: nn.Linear, rank: int) -> nn.Sequential:
    """Return ``Linear(in, rank, bias=False)`` then ``Linear(rank, out)`` (the layer's bias), the rank-``rank``
    truncated SVD of ``layer``."""
    first, second = svd_factors(layer.weight, rank)
    like = {"device": layer.weight.device, "dtype": layer.weight.dtype}
    down = nn.Linear(layer.in_features, rank, bias=False, **like)
    up = nn.Linear(rank, layer.out_features, bias=layer.bias is not None, **like)
    with torch.no_grad():
        down.weight.copy_(first)
        up.weight.copy_(second)
        if layer.bias is not None:
            up.bias.copy_(layer.bias)
    return nn.Sequential(down, up)


def factorise_pointwise(conv: nn.Conv2d, rank: int) -> nn.Sequential:
    """Return two 1×1 convolutions C→rank (the original stride and padding) and rank→N (its bias), the
    rank-``rank`` truncated SVD of the 1×1 ``conv``'s [N, C] matrix."""
    first, second = svd_factors(conv.weight.flatten(1), rank)
    return nn.Sequential(
        _conv(first[:, :, None, None], conv, stride=conv.stride, padding=conv.padding, dilation=conv.dilation),
        _conv(second[:, :, None, None], conv, conv.bias))


def tucker2(conv: nn.Conv2d, rank_in: int, rank_out: int, iterations: int = 0) -> nn.Sequential:
    """Return 1×1 conv C→rank_in, kh×kw conv rank_in→rank_out (the original stride, padding, dilation), 1×1 conv
    rank_out→N (its bias): the Tucker-2 decomposition of ``conv``'s kernel on its channel modes (tensorly
    ``partial_tucker``: the HOSVD, then ``iterations`` HOOI sweeps)."""
    from tensorly.decomposition import partial_tucker

    with _tensorly():
        (core, (u_out, u_in)), _ = partial_tucker(conv.weight.detach().double(), rank=[rank_out, rank_in],
                                                  modes=[0, 1], init="svd", svd=gram_svd,
                                                  n_iter_max=iterations, random_state=0)
    return nn.Sequential(
        _conv(u_in.T[:, :, None, None], conv),
        _conv(core, conv, stride=conv.stride, padding=conv.padding, dilation=conv.dilation),
        _conv(u_out[:, :, None, None], conv, conv.bias))


def cp_full_rank(shape: tuple[int, ...]) -> int:
    """Return the rank at which a CP decomposition of a tensor of ``shape`` is exact in general: the product of
    its dimensions but the largest."""
    return math.prod(shape) // max(shape)


def exact_cp(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Return the factors [dim_i, R] of an exact CP decomposition of ``tensor`` with R = :func:`cp_full_rank`: the
    largest mode's unfolding against one-hot factors of the other modes (unit weights)."""
    largest = max(range(tensor.dim()), key=lambda mode: tensor.shape[mode])
    others = [size for mode, size in enumerate(tensor.shape) if mode != largest]
    indices = iter(torch.cartesian_prod(*[torch.arange(size, device=tensor.device) for size in others])
                   .reshape(-1, len(others)).T)
    return [tensor.movedim(largest, 0).reshape(tensor.shape[largest], -1) if mode == largest
            else F.one_hot(next(indices), size).T.to(tensor.dtype) for mode, size in enumerate(tensor.shape)]


def cp(conv: nn.Conv2d, rank: int) -> nn.Sequential:
    """Return 1×1 conv C→rank, depth-wise kh×1 conv, depth-wise 1×kw conv (the original stride, padding, dilation
    split between them), 1×1 conv rank→N (its bias): the rank-``rank`` CP decomposition of ``conv``'s kernel
    (tensorly ``parafac``; built exactly at :func:`cp_full_rank`)."""
    weight = conv.weight.detach().double()
    if rank >= cp_full_rank(tuple(weight.shape)):
        weights, factors = torch.ones(rank, dtype=weight.dtype, device=weight.device), exact_cp(weight)
    else:
        from tensorly.decomposition import parafac

        with _tensorly():
            weights, factors = parafac(weight, rank, init="svd", svd=gram_svd, random_state=0)
    a_out, a_in, a_h, a_w = factors
    (s_h, s_w), (d_h, d_w) = conv.stride, conv.dilation
    pad_h, pad_w = (conv.padding, conv.padding) if isinstance(conv.padding, str) else ((conv.padding[0], 0),
                                                                                         (0, conv.padding[1]))
    return nn.Sequential(
        _conv(a_in.T[:, :, None, None], conv),
        _conv(a_h.T[:, None, :, None], conv, stride=(s_h, 1), padding=pad_h, dilation=(d_h, 1), groups=rank),
        _conv(a_w.T[:, None, None, :], conv, stride=(1, s_w), padding=pad_w, dilation=(1, d_w), groups=rank),
        _conv((a_out * weights)[:, :, None, None], conv, conv.bias))


@dataclass
class Plan:
    """How a layer would be factorised: ``params`` of the factorised form, ``rank_fraction`` kept (kept rank / full
    rank) and ``build``, making the replacement module."""

    params: int
    rank_fraction: float
    build: Callable[[], nn.Module]


def plan(layer: nn.Linear | nn.Conv2d, options: Options) -> Plan:
    """Return the :class:`Plan` factorising ``layer`` (a Linear or a Conv2d with groups 1) under ``options``."""
    weight = layer.weight.detach()
    bias = 0 if layer.bias is None else layer.bias.numel()
    if isinstance(layer, nn.Linear) or layer.kernel_size == (1, 1):
        matrix = weight.flatten(1)
        out, inp = matrix.shape
        full = min(out, inp)
        rank = kept_rank(options, full, matrix)
        factorise = factorise_linear if isinstance(layer, nn.Linear) else factorise_pointwise
        return Plan(rank * (out + inp) + bias, rank / full, lambda: factorise(layer, rank))
    n, c, kh, kw = weight.shape
    if options.conv == "tucker2":
        full_out, full_in = min(n, c * kh * kw), min(c, n * kh * kw)
        rank_out = kept_rank(options, full_out, weight.flatten(1))
        rank_in = kept_rank(options, full_in, weight.transpose(0, 1).flatten(1))
        return Plan(c * rank_in + rank_in * rank_out * kh * kw + rank_out * n + bias,
                    (rank_in / full_in + rank_out / full_out) / 2,
                    lambda: tucker2(layer, rank_in, rank_out, options.tucker_iterations))
    full = cp_full_rank((n, c, kh, kw))
    if options.energy is not None:
        rank = min(full, max(energy_rank(weight.flatten(1), options.energy),
                             energy_rank(weight.transpose(0, 1).flatten(1), options.energy)))
    else:
        rank = kept_rank(options, full, weight)
    return Plan(rank * (c + kh + kw + n) + bias, rank / full, lambda: cp(layer, rank))


def _replace(model: nn.Module, name: str, module: nn.Module) -> nn.Module:
    """Return ``model`` with its submodule ``name`` replaced by ``module`` (``module`` itself when ``name`` is the
    model)."""
    if not name:
        return module
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, module)
    return model


@register_compression("low_rank", Options)
def apply(model: nn.Module, options: Options, context: CompressContext) -> Compressed:
    """Low-rank factorisation: every Linear and groups-1 Conv2d (the classifier only with ``classifier``) replaced
    by its truncated SVD (Linear, 1×1 conv) or its Tucker-2 / CP decomposition (k×k conv), the ranks chosen by
    ``rank`` / ``rank_fraction`` / ``energy``; returns the factorised model (changed in place) and the info."""
    before = count_params(model)
    head = classifier_layer(model)
    excluded = set() if options.classifier or head is None else {id(m) for m in head.modules()}
    counts = {"factorised_layers": 0, "kept_dense": 0, "skipped_grouped": 0, "skipped_other": 0}
    fractions = []
    for name, layer in prunable_layers(model):
        if id(layer) in excluded:
            continue
        if type(layer) not in (nn.Linear, nn.Conv2d):
            counts["skipped_other"] += 1
            continue
        if isinstance(layer, nn.Conv2d) and layer.groups != 1:
            counts["skipped_grouped"] += 1
            continue
        factorisation = plan(layer, options)
        if options.only_if_smaller and factorisation.params >= count_params(layer):
            counts["kept_dense"] += 1
            continue
        model = _replace(model, name, factorisation.build().train(layer.training))
        counts["factorised_layers"] += 1
        fractions.append(factorisation.rank_fraction)
    ranks = {"mean_fraction": sum(fractions) / len(fractions), "min_fraction": min(fractions),
             "max_fraction": max(fractions)} if fractions else {}
    return Compressed(model, {"param_ratio": count_params(model) / before, **counts, "ranks": ranks})
