"""DetNAS backbones (Chen et al. 2019, "DetNAS: Backbone Search for Object Detection", NeurIPS) and a RetinaNet
on one of them.

DetNAS searches a detector's backbone with a one-shot supernet: the supernet is pre-trained on ImageNet,
fine-tuned on the detection data set, and an evolutionary search then picks one block per layer using the
detector's validation AP. The searched networks ("DetNASNet") are ShuffleNet V2-like:

- stem: 3×3 conv, stride 2, BN, ReLU (no max-pool, unlike ShuffleNet V2), so the four stages of blocks sit at
  strides 4, 8, 16 and 32; each stage starts with a stride-2 block;
- every block is one of four choices (the search space): a ShuffleNet V2 unit whose depth-wise conv is 3×3, 5×5
  or 7×7 (1×1 conv-BN-ReLU → k×k depth-wise conv-BN → 1×1 conv-BN-ReLU), or an Xception-like unit of three
  [3×3 depth-wise conv-BN → 1×1 conv-BN] with ReLU after each 1×1. A stride-1 block shuffles its input's channels
  (two groups) and splits them: one half passes unchanged, the other goes through the unit. A stride-2 block
  feeds its whole input to the unit (output: stage width − input width) and to a projection branch (k×k
  depth-wise conv-BN, stride 2, with k the unit's kernel, 3 for Xception; then 1×1 conv-BN-ReLU) and
  concatenates the two. The units' middle width is half the stage's width;
- ImageNet head (as the authors pre-trained the backbones): 1×1 conv-BN-ReLU to the last width, global average
  pooling, dropout 0.2, linear classifier. Detectors use the four stages' maps only (``feature_info``).

Architectures (block choices per layer, stage depths and widths) are those of the authors' released code,
megvii-model/ShuffleNet-Series ``DetNAS/network.py`` (the same lists as megvii-model/DetNAS
``maskrcnn_benchmark/modeling/backbone/detnasnet.py``); sizes are checked against that repository's
``DetNAS/README.md`` Results table (FLOPs = multiply-adds at 224×224, and #Params), see
``tests/test_zoo_detnas.py``. Two small departures from the released code, which change no count by more than
0.05 %: the stem and last 1×1 convs have no bias (the release gives those two convs a bias before their BN), and
the dropout sits after the global pooling (the release uses ``Dropout2d`` before it). The release's channel
shuffle (``channel_shuffle2``: even channels pass, odd channels enter the unit) is the one used here.

``retinanet_detnas_300m_fpn`` is torchvision's RetinaNet (:mod:`harness.zoo.detectors.torchvision_detectors`)
on the DetNAS backbone searched for RetinaNet on COCO (``detnas_coco_retinanet_300m``), as the authors'
``configs/retinanet/retinanet_DETNAS_COCO_FPN_300M_1x.yaml`` (FPN over the stride 8/16/32 maps, P6/P7, 800 px),
except that P6 comes from C5 here (torchvision's and the RetinaNet paper's choice) and from P5 there.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
from timm.layers import ConvNormAct
from torch import nn

from harness.zoo.detectors.base import Detector
from harness.zoo.detectors.torchvision_detectors import build_torchvision_detector
from harness.zoo.registry import register_model

#: the search space: block choice index -> (unit, depth-wise kernel size); the index is the released code's.
BLOCK_CHOICES: tuple[tuple[str, int], ...] = (("shufflenet", 3), ("shufflenet", 5), ("shufflenet", 7),
                                              ("xception", 3))

#: strides (input pixels per map pixel) of the four stages' outputs.
STAGE_STRIDES: tuple[int, ...] = (4, 8, 16, 32)


def _shufflenet_unit(in_chs: int, mid_chs: int, out_chs: int, kernel: int, stride: int) -> nn.Sequential:
    """Return ShuffleNet V2's unit: 1×1 conv-BN-ReLU, k×k depth-wise conv-BN (the stride), 1×1 conv-BN-ReLU."""
    return nn.Sequential(ConvNormAct(in_chs, mid_chs, 1),
                         ConvNormAct(mid_chs, mid_chs, kernel, stride=stride, groups=mid_chs, apply_act=False),
                         ConvNormAct(mid_chs, out_chs, 1))


def _separable(in_chs: int, out_chs: int, kernel: int, stride: int) -> nn.Sequential:
    """Return a depth-wise separable conv: k×k depth-wise conv-BN (the stride), then 1×1 conv-BN-ReLU."""
    return nn.Sequential(ConvNormAct(in_chs, in_chs, kernel, stride=stride, groups=in_chs, apply_act=False),
                         ConvNormAct(in_chs, out_chs, 1))


def _xception_unit(in_chs: int, mid_chs: int, out_chs: int, stride: int) -> nn.Sequential:
    """Return the Xception-like unit: three 3×3 depth-wise separable convs (the first strided), widths mid, mid,
    out."""
    return nn.Sequential(_separable(in_chs, mid_chs, 3, stride), _separable(mid_chs, mid_chs, 3, 1),
                         _separable(mid_chs, out_chs, 3, 1))


class DetNASBlock(nn.Module):
    """One searched layer: block ``choice`` (an index of :data:`BLOCK_CHOICES`) from ``in_chs`` to ``out_chs``
    channels at ``stride`` 1 (``in_chs == out_chs``: shuffle, split, unit on one half) or 2 (projection branch
    and unit side by side); see the module docstring."""

    def __init__(self, in_chs: int, out_chs: int, choice: int, stride: int) -> None:
        super().__init__()
        unit, kernel = BLOCK_CHOICES[choice]
        if stride == 1 and in_chs != out_chs:
            raise ValueError(f"a stride-1 DetNAS block keeps its width, got {in_chs} -> {out_chs}")
        self.stride = stride
        mid_chs = out_chs // 2
        unit_in, unit_out = (in_chs, out_chs - in_chs) if stride == 2 else (in_chs // 2, out_chs // 2)
        self.unit = (_shufflenet_unit(unit_in, mid_chs, unit_out, kernel, stride) if unit == "shufflenet"
                     else _xception_unit(unit_in, mid_chs, unit_out, stride))
        self.proj = _separable(in_chs, in_chs, kernel, stride) if stride == 2 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the block's output (N, out_chs, H/stride, W/stride)."""
        if self.proj is not None:
            return torch.cat([self.proj(x), self.unit(x)], dim=1)
        n, c, h, w = x.shape
        pairs = x.reshape(n, c // 2, 2, h, w)  # channel shuffle (2 groups) and split: even channels pass
        return torch.cat([pairs[:, :, 0], self.unit(pairs[:, :, 1])], dim=1)


class DetNASNet(nn.Module):
    """A searched DetNAS backbone with its ImageNet head.

    ``architecture``: a block choice (index of :data:`BLOCK_CHOICES`) per layer; ``stage_repeats``: layers per
    stage; ``widths``: stem width, the four stages' widths, last conv width. ``feature_info`` lists the four
    stages' maps (timm's format: ``module``, ``num_chs``, ``reduction``).
    """

    def __init__(self, architecture: Sequence[int], stage_repeats: Sequence[int], widths: Sequence[int],
                 num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.2) -> None:
        super().__init__()
        if len(architecture) != sum(stage_repeats) or len(widths) != len(stage_repeats) + 2:
            raise ValueError(f"{len(architecture)} choices for {sum(stage_repeats)} layers, "
                             f"{len(widths)} widths for {len(stage_repeats)} stages")
        self.stem = ConvNormAct(in_chans, widths[0], 3, stride=2)
        choices = iter(architecture)
        stages: list[nn.Module] = []
        in_chs = widths[0]
        for repeats, out_chs in zip(stage_repeats, widths[1:-1], strict=True):
            blocks = []
            for i in range(repeats):
                blocks.append(DetNASBlock(in_chs, out_chs, next(choices), 2 if i == 0 else 1))
                in_chs = out_chs
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.feature_info: list[dict[str, Any]] = [
            {"module": f"stages.{i}", "num_chs": chs, "reduction": stride}
            for i, (chs, stride) in enumerate(zip(widths[1:-1], STAGE_STRIDES, strict=True))]
        self.conv_head = ConvNormAct(in_chs, widths[-1], 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.num_features = widths[-1]
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the last stage's map (N, C, H/32, W/32)."""
        return self.stages(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits of shape (N, num_classes)."""
        return self.fc(self.drop(self.pool(self.conv_head(self.forward_features(x))).flatten(1)))

    def get_classifier(self) -> nn.Module:
        """Return the final linear layer (timm's interface)."""
        return self.fc


#: registry name -> (block choices per layer, layers per stage, widths: stem, 4 stages, last conv; Results row).
#: From megvii-model/ShuffleNet-Series DetNAS/network.py (model sizes COCO_FPN_300M, ...); the 1.3G and 3.8G
#: networks share one architecture (searched in the 40-layer space) at two widths.
_LARGE = (0, 0, 3, 1, 2, 1, 0, 2, 0, 3, 1, 2, 3, 3, 2, 0, 2, 1, 1, 3,
          2, 0, 2, 2, 2, 1, 3, 1, 0, 3, 3, 3, 1, 3, 3, 3, 3, 3, 3, 3)
DETNAS_VARIANTS: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], str]] = {
    "detnas_coco_fpn_300m": ((2, 1, 2, 0, 2, 1, 1, 2, 3, 3, 1, 3, 0, 0, 3, 1, 3, 1, 3, 2), (4, 4, 8, 4),
                             (16, 64, 160, 320, 640, 1024), "300M (COCO, FPN): 300M FLOPs, 3.5M params"),
    "detnas_coco_retinanet_300m": ((2, 3, 1, 1, 3, 2, 1, 3, 3, 1, 1, 1, 3, 3, 2, 0, 3, 3, 3, 3), (4, 4, 8, 4),
                                   (16, 64, 160, 320, 640, 1024),
                                   "300M (COCO, RetinaNet): 300M FLOPs, 3.7M params"),
    "detnas_coco_fpn_1_3g": (_LARGE, (8, 8, 16, 8), (48, 96, 240, 480, 960, 1024),
                             "1.3G (COCO, FPN): 1.3G FLOPs, 10.4M params"),
    "detnas_coco_fpn_3_8g": (_LARGE, (8, 8, 16, 8), (72, 172, 432, 864, 1728, 1728),
                             "3.8G (COCO, FPN): 3.8G FLOPs, 29.5M params (the first release's 1024-wide last "
                             "conv)"),
}


for _name, (_architecture, _repeats, _widths, _row) in DETNAS_VARIANTS.items():
    register_model(_name, source=f"Chen et al. 2019, DetNAS (NeurIPS); architecture and sizes from the authors' "
                   f"megvii-model/ShuffleNet-Series DetNAS/network.py and README Results table: {_row}")(
        partial(DetNASNet, _architecture, _repeats, _widths))


@register_model("retinanet_detnas_300m_fpn", origin="torchvision",
                source="Chen et al. 2019, DetNAS (NeurIPS), RetinaNet on COCO with the 300M backbone searched for "
                "it; authors' megvii-model/DetNAS README: DetNAS-COCO-RetinaNet-300M, 34.1 AP on minival (800 px)")
def retinanet_detnas_300m_fpn(num_classes: int = 80, input_size: int = 800,
                              backbone: str = "detnas_coco_retinanet_300m", fpn_channels: int = 256) -> Detector:
    """Return torchvision's RetinaNet (random weights) on the DetNAS backbone ``backbone``'s stride 8/16/32 maps
    under an FPN of ``fpn_channels`` channels, for ``input_size`` pixel inputs."""
    return build_torchvision_detector("retinanet", num_classes, input_size, backbone, fpn_channels)
