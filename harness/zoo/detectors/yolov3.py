"""YOLOv3 (Redmon & Farhadi 2018, "YOLOv3: An Incremental Improvement"): a timm backbone's maps at strides
8/16/32 (Darknet-53 by default), the paper's neck and 3-scale head, decoded per (cell, anchor, class).

- **Neck**: on the coarsest map a DetectionBlock (5 convs: 1×1 c, 3×3 2c, 1×1 c, 3×3 2c, 1×1 c); to reach
  the next finer map a 1×1 conv to its width, nearest ×2 upsampling, concatenation with that backbone
  map, another DetectionBlock. Widths default to half the backbone's (512/256/128 for Darknet-53).
- **Head**, per scale: 3×3 conv (c → 2c), 1×1 conv (with bias) to ``A × (5 + C)`` channels: per anchor
  tx, ty, tw, th, objectness, C class logits. Every other conv is Conv (no bias) + BN + LeakyReLU(0.1).
- **Boxes**: ``bx = (σ(tx) + cx)·stride``, ``by = (σ(ty) + cy)·stride``, ``bw = pw·e^tw``, ``bh = ph·e^th``
  (anchors ``pw, ph`` in input pixels); score of class k = σ(objectness)·σ(class k).
- **Loss** (mmdet's): each ground-truth box goes to the anchor of best shape IoU among all scales, in the
  cell holding its centre; BCE on σ-space xy (weight 2), objectness and classes; MSE on log-space wh
  (weight 2); predictions overlapping any ground truth by IoU > ``ignore_threshold`` get no no-object loss.
  Training choices (a case's ``box_loss`` / ``negatives``): ``box_loss`` ``mse``, ``l1`` or ``smooth_l1`` on the
  offsets (σ(tx), σ(ty), tw, th), or ``iou``, ``giou``, ``diou``, ``ciou`` on the decoded boxes, replaces
  ``loss_xy`` + ``loss_wh`` by one ``loss_box`` of the same weight (2; the DIoU paper's YOLOv3 experiment swaps
  these losses in the same way); ``negatives`` ``hard_mining`` scores objectness on the positives and the 3 highest-
  loss negatives per positive of each image; ``focal`` scores it with the focal loss over every non-ignored
  prediction, normalised by the positives (:mod:`harness.zoo.detectors.negatives`).

Raw outputs and their flattened form are ordered finest scale first (stride 8, 16, 32), then row, column,
anchor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_iou, sigmoid_focal_loss

from harness.zoo.detectors import box_losses
from harness.zoo.detectors.base import Detections, Detector, ImageMeta, Target
from harness.zoo.detectors.negatives import FOCAL_ALPHA, FOCAL_GAMMA, hard_negatives
from harness.zoo.detectors.postprocess import Suppression
from harness.zoo.detectors.timm_features import TimmFeatures
from harness.zoo.registry import register_model

#: strides of the three scales, in input pixels per map pixel, finest first.
STRIDES = (8, 16, 32)

#: the COCO anchors (width, height) in input pixels per stride (darknet ``yolov3.cfg``, masks 0-2/3-5/6-8).
COCO_ANCHORS_PX: dict[int, tuple[tuple[float, float], ...]] = {
    8: ((10, 13), (16, 30), (33, 23)),
    16: ((30, 61), (62, 45), (59, 119)),
    32: ((116, 90), (156, 198), (373, 326)),
}

#: mmdet's test protocol: NMS per class at IoU 0.45, scores ≥ 0.05, 1000 candidates, 100 detections.
YOLOV3_SUPPRESSION = Suppression("batched_nms", iou_threshold=0.45, score_threshold=0.05, pre_top_k=1000,
                                 max_detections=100)

#: prior probability the prediction convs' biases start at (objectness and classes), as RetinaNet's prior.
PRIOR_PROBABILITY = 0.01

#: channels per anchor before the classes: tx, ty, tw, th, objectness.
BOX_CHANNELS = 5


def conv_bn_leaky(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    """Return Conv (no bias, stride 1, same padding) + BatchNorm + LeakyReLU(0.1), darknet's conv layer."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
                         nn.BatchNorm2d(out_channels), nn.LeakyReLU(0.1, inplace=True))


def detection_block(in_channels: int, width: int) -> nn.Sequential:
    """Return the neck's 5 convs: 1×1 to ``width``, 3×3 to 2·width, 1×1, 3×3, 1×1 back to ``width``."""
    return nn.Sequential(conv_bn_leaky(in_channels, width, 1), conv_bn_leaky(width, 2 * width, 3),
                         conv_bn_leaky(2 * width, width, 1), conv_bn_leaky(width, 2 * width, 3),
                         conv_bn_leaky(2 * width, width, 1))


class YOLOv3Neck(nn.Module):
    """The top-down neck: backbone maps of ``in_channels`` (finest first) → maps of ``widths`` channels."""

    def __init__(self, in_channels: Sequence[int], widths: Sequence[int]) -> None:
        super().__init__()
        levels = len(in_channels)
        self.coarsest = detection_block(in_channels[-1], widths[-1])
        #: index k (k < levels − 1): from level k + 1's output down to level k.
        self.laterals = nn.ModuleList(conv_bn_leaky(widths[k + 1], widths[k], 1) for k in range(levels - 1))
        self.blocks = nn.ModuleList(detection_block(in_channels[k] + widths[k], widths[k]) for k in range(levels - 1))

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Return the neck's maps, finest first."""
        x = self.coarsest(features[-1])
        outputs = [x]
        for level in reversed(range(len(features) - 1)):
            up = F.interpolate(self.laterals[level](x), scale_factor=2.0, mode="nearest")
            up = up[..., : features[level].shape[-2], : features[level].shape[-1]]
            x = self.blocks[level](torch.cat([up, features[level]], dim=1))
            outputs.append(x)
        return outputs[::-1]


class YOLOv3Head(nn.Module):
    """Per scale a 3×3 conv (c → 2c) and a 1×1 prediction conv to ``anchors × (5 + num_classes)``."""

    def __init__(self, widths: Sequence[int], anchors: int, num_classes: int) -> None:
        super().__init__()
        outputs = anchors * (BOX_CHANNELS + num_classes)
        self.convs = nn.ModuleList(conv_bn_leaky(w, 2 * w, 3) for w in widths)
        self.predictions = nn.ModuleList(nn.Conv2d(2 * w, outputs, 1) for w in widths)
        prior_logit = math.log(PRIOR_PROBABILITY / (1 - PRIOR_PROBABILITY))
        for conv in self.predictions:
            nn.init.normal_(conv.weight, std=0.01)
            bias = conv.bias.data.view(anchors, BOX_CHANNELS + num_classes)
            bias.zero_()
            bias[:, 4:] = prior_logit

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Return the raw maps ``(N, A·(5 + C), H, W)``, finest first."""
        return [pred(conv(x)) for x, conv, pred in zip(features, self.convs, self.predictions, strict=True)]


class Encoded(NamedTuple):
    """Ground-truth boxes as YOLOv3 targets: the scale (index into the strides), anchor, cell row and column
    each box is assigned to (M,), its centre's offset in the cell ``(σ(tx), σ(ty))`` (M, 2) in 0…1 and its
    log size relative to the anchor ``(tw, th)`` (M, 2)."""

    level: torch.Tensor
    anchor: torch.Tensor
    row: torch.Tensor
    column: torch.Tensor
    offset_xy: torch.Tensor
    log_wh: torch.Tensor


class YOLOv3(Detector):
    """YOLOv3 over ``backbone`` (maps at :data:`STRIDES`); ``anchors_px`` (3, A, 2) anchor (w, h) in input
    pixels per scale, finest first; ``conf_threshold``: least objectness of a decoded candidate (mmdet's
    ``conf_thr``); ``ignore_threshold``: IoU above which a prediction gets no no-object loss."""

    BOX_LOSSES = ("mse", "l1", "smooth_l1", "iou", "giou", "diou", "ciou")
    NEGATIVES = ("hard_mining", "focal")

    def __init__(self, backbone: TimmFeatures, num_classes: int, input_size: int, anchors_px: torch.Tensor,
                 neck_widths: Sequence[int], conf_threshold: float = 0.005, ignore_threshold: float = 0.7,
                 suppression: Suppression = YOLOV3_SUPPRESSION) -> None:
        super().__init__(num_classes, input_size, suppression, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
        if tuple(backbone.strides) != STRIDES:
            raise ValueError(f"YOLOv3 needs backbone maps at strides {STRIDES}, got {backbone.strides}")
        self.backbone = backbone
        self.neck = YOLOv3Neck(backbone.channels, neck_widths)
        self.head = YOLOv3Head(neck_widths, anchors_px.shape[1], num_classes)
        self.register_buffer("anchors_px", anchors_px.float())
        self.conf_threshold = conf_threshold
        self.ignore_threshold = ignore_threshold

    def forward(self, batch: torch.Tensor) -> list[torch.Tensor]:
        """Return the three raw maps ``(N, A·(5 + C), H, W)`` of the batch, finest (stride 8) first."""
        return self.head(self.neck(self.backbone(batch)))

    # ------------------------------------------------------------------------------ boxes <-> maps

    def flatten(self, raw: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (predictions (N, P, 5 + C) raw logits, boxes (N, P, 4) x1y1x2y2 in input pixels) of the raw
        maps, P = Σ H·W·A ordered scale, row, column, anchor."""
        predictions, boxes = [], []
        for level, x in enumerate(raw):
            n, _, height, width = x.shape
            anchors = self.anchors_px[level]
            p = x.view(n, anchors.shape[0], -1, height, width).permute(0, 3, 4, 1, 2)  # (N, H, W, A, 5 + C)
            rows, columns = torch.meshgrid(torch.arange(height, device=x.device),
                                           torch.arange(width, device=x.device), indexing="ij")
            cell = torch.stack([columns, rows], dim=-1)[None, :, :, None, :].to(p.dtype)
            centre = (p[..., 0:2].sigmoid() + cell) * STRIDES[level]
            size = anchors.to(p.dtype) * p[..., 2:4].exp()
            boxes.append(torch.cat([centre - size / 2, centre + size / 2], dim=-1).reshape(n, -1, 4))
            predictions.append(p.reshape(n, -1, p.shape[-1]))
        return torch.cat(predictions, dim=1), torch.cat(boxes, dim=1)

    def map_sizes(self) -> list[tuple[int, int]]:
        """Return the (rows, columns) of each scale's map for this input size (the backbone rounds up)."""
        return [(math.ceil(self.input_size / s),) * 2 for s in STRIDES]

    def encode(self, boxes: torch.Tensor, map_sizes: Sequence[tuple[int, int]] | None = None) -> Encoded:
        """Return the targets of ground-truth ``boxes`` (M, 4) x1y1x2y2 in input pixels: each assigned to the
        anchor (of all scales) whose shape overlaps it best, in the cell holding its centre (clamped into the
        maps of ``map_sizes`` (rows, columns) per scale, default :meth:`map_sizes`)."""
        anchors = self.anchors_px.reshape(-1, 2)
        per_level = self.anchors_px.shape[1]
        size = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1e-6)
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2
        overlap = torch.minimum(size[:, None], anchors[None]).prod(-1)
        shape_iou = overlap / (size.prod(-1)[:, None] + anchors.prod(-1)[None] - overlap)
        best = shape_iou.argmax(dim=1)
        level, anchor = best // per_level, best % per_level
        stride = torch.tensor(STRIDES, dtype=boxes.dtype, device=boxes.device)[level]
        last = torch.tensor(map_sizes or self.map_sizes(), device=boxes.device).flip(-1)[level] - 1  # (M, 2) x, y
        position = centre / stride[:, None]
        cell = torch.minimum(position.floor().long().clamp(min=0), last)
        return Encoded(level, anchor, cell[:, 1], cell[:, 0], position - cell,
                       torch.log(size / anchors[best]))

    # ------------------------------------------------------------------------------------ decoding

    def decode(self, raw: Sequence[torch.Tensor], metas: Sequence[ImageMeta]) -> list[Detections]:
        """Return per image every (cell, anchor, class) whose objectness is ≥ ``conf_threshold``: its box in
        input pixels, score σ(objectness)·σ(class) in 0…1 and class index."""
        predictions, boxes = self.flatten(raw)
        objectness = predictions[..., 4].sigmoid()
        out = []
        for image_predictions, image_boxes, image_objectness in zip(predictions, boxes, objectness, strict=True):
            keep = image_objectness >= self.conf_threshold
            scores = image_objectness[keep, None] * image_predictions[keep, BOX_CHANNELS:].sigmoid()
            count, classes = scores.shape
            out.append(Detections(image_boxes[keep][:, None].expand(count, classes, 4).reshape(-1, 4),
                                  scores.reshape(-1),
                                  torch.arange(classes, device=scores.device).repeat(count)))
        return out

    # ------------------------------------------------------------------------------------ training

    def _dense_targets(self, targets: Sequence[Target], boxes: torch.Tensor,
                       map_sizes: Sequence[tuple[int, int]]) -> tuple[torch.Tensor, ...]:
        """Return (objectness (N, P) 0/1, ignored (N, P) bool, offset_xy (N, P, 2), log_wh (N, P, 2), classes
        (N, P, C) one-hot, ground-truth boxes (N, P, 4) x1y1x2y2 in input pixels) in :meth:`flatten`'s order;
        ``boxes`` are the predicted boxes (N, P, 4) and ``map_sizes`` the (rows, columns) of the raw maps."""
        n, p = boxes.shape[:2]
        anchors = self.anchors_px.shape[1]
        cells = torch.tensor([rows * columns for rows, columns in map_sizes], device=boxes.device)
        level_start = torch.cumsum(cells * anchors, 0) - cells * anchors
        level_columns = torch.tensor([columns for _, columns in map_sizes], device=boxes.device)
        objectness = boxes.new_zeros(n, p)
        ignored = torch.zeros(n, p, dtype=torch.bool, device=boxes.device)
        offset_xy, log_wh = boxes.new_zeros(n, p, 2), boxes.new_zeros(n, p, 2)
        classes = boxes.new_zeros(n, p, self.num_classes)
        gt_boxes = boxes.new_zeros(n, p, 4)
        for i, target in enumerate(targets):
            if not target.boxes.numel():
                continue
            gt = target.boxes.to(boxes)
            ignored[i] = box_iou(boxes[i], gt).amax(dim=1) > self.ignore_threshold
            e = self.encode(gt, map_sizes)
            index = level_start[e.level] + (e.row * level_columns[e.level] + e.column) * anchors + e.anchor
            objectness[i, index] = 1.0
            offset_xy[i, index] = e.offset_xy
            log_wh[i, index] = e.log_wh
            classes[i, index] = F.one_hot(target.labels.to(boxes.device), self.num_classes).to(boxes.dtype)
            gt_boxes[i, index] = gt
        return objectness, ignored, offset_xy, log_wh, classes, gt_boxes

    def loss(self, raw: Sequence[torch.Tensor], targets: Sequence[Target]) -> dict[str, torch.Tensor]:
        """Return the YOLOv3 loss terms (each summed over the image, averaged over the batch, unitless): mmdet's
        ``loss_cls``, ``loss_obj``, ``loss_xy`` (weight 2), ``loss_wh`` (weight 2), or with another ``box_loss``
        one ``loss_box`` (weight 2) in place of the last two; targets in input pixels (see the module doc)."""
        predictions, boxes = self.flatten(raw)
        map_sizes = [(x.shape[-2], x.shape[-1]) for x in raw]
        objectness, ignored, offset_xy, log_wh, classes, gt_boxes = self._dense_targets(
            targets, boxes.detach(), map_sizes)
        positive = objectness > 0
        images = max(1, len(targets))

        def bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / images

        terms = {"loss_cls": bce(predictions[..., BOX_CHANNELS:][positive], classes[positive]),
                 "loss_obj": self._objectness_loss(predictions[..., 4], objectness, ignored, images)}
        if self.box_loss == "default":
            terms["loss_xy"] = 2.0 * bce(predictions[..., 0:2][positive], offset_xy[positive])
            terms["loss_wh"] = 2.0 * F.mse_loss(predictions[..., 2:4][positive], log_wh[positive],
                                                reduction="sum") / images
        elif box_losses.is_box_loss(self.box_loss):
            per_box = box_losses.BOX_LOSSES[self.box_loss](boxes[positive], gt_boxes[positive])
            terms["loss_box"] = 2.0 * per_box.sum() / images
        else:
            offsets = torch.cat([predictions[..., 0:2][positive].sigmoid(), predictions[..., 2:4][positive]], dim=1)
            target = torch.cat([offset_xy[positive], log_wh[positive]], dim=1)
            terms["loss_box"] = 2.0 * box_losses.OFFSET_LOSSES[self.box_loss](offsets, target).sum() / images
        return terms

    def _objectness_loss(self, logits: torch.Tensor, objectness: torch.Tensor, ignored: torch.Tensor,
                         images: int) -> torch.Tensor:
        """Return the objectness term under :attr:`negatives`: BCE over the positives and the non-ignored
        negatives (default), over the positives and the hardest negatives (``hard_mining``), or the focal loss
        over all of them normalised by the positives (``focal``)."""
        positive = objectness > 0
        scored = positive | ~ignored
        if self.negatives == "focal":
            focal = sigmoid_focal_loss(logits[scored], objectness[scored], alpha=FOCAL_ALPHA, gamma=FOCAL_GAMMA,
                                       reduction="sum")
            return focal / positive.sum().clamp(min=1)
        per_prediction = F.binary_cross_entropy_with_logits(logits, objectness, reduction="none")
        if self.negatives == "hard_mining":
            scored = positive | hard_negatives(per_prediction, positive, ~positive & ~ignored)
        return per_prediction[scored].sum() / images


def anchors_tensor(anchors: Sequence[Sequence[Sequence[float]]] | None, anchor_scale: float) -> torch.Tensor:
    """Return the anchors (3, A, 2) in input pixels, finest scale first: ``anchors`` (per scale, finest first,
    (w, h) pairs in pixels) or the COCO anchors, multiplied by ``anchor_scale``."""
    chosen = anchors if anchors is not None else [COCO_ANCHORS_PX[s] for s in STRIDES]
    table = torch.tensor(chosen, dtype=torch.float32)
    if table.dim() != 3 or table.shape[0] != len(STRIDES) or table.shape[2] != 2:
        raise ValueError(f"anchors must be {len(STRIDES)} scales of (w, h) pairs, got shape {tuple(table.shape)}")
    return table * anchor_scale


@register_model("yolov3_darknet53", origin="harness",
                source="Redmon & Farhadi 2018, YOLOv3: An Incremental Improvement, Table 3 (416)")
def yolov3_darknet53(num_classes: int = 80, input_size: int = 416, backbone: str = "darknet53",
                     anchors: Sequence[Sequence[Sequence[float]]] | None = None, anchor_scale: float = 1.0,
                     neck_widths: Sequence[int] | None = None, conf_threshold: float = 0.005,
                     ignore_threshold: float = 0.7) -> YOLOv3:
    """Return YOLOv3 (random weights) on timm ``backbone``'s maps at strides 8/16/32.

    ``anchors``: (w, h) pixel pairs per scale, finest first (default: the COCO anchors), scaled by
    ``anchor_scale``; ``neck_widths``: channels of the neck per scale, finest first (default: half the
    backbone's, i.e. the paper's 128/256/512 for Darknet-53).
    """
    features = TimmFeatures.at_strides(backbone, STRIDES)
    widths = list(neck_widths) if neck_widths is not None else [c // 2 for c in features.channels]
    return YOLOv3(features, num_classes, input_size, anchors_tensor(anchors, anchor_scale), widths,
                  conf_threshold=conf_threshold, ignore_threshold=ignore_threshold)
