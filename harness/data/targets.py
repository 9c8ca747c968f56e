"""The ground truth of one image for a detector: what the datasets hand the detectors' training."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Target:
    """The ground truth of one image: ``boxes`` (M, 4) float x1, y1, x2, y2 in pixels and ``labels`` (M,)
    int64 class indices."""

    boxes: torch.Tensor
    labels: torch.Tensor
    extra: dict[str, Any] = field(default_factory=dict)
