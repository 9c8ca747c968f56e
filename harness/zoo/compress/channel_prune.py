"""Structured filter pruning by L1 norm (Li, Kadav, Durdanovic, Samet & Graf 2017, "Pruning Filters for Efficient
ConvNets"): the convolution filters of smallest L1 norm (sum of absolute kernel weights) are removed with their
output channels, so the network physically shrinks (fewer MACs, lower latency, not just zeros).

Each convolution's coupled channels (its BatchNorm, the next layers' inputs, the other convolutions feeding the
same residual addition, depth-wise convolutions, concatenations) go together: torch-pruning's dependency graph
(:mod:`harness.zoo.compress._structured`). A group's channels are scored by the L1 norm of the filters of the
group's first convolution (``tp.importance.MagnitudeImportance(p=1, group_reduction="first")``, exactly Li et al.
for an uncoupled layer), divided by that layer's mean filter norm so that ``global`` ranking compares layers of
different fan-in fairly (the division does not change a ranking within a layer):

- ``scope: layer`` (the paper) removes the ``ratio`` share of each layer's filters;
- ``scope: global`` removes the ``ratio`` share of all filters, ranked together, so layers end with different
  widths (no layer losing more than ``max_layer_ratio`` of its channels).

The classifier is left whole (unchanged output size). Protocol: ``apply`` prunes once; with ``context.finetune``
the smaller network simply fine-tunes (Li et al. retrain after pruning), so there is no ``finish``. A model
torch-pruning cannot trace or prune raises SkipCase. Info: ``param_ratio`` (params after / before),
``channel_ratio`` (convolution output channels after / before), ``ratio`` and ``groups_left_whole`` (channel
groups left unpruned because a coupled layer would have lost all its channels; normally 0).
"""

from __future__ import annotations

from typing import Literal

from torch import nn

from harness.zoo.compress import CompressContext, Compressed, register_compression
from harness.zoo.compress._structured import StructuredOptions, prune_channels


class Options(StructuredOptions):
    """Filter pruning options: ``ratio``, the share of the filters removed (0 < ratio < 1), ``scope``, whether
    each layer loses that share (``layer``) or the filters are ranked over the network (``global``), and
    ``max_layer_ratio``, the largest share any one layer may lose."""

    scope: Literal["layer", "global"] = "layer"


@register_compression("channel_prune", Options)
def apply(model: nn.Module, options: Options, context: CompressContext) -> Compressed:
    """Remove the ``ratio`` share of the convolution filters of smallest L1 norm (per layer or over the network by
    ``scope``) with their coupled channels; return ``model`` shrunk in place, with info ``param_ratio``,
    ``channel_ratio``, ``ratio`` and ``groups_left_whole``. SkipCase when torch-pruning cannot trace or prune the
    model."""
    import torch_pruning as tp

    importance = tp.importance.MagnitudeImportance(p=1, group_reduction="first", normalizer="mean")
    info = prune_channels(model, context.example_inputs, importance, options.ratio, options.scope,
                          options.max_layer_ratio, "channel_prune")
    return Compressed(model, info)
