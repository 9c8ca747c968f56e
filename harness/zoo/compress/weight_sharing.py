"""Weight sharing by k-means (Han, Mao & Dally 2016, "Deep Compression", §3 "Trained quantization and weight
sharing"): each convolution and linear layer keeps only ``clusters`` distinct weight values.

Per layer (:func:`harness.zoo.compress.prunable_layers`; biases and norms untouched), the weights are clustered by
1-D k-means into k = ``clusters`` centroids, initialised linearly between the layer's smallest and largest weight
(the paper's §3.2 found linear initialisation best: it keeps centroids on the rare large weights), and every weight
is replaced by its centroid. A layer with fewer than k distinct weights keeps them all (its codebook is that
small). The k-means is Lloyd's algorithm run exactly in 1-D (:func:`cluster_weights`).

Protocol: ``apply`` puts a parametrization (:mod:`torch.nn.utils.parametrize`, :class:`SharedWeight`) on each
layer's ``weight``: its trainable parameter (``parametrizations.weight.original``) is the layer's codebook of k
centroids and its buffer ``indices`` maps each weight to a centroid, so ``weight = codebook[indices]`` and SGD
fine-tunes the shared centroids, each centroid's gradient being the sum of its weights' gradients (the paper's
§3.3). ``finish`` removes the parametrizations (``leave_parametrized=True``): plain ``weight`` parameters holding
only the k values. The cost path runs ``apply`` then ``finish`` at once; the dense structure (and so latency) is
unchanged, what sharing saves is storage.

Info: ``clusters`` (k asked), ``shared_layers`` (their count), ``index_bits`` (⌈log2 k⌉, bits per weight index)
and ``storage_bytes``, the bytes the model takes stored this way:

    storage_bytes = Σ_shared layers [⌈numel × ⌈log2 k_l⌉ / 8⌉ + 4 × k_l] + 4 × Σ_other tensors numel

where ``k_l`` is the layer's codebook size (k, or its number of distinct weights when fewer), the first term its
bit-packed indices, the second its fp32 codebook, and the other tensors every other parameter and buffer (biases,
norm weights and statistics: 4 bytes an element, whatever their dtype). Huffman coding (the paper's stage 3) is
not counted.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import Field
from torch import nn
from torch.nn.utils import parametrize

from harness.errors import SkipCase
from harness.zoo.compress import CompressContext, Compressed, CompressOptions, prunable_layers, register_compression

#: The most Lloyd iterations a layer's k-means runs (scikit-learn's default). It stops earlier when no weight changes
#: cluster: k = 16 does within it; k = 256 on a 2.4 M-weight layer still creeps on (k-means' slow 1-D convergence).
MAX_ITERATIONS = 300
#: Bytes an element of a tensor stored as fp32 takes (the codebooks, every unshared parameter and buffer).
FP32_BYTES = 4


class Options(CompressOptions):
    """Weight sharing options: ``clusters``, the number of distinct weight values each layer keeps (k)."""

    clusters: int = Field(16, ge=2, le=256)


class SharedWeight(nn.Module):
    """The parametrization ``weight = codebook[indices]``: ``indices`` (a buffer of the weight's shape, int64) maps
    each weight to one of ``clusters`` centroids; the codebook is the parametrization's trainable original."""

    def __init__(self, indices: torch.Tensor, clusters: int) -> None:
        super().__init__()
        self.clusters = clusters
        self.register_buffer("indices", indices)

    def forward(self, codebook: torch.Tensor) -> torch.Tensor:
        """Return the shared weight: each weight's centroid (the weight's shape and dtype)."""
        return codebook[self.indices]

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        """Return the codebook closest to ``weight`` under this sharing: each cluster's mean weight ([clusters],
        the weight's dtype; 0 for an empty cluster)."""
        flat, index = weight.detach().flatten().double(), self.indices.flatten()
        sums = torch.zeros(self.clusters, dtype=torch.float64, device=weight.device).index_add_(0, index, flat)
        counts = torch.bincount(index, minlength=self.clusters)
        return (sums / counts.clamp(min=1)).to(weight.dtype)

    def index_bytes(self) -> int:
        """Return the bytes of the indices packed at ⌈log2 clusters⌉ bits each, rounded up to whole bytes."""
        return math.ceil(self.indices.numel() * math.ceil(math.log2(self.clusters)) / 8)


def cluster_weights(weight: torch.Tensor, clusters: int) -> tuple[torch.Tensor, int]:
    """Return the k-means cluster of every weight (int64, the weight's shape, numbered by increasing centroid) and
    the number of clusters k = min(``clusters``, distinct weights), centroids initialised linearly between the
    smallest and largest weight.

    Lloyd's algorithm, exact in 1-D: with the weights sorted, each cluster is a run of them between the midpoints of
    adjacent centroids, so an iteration costs O(k log n) through prefix sums. A cluster left empty gets its
    centroid moved onto the weight farthest from its own centroid (as scikit-learn does), so every cluster holds
    weights once it converges."""
    values, order = weight.detach().flatten().double().sort()
    k = min(clusters, int(torch.unique_consecutive(values).numel()))
    prefix = torch.cat([values.new_zeros(1), values.cumsum(0)])
    centroids = torch.linspace(float(values[0]), float(values[-1]), k, dtype=torch.float64, device=values.device)
    cuts = None
    for _ in range(MAX_ITERATIONS):
        bounds = (centroids[1:] + centroids[:-1]) / 2
        new_cuts = torch.searchsorted(values, bounds, right=True)  # weights ≤ a midpoint join the lower centroid
        if cuts is not None and torch.equal(new_cuts, cuts):
            break
        cuts = new_cuts
        starts, ends = torch.cat([cuts.new_zeros(1), cuts]), torch.cat([cuts, cuts.new_full((1,), len(values))])
        counts = ends - starts
        means = (prefix[ends] - prefix[starts]) / counts.clamp(min=1)
        centroids = torch.where(counts > 0, means, centroids)
        empty = (counts == 0).nonzero().flatten()
        if len(empty):
            centroids = relocate(values, starts, ends, centroids, empty)
    labels_sorted = torch.bucketize(values, (centroids[1:] + centroids[:-1]) / 2)
    labels = torch.empty_like(labels_sorted).scatter_(0, order, labels_sorted)
    return labels.view(weight.shape), k


def relocate(values: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor, centroids: torch.Tensor,
             empty: torch.Tensor) -> torch.Tensor:
    """Return ``centroids`` (sorted) with those of the ``empty`` clusters moved onto the weights farthest from their
    own cluster's centroid, farthest first: each held cluster's first and last weight (``values`` sorted, cluster i
    = ``values[starts[i]:ends[i]]``) at a positive distance; an empty cluster beyond those stays put."""
    held = (ends > starts).nonzero().flatten()
    candidates = torch.cat([starts[held], ends[held] - 1])
    distance = (values[candidates] - centroids[held].repeat(2)).abs()
    farthest = distance.argsort(descending=True)[: len(empty)]
    far = candidates[farthest][distance[farthest] > 0]
    moved = centroids.clone()
    moved[empty[: len(far)]] = values[far]
    return moved.sort().values


def storage_bytes(model: nn.Module) -> int:
    """Return the bytes ``model`` (its layers under :class:`SharedWeight`) takes stored with packed indices: each
    shared layer's indices at ⌈log2 k_l⌉ bits (rounded up to bytes), every other tensor (the codebooks, unshared
    parameters and buffers) at 4 bytes an element."""
    shared = [m for m in model.modules() if isinstance(m, SharedWeight)]
    indices = {id(m.indices) for m in shared}
    others = sum(t.numel() for t in [*model.parameters(), *model.buffers()] if id(t) not in indices)
    return sum(m.index_bytes() for m in shared) + FP32_BYTES * others


def finish(model: nn.Module, _options: Options) -> Compressed:
    """Remove the sharing parametrizations, keeping their values: return ``model`` with plain ``weight``
    parameters, each holding only its layer's (fine-tuned) centroids, and no gradient (a codebook's would not fit
    the weight it becomes); no info of its own."""
    for _, module in prunable_layers(model):
        if parametrize.is_parametrized(module, "weight"):
            module.parametrizations.weight.original.grad = None
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    return Compressed(model, {})


@register_compression("weight_sharing", Options, finish=finish)
def apply(model: nn.Module, options: Options, _context: CompressContext) -> Compressed:
    """Cluster each conv/linear layer's weights into ``clusters`` shared values and put them behind a trainable
    codebook (:class:`SharedWeight`); return ``model`` (changed in place) with ``clusters``, ``shared_layers``,
    ``index_bits`` (bits per weight index) and ``storage_bytes`` (bytes stored this way) as info. SkipCase when the
    model has no conv/linear layer or one whose weight is already parametrized."""
    layers = [m for _, m in prunable_layers(model)]
    if not layers:
        raise SkipCase("weight_sharing: the model has no convolution or linear layer to share weights in")
    if any(parametrize.is_parametrized(m, "weight") for m in layers):
        raise SkipCase("weight_sharing: a layer's weight is already parametrized")
    for module in layers:
        indices, k = cluster_weights(module.weight, options.clusters)
        parametrize.register_parametrization(module, "weight", SharedWeight(indices, k))
    info: dict[str, Any] = {"clusters": options.clusters, "shared_layers": len(layers),
                            "index_bits": math.ceil(math.log2(options.clusters)), "storage_bytes": storage_bytes(model)}
    return Compressed(model, info)
