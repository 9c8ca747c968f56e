"""Suppression of overlapping detections, selectable per case: NMS, batched (per-class) NMS, Soft-NMS
(linear and Gaussian; torchvision has none) and DIoU-NMS, found by name in :data:`METHODS`.

Every method starts the same way: candidates scoring below ``score_threshold`` are dropped and at most
``pre_top_k`` of the best are kept; every method ends the same way: the survivors sorted by descending
score, at most ``max_detections`` of them. In between:

- ``none``: nothing (CenterNet's decode, whose max-pool peak extraction replaces NMS);
- ``nms``: greedy NMS over all classes together (a box suppresses any box of any class overlapping it by
  IoU > ``iou_threshold``): torchvision ``nms``;
- ``batched_nms``: greedy NMS within each class: torchvision ``batched_nms``;
- ``soft_nms_linear`` / ``soft_nms_gaussian``: Soft-NMS within each class (Bodla et al. 2017, Algorithm 1):
  repeatedly take the highest-scoring box M, and rescale every remaining box b's score by
  ``1 − IoU(M, b)`` when ``IoU(M, b) ≥ iou_threshold`` (linear), or by ``exp(−IoU(M, b)² / sigma)``
  (Gaussian); boxes whose rescaled score falls below ``score_threshold`` are dropped;
- ``diou_nms``: greedy NMS within each class that suppresses b when ``IoU(M, b) − ρ²(M, b) / c²(M, b) >
  iou_threshold``, ρ the distance of the boxes' centres and c the diagonal of their enclosing box (Zheng et
  al. 2020, DIoU-NMS).

Per-class methods offset each class's boxes by a multiple of the coordinates' span, so boxes of
different classes never overlap (torchvision's coordinate trick, whose offset of the largest coordinate + 1
assumes non-negative coordinates: ``batched_nms`` therefore gets the boxes moved to non-negative ones, as
unclipped decoded boxes, e.g. YOLOv3's, can reach outside the image).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
from torchvision.ops import batched_nms, box_iou, distance_box_iou, nms


@dataclass(frozen=True)
class Suppression:
    """A post-processing protocol: ``method`` (a key of :data:`METHODS`), IoU threshold, the least score
    kept, candidates kept before and detections kept after suppression, and Soft-NMS's Gaussian ``sigma``."""

    method: str = "batched_nms"
    iou_threshold: float = 0.5
    score_threshold: float = 0.05
    pre_top_k: int = 1000
    max_detections: int = 100
    sigma: float = 0.5

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown post-processing {self.method!r}; known: {', '.join(METHODS)}")

    def with_method(self, method: str | None) -> Suppression:
        """Return this protocol with another method (the same one for None or ``default``)."""
        return self if method in (None, "default") else replace(self, method=method)


class Kept(NamedTuple):
    """Detections that survived: boxes (K, 4), scores (K,), labels (K,), by descending score."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor


def _by_class(boxes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Return the boxes moved apart per class so that boxes of different classes never overlap (each class
    shifted by a multiple of the coordinates' whole span, so negative coordinates are safe too)."""
    if boxes.numel() == 0:
        return boxes
    offset = labels.to(boxes.dtype) * (boxes.max() - boxes.min() + 1)
    return boxes + offset[:, None]


def keep_none(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, config: Suppression) -> torch.Tensor:
    """Return every index (no suppression)."""
    return torch.arange(scores.numel(), device=scores.device)


def keep_nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, config: Suppression) -> torch.Tensor:
    """Return the indices greedy class-agnostic NMS keeps."""
    return nms(boxes, scores, config.iou_threshold)


def keep_batched_nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor,
                     config: Suppression) -> torch.Tensor:
    """Return the indices greedy per-class NMS keeps."""
    if boxes.numel():
        boxes = boxes - boxes.min().clamp(max=0)
    return batched_nms(boxes, scores, labels, config.iou_threshold)


def keep_diou_nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor,
                  config: Suppression) -> torch.Tensor:
    """Return the indices greedy per-class DIoU-NMS keeps, by descending score."""
    order = scores.argsort(descending=True)
    moved = _by_class(boxes, labels)[order]
    diou = distance_box_iou(moved, moved)
    suppressed = torch.zeros(order.numel(), dtype=torch.bool, device=boxes.device)
    for i in range(order.numel()):
        if not suppressed[i]:
            suppressed[i + 1:] |= diou[i, i + 1:] > config.iou_threshold
    return order[~suppressed]


def soft_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, score_threshold: float,
             gaussian: bool, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (indices kept, their rescaled scores) of Soft-NMS over ``boxes`` (no classes), in the order
    they were picked (descending rescaled score). See the module docstring for the rescaling."""
    scores = scores.clone()
    remaining = torch.arange(scores.numel(), device=scores.device)
    picked, picked_scores = [], []
    while remaining.numel():
        j = int(scores[remaining].argmax())
        best = remaining[j]
        picked.append(best)
        picked_scores.append(scores[best])
        remaining = torch.cat([remaining[:j], remaining[j + 1:]])
        if not remaining.numel():
            break
        iou = box_iou(boxes[best][None], boxes[remaining])[0]
        if gaussian:
            decay = torch.exp(-(iou * iou) / sigma)
        else:
            decay = torch.where(iou >= iou_threshold, 1.0 - iou, torch.ones_like(iou))
        scores[remaining] = scores[remaining] * decay
        remaining = remaining[scores[remaining] >= score_threshold]
    if not picked:
        return remaining, scores[remaining]
    return torch.stack(picked), torch.stack(picked_scores)


def _soft(gaussian: bool) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    def keep(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor,
             config: Suppression) -> tuple[torch.Tensor, torch.Tensor]:
        return soft_nms(_by_class(boxes, labels), scores, config.iou_threshold, config.score_threshold,
                        gaussian, config.sigma)

    keep.__doc__ = f"Return (indices, rescaled scores) of per-class {'Gaussian' if gaussian else 'linear'} Soft-NMS."
    return keep


#: name -> function(boxes, scores, labels, config) returning the kept indices, or (indices, new scores).
METHODS: dict[str, Callable[..., torch.Tensor | tuple[torch.Tensor, torch.Tensor]]] = {
    "none": keep_none,
    "nms": keep_nms,
    "batched_nms": keep_batched_nms,
    "soft_nms_linear": _soft(gaussian=False),
    "soft_nms_gaussian": _soft(gaussian=True),
    "diou_nms": keep_diou_nms,
}


def suppress(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, config: Suppression) -> Kept:
    """Return the detections ``config`` keeps of the candidates (boxes (N, 4) x1y1x2y2, scores (N,), labels
    (N,)), by descending score, at most ``config.max_detections``; see the module docstring."""
    mask = scores >= config.score_threshold
    boxes, scores, labels = boxes[mask], scores[mask], labels[mask]
    if scores.numel() > config.pre_top_k:
        top = scores.topk(config.pre_top_k).indices
        boxes, scores, labels = boxes[top], scores[top], labels[top]
    kept = METHODS[config.method](boxes.float(), scores.float(), labels, config)
    if isinstance(kept, tuple):
        index, new_scores = kept
    else:
        index, new_scores = kept, scores[kept]
    order = new_scores.argsort(descending=True)[: config.max_detections]
    index = index[order]
    return Kept(boxes[index], new_scores[order].to(scores.dtype), labels[index])
