"""SSD (Liu et al. 2016, "SSD: Single Shot MultiBox Detector") and SSDLite (Sandler et al. 2018; Howard et al.
2019, "Searching for MobileNetV3") from torchvision's builders, split into the zoo's three parts
(:mod:`harness.zoo.detectors.base`) without SSD's ``GeneralizedRCNNTransform``: our ``preprocess`` resizes and
normalises (with torchvision's SSD normalisation, see below), ``forward`` is the backbone and the head,
``decode`` returns the candidates torchvision's ``SSD.postprocess_detections`` would pass to its NMS, and the
zoo's suppression (torchvision's defaults for each model) does the rest.

- ``ssd300_vgg16``: torchvision's ``ssd300_vgg16`` (VGG-16 with atrous fc6/fc7, L2-normalised conv4_3 and the
  extra layers conv8–conv11; 8732 default boxes at 300 px); inputs as the original Caffe model's: RGB 0–255 minus
  the mean (123, 117, 104), i.e. mean (0.48235, 0.45882, 0.40784) and std 1/255 on the 0–1 scale. Suppression:
  per-class NMS at IoU 0.45, scores > 0.01, 400 candidates per class, 200 detections. The network needs inputs of
  at least :data:`SSD300_MIN_INPUT` px (its last 3×3 convolutions are unpadded).
- ``ssdlite320_mobilenet_v3_large``: torchvision's ``ssdlite320_mobilenet_v3_large`` (MobileNetV3-Large with the
  paper's reduced tail when the backbone is not pretrained, as here; SSDLite heads of depthwise-separable convs);
  inputs scaled to −1…1 (mean 0.5, std 0.5). Suppression: per-class NMS at IoU 0.55, scores > 0.001, 300
  candidates per class, 300 detections.

Default boxes: torchvision's ``DefaultBoxGenerator`` over the feature maps of the batch. SSD300's generator tiles
its boxes with the paper's fixed steps (8, 16, 32, 64, 100, 300 px), which only fit a 300 px input; at any other
input size the boxes are tiled on the maps' own grids (centres at (i + 0.5) / map side), which is what SSDLite's
generator always does.

Training (:meth:`TorchvisionSSD.loss`): torchvision's SSD loss written out from its pieces (``SSDMatcher``: each
ground truth's best anchor plus every anchor of IoU ≥ 0.5; the box coder with weights (10, 10, 5, 5)), so that the
box-regression loss and the treatment of negatives can be chosen per case. ``default`` is torchvision's
``SSD.compute_loss`` term for term (``bbox_regression``: smooth L1, β = 1, on the encoded offsets of the matched
anchors; ``classification``: cross-entropy of the positives and of the hard-mined negatives, 3 per positive per
image), both summed and divided by the number of positive anchors of the batch. Options:

- :attr:`TorchvisionSSD.NEGATIVES`: ``hard_mining`` (= the default) or ``focal``: softmax focal loss
  (``negatives.softmax_focal_loss``, α = 0.25 on foreground anchors and 1 − α on background ones, γ = 2) over every
  anchor, no mining, divided by the number of positive anchors;
- :attr:`TorchvisionSSD.BOX_LOSSES`: ``smooth_l1`` and ``l1`` of :data:`~harness.zoo.detectors.box_losses.OFFSET_LOSSES`
  on the encoded offsets (note: that ``smooth_l1`` is Detectron's, β = 1/9; the default is SSD's β = 1), ``giou``,
  ``diou``, ``ciou`` of :data:`~harness.zoo.detectors.box_losses.BOX_LOSSES` on the decoded boxes (input pixels)
  against their ground truths.

``torchvision.models.detection.ssd.SSD.compute_loss`` is not called: it fixes smooth L1 and mining, and where an
image has fewer negatives than 3 × its positives it counts positives among the "negatives" (its rank test lets the
−inf-scored positives in); ``negatives.hard_negatives`` takes exactly min(3 × positives, negatives available).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torchvision.models.detection import ssd300_vgg16 as tv_ssd300_vgg16
from torchvision.models.detection import ssdlite320_mobilenet_v3_large as tv_ssdlite320_mobilenet_v3_large
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.ssd import SSD
from torchvision.ops import box_iou, clip_boxes_to_image

from harness.zoo.detectors.base import Detections, Detector, ImageMeta, Target
from harness.zoo.detectors.box_losses import BOX_LOSSES, OFFSET_LOSSES
from harness.zoo.detectors.negatives import FOCAL_ALPHA, FOCAL_GAMMA, hard_negatives, softmax_focal_loss
from harness.zoo.detectors.postprocess import Suppression
from harness.zoo.detectors.torchvision_detectors import _square_images, _valid_hw
from harness.zoo.registry import register_model

#: the smallest input side (px) torchvision's SSD300 network accepts (its conv10_2/conv11_2 are unpadded 3×3).
SSD300_MIN_INPUT = 268

#: SSD300's input normalisation (0–1 scale): the Caffe model's RGB mean (123, 117, 104)/255, std 1/255 (0–255 input).
SSD300_MEAN = (0.48235, 0.45882, 0.40784)
SSD300_STD = (1.0 / 255.0, 1.0 / 255.0, 1.0 / 255.0)

#: SSDLite's input normalisation (0–1 scale → −1…1).
SSDLITE_MEAN = (0.5, 0.5, 0.5)
SSDLITE_STD = (0.5, 0.5, 0.5)

class TorchvisionSSD(Detector):
    """torchvision's ``model`` (an SSD, background = class 0 of its ``num_classes + 1``) without its transform.

    ``paper_size``: the input side its anchor generator's fixed ``steps`` (if any) were made for;
    ``min_input_size``: the smallest input side the network accepts.
    Raw outputs: ``cls_logits`` (N, A, C + 1) with background at index 0, ``bbox_regression`` (N, A, 4) offsets of
    the box coder and ``anchors`` a list of N (A, 4) default boxes in input pixels.
    """

    BOX_LOSSES = ("smooth_l1", "l1", "giou", "diou", "ciou")
    NEGATIVES = ("hard_mining", "focal")

    def __init__(self, model: SSD, num_classes: int, input_size: int, mean: Sequence[float], std: Sequence[float],
                 paper_size: int, min_input_size: int = 1) -> None:
        if input_size < min_input_size:
            raise ValueError(f"{type(self).__name__} needs inputs of at least {min_input_size} px, got {input_size}")
        super().__init__(num_classes, input_size, Suppression(
            "batched_nms", iou_threshold=model.nms_thresh, score_threshold=model.score_thresh,
            pre_top_k=model.topk_candidates * num_classes, max_detections=model.detections_per_img), mean=mean, std=std)
        self.backbone = model.backbone
        self.head = model.head
        self.anchor_generator = model.anchor_generator
        generator = model.anchor_generator
        #: the same default boxes tiled on the feature maps' grids, for input sizes the fixed steps do not fit.
        self.grid_anchor_generator = (generator if generator.steps is None else
                                      DefaultBoxGenerator(generator.aspect_ratios, scales=generator.scales,
                                                          clip=generator.clip))
        self.box_coder = model.box_coder
        self.proposal_matcher = model.proposal_matcher
        self.neg_to_pos_ratio = model.neg_to_pos_ratio
        self.top_k = model.topk_candidates
        self.paper_size = paper_size
        self.min_input_size = min_input_size
        #: α and γ of ``negatives="focal"`` (α None: no α weighting).
        self.focal_alpha: float | None = FOCAL_ALPHA
        self.focal_gamma = FOCAL_GAMMA

    def forward(self, batch: torch.Tensor) -> dict[str, Any]:
        """Return the raw outputs (see the class docstring) of the normalised batch."""
        if min(batch.shape[-2:]) < self.min_input_size:
            raise ValueError(f"{type(self).__name__} needs inputs of at least {self.min_input_size} px, "
                             f"got {tuple(batch.shape[-2:])}")
        features = list(self.backbone(batch).values())
        outputs = self.head(features)
        paper = tuple(batch.shape[-2:]) == (self.paper_size, self.paper_size)
        generator = self.anchor_generator if paper else self.grid_anchor_generator
        return {**outputs, "anchors": generator(_square_images(batch), features)}

    def decode(self, raw: dict[str, Any], metas: Sequence[ImageMeta]) -> list[Detections]:
        """Return per image, for each class, the ``top_k`` anchors of best softmax score (background dropped;
        scores in 0…1), boxes decoded by the box coder in input pixels and clipped to the image: the candidates of
        torchvision's ``postprocess_detections`` (its score threshold is left to the suppression)."""
        out = []
        for logits, deltas, anchors, meta in zip(raw["cls_logits"], raw["bbox_regression"], raw["anchors"], metas,
                                                 strict=True):
            scores = F.softmax(logits.float(), dim=-1)[:, 1:]
            boxes = clip_boxes_to_image(self.box_coder.decode_single(deltas.float(), anchors.float()),
                                        _valid_hw(meta))
            top_scores, index = scores.topk(min(self.top_k, scores.shape[0]), dim=0)  # (k, C) each
            labels = torch.arange(scores.shape[1], device=scores.device).repeat(index.shape[0])
            out.append(Detections(boxes[index.reshape(-1)], top_scores.reshape(-1), labels))
        return out

    # ------------------------------------------------------------------------------------ training

    def match(self, anchors: Sequence[torch.Tensor], targets: Sequence[Target]) -> list[torch.Tensor]:
        """Return per image the index of the ground truth each anchor is matched to (−1: background), by
        torchvision's ``SSDMatcher`` (IoU ≥ 0.5, plus each ground truth's best anchor)."""
        return [self.proposal_matcher(box_iou(t.boxes.to(a), a)) if t.boxes.numel()
                else torch.full((a.shape[0],), -1, dtype=torch.int64, device=a.device)
                for t, a in zip(targets, anchors, strict=True)]

    def loss(self, raw: dict[str, Any], targets: Sequence[Target]) -> dict[str, torch.Tensor]:
        """Return SSD's loss terms (``bbox_regression``, ``classification``; see the module docstring for the
        ``box_loss`` and ``negatives`` choices), each summed and divided by the batch's positive anchors (at
        least 1); targets in input pixels, labels 0…num_classes−1."""
        cls_logits, deltas = raw["cls_logits"], raw["bbox_regression"]
        anchors = torch.stack(list(raw["anchors"]))
        matched = torch.stack(self.match(raw["anchors"], targets))
        positive = matched >= 0
        labels = torch.zeros_like(matched)
        gt_boxes = torch.zeros_like(anchors)
        for i, target in enumerate(targets):
            index = matched[i, positive[i]]
            labels[i, positive[i]] = target.labels.to(labels.device)[index] + 1
            gt_boxes[i, positive[i]] = target.boxes.to(anchors)[index]
        normaliser = max(1, int(positive.sum()))
        return {"bbox_regression": self._box_loss(deltas[positive], anchors[positive], gt_boxes[positive]) / normaliser,
                "classification": self._classification_loss(cls_logits, labels, positive) / normaliser}

    def _box_loss(self, deltas: torch.Tensor, anchors: torch.Tensor, gt_boxes: torch.Tensor) -> torch.Tensor:
        """Return the summed box-regression loss of the positive anchors (P, 4 each)."""
        if self.box_loss not in ("default", *self.BOX_LOSSES):
            raise ValueError(f"{type(self).__name__} offers box_loss {', '.join(self.BOX_LOSSES)}, "
                             f"not {self.box_loss!r}")
        if self.box_loss in BOX_LOSSES:
            return BOX_LOSSES[self.box_loss](self.box_coder.decode_single(deltas.float(), anchors), gt_boxes).sum()
        encoded = self.box_coder.encode_single(gt_boxes, anchors)
        if self.box_loss == "default":
            return F.smooth_l1_loss(deltas.float(), encoded, reduction="sum")
        return OFFSET_LOSSES[self.box_loss](deltas.float(), encoded).sum()

    def _classification_loss(self, cls_logits: torch.Tensor, labels: torch.Tensor,
                             positive: torch.Tensor) -> torch.Tensor:
        """Return the summed classification loss: over positives and hard negatives, or focal over every anchor."""
        if self.negatives == "focal":
            return softmax_focal_loss(cls_logits, labels, self.focal_alpha, self.focal_gamma).sum()
        if self.negatives not in ("default", "hard_mining"):
            raise ValueError(f"{type(self).__name__} offers negatives {', '.join(self.NEGATIVES)}, "
                             f"not {self.negatives!r}")
        loss = F.cross_entropy(cls_logits.float().flatten(0, 1), labels.flatten(), reduction="none").view_as(labels)
        negative = hard_negatives(loss, positive, ~positive, self.neg_to_pos_ratio)
        return loss[positive].sum() + loss[negative].sum()


@register_model("ssd300_vgg16", origin="torchvision",
                source="Liu et al. 2016, SSD: Single Shot MultiBox Detector, COCO test-dev2015 table (SSD300, VGG-16)")
def ssd300_vgg16(num_classes: int = 80, input_size: int = 300) -> TorchvisionSSD:
    """Return torchvision's SSD300 on VGG-16 (random weights, nothing downloaded) for ``num_classes`` object
    classes (torchvision's background class added) and ``input_size`` px inputs (at least 268)."""
    model = tv_ssd300_vgg16(weights=None, weights_backbone=None, num_classes=num_classes + 1)
    return TorchvisionSSD(model, num_classes, input_size, SSD300_MEAN, SSD300_STD, paper_size=300,
                          min_input_size=SSD300_MIN_INPUT)


@register_model("ssdlite320_mobilenet_v3_large", origin="torchvision",
                source="Howard et al. 2019, Searching for MobileNetV3, Table 6 (SSDLite, MobileNetV3-Large, 320)")
def ssdlite320_mobilenet_v3_large(num_classes: int = 80, input_size: int = 320) -> TorchvisionSSD:
    """Return torchvision's SSDLite320 on MobileNetV3-Large (random weights, reduced tail, nothing downloaded)
    for ``num_classes`` object classes (torchvision's background class added) and ``input_size`` px inputs."""
    model = tv_ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=num_classes + 1)
    return TorchvisionSSD(model, num_classes, input_size, SSDLITE_MEAN, SSDLITE_STD, paper_size=320)
