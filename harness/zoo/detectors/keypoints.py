"""What the keypoint detectors (CenterNet, CornerNet and its Lite variants, ExtremeNet) share.

They all predict, per class, a heatmap of keypoints at an output stride, trained against 2-D Gaussian
bumps with CornerNet's penalty-reduced focal loss (Law & Deng 2018, §3.2, Eq. 1), and decode it the same
way: sigmoid, 3x3 max-pool "NMS" that keeps local peaks, top-K over classes × positions, then a gather
of the other maps (sizes, offsets, tags) at the peaks.

Coordinates: "output" pixels are cells of the output maps; an output cell (x, y) covers input pixels
[x·stride, (x+1)·stride). A keypoint at output position p is stored as its cell ``floor(p)`` (the peak)
plus the sub-cell offset ``p − floor(p)`` the offset head regresses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

#: COCO's mean and std (RGB, 0–1 scale) used by CornerNet, ExtremeNet and CenterNet for their inputs.
COCO_MEAN = (0.47026115, 0.44719302, 0.40789654)
COCO_STD = (0.27809835, 0.27408164, 0.28863828)
#: final bias of every heatmap head: −log((1 − π)/π) for the prior π = 0.1 (Lin et al. 2017, RetinaNet §4.1).
HEAT_PRIOR_BIAS = -2.19
#: most objects encoded per image (CenterNet's ``max_objs``, CornerNet's ``max_tag_len``).
MAX_OBJECTS = 128


def gaussian_radius(
    height: torch.Tensor | float, width: torch.Tensor | float, min_overlap: float = 0.7
) -> torch.Tensor:
    """Return the radius (in the boxes' pixels) within which a corner may move so that the box it makes
    with the other corner still has IoU ≥ ``min_overlap`` with the box ``height`` × ``width``.

    CornerNet's formula (Law & Deng 2018, §3.2): the smallest of the positive roots of three quadratics
    (both corners moved inwards, both outwards, one of each). As in the released code of CornerNet and
    CenterNet, with which the published models were trained, each root is ``(b + sqrt(b² − 4ac)) / 2``
    (not ``/ 2a``), which gives smaller radii than the exact roots for the two quadratics with a ≠ 1.
    """
    h = torch.as_tensor(height, dtype=torch.float64)
    w = torch.as_tensor(width, dtype=torch.float64)
    b1, c1 = h + w, w * h * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + torch.sqrt(b1**2 - 4 * c1)) / 2
    b2, c2 = 2 * (h + w), (1 - min_overlap) * w * h
    r2 = (b2 + torch.sqrt(b2**2 - 16 * c2)) / 2
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (h + w), (min_overlap - 1) * w * h
    r3 = (b3 + torch.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return torch.minimum(torch.minimum(r1, r2), r3)


def box_radius(heights: torch.Tensor, widths: torch.Tensor, min_overlap: float) -> torch.Tensor:
    """Return the integer Gaussian radii (output cells, int64) of boxes ``heights`` × ``widths`` in output
    pixels: ``max(0, int(gaussian_radius(ceil(h), ceil(w))))`` as CenterNet and CornerNet encode them."""
    radius = gaussian_radius(heights.ceil(), widths.ceil(), min_overlap)
    return radius.clamp(min=0).floor().to(torch.int64)


def draw_gaussian(heatmap: torch.Tensor, center: tuple[int, int], radius: int) -> torch.Tensor:
    """Splat a 2-D Gaussian of diameter ``2·radius + 1`` and sigma ``diameter / 6``, 1 at ``center`` (x, y),
    onto ``heatmap`` (H, W) in place by element-wise max (clipped at the borders); return ``heatmap``."""
    x, y = center
    height, width = heatmap.shape
    sigma = (2 * radius + 1) / 6
    offsets = torch.arange(-radius, radius + 1, dtype=heatmap.dtype, device=heatmap.device)
    gaussian = torch.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * sigma * sigma))
    left, right = min(x, radius), min(width - x, radius + 1)
    top, bottom = min(y, radius), min(height - y, radius + 1)
    if left + right <= 0 or top + bottom <= 0:
        return heatmap
    region = heatmap[y - top : y + bottom, x - left : x + right]
    torch.maximum(region, gaussian[radius - top : radius + bottom, radius - left : radius + right], out=region)
    return heatmap


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Return CornerNet's penalty-reduced focal loss (α = 2, β = 4) of heatmap ``logits`` against the
    Gaussian ``target`` of the same shape: with p = clamp(sigmoid(logits), 1e-4, 1 − 1e-4),
    −[Σ_{target=1} (1−p)² log p + Σ_{target<1} (1−target)⁴ p² log(1−p)] / max(1, #positives)."""
    p = torch.sigmoid(logits.float()).clamp(1e-4, 1 - 1e-4)
    positive = target == 1
    pos = (torch.log(p) * (1 - p) ** 2)[positive].sum()
    neg = (torch.log(1 - p) * p**2 * (1 - target) ** 4)[~positive].sum()
    return -(pos + neg) / positive.sum().clamp(min=1)


def peaks(heat: torch.Tensor, kernel: int = 3) -> torch.Tensor:
    """Return ``heat`` (N, C, H, W) with every value that is not the maximum of its ``kernel``×``kernel``
    neighbourhood set to 0 (the keypoint detectors' max-pool replacement for NMS)."""
    pooled = F.max_pool2d(heat, kernel, stride=1, padding=(kernel - 1) // 2)
    return heat * (pooled == heat)


class TopK(NamedTuple):
    """The ``k`` best positions of a heatmap per image, each (N, k): score, class, y and x (output cells,
    float) and ``index`` = y·W + x (int64, for :func:`gather_at`), by descending score."""

    scores: torch.Tensor
    labels: torch.Tensor
    ys: torch.Tensor
    xs: torch.Tensor
    index: torch.Tensor


def topk(heat: torch.Tensor, k: int) -> TopK:
    """Return the ``k`` highest values of ``heat`` (N, C, H, W) over classes × positions, per image."""
    n, c, h, w = heat.shape
    scores, flat = heat.reshape(n, -1).topk(min(k, c * h * w))
    index = flat % (h * w)
    return TopK(scores, flat // (h * w), (index // w).to(heat.dtype), (index % w).to(heat.dtype), index)


def gather_at(feature_map: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Return the values of ``feature_map`` (N, D, H, W) at the flat positions ``index`` (N, K), as (N, K, D)."""
    n, d = feature_map.shape[:2]
    flat = feature_map.reshape(n, d, -1)
    return flat.gather(2, index[:, None, :].expand(n, d, index.shape[1])).transpose(1, 2)


def prediction_head(
    in_chs: int, mid_chs: int, out_chs: int, kernel_size: int = 3, final_bias: float = 0.0
) -> nn.Sequential:
    """Return a keypoint head: Conv k×k (``in_chs`` → ``mid_chs``, bias) → ReLU → Conv 1x1 (→ ``out_chs``),
    the last bias set to ``final_bias`` (CenterNet's heads; CornerNet's and ExtremeNet's prediction
    modules with k = 3, CornerNet-Squeeze's with k = 1)."""
    head = nn.Sequential(
        nn.Conv2d(in_chs, mid_chs, kernel_size, padding=kernel_size // 2),
        nn.ReLU(inplace=True),
        nn.Conv2d(mid_chs, out_chs, 1),
    )
    nn.init.constant_(head[-1].bias, final_bias)
    return head


class HeadSet(nn.ModuleDict):
    """Named prediction heads over one feature map; calling it returns ``{name: head(features)}``."""

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return every head's output map on ``features``."""
        return {name: head(features) for name, head in self.items()}


def stack_outputs(heads: nn.ModuleList, features: Sequence[torch.Tensor],
                  training: bool) -> list[dict[str, torch.Tensor]]:
    """Return the head maps of every stack's features in training (intermediate supervision), of the last
    stack's alone in eval (what the hourglass detectors test with)."""
    if training:
        return [head_set(f) for head_set, f in zip(heads, features, strict=True)]
    return [heads[-1](features[-1])]


def output_stride(input_size: int, feature_map: torch.Tensor) -> float:
    """Return the input pixels per output cell of ``feature_map`` for an ``input_size`` square input
    (CornerNet's 511 → 128: 3.99; CenterNet's 512 → 128: 4)."""
    return input_size / feature_map.shape[-1]


def boxes_to_output(boxes: torch.Tensor, stride: float, map_hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``boxes`` (M, 4) x1, y1, x2, y2 in input pixels as output cells clipped to the map's edges
    (0…W, 0…H: cell x covers [x, x + 1)), and the mask (M,) of those that keep a width and a height (the
    others are not encoded).

    CenterNet's and CornerNet's code clip to the last cell's *index* (W − 1) instead, which cuts up to one
    output cell (``stride`` input pixels) off every box that reaches the right or bottom border: on the
    digit_boxes val images (10 % of boxes reach past 124 px of 128) their encoded targets, decoded, score
    only 0.974 AP instead of 1.0. A keypoint on the far edge is kept on the last cell by
    :func:`encode_keypoints`, with a sub-cell offset of 1."""
    height, width = map_hw
    cells = boxes.float() / stride
    cells = torch.stack([cells[:, 0].clamp(0, width), cells[:, 1].clamp(0, height),
                         cells[:, 2].clamp(0, width), cells[:, 3].clamp(0, height)], dim=1)
    return cells, ((cells[:, 2:] - cells[:, :2]) > 0).all(dim=1)


def boxes_from_edges(
    x1: torch.Tensor, y1: torch.Tensor, x2: torch.Tensor, y2: torch.Tensor, stride: float
) -> torch.Tensor:
    """Return boxes (..., 4) x1, y1, x2, y2 in input pixels from edges in output cells; a right (bottom)
    edge that regressed offsets moved left of (above) its left (top) edge is moved onto it, so that even
    an untrained network gives well-formed boxes."""
    return torch.stack([x1, y1, torch.maximum(x2, x1), torch.maximum(y2, y1)], dim=-1) * stride


@dataclass
class KeypointTargets:
    """Encoded keypoints of a batch: ``heatmap`` (N, C, H, W) of Gaussian bumps, and per object (padded to
    the batch's most objects, M) ``index`` (N, M) int64 flat cell y·W + x, ``offset`` (N, M, 2) the
    sub-cell (x, y) offset in output cells, ``mask`` (N, M) bool for real objects."""

    heatmap: torch.Tensor
    index: torch.Tensor
    offset: torch.Tensor
    mask: torch.Tensor


def encode_keypoints(
    points: Sequence[torch.Tensor],
    labels: Sequence[torch.Tensor],
    radii: Sequence[torch.Tensor],
    num_classes: int,
    map_hw: tuple[int, int],
) -> KeypointTargets:
    """Return the targets of one keypoint type for a batch: per image, ``points`` (M, 2) (x, y) in output
    pixels, their class ``labels`` (M,) and Gaussian ``radii`` (M,) in output cells; at most
    :data:`MAX_OBJECTS` per image. Points outside the map are moved to its nearest cell."""
    height, width = map_hw
    device = points[0].device if points else torch.device("cpu")
    count = min(max((len(p) for p in points), default=0), MAX_OBJECTS)
    heatmap = torch.zeros(len(points), num_classes, height, width, device=device)
    index = torch.zeros(len(points), count, dtype=torch.int64, device=device)
    offset = torch.zeros(len(points), count, 2, device=device)
    mask = torch.zeros(len(points), count, dtype=torch.bool, device=device)
    for i, (pts, cls, rad) in enumerate(zip(points, labels, radii, strict=True)):
        pts, cls, rad = pts[:MAX_OBJECTS].float(), cls[:MAX_OBJECTS], rad[:MAX_OBJECTS]
        cells = torch.stack([pts[:, 0].floor().clamp(0, width - 1), pts[:, 1].floor().clamp(0, height - 1)], 1)
        for (x, y), c, r in zip(cells.long().tolist(), cls.tolist(), rad.tolist(), strict=True):
            draw_gaussian(heatmap[i, c], (x, y), r)
        m = len(pts)
        index[i, :m] = cells[:, 1].long() * width + cells[:, 0].long()
        offset[i, :m] = pts - cells
        mask[i, :m] = True
    return KeypointTargets(heatmap, index, offset, mask)


def padded(values: Sequence[torch.Tensor], count: int) -> torch.Tensor:
    """Return per-image ``values`` (M_i, D) truncated to :data:`MAX_OBJECTS` and zero-padded to ``count``
    rows, stacked as (N, count, D) (the layout of :class:`KeypointTargets`' per-object fields)."""
    out = values[0].new_zeros(len(values), count, values[0].shape[1])
    for i, v in enumerate(values):
        out[i, : min(len(v), count)] = v[:count]
    return out


def l1_per_element(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Return the L1 loss of ``pred`` vs ``target`` (N, M, D) over the objects of ``mask`` (N, M), divided by
    the number of regressed values (objects × D), as CenterNet's ``RegL1Loss``."""
    weight = mask[..., None].expand_as(pred).to(pred.dtype)
    return F.l1_loss(pred * weight, target * weight, reduction="sum") / (weight.sum() + 1e-4)


def smooth_l1_per_object(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Return the smooth-L1 loss of ``pred`` vs ``target`` (N, M, D) over the objects of ``mask`` (N, M),
    divided by the number of objects, as CornerNet's and ExtremeNet's offset loss."""
    return F.smooth_l1_loss(pred[mask], target[mask], reduction="sum") / (mask.sum() + 1e-4)


def mean_over_stacks(
    per_stack: Sequence[dict[str, torch.Tensor]], weights: dict[str, float]
) -> dict[str, torch.Tensor]:
    """Return each named loss term averaged over the supervised hourglass stacks (intermediate
    supervision, CornerNet §4.4 / CenterNet: every stack's heads are trained with equal weight) and
    multiplied by its weight in ``weights``."""
    return {name: weights[name] * torch.stack([terms[name] for terms in per_stack]).mean() for name in per_stack[0]}
