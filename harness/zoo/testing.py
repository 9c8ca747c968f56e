"""Small and deliberately faulty models for the harness's own tests and smoke checks.

``tiny_cnn`` is a real (small) network; the ``fault_*`` entries misbehave on purpose so tests can check
that one bad case is recorded as failed while the run goes on.
"""

from __future__ import annotations

import os
import time

import torch
from torch import nn

from harness.zoo.registry import register_model


class TinyCNN(nn.Module):
    """conv3x3(3→8) → BN → ReLU → global average pool → linear(8→num_classes)."""

    def __init__(self, num_classes: int = 10, in_chans: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chans, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.act(self.bn(self.conv(x)))).flatten(1))


class _Fault(nn.Module):
    """A module whose forward misbehaves in the way named by ``kind``."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.lin = nn.Linear(1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "raise":
            raise RuntimeError("fault_raise: this model raises on purpose")
        if self.kind == "abort":
            os.abort()
        if self.kind == "hang":
            time.sleep(3600)
        return x


@register_model(origin="testing")
def tiny_cnn(num_classes: int = 10, in_chans: int = 3) -> nn.Module:
    """Return a 4-layer CNN (322 parameters with 3 input channels and 10 classes) for fast end-to-end tests."""
    return TinyCNN(num_classes, in_chans)


@register_model(origin="testing")
def fault_raise(**_: object) -> nn.Module:
    """Return a model whose forward raises RuntimeError."""
    return _Fault("raise")


@register_model(origin="testing")
def fault_abort(**_: object) -> nn.Module:
    """Return a model whose forward aborts the process (SIGABRT), as a native crash would."""
    return _Fault("abort")


@register_model(origin="testing")
def fault_hang(**_: object) -> nn.Module:
    """Return a model whose forward sleeps for an hour, for timeout tests."""
    return _Fault("hang")


@register_model(origin="testing")
def fault_build(**_: object) -> nn.Module:
    """Raise while building, as a builder with a bad configuration would."""
    raise ValueError("fault_build: this builder raises on purpose")
