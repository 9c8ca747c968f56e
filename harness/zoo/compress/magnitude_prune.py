"""Unstructured magnitude pruning (Han, Pool, Tran & Dally 2015, "Learning both Weights and Connections for
Efficient Neural Networks"): the weights of smallest absolute value are set to zero.

Every convolution and linear weight (:func:`harness.zoo.compress.prunable_layers`; not biases, not norms) is
pruned with :mod:`torch.nn.utils.prune`:

- ``scope: global`` ranks all those weights together (``global_unstructured`` with ``L1Unstructured``) and zeroes
  the ``sparsity`` share of smallest magnitude, so layers end with different sparsities;
- ``scope: layer`` zeroes the ``sparsity`` share of each layer's own weights (``l1_unstructured`` per layer).

Protocol: ``apply`` leaves torch's pruning masks on the layers (``weight_orig`` trainable, ``weight_mask`` a
buffer, a forward pre-hook recomputing ``weight = weight_orig × weight_mask``), so the pruned weights stay zero
while the model fine-tunes; ``finish`` makes the pruning permanent (``prune.remove``): plain ``weight``
parameters holding zeros. The cost path runs ``apply`` then ``finish`` at once.

The dense structure is unchanged (the same dense kernels run): what pruning saves shows in ``macs_nonzero`` and in
the info's ``sparsity``, not in latency. Info: ``sparsity``, the share of zero weights over the pruned layers
(0…1), and ``pruned_layers``, their number.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from torch import nn
from torch.nn.utils import parametrize, prune

from harness.errors import SkipCase
from harness.zoo.compress import CompressContext, Compressed, CompressOptions, prunable_layers, register_compression


class Options(CompressOptions):
    """Magnitude pruning options: ``sparsity``, the share of the weights set to zero, and ``scope``, whether the
    weights are ranked over the whole model (``global``) or within each layer (``layer``)."""

    sparsity: float = Field(0.5, ge=0, lt=1)
    scope: Literal["global", "layer"] = "global"


def pruning_info(layers: list[nn.Module]) -> dict[str, Any]:
    """Return ``sparsity`` (share of zero weights over ``layers``, 0…1) and ``pruned_layers`` (their count)."""
    zeros = sum(int((m.weight == 0).sum()) for m in layers)
    total = sum(m.weight.numel() for m in layers)
    return {"sparsity": zeros / total if total else 0.0, "pruned_layers": len(layers)}


def finish(model: nn.Module, _options: Options) -> Compressed:
    """Make the pruning permanent (``prune.remove`` on every masked layer): return ``model`` with plain ``weight``
    parameters holding zeros and no ``weight_orig`` / ``weight_mask``, with its achieved sparsity as info."""
    layers = [m for _, m in prunable_layers(model) if hasattr(m, "weight_mask")]
    for module in layers:
        prune.remove(module, "weight")
    return Compressed(model, pruning_info(layers))


@register_compression("magnitude_prune", Options, finish=finish)
def apply(model: nn.Module, options: Options, _context: CompressContext) -> Compressed:
    """Zero the ``sparsity`` share of smallest-magnitude conv/linear weights (over the model or per layer, by
    ``scope``) behind torch's pruning masks; return ``model`` (changed in place) with ``sparsity`` (achieved share
    of zero weights, 0…1) and ``pruned_layers`` as info. SkipCase when the model has no conv/linear weight to prune
    or one already under a parametrization."""
    layers = [m for _, m in prunable_layers(model)]
    if not layers:
        raise SkipCase("magnitude_prune: the model has no convolution or linear layer to prune")
    if any(parametrize.is_parametrized(m, "weight") for m in layers):
        raise SkipCase("magnitude_prune: a layer's weight is already parametrized (torch pruning cannot mask it)")
    if options.scope == "global":
        prune.global_unstructured([(m, "weight") for m in layers], pruning_method=prune.L1Unstructured,
                                  amount=options.sparsity)
    else:
        for module in layers:
            prune.l1_unstructured(module, "weight", amount=options.sparsity)
    return Compressed(model, pruning_info(layers))
