"""A case's seed applied to everything random in the worker, and torch's deterministic algorithms around the
seeded metrics (those that train or score seeded random weights).

- :func:`seed_everything` seeds Python's ``random``, numpy's global generator and torch (CPU and every CUDA
  device), so the weights' initialisation, dropout and anything drawn from the global generators repeat; the
  training's data order has its own generator seeded from the same seed (:func:`harness.metrics.train.batch_indices`).
- :func:`deterministic_algorithms` turns on ``torch.use_deterministic_algorithms`` (``warn_only``: an op without
  a deterministic kernel warns instead of failing the case), cuDNN's deterministic mode without autotuning, and
  restores the previous settings after. It yields whether the result is exact on this device: always on the CPU;
  on CUDA only when ``CUBLAS_WORKSPACE_CONFIG`` is ``:4096:8`` or ``:16:8`` (cuBLAS is otherwise free to reduce
  in another order; the worker does not set it itself, since it changes which GEMM kernels timed cases get).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

#: Values of CUBLAS_WORKSPACE_CONFIG under which cuBLAS is deterministic (CUDA ≥ 10.2).
DETERMINISTIC_CUBLAS = (":4096:8", ":16:8")


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, numpy's global generator (``seed`` mod 2³²) and torch's CPU and CUDA generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextmanager
def deterministic_algorithms(device: str) -> Iterator[bool]:
    """Run the body with torch's deterministic algorithms (warn only) and deterministic cuDNN; yield True when
    results on ``device`` are then exactly repeatable (see the module doc)."""
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield not device.startswith("cuda") or os.environ.get("CUBLAS_WORKSPACE_CONFIG") in DETERMINISTIC_CUBLAS
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[2], before[3]
