"""CenterNet, "Objects as Points" (Zhou, Wang & Krähenbühl 2019): an object is the peak of its class's
centre heatmap, with its width/height and the sub-cell offset of its centre regressed at the peak.

Network (``forward``): a backbone brought to output stride 4, then three heads per supervised map,
each Conv3x3(→ ``head_conv``) + ReLU + Conv1x1: ``hm`` (one heatmap per class, final bias −2.19), ``wh``
(box width and height in output cells) and ``reg`` (centre offset in cells). Backbones:

- ``resnet18`` (any timm ResNet): C5 and three [ConvTranspose2d(k4, s2, p1, no bias) → BN → ReLU] to
  stride 4, 256 channels, ``head_conv`` 64. This is the official code's ``msra_resnet`` (Xiao et al.'s
  simple baseline); the paper's Table 1 ResNet-18 instead adds a 3x3 deformable conv before each
  up-convolution and narrows them to 256/128/64 channels. With ``neck="topdown"`` the ResNet instead gets
  the top-down neck described under ``dla34`` over C2–C5 (not the paper's): at small inputs C5 alone is too
  coarse (4×4 cells of 32 px at 128 px), and a randomly initialised network trained briefly on it cannot
  place or size objects smaller than a cell (digit_boxes, 300 steps of 16 at 128 px: 0.02 AP with the
  deconvolutions, 0.55 with the top-down neck).
- ``dla34`` (timm's DLA-34 body, levels at strides 4–32): the paper's DLAUp/IDAUp aggregation with
  deformable convs is **replaced** by a simple top-down neck (1x1 conv-BN-ReLU laterals to 64 channels,
  bilinear 2x upsampling of the coarser sum, 3x3 conv-BN-ReLU after each merge) to 64 channels at stride
  4; ``head_conv`` 256. Neither timm nor torchvision has DLAUp, and deformable convs would not train on
  CPU in reasonable time.
- ``hourglass104`` (CornerNet's Hourglass-104 of :mod:`harness.zoo.classifiers`): heads on every stack's
  features; training supervises every stack (losses averaged), inference reads the last one only.

``decode`` (timed apart from ``forward``): sigmoid → 3x3 max-pool peaks → top-100 over classes ×
positions → ``wh`` and ``reg`` gathered at the peaks → boxes ``(cx ∓ w/2, cy ∓ h/2)`` × stride in input
pixels. Widths and heights are clamped at 0 so that an untrained head still gives well-formed boxes.
No suppression follows (the peak extraction replaces NMS).

Training targets (``encode``): each box scaled to output cells and clipped to the map's edges; a Gaussian of
radius ``gaussian_radius(ceil h, ceil w, 0.7)`` at its centre's cell on its class's heatmap; ``wh`` and
the centre's sub-cell offset at that cell. Loss: focal (weight 1) + L1 ``wh`` (0.1) + L1 ``reg`` (1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import ConvNormAct
from torch import nn

from harness.zoo.classifiers import HOURGLASS104_COUNTS, HOURGLASS104_DIMS, residual_hourglass
from harness.zoo.detectors.base import Detections, Detector, ImageMeta, Target
from harness.zoo.detectors.keypoints import (
    COCO_MEAN,
    COCO_STD,
    HEAT_PRIOR_BIAS,
    HeadSet,
    KeypointTargets,
    box_radius,
    boxes_to_output,
    encode_keypoints,
    focal_loss,
    gather_at,
    l1_per_element,
    mean_over_stacks,
    output_stride,
    padded,
    peaks,
    prediction_head,
    stack_outputs,
    topk,
)
from harness.zoo.detectors.postprocess import Suppression
from harness.zoo.detectors.timm_features import TimmFeatures
from harness.zoo.registry import register_model

#: CenterNet's COCO evaluation keeps all top-100 peaks: no NMS, and no score threshold, because COCO AP
#: is computed over each image's 100 best detections and a threshold could only lower it.
CENTERNET_SUPPRESSION = Suppression(method="none", score_threshold=0.0, pre_top_k=100, max_detections=100)
#: Gaussian overlap of CenterNet's heatmap targets, and its loss weights (``opts.py``).
MIN_OVERLAP = 0.7
LOSS_WEIGHTS = {"heatmap": 1.0, "size": 0.1, "offset": 1.0}

Raw = list[dict[str, torch.Tensor]]  # per supervised map (stack): {"hm", "wh", "reg"}


class DeconvNeck(nn.Module):
    """The ``msra_resnet`` neck: ``layers`` × [ConvTranspose2d(k4, s2, p1, no bias) → BN → ReLU], each
    doubling the resolution (three take C5 at stride 32 to stride 4); weights N(0, 0.001) as there."""

    def __init__(self, in_chs: int, chs: int = 256, layers: int = 3) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        for i in range(layers):
            deconv = nn.ConvTranspose2d(in_chs if i == 0 else chs, chs, 4, stride=2, padding=1, bias=False)
            nn.init.normal_(deconv.weight, std=0.001)
            blocks += [deconv, nn.BatchNorm2d(chs), nn.ReLU(inplace=True)]
        self.layers = nn.Sequential(*blocks)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Return the coarsest of ``features`` upsampled 2^layers times, ``chs`` channels."""
        return self.layers(features[-1])


class TopDownNeck(nn.Module):
    """A simple top-down neck: every level projected to ``chs`` (1x1 conv-BN-ReLU); from the coarsest,
    the running map is upsampled (bilinear) to the next finer level, added to its projection, and
    smoothed by a 3x3 conv-BN-ReLU. Returns the finest level's map (stands in for DLAUp/IDAUp)."""

    def __init__(self, in_chs: Sequence[int], chs: int = 64) -> None:
        super().__init__()
        self.laterals = nn.ModuleList(ConvNormAct(c, chs, 1) for c in in_chs)
        self.smooth = nn.ModuleList(ConvNormAct(chs, chs, 3) for _ in in_chs[:-1])

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Return the merged map at the finest level's resolution (``features`` finest first)."""
        x = self.laterals[-1](features[-1])
        for level in range(len(features) - 2, -1, -1):
            lateral = self.laterals[level](features[level])
            up = F.interpolate(x, size=lateral.shape[-2:], mode="bilinear", align_corners=False)
            x = self.smooth[level](lateral + up)
        return x


class TimmBody(nn.Module):
    """A timm backbone (``features_only``, random init) and a neck to output stride 4; ``forward``
    returns a one-element list (one supervised map), like the hourglass bodies' one map per stack."""

    def __init__(self, backbone: str, out_indices: tuple[int, ...], make_neck: Callable[[list[int]], nn.Module],
                 out_chs: int) -> None:
        super().__init__()
        self.backbone = TimmFeatures(backbone, out_indices)
        self.neck = make_neck(self.backbone.channels)
        self.out_chs = out_chs
        self.stacks = 1

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return ``[feature map at stride 4]``."""
        return [self.neck(self.backbone(x))]


class HourglassBody(nn.Module):
    """CornerNet's stacked hourglass as a CenterNet body: one stride-4 map per stack."""

    def __init__(self, stacks: int, dims: Sequence[int], counts: Sequence[int]) -> None:
        super().__init__()
        self.hourglass = residual_hourglass(dims, counts, stacks=stacks, num_classes=0)
        self.out_chs = dims[0]
        self.stacks = stacks

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return the feature map of every stack, (N, dims[0], S/4, S/4) each."""
        return self.hourglass.forward_features(x)


@dataclass
class CenterNetTargets:
    """Encoded targets: the centre keypoints (heatmap, cell index, sub-cell offset, mask) and the box
    ``size`` (N, M, 2) (w, h) in output cells."""

    centers: KeypointTargets
    size: torch.Tensor


class CenterNet(Detector):
    """CenterNet over a ``body`` returning one stride-4 map per supervised stack (see the module docstring)."""

    def __init__(self, body: nn.Module, head_conv: int, num_classes: int = 80, input_size: int = 512,
                 top_k: int = 100, suppression: Suppression = CENTERNET_SUPPRESSION) -> None:
        super().__init__(num_classes, input_size, suppression, mean=COCO_MEAN, std=COCO_STD)
        self.body = body
        self.top_k = top_k
        self.heads = nn.ModuleList(
            HeadSet({
                "hm": prediction_head(body.out_chs, head_conv, num_classes, final_bias=HEAT_PRIOR_BIAS),
                "wh": prediction_head(body.out_chs, head_conv, 2),
                "reg": prediction_head(body.out_chs, head_conv, 2),
            })
            for _ in range(body.stacks)
        )

    def forward(self, batch: torch.Tensor) -> Raw:
        """Return the heads' maps (logits for ``hm``) of every stack in training, of the last in eval."""
        return stack_outputs(self.heads, self.body(batch), self.training)

    def decode(self, raw: Raw, metas: Sequence[ImageMeta]) -> list[Detections]:
        """Return the top-K peaks of the last stack per image as boxes in input pixels (see module docstring)."""
        out = raw[-1]
        stride = output_stride(self.input_size, out["hm"])
        top = topk(peaks(torch.sigmoid(out["hm"])), self.top_k)
        size = gather_at(out["wh"], top.index).clamp(min=0)
        offset = gather_at(out["reg"], top.index)
        cx, cy = top.xs + offset[..., 0], top.ys + offset[..., 1]
        half_w, half_h = size[..., 0] / 2, size[..., 1] / 2
        boxes = torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=-1) * stride
        return [Detections(boxes[i], top.scores[i], top.labels[i]) for i in range(len(metas))]

    def encode(self, targets: Sequence[Target], map_hw: tuple[int, int], stride: float) -> CenterNetTargets:
        """Return the training targets of boxes in input pixels for maps of ``map_hw`` cells at ``stride``."""
        centers, labels, radii, sizes = [], [], [], []
        for target in targets:
            boxes, keep = boxes_to_output(target.boxes, stride, map_hw)
            boxes = boxes[keep]
            wh = boxes[:, 2:] - boxes[:, :2]
            centers.append((boxes[:, :2] + boxes[:, 2:]) / 2)
            labels.append(target.labels[keep])
            radii.append(box_radius(wh[:, 1], wh[:, 0], MIN_OVERLAP))
            sizes.append(wh)
        keypoints = encode_keypoints(centers, labels, radii, self.num_classes, map_hw)
        return CenterNetTargets(keypoints, padded(sizes, keypoints.mask.shape[1]))

    def loss(self, raw: Raw, targets: Sequence[Target]) -> dict[str, torch.Tensor]:
        """Return the weighted ``heatmap`` (focal), ``size`` (L1 on wh) and ``offset`` (L1) losses,
        averaged over the supervised stacks."""
        hm = raw[-1]["hm"]
        encoded = self.encode(targets, hm.shape[-2:], output_stride(self.input_size, hm))
        centers = encoded.centers
        per_stack = [{
            "heatmap": focal_loss(out["hm"], centers.heatmap),
            "size": l1_per_element(gather_at(out["wh"], centers.index), encoded.size, centers.mask),
            "offset": l1_per_element(gather_at(out["reg"], centers.index), centers.offset, centers.mask),
        } for out in raw]
        return mean_over_stacks(per_stack, LOSS_WEIGHTS)


@register_model(source="Zhou et al. 2019, Objects as Points, Table 1: ResNet-18, 28.1 AP, 142 FPS at 512x512 "
                       "(the paper's deformable up-convolutions replaced by plain ones: msra_resnet)")
def centernet_resnet18(num_classes: int = 80, input_size: int = 512, backbone: str = "resnet18",
                       neck_chs: int = 256, head_conv: int = 64, neck: str = "deconv", **kwargs: Any) -> CenterNet:
    """Return CenterNet on a timm ResNet (``backbone``) with heads of ``head_conv`` channels and the neck
    ``neck`` of ``neck_chs`` channels: ``"deconv"`` (the paper's ``msra_resnet``: three deconvolutions of C5
    at stride 32) or ``"topdown"`` (the simple top-down neck of :func:`centernet_dla34` over C2–C5, which
    keeps the stride-4 and stride-8 detail that C5 alone has lost: at 128 px C5 is 4×4 cells of 32 px, larger
    than small objects). ``kwargs`` go to :class:`CenterNet`. Narrower ``neck_chs``/``head_conv`` make a model
    small enough to train on CPU."""
    if neck == "deconv":
        body = TimmBody(backbone, (4,), lambda chs: DeconvNeck(chs[-1], neck_chs), neck_chs)
    elif neck == "topdown":
        body = TimmBody(backbone, (1, 2, 3, 4), lambda chs: TopDownNeck(chs, neck_chs), neck_chs)
    else:
        raise ValueError(f"centernet_resnet18: neck must be 'deconv' or 'topdown', not {neck!r}")
    return CenterNet(body, head_conv, num_classes, input_size, **kwargs)


@register_model(source="Zhou et al. 2019, Objects as Points, Table 1: DLA-34, 37.4 AP, 52 FPS at 512x512 "
                       "(DLAUp/IDAUp with deformable convs replaced by a simple top-down neck)")
def centernet_dla34(num_classes: int = 80, input_size: int = 512, backbone: str = "dla34",
                    neck_chs: int = 64, head_conv: int = 256, **kwargs: Any) -> CenterNet:
    """Return CenterNet on timm's DLA body (levels at strides 4–32) with a simple top-down neck of
    ``neck_chs`` channels at stride 4 (replacing DLAUp/IDAUp and their deformable convs) and heads of
    ``head_conv`` channels; ``kwargs`` go to :class:`CenterNet`."""
    body = TimmBody(backbone, (2, 3, 4, 5), lambda chs: TopDownNeck(chs, neck_chs), neck_chs)
    return CenterNet(body, head_conv, num_classes, input_size, **kwargs)


@register_model(source="Zhou et al. 2019, Objects as Points, Table 1: Hourglass-104, 40.3 AP, 14 FPS at 512x512")
def centernet_hourglass104(num_classes: int = 80, input_size: int = 512, stacks: int = 2,
                           dims: Sequence[int] = HOURGLASS104_DIMS, counts: Sequence[int] = HOURGLASS104_COUNTS,
                           head_conv: int = 256, **kwargs: Any) -> CenterNet:
    """Return CenterNet on CornerNet's Hourglass-104 (``stacks``, ``dims``, ``counts`` default to it;
    smaller values build a small model of the same design), heads on every stack; ``kwargs`` go to
    :class:`CenterNet`."""
    return CenterNet(HourglassBody(stacks, dims, counts), head_conv, num_classes, input_size, **kwargs)
