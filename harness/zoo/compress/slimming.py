"""Network slimming (Liu, Li, Shen, Huang, Yan & Zhang 2017, "Learning Efficient Convolutional Networks through
Network Slimming"): a channel's BatchNorm scale factor γ says how much the channel matters; an L1 penalty on the
γ during training drives the unneeded ones towards zero, and the channels of smallest |γ| are then removed.

Protocol:

- while the dense model trains (``loss_before``), the loss is cross-entropy + ``l1`` × Σ|γ| over every affine
  BatchNorm layer of the model (``nn.BatchNorm1d/2d/3d``, SyncBatchNorm and timm's ``BatchNormAct2d``, all
  ``_BatchNorm`` subclasses). ``l1`` is the paper's λ, chosen there by a grid search over 1e-3, 1e-4, 1e-5 on
  CIFAR-10: 1e-4 for VGGNet, 1e-5 for ResNet and DenseNet (and for VGG-A on ImageNet); the default is 1e-4;
- ``apply`` removes the ``ratio`` share of all channels, ranked over the whole network by |γ| (the paper's global
  threshold), with torch-pruning's dependency handling (:mod:`harness.zoo.compress._structured`): channels coupled
  by a residual addition share one score, the mean |γ| of their BatchNorms
  (``tp.importance.BNScaleImportance(normalizer=None)``, raw γ as in the paper); no layer loses more than
  ``max_layer_ratio`` of its channels (and never all of them); the classifier is kept whole. Channels no
  BatchNorm scales are kept. The pruned model then fine-tunes (``context.finetune``), as in the paper; no
  ``finish`` is needed.

On the cost path (random weights, no training) the γ are as initialised (timm: 1, or 0 on a residual block's last
BatchNorm), so which channels go there is by initialisation and network order, not by learning.

A model without BatchNorm raises SkipCase ("slimming needs BatchNorm scale factors"), from the loss already, so no
training is spent on it; so does a model torch-pruning cannot trace or prune. Info: ``param_ratio`` (params after
/ before), ``channel_ratio`` (convolution output channels after / before), ``ratio`` and ``groups_left_whole``
(channel groups left unpruned because a coupled layer would have lost all its channels; normally 0).
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from harness.errors import SkipCase
from harness.metrics.train import LossFn, cross_entropy
from harness.zoo.compress import CompressContext, Compressed, register_compression
from harness.zoo.compress._structured import StructuredOptions, prune_channels

NO_BATCHNORM = "slimming needs BatchNorm scale factors; the model has no affine BatchNorm layer"


class Options(StructuredOptions):
    """Network slimming options: ``l1``, the weight λ of the L1 penalty on BatchNorm scales during the dense
    training (≥ 0; the paper: 1e-4 for VGGNet, 1e-5 for ResNet/DenseNet), ``ratio``, the share of the channels
    removed over the network (0 < ratio < 1), and ``max_layer_ratio``, the largest share any one layer may lose."""

    l1: float = Field(1e-4, ge=0)


def batchnorm_scales(model: nn.Module) -> list[nn.Parameter]:
    """Return the scale factors γ (``weight``) of ``model``'s affine BatchNorm layers, in module order."""
    return [m.weight for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine]


def scale_penalty(model: nn.Module) -> torch.Tensor:
    """Return Σ|γ| over ``model``'s BatchNorm scale factors (a scalar); SkipCase when it has none."""
    scales = batchnorm_scales(model)
    if not scales:
        raise SkipCase(NO_BATCHNORM)
    return torch.stack([gamma.abs().sum() for gamma in scales]).sum()


def loss_before(options: Options, _context: CompressContext) -> LossFn:
    """Return the dense training's loss: cross-entropy + ``options.l1`` × Σ|γ| over the model's BatchNorm scales
    (SkipCase on the first step when the model has no BatchNorm)."""

    def loss(outputs: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor, model: nn.Module) -> torch.Tensor:
        return cross_entropy(outputs, labels, indices, model) + options.l1 * scale_penalty(model)

    return loss


@register_compression("slimming", Options, loss_before=loss_before)
def apply(model: nn.Module, options: Options, context: CompressContext) -> Compressed:
    """Remove the ``ratio`` share of the network's channels of smallest BatchNorm |γ| (ranked globally) with their
    coupled channels; return ``model`` shrunk in place, with info ``param_ratio``, ``channel_ratio``, ``ratio`` and
    ``groups_left_whole``.
    SkipCase when the model has no BatchNorm or torch-pruning cannot trace or prune it."""
    import torch_pruning as tp

    if not batchnorm_scales(model):
        raise SkipCase(NO_BATCHNORM)
    importance = tp.importance.BNScaleImportance(normalizer=None)
    info = prune_channels(model, context.example_inputs, importance, options.ratio, "global",
                          options.max_layer_ratio, "slimming")
    return Compressed(model, info)
