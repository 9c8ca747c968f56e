"""Strip pooling: the strip pooling module (SPM), the mixed pooling module (MPM), SPNet and its backbone.

Hou, Zhang, Cheng & Feng, "Strip Pooling: Rethinking Spatial Pooling for Scene Parsing", CVPR 2020
(arXiv 2003.13328). Exact layer definitions follow the authors' code, houqb/SPNet (formerly
Andrew-Qibin/SPNet) at commit 5e97da3; the author points to ``models/resnet.py`` for the paper's SPM
(houqb/SPNet issues #6 and #7). The code below is written from those facts, not copied.

Strip pooling averages a C×H×W map over 1×W rows (giving C×H×1) and over H×1 columns (C×1×W), so each
output position sees its whole row and column: long-range context along one axis, local along the other.

- SPM (:class:`StripPooling`, the authors' ``SPBlock``): both strips, each through a 1D-shaped conv
  (3×1 on the H×1 strip, 1×3 on the 1×W strip, C→C, no bias) and BN, expanded back to H×W, added, ReLU,
  a 1×1 conv with bias (C→C), sigmoid; the input is multiplied by that gate. The paper's equations have no
  BN or ReLU between the 1D convs and the 1×1 conv; the authors' code has them, and so does this module.
  Parameters: 3C² + 2C + 3C² + 2C + C² + C = 7C² + 5C.
- MPM (:class:`MixedPooling`, the authors' ``StripPooling`` class in ``models/customize.py``): two 1×1
  conv-BN-ReLU reductions to C/4. Short-range branch: a 3×3 conv-BN of the reduced map, plus 3×3 conv-BN of
  its 20×20 and 12×12 adaptive average pools (bilinearly upsampled, align_corners), summed, ReLU, 3×3
  conv-BN-ReLU. Long-range branch: 1×3 conv-BN of the 1×W strip and 3×1 conv-BN of the H×1 strip of the
  other reduced map, bilinearly upsampled, summed, ReLU, 3×3 conv-BN-ReLU. Both branches concatenated,
  1×1 conv-BN back to C, added to the input, ReLU.
- Backbone (:func:`strip_pooling_resnet`): timm's ResNet-50/101 (v1.5 strides, stride in the 3×3 conv)
  with the authors' deep stem (3×3 convs 3→64→64→128, ``stem_type="deep"``, ``stem_width=64``), and an
  SPM on the 3×3 conv's output (after its BN and ReLU, before the last 1×1 conv) in the last bottleneck
  of stages 1-3 and in every bottleneck of stage 4: six SPMs, of widths 64, 128, 256, 512, 512, 512
  (``_make_layer`` with ``spm_on``). timm's bottleneck applies its ``aa`` slot exactly there, so the SPM
  takes that slot (an identity in these blocks: no anti-aliasing).
- SPNet (:class:`SPNet`, ``models/spnet.py`` + ``models/base.py``): that backbone dilated to output
  stride 8 (stage 3 dilation 2; stage 4 multi-grid dilations 4, 8, 16), then the head: 1×1 conv-BN-ReLU
  2048→1024, two MPMs, 3×3 conv-BN-ReLU 1024→512, Dropout2d(0.1), 1×1 conv (with bias) to the classes;
  the logits are bilinearly upsampled (align_corners) to the input size. The authors' auxiliary FCN head
  on stage 3 (training loss only, 2,398,358 parameters at 150 classes) is left out.

Registered: ``resnet50_spm``, ``resnet101_spm`` (ImageNet-style classifiers: the backbone at output stride
32, global average pool, linear; the paper trains no classifier, its backbone starts from ImageNet weights
and gains the SPMs for segmentation) and ``spnet50``, ``spnet101`` (per-pixel logits, 150 ADE20K classes by
default as in the authors' ``config/ade20k/*.yaml``; Cityscapes is ``num_classes=19``). The paper's size
tables could not be retrieved here; sizes are checked against counts of the authors' code (tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from timm.layers import ConvNormAct
from timm.models.resnet import Bottleneck, ResNet
from torch import nn
from torch.nn import functional as F

from harness.zoo.registry import register_model

#: Stage-4 dilations of the authors' multi-grid output-stride-8 backbone (``models/resnet.py``).
MULTI_GRID_DILATIONS = (4, 8, 16)
#: Output sizes of the MPM's two square adaptive pools (``models/spnet.py``: ``(20, 12)``).
MPM_POOL_SIZES = (20, 12)
RESNET50_LAYERS = (3, 4, 6, 3)
RESNET101_LAYERS = (3, 4, 23, 3)

_SOURCE = (
    "Hou et al. 2020, Strip Pooling: Rethinking Spatial Pooling for Scene Parsing (CVPR); layers as the "
    "authors' code houqb/SPNet@5e97da3 models/resnet.py, customize.py, spnet.py"
)


def _upsample(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Return ``x`` bilinearly resized to ``size`` with aligned corners (the authors' ``up_kwargs``)."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


class StripPooling(nn.Module):
    """Strip pooling module (SPM): ``x · σ(conv1x1(relu(expand(BN(conv3x1(pool_H×1 x))) +
    expand(BN(conv1x3(pool_1×W x))))))``; returns a tensor of ``x``'s shape. 7C² + 5C parameters."""

    def __init__(self, chs: int) -> None:
        super().__init__()
        self.pool_h = nn.AdaptiveAvgPool2d((None, 1))  # mean over each row: C×H×1
        self.pool_w = nn.AdaptiveAvgPool2d((1, None))  # mean over each column: C×1×W
        self.conv_h = ConvNormAct(chs, chs, (3, 1), apply_act=False)
        self.conv_w = ConvNormAct(chs, chs, (1, 3), apply_act=False)
        self.act = nn.ReLU()
        self.gate = nn.Conv2d(chs, chs, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x`` scaled by the strip-pooled sigmoid gate (same shape as ``x``)."""
        size = x.shape
        rows = self.conv_h(self.pool_h(x)).expand(size)
        cols = self.conv_w(self.pool_w(x)).expand(size)
        return x * torch.sigmoid(self.gate(self.act(rows + cols)))


class MixedPooling(nn.Module):
    """Mixed pooling module (MPM): a short-range branch (3×3 conv and two square pyramid pools) and a
    long-range branch (two strip pools) on C/4 channels, fused by a 1×1 conv-BN, a residual add and ReLU;
    returns a tensor of the input's shape."""

    def __init__(self, chs: int, pool_sizes: Sequence[int] = MPM_POOL_SIZES) -> None:
        super().__init__()
        mid = chs // 4
        self.reduce_short = ConvNormAct(chs, mid, 1)
        self.reduce_long = ConvNormAct(chs, mid, 1)
        self.local = ConvNormAct(mid, mid, 3, apply_act=False)
        self.pools = nn.ModuleList(nn.AdaptiveAvgPool2d(size) for size in pool_sizes)
        self.pool_convs = nn.ModuleList(ConvNormAct(mid, mid, 3, apply_act=False) for _ in pool_sizes)
        self.pool_w = nn.AdaptiveAvgPool2d((1, None))
        self.conv_w = ConvNormAct(mid, mid, (1, 3), apply_act=False)
        self.pool_h = nn.AdaptiveAvgPool2d((None, 1))
        self.conv_h = ConvNormAct(mid, mid, (3, 1), apply_act=False)
        self.fuse_short = ConvNormAct(mid, mid, 3)
        self.fuse_long = ConvNormAct(mid, mid, 3)
        self.project = ConvNormAct(2 * mid, chs, 1, apply_act=False)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return relu(x + project([short-range context, long-range context])), same shape as ``x``."""
        size = x.shape[-2:]
        short_in, long_in = self.reduce_short(x), self.reduce_long(x)
        short = self.local(short_in)
        for pool, conv in zip(self.pools, self.pool_convs, strict=True):
            short = short + _upsample(conv(pool(short_in)), size)
        long = _upsample(self.conv_w(self.pool_w(long_in)), size) + _upsample(self.conv_h(self.pool_h(long_in)), size)
        short = self.fuse_short(self.act(short))
        long = self.fuse_long(self.act(long))
        return self.act(x + self.project(torch.cat([short, long], dim=1)))


def strip_pooling_resnet(layers: Sequence[int], *, output_stride: int = 32, strip_pooling: bool = True,
                         **kwargs: Any) -> ResNet:
    """Return timm's bottleneck ResNet with the authors' deep stem and SPMs where their code puts them.

    SPMs sit after the 3×3 conv (its BN and ReLU) of the last block of stages 1-3 and of every block of
    stage 4. ``strip_pooling=False`` builds the same network without them (the ablation's twin).
    ``output_stride=8`` builds SPNet's dilated backbone, stage 4 with multi-grid dilations 4, 8, 16. Other
    kwargs (``num_classes``, ``in_chans``, ...) go to timm's ``ResNet``.
    """
    model = ResNet(Bottleneck, tuple(layers), stem_width=64, stem_type="deep", output_stride=output_stride, **kwargs)
    stages = (model.layer1, model.layer2, model.layer3, model.layer4)
    for i, stage in enumerate(stages if strip_pooling else ()):
        for block in stage if i == len(stages) - 1 else stage[-1:]:
            block.aa = StripPooling(block.conv2.out_channels)
    if output_stride == 8:
        for block, rate in zip(model.layer4, MULTI_GRID_DILATIONS, strict=True):
            block.conv2.dilation = block.conv2.padding = (rate, rate)
    model.init_weights()  # timm's init (He-normal convs, zero last BN) over the SPMs too
    return model


class SPHead(nn.Module):
    """SPNet's head: 1×1 conv-BN-ReLU to half the channels, two MPMs, 3×3 conv-BN-ReLU to a quarter,
    Dropout2d, 1×1 classifier conv; returns logits at the input feature map's resolution."""

    def __init__(self, in_chs: int, num_classes: int, drop_rate: float = 0.1) -> None:
        super().__init__()
        mid = in_chs // 2
        self.reduce = ConvNormAct(in_chs, mid, 1)
        self.mpms = nn.Sequential(MixedPooling(mid), MixedPooling(mid))
        self.conv = ConvNormAct(mid, mid // 2, 3)
        self.drop = nn.Dropout2d(drop_rate)
        self.classifier = nn.Conv2d(mid // 2, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return per-position class logits (N, num_classes, H, W) of the feature map ``x``."""
        return self.classifier(self.drop(self.conv(self.mpms(self.reduce(x)))))


class SPNet(nn.Module):
    """SPNet: the SPM backbone at output stride 8 and the MPM head; per-pixel logits at the input size."""

    def __init__(self, layers: Sequence[int], num_classes: int = 150, in_chans: int = 3) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.backbone = strip_pooling_resnet(layers, output_stride=8, num_classes=0, in_chans=in_chans)
        self.head = SPHead(self.backbone.num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return per-pixel class logits (N, num_classes, H, W) for images (N, in_chans, H, W)."""
        return _upsample(self.head(self.backbone.forward_features(x)), x.shape[-2:])

    def get_classifier(self) -> nn.Module:
        """Return the head's final 1×1 classifier conv (timm's interface)."""
        return self.head.classifier


@register_model(source=f"{_SOURCE}: ResNet-50 backbone with 6 SPMs + linear classifier (no published size)")
def resnet50_spm(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> nn.Module:
    """Return the SPM ResNet-50 classifier: 29,748,864 backbone parameters (as the authors' code) + linear;
    ``strip_pooling=False``: the same network without its SPMs."""
    return strip_pooling_resnet(RESNET50_LAYERS, num_classes=num_classes, in_chans=in_chans, **kwargs)


@register_model(source=f"{_SOURCE}: ResNet-101 backbone with 6 SPMs + linear classifier (no published size)")
def resnet101_spm(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> nn.Module:
    """Return the SPM ResNet-101 classifier: 48,740,992 backbone parameters (as the authors' code) + linear;
    ``strip_pooling=False``: the same network without its SPMs."""
    return strip_pooling_resnet(RESNET101_LAYERS, num_classes=num_classes, in_chans=in_chans, **kwargs)


@register_model(source=f"{_SOURCE}: SPNet-50 (ADE20K config, 480x480), auxiliary FCN head left out")
def spnet50(num_classes: int = 150, in_chans: int = 3) -> nn.Module:
    """Return SPNet with ResNet-50: 45,439,766 parameters at 150 classes (the authors' code less its aux head)."""
    return SPNet(RESNET50_LAYERS, num_classes, in_chans)


@register_model(source=f"{_SOURCE}: SPNet-101 (ADE20K 480x480 / Cityscapes 768x768 configs), aux head left out")
def spnet101(num_classes: int = 150, in_chans: int = 3) -> nn.Module:
    """Return SPNet with ResNet-101: 64,431,894 parameters at 150 classes (the authors' code less its aux head)."""
    return SPNet(RESNET101_LAYERS, num_classes, in_chans)
