"""ExtremeNet, "Bottom-up Object Detection by Grouping Extreme and Center Points" (Zhou, Zhuo &
Krähenbühl 2019): an object is the quadruple of its top-, left-, bottom- and right-most points, found as
peaks of four per-class heatmaps and grouped purely geometrically, checked against a fifth, centre
heatmap.

Network (``forward``): Hourglass-104 (CornerNet's, no corner pooling); per stack nine prediction modules
(3x3 conv + ReLU + 1x1 conv): ``t_heat``, ``l_heat``, ``b_heat``, ``r_heat``, ``ct_heat`` (one map per
class each, final bias −2.19) and a 2-channel sub-cell offset per extreme map (``t_offset`` …). In
training every stack's heads run (losses averaged), in inference the last stack's.

``decode`` (timed apart from ``forward``): per extreme map sigmoid → 3x3 max-pool peaks → top-K (40)
over classes × positions; every combination of one peak per map (K⁴ = 2.56 M), vectorised (peaks below
the score threshold are dropped first; the rest broadcast in chunks of at most ``max_combinations``),
is rejected when the classes differ, the geometry is inconsistent (t.y ≤ l.y, r.y ≤ b.y and l.x ≤ t.x,
b.x ≤ r.x must hold, in cells), an extreme score is < 0.1, or the centre heatmap of the class at the
geometric centre cell (round((l.x + r.x)/2), round((t.y + b.y)/2)) is < 0.1; score = (t + l + b + r +
2·ct) / 6; the best 1000; box = (l.x, t.y, r.x, b.y) offset-corrected × stride in input pixels. Then
Gaussian Soft-NMS and the best 100 (the default suppression).

Simplifications: no edge aggregation of the extreme heatmaps (``aggr_weight`` 0.1) and no ghost-box
suppression (both in the released test code), no flipped-image test augmentation; training without
``extra["extreme_points"]`` uses the midpoints of the box edges as extreme points.

Loss: focal on the five heatmaps (Gaussian targets of radius ``gaussian_radius(h, w, 0.7)`` of the
box), smooth L1 on the four offsets (weight 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from harness.zoo.classifiers import HOURGLASS104_COUNTS, HOURGLASS104_DIMS, StackedHourglass, residual_hourglass
from harness.zoo.detectors.base import Detections, Detector, ImageMeta, Target
from harness.zoo.detectors.keypoints import (
    COCO_MEAN,
    COCO_STD,
    HEAT_PRIOR_BIAS,
    HeadSet,
    KeypointTargets,
    box_radius,
    boxes_from_edges,
    boxes_to_output,
    encode_keypoints,
    focal_loss,
    gather_at,
    mean_over_stacks,
    output_stride,
    peaks,
    prediction_head,
    smooth_l1_per_object,
    stack_outputs,
    topk,
)
from harness.zoo.detectors.postprocess import Suppression
from harness.zoo.registry import register_model

Raw = list[dict[str, torch.Tensor]]  # per supervised stack: {"t_heat", …, "ct_heat", "t_offset", …}

#: the extreme points, in the order of ``extra["extreme_points"]`` (M, 4, 2) (x, y).
EXTREMES = ("t", "l", "b", "r")
#: the heatmaps: the four extreme points and the centre.
HEATMAPS = (*EXTREMES, "ct")
LOSS_WEIGHTS = {"heatmap": 1.0, "offset": 1.0}
#: ExtremeNet's test suppression: per-class Gaussian Soft-NMS (the released code's ``exp_soft_nms``), 100 kept.
EXTREMENET_SUPPRESSION = Suppression("soft_nms_gaussian", iou_threshold=0.5, score_threshold=0.001,
                                     pre_top_k=1000, max_detections=100, sigma=0.5)


@dataclass(frozen=True)
class ExtremeDecoding:
    """Test settings of extreme-point grouping: peaks per extreme map (``top_k``), the least extreme and
    centre scores, groups kept per image (``num_dets``), and the most combinations broadcast at once."""

    top_k: int = 40
    score_threshold: float = 0.1
    center_threshold: float = 0.1
    num_dets: int = 1000
    max_combinations: int = 1 << 22


@dataclass
class Peaks:
    """One extreme map's peaks of one image, each (k,): score, class, cell x and y (int64), and the
    offset-corrected x and y (cells, float)."""

    scores: torch.Tensor
    labels: torch.Tensor
    xs: torch.Tensor
    ys: torch.Tensor
    fine_xs: torch.Tensor
    fine_ys: torch.Tensor

    def take(self, keep: torch.Tensor | slice) -> Peaks:
        """Return the peaks selected by ``keep`` (mask, indices or slice)."""
        return Peaks(*(field[keep] for field in vars(self).values()))

    def on_axis(self, axis: int) -> Peaks:
        """Return the peaks with every field viewed along ``axis`` of a 4-D grid (t, l, b, r), to broadcast."""
        shape = [1, 1, 1, 1]
        shape[axis] = -1
        return Peaks(*(field.view(shape) for field in vars(self).values()))


def extreme_peaks(out: dict[str, torch.Tensor], top_k: int) -> dict[str, list[Peaks]]:
    """Return per extreme map, per image, its ``top_k`` peaks with their offsets."""
    found: dict[str, list[Peaks]] = {}
    for name in EXTREMES:
        top = topk(peaks(torch.sigmoid(out[f"{name}_heat"])), top_k)
        offset = gather_at(out[f"{name}_offset"], top.index)
        xs, ys = top.xs.long(), top.ys.long()
        found[name] = [Peaks(top.scores[i], top.labels[i], xs[i], ys[i], top.xs[i] + offset[i, :, 0],
                             top.ys[i] + offset[i, :, 1]) for i in range(len(xs))]
    return found


def consistent(top: Peaks, left: Peaks, bottom: Peaks, right: Peaks) -> torch.Tensor:
    """Return the mask of the grid of combinations (peaks broadcast along axes t, l, b, r) of one class
    whose geometry is consistent: t.y ≤ l.y, r.y ≤ b.y and l.x ≤ t.x, b.x ≤ r.x (cells)."""
    label = top.labels
    same_class = (label == left.labels) & (label == bottom.labels) & (label == right.labels)
    vertical = (top.ys <= left.ys) & (top.ys <= right.ys) & (left.ys <= bottom.ys) & (right.ys <= bottom.ys)
    horizontal = (left.xs <= top.xs) & (left.xs <= bottom.xs) & (top.xs <= right.xs) & (bottom.xs <= right.xs)
    return same_class & vertical & horizontal


def group_extremes(found: dict[str, Peaks], center: torch.Tensor, config: ExtremeDecoding,
                   stride: float) -> Detections:
    """Return one image's valid groups of one peak per extreme map, by descending score, at most
    ``config.num_dets``; ``center`` (C, H, W) is its centre heatmap (probabilities). Combinations are
    broadcast over the top peaks in chunks of at most ``config.max_combinations``."""
    top, left, bottom, right = (found[n].take(found[n].scores >= config.score_threshold) for n in EXTREMES)
    height, width = center.shape[-2:]
    chunk = max(1, config.max_combinations // max(1, len(left.scores) * len(bottom.scores) * len(right.scores)))
    groups: list[tuple[torch.Tensor, ...]] = []
    for start in range(0, len(top.scores), chunk):
        t = top.take(slice(start, start + chunk))
        it, il, ib, ir = consistent(t.on_axis(0), left.on_axis(1), bottom.on_axis(2), right.on_axis(3)).nonzero(
            as_tuple=True)
        cx = torch.div(left.xs[il] + right.xs[ir] + 1, 2, rounding_mode="floor")
        cy = torch.div(t.ys[it] + bottom.ys[ib] + 1, 2, rounding_mode="floor")
        label = t.labels[it]
        ct = center.flatten()[(label * height + cy) * width + cx]
        keep = ct >= config.center_threshold
        it, il, ib, ir, ct, label = it[keep], il[keep], ib[keep], ir[keep], ct[keep], label[keep]
        score = (t.scores[it] + left.scores[il] + bottom.scores[ib] + right.scores[ir] + 2 * ct) / 6
        boxes = boxes_from_edges(left.fine_xs[il], t.fine_ys[it], right.fine_xs[ir], bottom.fine_ys[ib], stride)
        groups.append((boxes, score, label))
    if not groups:
        return Detections.empty(center.device)
    boxes, scores, labels = (torch.cat(parts) for parts in zip(*groups, strict=True))
    best = scores.topk(min(config.num_dets, scores.numel())).indices
    return Detections(boxes[best], scores[best], labels[best])


def extreme_points(target: Target) -> torch.Tensor:
    """Return a target's extreme points (M, 4, 2) (x, y) in order t, l, b, r: ``extra["extreme_points"]``,
    else the midpoints of its boxes' top, left, bottom and right edges."""
    if "extreme_points" in target.extra:
        return torch.as_tensor(target.extra["extreme_points"], dtype=torch.float32)
    x1, y1, x2, y2 = target.boxes.float().unbind(dim=1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return torch.stack([torch.stack([cx, y1], 1), torch.stack([x1, cy], 1),
                        torch.stack([cx, y2], 1), torch.stack([x2, cy], 1)], dim=1)


def centre_cells(points: torch.Tensor) -> torch.Tensor:
    """Return the geometric centre (M, 2) (x, y) of extreme points (M, 4, 2) in cells, placed in the cell
    decode looks it up in (from the extreme points' cells)."""
    cells = points.floor()
    cx = torch.div(cells[:, 1, 0] + cells[:, 3, 0] + 1, 2, rounding_mode="floor")
    cy = torch.div(cells[:, 0, 1] + cells[:, 2, 1] + 1, 2, rounding_mode="floor")
    return torch.stack([cx, cy], dim=1) + 0.5


class ExtremeNet(Detector):
    """ExtremeNet on a stacked-hourglass ``backbone`` (see the module docstring)."""

    def __init__(self, backbone: StackedHourglass, num_classes: int = 80, input_size: int = 511,
                 decoding: ExtremeDecoding = ExtremeDecoding(), suppression: Suppression = EXTREMENET_SUPPRESSION,
                 min_overlap: float = 0.7) -> None:
        super().__init__(num_classes, input_size, suppression, mean=COCO_MEAN, std=COCO_STD)
        self.backbone = backbone
        dim = backbone.cnvs[0].out_channels
        self.heads = nn.ModuleList(
            HeadSet({
                **{f"{name}_heat": prediction_head(dim, dim, num_classes, final_bias=HEAT_PRIOR_BIAS)
                   for name in HEATMAPS},
                **{f"{name}_offset": prediction_head(dim, dim, 2) for name in EXTREMES},
            })
            for _ in backbone.hourglasses
        )
        self.decoding = decoding
        self.min_overlap = min_overlap

    def forward(self, batch: torch.Tensor) -> Raw:
        """Return the heads' maps (logits for heatmaps) of every stack in training, of the last in eval."""
        return stack_outputs(self.heads, self.backbone.forward_features(batch), self.training)

    def decode(self, raw: Raw, metas: Sequence[ImageMeta]) -> list[Detections]:
        """Return the grouped extreme points of the last stack per image, boxes in input pixels."""
        out = raw[-1]
        stride = output_stride(self.input_size, out["ct_heat"])
        found = extreme_peaks(out, self.decoding.top_k)
        center = torch.sigmoid(out["ct_heat"])
        return [group_extremes({name: found[name][i] for name in EXTREMES}, center[i], self.decoding, stride)
                for i in range(len(metas))]

    @staticmethod
    def targets_to_input(targets: Sequence[Target], metas: Sequence[ImageMeta]) -> list[Target]:
        """Return the targets with boxes and any ``extreme_points`` scaled to input pixels."""
        scaled = []
        for t, m in zip(targets, metas, strict=True):
            extra = dict(t.extra)
            if "extreme_points" in extra:
                extra["extreme_points"] = torch.as_tensor(extra["extreme_points"]) * m.scale
            scaled.append(Target(t.boxes * m.scale, t.labels, extra))
        return scaled

    def encode(self, targets: Sequence[Target], map_hw: tuple[int, int], stride: float) -> dict[str, KeypointTargets]:
        """Return per heatmap (t, l, b, r, ct) the encoded points of ``targets`` (input pixels)."""
        points: dict[str, list[torch.Tensor]] = {name: [] for name in HEATMAPS}
        labels, radii = [], []
        for target in targets:
            boxes, keep = boxes_to_output(target.boxes, stride, map_hw)
            extremes = extreme_points(target).to(boxes.device)[keep] / stride
            boxes = boxes[keep]
            for j, name in enumerate(EXTREMES):
                points[name].append(extremes[:, j])
            points["ct"].append(centre_cells(extremes))
            labels.append(target.labels[keep])
            radii.append(box_radius(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0], self.min_overlap))
        return {name: encode_keypoints(points[name], labels, radii, self.num_classes, map_hw) for name in HEATMAPS}

    def loss(self, raw: Raw, targets: Sequence[Target]) -> dict[str, torch.Tensor]:
        """Return the weighted ``heatmap`` (focal, five maps) and ``offset`` (smooth L1, four) losses,
        averaged over the supervised stacks."""
        heat = raw[-1]["ct_heat"]
        encoded = self.encode(targets, heat.shape[-2:], output_stride(self.input_size, heat))
        per_stack = [{
            "heatmap": sum(focal_loss(out[f"{name}_heat"], encoded[name].heatmap) for name in HEATMAPS),
            "offset": sum(smooth_l1_per_object(gather_at(out[f"{name}_offset"], encoded[name].index),
                                               encoded[name].offset, encoded[name].mask) for name in EXTREMES),
        } for out in raw]
        return mean_over_stacks(per_stack, LOSS_WEIGHTS)


@register_model(source="Zhou, Zhuo & Krähenbühl 2019, Bottom-up Object Detection by Grouping Extreme and Center "
                       "Points, §4: Hourglass-104, 511x511 input; 40.2 AP (COCO test-dev, single scale), 322 ms")
def extremenet_hourglass104(num_classes: int = 80, input_size: int = 511, stacks: int = 2,
                            dims: Sequence[int] = HOURGLASS104_DIMS, counts: Sequence[int] = HOURGLASS104_COUNTS,
                            **kwargs: Any) -> ExtremeNet:
    """Return ExtremeNet: Hourglass-104 (``stacks``, ``dims``, ``counts``; smaller values build a small model
    of the same design) with five heatmap and four offset heads per stack; ``kwargs`` go to
    :class:`ExtremeNet` (e.g. ``decoding``)."""
    return ExtremeNet(residual_hourglass(dims, counts, stacks=stacks, num_classes=0), num_classes, input_size,
                      **kwargs)
