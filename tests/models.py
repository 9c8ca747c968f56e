"""Small modules the tests share."""

from __future__ import annotations

import torch
from torch import nn


class Branchy(nn.Module):
    """A conv whose output decides the control flow: FX cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y if y.sum() > 0 else -y
