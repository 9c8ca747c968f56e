"""The two answers to the flood of easy negatives in one-stage detectors, shared by the families that offer them.

- **Hard negative mining** (SSD, Liu et al. 2016 §2.2): of the negatives, keep only the highest-loss ones, at most
  ``ratio`` (3) per positive of the same image; the loss is summed over the positives and those negatives.
- **Focal loss** (RetinaNet, Lin et al. 2017): every anchor contributes, its cross-entropy scaled by
  α_t (1 − p_t)^γ (α = 0.25, γ = 2), the sum normalised by the number of positives;
  ``torchvision.ops.sigmoid_focal_loss`` for sigmoid scores, :func:`softmax_focal_loss` for softmax ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: SSD's negatives per positive.
NEG_POS_RATIO = 3
#: RetinaNet's focal loss parameters.
FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0


def hard_negatives(loss: torch.Tensor, positive: torch.Tensor, candidate: torch.Tensor,
                   ratio: int = NEG_POS_RATIO) -> torch.Tensor:
    """Return a mask (N, P) of the negatives to keep: per image (row), the ``ratio`` × positives highest-``loss``
    anchors among the ``candidate`` negatives (fewer when fewer are candidates). ``loss``, ``positive`` and
    ``candidate`` are (N, P); ties are broken by position."""
    masked = loss.detach().masked_fill(~candidate, float("-inf"))
    keep = (positive.sum(dim=1, keepdim=True) * ratio).clamp(max=candidate.sum(dim=1, keepdim=True))
    rank = masked.argsort(dim=1, descending=True, stable=True).argsort(dim=1, stable=True)
    return (rank < keep) & candidate


def softmax_focal_loss(logits: torch.Tensor, labels: torch.Tensor, alpha: float | None = FOCAL_ALPHA,
                       gamma: float = FOCAL_GAMMA) -> torch.Tensor:
    """Return the focal loss of each anchor, unreduced (shape of ``labels``): −α_t (1 − p_t)^γ log p_t, with
    ``p_t`` the softmax probability (``logits`` (..., K), computed in float32) of the anchor's class ``labels``
    (class 0 = background for softmax detectors), α_t = α for foreground and 1 − α for background anchors
    (``alpha=None``: no α weighting). At γ = 0 and ``alpha=None`` it is the cross-entropy; at α = 0.5 half of it."""
    log_p = F.log_softmax(logits.float(), dim=-1).gather(-1, labels[..., None]).squeeze(-1)
    loss = -(1 - log_p.exp()).pow(gamma) * log_p
    if alpha is not None:
        loss = torch.where(labels > 0, alpha, 1 - alpha) * loss
    return loss
