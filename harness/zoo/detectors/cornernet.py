"""CornerNet (Law & Deng 2018) and CornerNet-Lite's CornerNet-Squeeze and CornerNet-Saccade (Law, Teng,
Russakovsky & Deng 2019): an object is a pair of corners, its top-left and bottom-right, found as peaks
of per-class corner heatmaps and paired by 1-D associative embeddings ("tags").

Network (``forward``): a stacked hourglass; per stack and corner a corner pooling module (below) and
three prediction modules: ``heat`` (one map per class, final bias −2.19), ``tag`` (1) and ``offset`` (2,
sub-cell corner position). In training every stack's heads run (intermediate supervision, losses
averaged); in inference only the last stack's.

Corner pooling (CornerNet §3.4) is written in plain torch (``cummax``), so it trains on CPU: the top pool
at row i is the max over rows ≥ i, the left pool at column j the max over columns ≥ j; bottom and right
are the prefix maxima. The module: two 3x3 conv-BN-ReLU branches, one pooled each way, summed, 3x3
conv-BN; plus a 1x1 conv-BN skip of the input; ReLU; 3x3 conv-BN-ReLU.

``decode`` (timed apart from ``forward``): per corner map sigmoid → 3x3 max-pool peaks → top-K over
classes × positions; every top-left is paired with every bottom-right (K × K) and the pair kept when both
have the same class, the bottom-right is not left of or above the top-left (as the released code; equal
cells pass), and |tag_tl − tag_br| < ``ae_threshold``; score = mean of the two corner scores; the best
``num_dets`` pairs, boxes from the offset-corrected corners × stride in input pixels. Then the default
suppression, Gaussian Soft-NMS (σ 0.5) and the 100 best, as the released code's ``exp_soft_nms``.
Single scale, no flipped-image test augmentation (the paper's 40.5 AP averages in the flipped image).

Loss: focal on both heatmaps (Gaussian targets of radius ``gaussian_radius(h, w, 0.3)``), pull/push on
the tags (weights 0.1, margin 1), smooth L1 on the offsets; the pull and push terms are averaged over the
images of the batch (the released code sums the per-image terms).

CornerNet-Saccade (CornerNet-Lite §3): see :class:`CornerNetSaccade`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import ConvNormAct
from torch import nn

from harness.zoo.classifiers import (
    HOURGLASS104_COUNTS,
    HOURGLASS104_DIMS,
    HOURGLASS_SQUEEZE_COUNTS,
    HOURGLASS_SQUEEZE_DIMS,
    StackedHourglass,
    fire_hourglass,
    residual_hourglass,
)
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
    topk,
)
from harness.zoo.detectors.postprocess import Suppression
from harness.zoo.registry import register_model

Raw = list[dict[str, torch.Tensor]]  # per supervised stack: {"tl_heat", "tl_tag", "tl_offset", "br_…", …}

#: corner pooling directions: output[i] = max over the rows (dim 2) / columns (dim 3) at or after i (top,
#: left) or at or before i (bottom, right).
POOLS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "top": lambda x: x.flip(2).cummax(2).values.flip(2),
    "left": lambda x: x.flip(3).cummax(3).values.flip(3),
    "bottom": lambda x: x.cummax(2).values,
    "right": lambda x: x.cummax(3).values,
}
#: each corner and the two pooling directions that find it.
CORNERS: dict[str, tuple[str, str]] = {"tl": ("top", "left"), "br": ("bottom", "right")}
#: weights of the loss terms (CornerNet: pull and push 0.1, offsets 1).
LOSS_WEIGHTS = {"heatmap": 1.0, "pull": 0.1, "push": 0.1, "offset": 1.0}


def corner_pool(x: torch.Tensor, direction: str) -> torch.Tensor:
    """Return the corner pooling of ``x`` (N, C, H, W) in ``direction`` (a key of :data:`POOLS`)."""
    return POOLS[direction](x)


class CornerPooling(nn.Module):
    """CornerNet's corner pooling module for one corner (see the module docstring); ``dim`` channels in
    and out, ``dim/2`` in the pooled branches (128 for CornerNet's 256)."""

    def __init__(self, dim: int, directions: tuple[str, str]) -> None:
        super().__init__()
        self.directions = directions
        self.branches = nn.ModuleList(ConvNormAct(dim, dim // 2, 3) for _ in directions)
        self.merge = ConvNormAct(dim // 2, dim, 3, apply_act=False)
        self.skip = ConvNormAct(dim, dim, 1, apply_act=False)
        self.act = nn.ReLU(inplace=True)
        self.out = ConvNormAct(dim, dim, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the pooled features, same shape as ``x``."""
        pooled = sum(corner_pool(branch(x), d) for branch, d in zip(self.branches, self.directions, strict=True))
        return self.out(self.act(self.merge(pooled) + self.skip(x)))


class CornerHeads(nn.Module):
    """One stack's corner modules: per corner a :class:`CornerPooling` and heat/tag/offset prediction
    modules (``head_kernel`` 3 for CornerNet, 1 for CornerNet-Squeeze), on the stack's feature map."""

    def __init__(self, dim: int, num_classes: int, head_kernel: int = 3) -> None:
        super().__init__()
        self.pools = nn.ModuleDict({corner: CornerPooling(dim, dirs) for corner, dirs in CORNERS.items()})
        self.heads = nn.ModuleDict({
            corner: HeadSet({
                "heat": prediction_head(dim, dim, num_classes, head_kernel, HEAT_PRIOR_BIAS),
                "tag": prediction_head(dim, dim, 1, head_kernel),
                "offset": prediction_head(dim, dim, 2, head_kernel),
            })
            for corner in CORNERS
        })

    def forward(self, levels: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Return ``{corner_output: map}`` from a stack's levels (its feature map is the last)."""
        features = levels[-1]
        return {f"{corner}_{name}": out for corner in CORNERS
                for name, out in self.heads[corner](self.pools[corner](features)).items()}


@dataclass(frozen=True)
class CornerDecoding:
    """Test settings of corner grouping: corners kept per map (``top_k``), the largest tag distance of a
    pair (``ae_threshold``), and pairs kept per image (``num_dets``)."""

    top_k: int = 100
    ae_threshold: float = 0.5
    num_dets: int = 1000


def decode_corners(out: dict[str, torch.Tensor], config: CornerDecoding, stride: float,
                   drop_border: bool = False) -> list[Detections]:
    """Return per image the best grouped corner pairs of ``out`` (one stack's maps), boxes in the
    network input's pixels (cells × ``stride``). ``drop_border``: reject pairs with a corner on the map's
    border (CornerNet-Saccade's crops, whose border cuts objects)."""
    corners = {}
    for corner in CORNERS:
        top = topk(peaks(torch.sigmoid(out[f"{corner}_heat"])), config.top_k)
        tag = gather_at(out[f"{corner}_tag"], top.index)[..., 0]
        offset = gather_at(out[f"{corner}_offset"], top.index)
        corners[corner] = (top, tag, top.xs + offset[..., 0], top.ys + offset[..., 1])
    (tl, tl_tag, x1, y1), (br, br_tag, x2, y2) = corners["tl"], corners["br"]
    valid = ((tl.labels[:, :, None] == br.labels[:, None, :])
             & (br.xs[:, None, :] >= tl.xs[:, :, None]) & (br.ys[:, None, :] >= tl.ys[:, :, None])
             & ((tl_tag[:, :, None] - br_tag[:, None, :]).abs() < config.ae_threshold))
    if drop_border:
        height, width = out["tl_heat"].shape[-2:]
        valid &= ((tl.xs > 0) & (tl.ys > 0))[:, :, None] & ((br.xs < width - 1) & (br.ys < height - 1))[:, None, :]
    scores = (tl.scores[:, :, None] + br.scores[:, None, :]) / 2
    shape = scores.shape
    boxes = boxes_from_edges(x1[:, :, None].expand(shape), y1[:, :, None].expand(shape),
                             x2[:, None, :].expand(shape), y2[:, None, :].expand(shape), stride)
    labels = tl.labels[:, :, None].expand(shape)
    detections = []
    for i in range(shape[0]):
        score = scores[i][valid[i]]
        best = score.topk(min(config.num_dets, score.numel())).indices
        detections.append(Detections(boxes[i][valid[i]][best], score[best], labels[i][valid[i]][best]))
    return detections


def corner_targets(targets: Sequence[Target], map_hw: tuple[int, int], stride: float, num_classes: int,
                   min_overlap: float) -> dict[str, KeypointTargets]:
    """Return per corner (``tl``, ``br``) the encoded corners of boxes in input pixels, on maps of
    ``map_hw`` cells at ``stride``; both corners of an object share their slot (for the tag loss)."""
    points: dict[str, list[torch.Tensor]] = {corner: [] for corner in CORNERS}
    labels, radii = [], []
    for target in targets:
        boxes, keep = boxes_to_output(target.boxes, stride, map_hw)
        boxes = boxes[keep]
        points["tl"].append(boxes[:, :2])
        points["br"].append(boxes[:, 2:])
        labels.append(target.labels[keep])
        radii.append(box_radius(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0], min_overlap))
    return {corner: encode_keypoints(points[corner], labels, radii, num_classes, map_hw) for corner in CORNERS}


def associative_embedding_loss(tl_tags: torch.Tensor, br_tags: torch.Tensor,
                               mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return CornerNet's (pull, push) tag losses (§3.3) of the objects' corner tags (N, M) over ``mask``:
    pull = mean over objects of (e_tl − e_k)² + (e_br − e_k)², e_k their mean; push = mean over ordered
    pairs of objects of max(0, 1 − |e_k − e_j|); each per image, then averaged over the images."""
    weight = mask.to(tl_tags.dtype)
    count = weight.sum(dim=1)
    mean = (tl_tags + br_tags) / 2
    pull = (((tl_tags - mean) ** 2 + (br_tags - mean) ** 2) * weight).sum(dim=1) / count.clamp(min=1)
    pairs = weight[:, :, None] * weight[:, None, :] * (1 - torch.eye(mask.shape[1], device=mask.device))
    margin = F.relu(1 - (mean[:, :, None] - mean[:, None, :]).abs())
    push = (margin * pairs).sum(dim=(1, 2)) / (count * (count - 1)).clamp(min=1)
    return pull.mean(), push.mean()


class CornerNet(Detector):
    """CornerNet on a stacked-hourglass ``backbone`` with one :class:`CornerHeads` per stack in ``heads``
    (see the module docstring); ``min_overlap`` sets the Gaussian radius of the corner targets."""

    def __init__(self, backbone: StackedHourglass, heads: nn.ModuleList, num_classes: int, input_size: int,
                 decoding: CornerDecoding, suppression: Suppression, min_overlap: float = 0.3) -> None:
        super().__init__(num_classes, input_size, suppression, mean=COCO_MEAN, std=COCO_STD)
        self.backbone = backbone
        self.heads = heads
        self.decoding = decoding
        self.min_overlap = min_overlap

    @property
    def network_size(self) -> int:
        """Return the side in pixels of the images the network itself sees."""
        return self.input_size

    def network(self, images: torch.Tensor) -> Raw:
        """Return the heads' maps of every stack (training) or of the last one (inference) on ``images``."""
        stacks = self.backbone.forward_levels(images)
        pairs = zip(self.heads, stacks, strict=True) if self.training else [(self.heads[-1], stacks[-1])]
        return [heads(levels) for heads, levels in pairs]

    def forward(self, batch: torch.Tensor) -> Any:
        """Return the raw corner maps of ``batch`` (see :meth:`network`)."""
        return self.network(batch)

    def decode(self, raw: Any, metas: Sequence[ImageMeta]) -> list[Detections]:
        """Return the grouped corner pairs of the last stack per image, boxes in input pixels."""
        out = raw[-1]
        return decode_corners(out, self.decoding, output_stride(self.network_size, out["tl_heat"]))

    def loss_terms(self, raw: Raw, targets: Sequence[Target]) -> list[dict[str, torch.Tensor]]:
        """Return per stack the unweighted ``heatmap``, ``pull``, ``push`` and ``offset`` losses of ``raw``
        against ``targets`` in the network input's pixels."""
        heat = raw[-1]["tl_heat"]
        encoded = corner_targets(targets, heat.shape[-2:], output_stride(self.network_size, heat),
                                 self.num_classes, self.min_overlap)
        mask = encoded["tl"].mask
        per_stack = []
        for out in raw:
            tags = {corner: gather_at(out[f"{corner}_tag"], encoded[corner].index)[..., 0] for corner in CORNERS}
            pull, push = associative_embedding_loss(tags["tl"], tags["br"], mask)
            per_stack.append({
                "heatmap": sum(focal_loss(out[f"{c}_heat"], encoded[c].heatmap) for c in CORNERS),
                "pull": pull,
                "push": push,
                "offset": sum(smooth_l1_per_object(gather_at(out[f"{c}_offset"], encoded[c].index),
                                                   encoded[c].offset, mask) for c in CORNERS),
            })
        return per_stack

    def loss(self, raw: Any, targets: Sequence[Target]) -> dict[str, torch.Tensor]:
        """Return the weighted corner losses averaged over the supervised stacks."""
        return mean_over_stacks(self.loss_terms(raw, targets), LOSS_WEIGHTS)


# ------------------------------------------------------------------------------------ CornerNet-Saccade
@dataclass(frozen=True)
class AttentionScale:
    """One of CornerNet-Saccade's attention maps: its output key, the zoom applied to the downsized image
    where it fires, and the longer box sides (network-input pixels) it is trained on: [min, max)."""

    key: str
    zoom: int
    min_size: float
    max_size: float


#: innermost (stride 16) to outermost (stride 4) up-sampling level of the hourglass: large, medium and
#: small objects, zoomed ×1, ×2, ×4 (CornerNet-Lite §3.2; ``att_ranges`` [[96, 256], [32, 96], [0, 32]]).
ATTENTION_SCALES = (
    AttentionScale("att_large", 1, 96, math.inf),
    AttentionScale("att_medium", 2, 32, 96),
    AttentionScale("att_small", 4, 0, 32),
)
#: weights of CornerNet-Saccade's loss terms: CornerNet's plus the attention maps' focal loss.
SACCADE_LOSS_WEIGHTS = {**LOSS_WEIGHTS, "attention": 1.0}


class SaccadeHeads(CornerHeads):
    """One stack's corner modules plus the attention heads (3x3 conv(→ dims[0]) + ReLU + 1x1 conv to one
    map, bias −2.19) on the merged outputs of the hourglass's three outermost levels."""

    def __init__(self, dims: Sequence[int], num_classes: int, head_kernel: int = 3) -> None:
        super().__init__(dims[0], num_classes, head_kernel)
        depth = len(ATTENTION_SCALES)
        self.attention = nn.ModuleDict({
            scale.key: prediction_head(dims[depth - 1 - j], dims[0], 1, final_bias=HEAT_PRIOR_BIAS)
            for j, scale in enumerate(ATTENTION_SCALES)
        })

    def forward(self, levels: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Return the corner maps and the attention logits (``att_large``, ``att_medium``, ``att_small``)."""
        hourglass_levels = levels[-1 - len(ATTENTION_SCALES) : -1]
        heads = self.attention.items()
        return super().forward(levels) | {key: head(x) for (key, head), x in zip(heads, hourglass_levels, strict=True)}


@dataclass
class CropPlan:
    """Where CornerNet-Saccade looks, per crop: ``image`` (n,) its batch index, ``zoom`` (n,) the zoom of
    the downsized image it is cut from, ``origin`` (n, 2) its top-left (x, y) in that zoomed image's
    pixels (int64), ``to_input`` (n,) input pixels per zoomed pixel."""

    image: torch.Tensor
    zoom: torch.Tensor
    origin: torch.Tensor
    to_input: torch.Tensor


@dataclass
class SaccadeRaw:
    """CornerNet-Saccade's raw inference output: the last stack's maps on the downsized images
    (``full``, attention included), the crops' plan, and the last stack's maps on the crops (None when
    there is no crop)."""

    full: dict[str, torch.Tensor]
    plan: CropPlan
    crops: dict[str, torch.Tensor] | None


class CornerNetSaccade(CornerNet):
    """CornerNet-Saccade (CornerNet-Lite §3), a compact version of the released test procedure.

    The batch (``input_size``, 1020 by default) is the image at the largest zoom, ×4 the 255-pixel
    downsized image. ``forward`` in inference covers every network pass and the crop selection between
    them, data-dependent as in the paper:

    1. the batch downsized to ``network_size`` = input_size / 4 (255) → Hourglass-54 → corner maps and
       three attention maps (strides 16, 8, 4 ↔ large, medium, small objects);
    2. attention peaks (3x3 max-pool) scoring above ``attention_threshold`` (0.3), the best
       ``max_crops`` (30) per image over the three maps, each zoomed ×1, ×2 or ×4 by its map;
    3. a ``network_size`` crop centred on each location, cut from the batch resized to that zoom (zero,
       i.e. mean, padding outside) → Hourglass-54 → corner maps.

    ``decode``: corners grouped on the downsized pass (top 12, ``ae_threshold`` 0.3, 12 per image; kept
    above 0.3) and on every crop (the same, minus pairs with a corner on the crop border), mapped to
    input pixels and merged; then Gaussian Soft-NMS and the best 100 (the default suppression).

    Simplifications of the released code: one downsized scale (it also runs a 192-pixel one); no
    locations from the downsized pass's own detections (``ref_dets``) and no location NMS (the attention
    peaks are max-pool suppressed instead); locations in the padding are not discarded; the crops'
    forward also evaluates their (unused, cheap) attention heads. ``crops_per_image`` (default None =
    the paper's threshold) makes every image take exactly that many crops, the best attention peaks
    whatever their score, so that an untrained model's ``forward`` does a fixed amount of work (timing).
    Training: the network sees the downsized batch (all stacks supervised, plus a focal loss on the
    attention maps with each object's centre cell as its one positive in the map of its size); the paper
    trains on 255-pixel crops of zoomed images instead.
    """

    def __init__(self, backbone: StackedHourglass, heads: nn.ModuleList, num_classes: int, input_size: int,
                 decoding: CornerDecoding, suppression: Suppression, min_overlap: float = 0.5,
                 attention_threshold: float = 0.3, max_crops: int = 30, full_score_threshold: float = 0.3,
                 crops_per_image: int | None = None) -> None:
        super().__init__(backbone, heads, num_classes, input_size, decoding, suppression, min_overlap)
        self.max_zoom = max(scale.zoom for scale in ATTENTION_SCALES)
        self.attention_threshold = attention_threshold
        self.max_crops = max_crops
        self.full_score_threshold = full_score_threshold
        self.crops_per_image = crops_per_image

    @property
    def network_size(self) -> int:
        """Return the side in pixels of the downsized image and of the crops (255 for input 1020)."""
        return self.input_size // self.max_zoom

    def zoomed_side(self, zoom: int) -> int:
        """Return the side in pixels of the batch resized to ``zoom`` × the downsized image."""
        return self.network_size * zoom

    def zoomed(self, batch: torch.Tensor, zoom: int) -> torch.Tensor:
        """Return ``batch`` resized to ``zoom`` × the downsized image (bilinear, antialiased)."""
        side = self.zoomed_side(zoom)
        if side == batch.shape[-1]:
            return batch
        return F.interpolate(batch, size=(side, side), mode="bilinear", align_corners=False, antialias=True)

    def forward(self, batch: torch.Tensor) -> Raw | SaccadeRaw:
        """Return in training the maps of every stack on the downsized batch; in inference a
        :class:`SaccadeRaw` (downsized pass, crop plan, crop pass; see the class docstring)."""
        downsized = self.network(self.zoomed(batch, 1))
        if self.training:
            return downsized
        full = downsized[-1]
        plan = self.plan_crops(full)
        crops = self.network(self.cut_crops(batch, plan))[-1] if plan.image.numel() else None
        return SaccadeRaw(full, plan, crops)

    def plan_crops(self, full: dict[str, torch.Tensor]) -> CropPlan:
        """Return the crops to look at: the best attention peaks over the three maps, per image."""
        scores, xs, ys, zooms = [], [], [], []
        for scale in ATTENTION_SCALES:
            attention = peaks(torch.sigmoid(full[scale.key]))
            height, width = attention.shape[-2:]
            stride = self.network_size / width
            cells = torch.arange(height * width, device=attention.device)
            scores.append(attention.flatten(1))
            xs.append((cells % width) * stride)
            ys.append((cells // width) * stride)
            zooms.append(torch.full_like(cells, scale.zoom))
        score = torch.cat(scores, dim=1)
        count = min(self.crops_per_image or self.max_crops, score.shape[1])
        best_scores, best = score.topk(count, dim=1)
        keep = best_scores > (self.attention_threshold if self.crops_per_image is None else -1.0)
        image = torch.arange(score.shape[0], device=score.device)[:, None].expand_as(best)[keep]
        location = best[keep]
        zoom = torch.cat(zooms)[location]
        side = torch.tensor([self.zoomed_side(int(z)) for z in zoom.tolist()], device=score.device)
        scale = side / self.network_size
        centre = torch.stack([torch.cat(xs)[location], torch.cat(ys)[location]], dim=1) * scale[:, None]
        origin = centre.round().long() - self.network_size // 2
        return CropPlan(image, zoom, origin, self.input_size / side)

    def cut_crops(self, batch: torch.Tensor, plan: CropPlan) -> torch.Tensor:
        """Return the ``network_size`` crops of ``plan`` (n, 3, s, s) cut from the zoomed batch."""
        size = self.network_size
        padded = {z: F.pad(self.zoomed(batch, z), (size, size, size, size)) for z in set(plan.zoom.tolist())}
        crops = [padded[z][i, :, y + size : y + 2 * size, x + size : x + 2 * size]
                 for i, z, (x, y) in zip(plan.image.tolist(), plan.zoom.tolist(), plan.origin.tolist(), strict=True)]
        return torch.stack(crops) if crops else batch.new_zeros(0, 3, size, size)

    def decode(self, raw: SaccadeRaw, metas: Sequence[ImageMeta]) -> list[Detections]:
        """Return per image the detections of the downsized pass and of its crops, in input pixels."""
        to_input = self.input_size / self.network_size
        found: list[list[Detections]] = []
        full = decode_corners(raw.full, self.decoding, output_stride(self.network_size, raw.full["tl_heat"]))
        for d in full:
            keep = d.scores > self.full_score_threshold
            found.append([Detections(d.boxes[keep] * to_input, d.scores[keep], d.labels[keep])])
        if raw.crops is not None:
            stride = output_stride(self.network_size, raw.crops["tl_heat"])
            crops = decode_corners(raw.crops, self.decoding, stride, drop_border=True)
            plan = raw.plan
            for j, d in enumerate(crops):
                boxes = (d.boxes + plan.origin[j].repeat(2)) * plan.to_input[j]
                found[int(plan.image[j])].append(Detections(boxes, d.scores, d.labels))
        return [Detections(torch.cat([d.boxes for d in ds]), torch.cat([d.scores for d in ds]),
                           torch.cat([d.labels for d in ds])) for ds in found]

    def attention_targets(self, targets: Sequence[Target], raw: Raw) -> dict[str, KeypointTargets]:
        """Return per attention map the centre cells of the objects of its size range (one class, radius 0)."""
        encoded = {}
        for scale in ATTENTION_SCALES:
            attention = raw[-1][scale.key]
            stride = output_stride(self.network_size, attention)
            centres, labels = [], []
            for target in targets:
                boxes = target.boxes.float()
                longer = (boxes[:, 2:] - boxes[:, :2]).amax(dim=1)
                chosen = boxes[(longer >= scale.min_size) & (longer < scale.max_size)]
                centres.append((chosen[:, :2] + chosen[:, 2:]) / 2 / stride)
                labels.append(torch.zeros(len(chosen), dtype=torch.int64, device=boxes.device))
            radii = [torch.zeros_like(label) for label in labels]
            encoded[scale.key] = encode_keypoints(centres, labels, radii, 1, attention.shape[-2:])
        return encoded

    def loss(self, raw: Any, targets: Sequence[Target]) -> dict[str, torch.Tensor]:
        """Return the weighted corner and attention losses of the downsized pass, averaged over stacks."""
        scale = self.network_size / self.input_size
        downsized = [Target(t.boxes * scale, t.labels, t.extra) for t in targets]
        per_stack = self.loss_terms(raw, downsized)
        attention = self.attention_targets(downsized, raw)
        for terms, out in zip(per_stack, raw, strict=True):
            terms["attention"] = sum(focal_loss(out[key], encoded.heatmap) for key, encoded in attention.items())
        return mean_over_stacks(per_stack, SACCADE_LOSS_WEIGHTS)


# ------------------------------------------------------------------------------------------ builders
def _soft_nms(pre_top_k: int) -> Suppression:
    """Return CornerNet's test suppression: per-class Gaussian Soft-NMS (σ 0.5, scores kept ≥ 0.001; the
    released code's ``exp_soft_nms``, whose ``nms_threshold`` 0.5 Gaussian decay does not use), 100 kept."""
    return Suppression("soft_nms_gaussian", iou_threshold=0.5, score_threshold=0.001, pre_top_k=pre_top_k,
                       max_detections=100, sigma=0.5)


@register_model(source="Law & Deng 2018, CornerNet: Detecting Objects as Paired Keypoints, §4: Hourglass-104, "
                       "201 M params, 511x511 input; 40.5 AP (COCO test-dev, single scale), 244 ms")
def cornernet_hourglass104(num_classes: int = 80, input_size: int = 511, stacks: int = 2,
                           dims: Sequence[int] = HOURGLASS104_DIMS, counts: Sequence[int] = HOURGLASS104_COUNTS,
                           **kwargs: Any) -> CornerNet:
    """Return CornerNet: Hourglass-104 (``stacks``, ``dims``, ``counts``; smaller values build a small model
    of the same design), corner pooling and 3x3 prediction modules per stack; test top-100 corners,
    ``ae_threshold`` 0.5, 1000 pairs, Gaussian Soft-NMS. 201,035,212 parameters at the paper's size."""
    backbone = residual_hourglass(dims, counts, stacks=stacks, num_classes=0)
    heads = nn.ModuleList(CornerHeads(dims[0], num_classes, head_kernel=3) for _ in range(stacks))
    return CornerNet(backbone, heads, num_classes, input_size, CornerDecoding(100, 0.5, 1000), _soft_nms(1000),
                     **kwargs)


@register_model(source="Law et al. 2019, CornerNet-Lite: Efficient Keypoint Based Object Detection, §4.2 and "
                       "configs/CornerNet_Squeeze.json: 511x511 input, stride 8; 34.4 AP (COCO test-dev), 30 ms")
def cornernet_squeeze(num_classes: int = 80, input_size: int = 511, stacks: int = 2,
                      dims: Sequence[int] = HOURGLASS_SQUEEZE_DIMS, counts: Sequence[int] = HOURGLASS_SQUEEZE_COUNTS,
                      **kwargs: Any) -> CornerNet:
    """Return CornerNet-Squeeze: the fire-module hourglass of :func:`~harness.zoo.classifiers.hourglass_squeeze`
    (stride 8), corner pooling and 1x1 prediction modules per stack; test top-20 corners, ``ae_threshold``
    0.5, 100 pairs, Gaussian Soft-NMS. 31,771,852 parameters (backbone 24,728,448 + heads 7,043,404)."""
    backbone = fire_hourglass(dims, counts, stacks=stacks, num_classes=0)
    heads = nn.ModuleList(CornerHeads(dims[0], num_classes, head_kernel=1) for _ in range(stacks))
    return CornerNet(backbone, heads, num_classes, input_size, CornerDecoding(20, 0.5, 100), _soft_nms(100),
                     **kwargs)


#: CornerNet-Saccade's Hourglass-54 (CornerNet-Lite §4.1): 3 stacks, 3 downsamplings, 1 residual per level.
HOURGLASS54_DIMS = (256, 384, 384, 512)
HOURGLASS54_COUNTS = (1, 1, 1, 1)


@register_model(source="Law et al. 2019, CornerNet-Lite: Efficient Keypoint Based Object Detection, §3 and "
                       "configs/CornerNet_Saccade.json: Hourglass-54, 255-pixel downsized image and crops; "
                       "43.2 AP (COCO test-dev), 190 ms")
def cornernet_saccade(num_classes: int = 80, input_size: int = 1020, stacks: int = 3,
                      dims: Sequence[int] = HOURGLASS54_DIMS, counts: Sequence[int] = HOURGLASS54_COUNTS,
                      crops_per_image: int | None = None, **kwargs: Any) -> CornerNetSaccade:
    """Return CornerNet-Saccade (compact; see :class:`CornerNetSaccade`): Hourglass-54 with attention
    heads; ``input_size`` is the largest zoom's canvas, 4 × the 255-pixel image the network sees; test
    top-12 corners, ``ae_threshold`` 0.3, 12 pairs per pass, up to 30 crops, Gaussian Soft-NMS."""
    backbone = residual_hourglass(dims, counts, stacks=stacks, num_classes=0)
    heads = nn.ModuleList(SaccadeHeads(dims, num_classes) for _ in range(stacks))
    return CornerNetSaccade(backbone, heads, num_classes, input_size, CornerDecoding(12, 0.3, 12), _soft_nms(1000),
                            crops_per_image=crops_per_image, **kwargs)
