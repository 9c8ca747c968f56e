"""RetinaNet and Faster R-CNN from ``torchvision.models.detection`` on a timm backbone + FPN, split into the
zoo's three parts (:mod:`harness.zoo.detectors.base`) without torchvision's ``GeneralizedRCNNTransform``:
our ``preprocess`` resizes and normalises, the anchor generator and the RPN see every image as the padded
``input_size`` square, ``decode`` returns the candidates torchvision's ``postprocess_detections`` would
pass to its NMS, and the zoo's suppression (torchvision's defaults: per-class NMS at IoU 0.5, scores
≥ 0.05, 100 detections) does the rest.

- RetinaNet (Lin et al. 2017): FPN P3–P5 over the backbone's stride 8/16/32 maps, P6 (3×3 stride-2 conv
  on C5) and P7, torchvision's head (4 convs + ReLU per branch, 9 anchors per location, focal loss).
  Training choices: ``box_loss`` ``l1`` (torchvision's default), ``smooth_l1`` on the anchor deltas or ``giou``,
  ``diou``, ``ciou`` on the decoded boxes (torchvision's own ``bbox_reg_loss_type``); ``negatives``
  ``hard_mining``: per-anchor BCE in place of the focal loss, on the foreground and the 3 highest-loss
  background anchors per foreground anchor (:mod:`harness.zoo.detectors.negatives`), normalised as the focal loss.
- Faster R-CNN with FPN (Ren et al. 2015, Lin et al. 2017): FPN P2–P5 over the stride 4–32 maps, P6 by
  max-pooling (RPN only), torchvision's RPN, RoIAlign and two-MLP box head.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection import FasterRCNN, RetinaNet
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import fastrcnn_loss
from torchvision.models.detection.rpn import concat_box_prediction_layers
from torchvision.ops import FeaturePyramidNetwork, box_iou, clip_boxes_to_image, remove_small_boxes
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, LastLevelMaxPool, LastLevelP6P7

from harness.zoo.detectors.base import Detections, Detector, ImageMeta, Target
from harness.zoo.detectors.negatives import hard_negatives
from harness.zoo.detectors.postprocess import Suppression
from harness.zoo.detectors.timm_features import TimmFeatures
from harness.zoo.registry import register_model

#: the side of the network input must be a multiple of this (torchvision pads to it), in pixels.
SIZE_DIVISOR = 32

#: proposals the RPN keeps per image after its NMS at test time (torchvision's default).
RPN_PROPOSALS_TEST = 1000


class TimmFPN(nn.Module):
    """A timm backbone's maps at ``strides`` under torchvision's ``FeaturePyramidNetwork`` (like torchvision's
    ``BackboneWithFPN``); ``out_channels`` is every level's width, as torchvision's detectors require."""

    def __init__(self, backbone: str, strides: Sequence[int], out_channels: int,
                 extra_blocks: Callable[[list[int]], ExtraFPNBlock]) -> None:
        super().__init__()
        self.body = TimmFeatures.at_strides(backbone, strides)
        self.fpn = FeaturePyramidNetwork(self.body.channels, out_channels, extra_blocks(self.body.channels))
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        """Return the pyramid's maps, finest first, keyed "0", "1", … then the extra levels' names."""
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(self.body(x))))


def _square_images(batch: torch.Tensor) -> ImageList:
    """Return the batch as torchvision's ImageList whose every image fills the whole padded input."""
    return ImageList(batch, [tuple(batch.shape[-2:])] * batch.shape[0])


def _valid_hw(meta: ImageMeta) -> tuple[int, int]:
    """Return the (height, width) in input pixels that the image covers (the rest of the input is pad)."""
    h, w = meta.original_hw
    return max(1, round(h * meta.scale)), max(1, round(w * meta.scale))


def _check_input_size(input_size: int) -> None:
    if input_size % SIZE_DIVISOR:
        raise ValueError(f"input_size must be a multiple of {SIZE_DIVISOR} (torchvision's anchors assume it), "
                         f"got {input_size}")


class TorchvisionRetinaNet(Detector):
    """torchvision's RetinaNet over ``backbone`` (a :class:`TimmFPN` with P3–P7), without its transform.

    Raw outputs: ``cls_logits`` (N, ΣHWA, C), ``bbox_regression`` (N, ΣHWA, 4) anchor deltas, ``anchors`` a
    list of N (ΣHWA, 4) boxes in input pixels and ``anchors_per_level`` (ΣHWA split per level).
    """

    BOX_LOSSES = ("l1", "smooth_l1", "giou", "diou", "ciou")
    NEGATIVES = ("focal", "hard_mining")

    def __init__(self, backbone: TimmFPN, num_classes: int, input_size: int) -> None:
        _check_input_size(input_size)
        model = RetinaNet(backbone, num_classes)
        super().__init__(num_classes, input_size, Suppression(
            "batched_nms", iou_threshold=model.nms_thresh, score_threshold=model.score_thresh,
            pre_top_k=model.topk_candidates * len(model.anchor_generator.sizes), max_detections=100))
        self.backbone = model.backbone
        self.anchor_generator = model.anchor_generator
        self.head = model.head
        self.proposal_matcher = model.proposal_matcher
        self.box_coder = model.box_coder
        self.top_k = model.topk_candidates

    def forward(self, batch: torch.Tensor) -> dict[str, Any]:
        """Return the raw outputs (see the class docstring) of the normalised batch."""
        features = list(self.backbone(batch).values())
        outputs = self.head(features)
        anchors = self.anchor_generator(_square_images(batch), features)
        cells = [f.shape[-2] * f.shape[-1] for f in features]
        per_cell = outputs["cls_logits"].shape[1] // sum(cells)
        return {**outputs, "anchors": anchors, "anchors_per_level": [c * per_cell for c in cells]}

    def decode(self, raw: dict[str, Any], metas: Sequence[ImageMeta]) -> list[Detections]:
        """Return per image the ``top_k`` best (anchor, class) pairs of each level (sigmoid scores in 0…1),
        boxes decoded from their anchors in input pixels and clipped to the image: the candidates of
        torchvision's ``postprocess_detections`` (its score threshold is left to the suppression)."""
        split = raw["anchors_per_level"]
        out = []
        for i, meta in enumerate(metas):
            boxes, scores, labels = [], [], []
            per_level = (raw[key][i].split(split) for key in ("cls_logits", "bbox_regression", "anchors"))
            for logits, deltas, anchors in zip(*per_level, strict=True):
                level_scores, index = logits.sigmoid().flatten().topk(min(self.top_k, logits.numel()))
                anchor = index // self.num_classes
                boxes.append(clip_boxes_to_image(self.box_coder.decode_single(deltas[anchor], anchors[anchor]),
                                                 _valid_hw(meta)))
                scores.append(level_scores)
                labels.append(index % self.num_classes)
            out.append(Detections(torch.cat(boxes), torch.cat(scores), torch.cat(labels)))
        return out

    def loss(self, raw: dict[str, Any], targets: Sequence[Target]) -> dict[str, torch.Tensor]:
        """Return torchvision's RetinaNet losses (``classification``: focal loss, or BCE with hard negative mining;
        ``bbox_regression``: the case's box loss, L1 on the anchor deltas by default; each per foreground anchor,
        batch mean), targets in input pixels."""
        matched = [self.proposal_matcher(box_iou(t.boxes, a)) if t.boxes.numel()
                   else torch.full((a.shape[0],), -1, dtype=torch.int64, device=a.device)
                   for t, a in zip(targets, raw["anchors"], strict=True)]
        self.head.regression_head._loss_type = "l1" if self.box_loss == "default" else self.box_loss
        plain = [{"boxes": t.boxes, "labels": t.labels} for t in targets]
        losses = self.head.compute_loss(plain, {k: raw[k] for k in ("cls_logits", "bbox_regression")},
                                        raw["anchors"], matched)
        if self.negatives == "hard_mining":
            losses["classification"] = self._mined_classification(plain, raw["cls_logits"], matched)
        return losses

    def _mined_classification(self, targets: Sequence[dict[str, torch.Tensor]], cls_logits: torch.Tensor,
                              matched: Sequence[torch.Tensor]) -> torch.Tensor:
        """Return the classification loss with hard negative mining: per image, BCE summed over the classes of
        the foreground anchors and of the 3 highest-loss background anchors per foreground one (anchors between
        the matcher's thresholds left out), divided by the foreground anchors; the batch mean."""
        between = self.head.classification_head.BETWEEN_THRESHOLDS
        losses = []
        for target, logits, index in zip(targets, cls_logits, matched, strict=True):
            foreground = index >= 0
            wanted = torch.zeros_like(logits)
            wanted[foreground, target["labels"][index[foreground]]] = 1.0
            per_anchor = F.binary_cross_entropy_with_logits(logits, wanted, reduction="none").sum(dim=1)
            kept = foreground | hard_negatives(per_anchor[None], foreground[None], (~foreground & (index != between))
                                               [None])[0]
            losses.append(per_anchor[kept].sum() / foreground.sum().clamp(min=1))
        return torch.stack(losses).mean()


class TorchvisionFasterRCNN(Detector):
    """torchvision's Faster R-CNN over ``backbone`` (a :class:`TimmFPN` with P2–P6), without its transform.

    Raw outputs: ``class_logits`` (ΣR, C + 1) with background at index 0, ``box_regression`` (ΣR, 4·(C + 1))
    class-specific deltas, ``proposals`` a list of N (R, 4) RPN boxes in input pixels (the RPN's NMS is
    part of the network), and for :meth:`loss` the RPN's ``objectness``, ``rpn_deltas``, ``anchors`` and the
    pyramid ``features``.
    """

    def __init__(self, backbone: TimmFPN, num_classes: int, input_size: int) -> None:
        _check_input_size(input_size)
        model = FasterRCNN(backbone, num_classes + 1, rpn_post_nms_top_n_test=RPN_PROPOSALS_TEST)
        heads = model.roi_heads
        super().__init__(num_classes, input_size, Suppression(
            "batched_nms", iou_threshold=heads.nms_thresh, score_threshold=heads.score_thresh,
            pre_top_k=RPN_PROPOSALS_TEST * num_classes, max_detections=heads.detections_per_img))
        self.backbone = model.backbone
        self.rpn = model.rpn
        self.roi_heads = heads

    def _box_predictions(self, features: dict[str, torch.Tensor], proposals: list[torch.Tensor],
                         image_sizes: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (class logits, box deltas) of the RoI head for ``proposals``."""
        pooled = self.roi_heads.box_roi_pool(features, proposals, image_sizes)
        return self.roi_heads.box_predictor(self.roi_heads.box_head(pooled))

    def forward(self, batch: torch.Tensor) -> dict[str, Any]:
        """Return the raw outputs (see the class docstring) of the normalised batch."""
        images = _square_images(batch)
        features = self.backbone(batch)
        levels = list(features.values())
        objectness, deltas = self.rpn.head(levels)
        anchors = self.rpn.anchor_generator(images, levels)
        per_level = [o[0].numel() for o in objectness]
        objectness, deltas = concat_box_prediction_layers(objectness, deltas)
        proposals = self.rpn.box_coder.decode(deltas.detach(), anchors).view(batch.shape[0], -1, 4)
        proposals, _ = self.rpn.filter_proposals(proposals, objectness, images.image_sizes, per_level)
        class_logits, box_regression = self._box_predictions(features, proposals, images.image_sizes)
        return {"class_logits": class_logits, "box_regression": box_regression, "proposals": proposals,
                "objectness": objectness, "rpn_deltas": deltas, "anchors": anchors, "features": features}

    def decode(self, raw: dict[str, Any], metas: Sequence[ImageMeta]) -> list[Detections]:
        """Return per image every (proposal, class) pair: its class-specific box in input pixels clipped to the
        image, softmax score in 0…1 and class index (background dropped; boxes under 0.01 px dropped): the
        candidates of torchvision's ``roi_heads.postprocess_detections`` before its NMS."""
        proposals = raw["proposals"]
        boxes = self.roi_heads.box_coder.decode(raw["box_regression"], proposals)
        scores = F.softmax(raw["class_logits"], -1)
        counts = [len(p) for p in proposals]
        out = []
        for image_boxes, image_scores, meta in zip(boxes.split(counts), scores.split(counts), metas, strict=True):
            image_boxes = clip_boxes_to_image(image_boxes, _valid_hw(meta))[:, 1:].reshape(-1, 4)
            image_scores = image_scores[:, 1:]
            labels = torch.arange(self.num_classes, device=scores.device).repeat(len(image_scores))
            keep = remove_small_boxes(image_boxes, min_size=1e-2)
            out.append(Detections(image_boxes[keep], image_scores.reshape(-1)[keep], labels[keep]))
        return out

    def loss(self, raw: dict[str, Any], targets: Sequence[Target]) -> dict[str, torch.Tensor]:
        """Return torchvision's Faster R-CNN losses (``loss_objectness``, ``loss_rpn_box_reg`` of the RPN on
        sampled anchors; ``loss_classifier``, ``loss_box_reg`` of the RoI head, re-run on proposals sampled
        against the targets as torchvision does in training), targets in input pixels."""
        tv_targets = [{"boxes": t.boxes, "labels": t.labels + 1} for t in targets]
        labels, matched_boxes = self.rpn.assign_targets_to_anchors(raw["anchors"], tv_targets)
        regression_targets = self.rpn.box_coder.encode(matched_boxes, raw["anchors"])
        loss_objectness, loss_rpn_box = self.rpn.compute_loss(raw["objectness"], raw["rpn_deltas"], labels,
                                                              regression_targets)
        proposals, _, labels, regression_targets = self.roi_heads.select_training_samples(
            [p.detach() for p in raw["proposals"]], tv_targets)
        image_sizes = [(self.input_size, self.input_size)] * len(targets)
        class_logits, box_regression = self._box_predictions(raw["features"], proposals, image_sizes)
        loss_classifier, loss_box = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
        return {"loss_objectness": loss_objectness, "loss_rpn_box_reg": loss_rpn_box,
                "loss_classifier": loss_classifier, "loss_box_reg": loss_box}


def _p6p7_from_c5(channels: list[int], out_channels: int) -> ExtraFPNBlock:
    """Return RetinaNet's extra levels: P6 = 3×3 stride-2 conv on C5, P7 = the same on ReLU(P6)."""
    return LastLevelP6P7(channels[-1], out_channels)


def _p6_by_max_pool(channels: list[int], out_channels: int) -> ExtraFPNBlock:
    """Return Faster R-CNN's extra level for the RPN: P6 = 1×1 stride-2 max-pooling of P5."""
    return LastLevelMaxPool()


#: family -> (detector class, backbone strides, FPN extra levels).
FAMILIES: dict[str, tuple[type[Detector], tuple[int, ...], Callable[[list[int], int], ExtraFPNBlock]]] = {
    "retinanet": (TorchvisionRetinaNet, (8, 16, 32), _p6p7_from_c5),
    "fasterrcnn": (TorchvisionFasterRCNN, (4, 8, 16, 32), _p6_by_max_pool),
}

#: registry name -> (family, default timm backbone, source).
MODELS: dict[str, tuple[str, str, str]] = {
    "retinanet_resnet50_fpn": ("retinanet", "resnet50",
                               "Lin et al. 2017, Focal Loss for Dense Object Detection, Table 2 (ResNet-50-FPN, 800)"),
    "retinanet_resnext101_fpn": ("retinanet", "resnext101_32x8d",
                                 "Lin et al. 2017, Focal Loss for Dense Object Detection, Table 2"),
    "fasterrcnn_resnet50_fpn": ("fasterrcnn", "resnet50",
                                "Ren et al. 2015, Faster R-CNN / Lin et al. 2017, Feature Pyramid Networks, "
                                "Table 3 (ResNet-50-FPN, 800)"),
}


def build_torchvision_detector(family: str, num_classes: int = 80, input_size: int = 800,
                               backbone: str = "resnet50", fpn_channels: int = 256) -> Detector:
    """Return torchvision's ``family`` detector (random weights) on timm ``backbone`` (any timm name with maps
    at the family's strides) under an FPN of ``fpn_channels`` channels, for ``input_size`` pixel inputs."""
    detector, strides, extra_blocks = FAMILIES[family]
    fpn = TimmFPN(backbone, strides, fpn_channels, partial(extra_blocks, out_channels=fpn_channels))
    return detector(fpn, num_classes, input_size)


for _name, (_family, _backbone, _source) in MODELS.items():
    register_model(_name, origin="torchvision", source=_source)(
        partial(build_torchvision_detector, _family, backbone=_backbone))
