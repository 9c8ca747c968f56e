"""Structured (channel) pruning shared by ``channel_prune`` and ``slimming``: the network physically shrinks.

torch-pruning (Fang et al. 2023, "DepGraph: Towards Any Structural Pruning") traces the model on one example image
and groups the layers whose channels are coupled: a convolution's filters with its BatchNorm and the next layers'
input channels, every convolution feeding one residual addition, a depth-wise convolution with its input, the
parts of a concatenation. Each group's channels are scored by an importance (the method's: filter L1 norm, BN
scale) and removed together, so the pruned network stays consistent. Groups are rooted at convolutions (filters);
the classifier (:func:`harness.zoo.compress.classifier_layer`, and the last convolution or linear layer the
forward runs, a classifier that is a convolution) is left whole, so the number of outputs is unchanged.

Which channels go is chosen here rather than by ``tp.pruner.BasePruner.step``, whose one-shot global ranking keeps
every channel whose score ties the threshold: with equal scores (BatchNorm scales all 1 or all 0 in a freshly
initialised timm network) every channel of a group is selected, and torch-pruning then leaves the whole group
unpruned (measured: resnet18 and mobilenetv2_100 at initialisation kept 100% of their parameters at ratio 0.5);
its ``max_pruning_ratio`` caps a layer only between iterative steps, not within one. Here the ``ratio`` share of
each pool's channels (``layer``: each group's own; ``global``: all groups' together), to the nearest whole
channel, is removed in order of increasing score (ties: network order), no group losing more than
``max_layer_ratio`` of its channels nor its last one. torch-pruning builds the graph, scores and prunes. A group
whose removal would still empty one of its layers (a small branch of a concatenation coupled to a larger root) is
left whole, as torch-pruning does, and counted in the info's ``groups_left_whole``.

A model torch-pruning cannot trace, whose prunable layers the trace did not reach (data-dependent control flow,
layers used outside the traced forward), or whose pruned forward fails or changes its output shape raises
:class:`harness.errors.SkipCase` with the reason.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from harness.errors import SkipCase
from harness.zoo.compress import CompressOptions, classifier_layer, count_params, prunable_layers

#: what torch-pruning raises on a graph it cannot trace or a group it cannot prune (caught as SkipCase).
TRACE_ERRORS = (RuntimeError, ValueError, TypeError, KeyError, IndexError, AttributeError, NotImplementedError,
                ZeroDivisionError, AssertionError)


class StructuredOptions(CompressOptions):
    """Options of structured pruning: ``ratio``, the share of the channels removed (per layer or over the network,
    by the method), and ``max_layer_ratio``, the largest share any one layer may lose (at least ``ratio``)."""

    ratio: float = Field(0.5, gt=0, lt=1)
    max_layer_ratio: float = Field(0.9, gt=0, lt=1)

    @model_validator(mode="after")
    def _cap_allows_ratio(self) -> StructuredOptions:
        if self.max_layer_ratio < self.ratio:
            raise ValueError(f"max_layer_ratio {self.max_layer_ratio} is below ratio {self.ratio}")
        return self


def conv_out_channels(model: nn.Module) -> int:
    """Return the output channels of ``model``'s convolutions, summed."""
    return sum(m.out_channels for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd))


def _channel_groups(pruner: Any, group: Any) -> int:
    """Return the number of channel groups (grouped convolutions) the channels of ``group`` fall into (1: none), as
    ``tp.pruner.BasePruner`` counts them."""
    dg = pruner.DG
    counts = [(pruner.out_channel_groups if dg.is_out_channel_pruning_fn(dep.handler) else pruner.in_channel_groups)
              .get(dep.target.module, 1) for dep, _ in group]
    return max(counts, default=1)


def _select(scored: list[tuple[Any, int, torch.Tensor]], scope: Literal["layer", "global"], ratio: float,
            max_layer_ratio: float) -> list[list[int]]:
    """Return, per scored group, the channel indices (of one channel group) to remove: in each pool the ``ratio``
    share of lowest score (stable order on ties), no group losing more than ``max_layer_ratio`` nor all."""
    chosen: list[list[int]] = [[] for _ in scored]
    pools = [[g] for g in range(len(scored))] if scope == "layer" else [list(range(len(scored)))]
    for pool in pools:
        scores = torch.cat([scored[g][2] for g in pool])
        owners = [(g, c) for g in pool for c in range(len(scored[g][2]))]
        caps = {g: min(math.floor(max_layer_ratio * len(scored[g][2])), len(scored[g][2]) - 1) for g in pool}
        left = round(ratio * len(scores))
        for position in torch.argsort(scores, stable=True).tolist():
            if left == 0:
                break
            group, channel = owners[position]
            if len(chosen[group]) < caps[group]:
                chosen[group].append(channel)
                left -= 1
    return chosen


def _forward_recording_last_layer(model: nn.Module, inputs: torch.Tensor) -> tuple[torch.Size, nn.Module | None]:
    """Return the shape of ``model(inputs)`` and the last convolution or linear layer the forward ran (the one
    producing the output where the classifier is a convolution, which must keep its channels), None if none ran."""
    ran: list[nn.Module] = []
    hooks = [m.register_forward_hook(lambda module, _inputs, _output: ran.append(module))
             for _, m in prunable_layers(model)]
    try:
        shape = model(inputs).shape
    finally:
        for hook in hooks:
            hook.remove()
    return shape, ran[-1] if ran else None


def prune_channels(model: nn.Module, example_inputs: torch.Tensor, importance: Any, ratio: float,
                   scope: Literal["layer", "global"], max_layer_ratio: float, method: str) -> dict[str, Any]:
    """Remove the ``ratio`` share of ``model``'s convolution channels of lowest ``importance`` (a torch-pruning
    importance) per ``scope`` with their coupled layers, in place (the module's training flag is kept); return the
    info ``param_ratio`` (params after / before), ``channel_ratio`` (conv output channels after / before),
    ``ratio`` and ``groups_left_whole``. SkipCase (naming ``method``) when torch-pruning cannot trace or prune the
    model."""
    import torch_pruning as tp

    sample = example_inputs[:1]
    params, channels, training = count_params(model), conv_out_channels(model), model.training
    with torch.no_grad():
        expected_shape, last = _forward_recording_last_layer(model.eval(), sample)
    kept = [m for m in (classifier_layer(model), last) if m is not None]
    try:
        with torch.enable_grad():
            pruner = tp.pruner.BasePruner(model, sample, importance, ignored_layers=kept,
                                          forward_fn=lambda module, inputs: module(inputs))
    except TRACE_ERRORS as error:
        raise SkipCase(f"{method}: torch-pruning cannot trace {type(model).__name__}: "
                       f"{type(error).__name__}: {error}") from error
    traced = pruner.DG.module2node
    missed = [name for name, m in model.named_modules()
              if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear, nn.modules.batchnorm._BatchNorm))
              and m not in traced]
    if missed:
        raise SkipCase(f"{method}: the traced forward of {type(model).__name__} does not reach {', '.join(missed[:3])}"
                       f"{'…' if len(missed) > 3 else ''} (data-dependent control flow?), so pruning cannot keep "
                       "their channels consistent")
    scored = []
    for group in pruner.DG.get_all_groups(ignored_layers=pruner.ignored_layers,
                                          root_module_types=[nn.modules.conv._ConvNd]):
        scores = pruner.estimate_importance(group)
        if scores is not None:
            splits = _channel_groups(pruner, group)
            scored.append((group, splits, scores.view(splits, -1).mean(dim=0).cpu()))
    if not scored:
        raise SkipCase(f"{method}: torch-pruning finds no channel group of {type(model).__name__} to prune")
    left_whole = 0
    try:
        for (group, splits, scores), remove in zip(scored, _select(scored, scope, ratio, max_layer_ratio), strict=True):
            if not remove:
                continue
            root = group[0].dep
            chosen = pruner.DG.get_pruning_group(root.target.module, root.handler,
                                                 [c + s * len(scores) for s in range(splits) for c in remove])
            if pruner.DG.check_pruning_group(chosen):
                chosen.prune()
            else:
                left_whole += 1
        with torch.no_grad():
            shape = model(sample).shape
    except TRACE_ERRORS as error:
        raise SkipCase(f"{method}: torch-pruning cannot prune {type(model).__name__} consistently: "
                       f"{type(error).__name__}: {error}") from error
    if shape != expected_shape:
        raise SkipCase(f"{method}: pruning changes {type(model).__name__}'s output shape {tuple(expected_shape)} to "
                       f"{tuple(shape)}")
    model.train(training)
    return {"param_ratio": count_params(model) / params, "channel_ratio": conv_out_channels(model) / channels,
            "ratio": ratio, "groups_left_whole": left_whole}
