"""Box-regression losses by name, for the detectors' training and the DIoU paper's simulation.

Two families, as a detector's loss meets them:

- on **boxes** (x1, y1, x2, y2, pixels), decoded from the network's output: ``iou`` (1 − IoU, the UnitBox / IoU
  loss), ``giou`` (Rezatofighi et al. 2019), ``diou`` and ``ciou`` (Zheng et al. 2020, the Distance-IoU paper);
  the last three are torchvision.ops' ``generalized_box_iou_loss``, ``distance_box_iou_loss`` and
  ``complete_box_iou_loss``; plain IoU has no loss there and is written here;
- on **encoded offsets** (whatever the detector regresses: YOLOv3's σ(tx), tw; R-CNN-style deltas): ``l1``,
  ``smooth_l1`` (β = 1/9 as Detectron, or the caller's), ``mse``, summed over the four coordinates.

Every function returns one loss per box (shape ``(N,)``), unreduced: the detector weights and normalises.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torchvision.ops import complete_box_iou_loss, distance_box_iou_loss, generalized_box_iou_loss

EPS = 1e-7


def iou_loss(boxes: torch.Tensor, targets: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Return 1 − IoU of each box with its target (``(N, 4)`` x1, y1, x2, y2 each; unitless, 0…1): zero
    gradient where the boxes do not overlap, which is why GIoU, DIoU and CIoU exist."""
    lt = torch.maximum(boxes[:, :2], targets[:, :2])
    rb = torch.minimum(boxes[:, 2:], targets[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    area = (boxes[:, 2:] - boxes[:, :2]).prod(dim=1) + (targets[:, 2:] - targets[:, :2]).prod(dim=1)
    return 1 - inter / (area - inter + eps)


#: Losses on boxes (x1, y1, x2, y2): name -> (boxes, targets) -> loss per box.
BOX_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "iou": iou_loss,
    "giou": lambda b, t: generalized_box_iou_loss(b, t, reduction="none", eps=EPS),
    "diou": lambda b, t: distance_box_iou_loss(b, t, reduction="none", eps=EPS),
    "ciou": lambda b, t: complete_box_iou_loss(b, t, reduction="none", eps=EPS),
}

#: Losses on encoded offsets: name -> (predicted, target offsets, (N, 4)) -> loss per box (summed over the four).
OFFSET_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "l1": lambda p, t: F.l1_loss(p, t, reduction="none").sum(dim=1),
    "smooth_l1": lambda p, t: F.smooth_l1_loss(p, t, reduction="none", beta=1.0 / 9).sum(dim=1),
    "mse": lambda p, t: F.mse_loss(p, t, reduction="none").sum(dim=1),
}

#: Every box-regression loss a case may name (besides ``default``: the detector's own).
NAMES: tuple[str, ...] = (*OFFSET_LOSSES, *BOX_LOSSES)


def is_box_loss(name: str) -> bool:
    """Return True when ``name`` is computed on decoded boxes (the IoU family), False on encoded offsets."""
    return name in BOX_LOSSES
