"""Exceptions shared across the harness. Torch-free, so every layer may import them."""

from __future__ import annotations


class HarnessError(Exception):
    """A user-facing error: its message is printed without a traceback."""


class SkipCase(HarnessError):
    """Raised while measuring a case that cannot run here (no CUDA device, unsupported dtype…).

    The case is recorded with status ``skipped`` and this exception's message as the reason.
    """


class UnknownModelError(HarnessError):
    """Raised when a model name is neither registered in the zoo nor known to timm."""


class NonFiniteOutput(HarnessError):
    """Raised when a model's output (or a training step's loss) holds NaN or infinite values.

    The case is recorded as failed with failure class ``nonfinite``.
    """
