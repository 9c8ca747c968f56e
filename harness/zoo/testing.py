"""Small and deliberately faulty models for the harness's own tests and smoke checks.

``tiny_cnn`` is a real (small) network; the ``fault_*`` entries misbehave on purpose so tests can check
that one bad case is recorded as failed while the run goes on.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time

import torch
from torch import nn

from harness.errors import SkipCase
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


#: One petabyte: more than any machine has, so asking for it fails at once, whatever the device.
UNAVAILABLE_BYTES = 1 << 50


def _illegal_cuda_write(x: torch.Tensor) -> None:
    """Launch a Triton kernel that stores 4 TiB past the end of ``x`` (a CUDA tensor), then synchronise."""
    import triton
    import triton.language as tl

    @triton.jit
    def store_far(pointer):
        tl.store(pointer + (1 << 40), 1.0)

    store_far[(1,)](x)
    torch.cuda.synchronize()


class _Fault(nn.Module):
    """A module whose forward misbehaves in the way named by ``kind``; ``fits_batch`` bounds ``oom``."""

    def __init__(self, kind: str, fits_batch: int = 0, killed: bool = False) -> None:
        super().__init__()
        self.kind = kind
        self.fits_batch = fits_batch
        self.killed = killed
        self.lin = nn.Linear(1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "raise":
            raise RuntimeError("fault_raise: this model raises on purpose")
        if self.kind == "abort":
            os.abort()
        if self.kind == "segfault":
            ctypes.string_at(0)
        if self.kind == "hang":
            time.sleep(3600)
        if self.kind == "oom" and x.shape[0] > self.fits_batch:
            if self.killed:
                os.kill(os.getpid(), signal.SIGKILL)
            torch.empty(UNAVAILABLE_BYTES, dtype=torch.uint8, device=x.device)
        if self.kind == "nan":
            return x * float("nan")
        if self.kind == "illegal_memory":
            if x.device.type != "cuda":
                raise SkipCase("fault_illegal_memory needs a CUDA device")
            _illegal_cuda_write(x)
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
def fault_segfault(**_: object) -> nn.Module:
    """Return a model whose forward reads address 0, so the process dies of SIGSEGV (a native crash)."""
    return _Fault("segfault")


@register_model(origin="testing")
def fault_oom(fits_batch: int = 0, killed: bool = False, **_: object) -> nn.Module:
    """Return a model whose forward, at a batch above ``fits_batch``, asks the device's allocator for a petabyte:
    torch's out-of-memory error at once, on any device, without taking the memory. ``killed``: the process
    kills itself with SIGKILL instead, as Linux's out-of-memory killer would."""
    return _Fault("oom", fits_batch, killed)


@register_model(origin="testing")
def fault_nan(**_: object) -> nn.Module:
    """Return a model whose output is all NaN."""
    return _Fault("nan")


@register_model(origin="testing")
def fault_illegal_memory(**_: object) -> nn.Module:
    """Return a model whose forward writes far out of bounds in a CUDA kernel (CUDA's illegal memory access);
    skipped on the CPU."""
    return _Fault("illegal_memory")


@register_model(origin="testing")
def fault_build(**_: object) -> nn.Module:
    """Raise while building, as a builder with a bad configuration would."""
    raise ValueError("fault_build: this builder raises on purpose")
