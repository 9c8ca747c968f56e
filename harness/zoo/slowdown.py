"""An injected slowdown, for calibrating regression detection: ``HARNESS_INJECT_SLOWDOWN`` makes chosen models'
forward passes slower by a known fraction, without changing their case ids, so a history of nightly runs (or the
candidate side of ``harness ab``) can carry a regression whose size is known.

``HARNESS_INJECT_SLOWDOWN`` holds comma-separated ``PATTERN=FRACTION`` entries; a model whose name matches a
pattern (shell-style, ``*`` for every model) is wrapped in :class:`Slowed`, which after each forward waits
``FRACTION`` × the time the forward took (``0.1`` = 10% slower). The wait is a sleep (the wall time of a forward is
what the latency protocol measures); on CUDA the forward is synchronised first so the time is the kernels'. Unset
(the normal case), nothing is wrapped. Records of a run with an injected slowdown are not marked, by design: they
must look like an ordinary run's to the detector being calibrated. Use it only with a results directory kept for
calibration (``tools/calibrate_nightly.py``) or on the candidate side of ``harness ab``.
"""

from __future__ import annotations

import fnmatch
import os
import time

import torch
from torch import nn

from harness.errors import HarnessError

ENV_VAR = "HARNESS_INJECT_SLOWDOWN"


class Slowed(nn.Module):
    """Runs the wrapped model, then sleeps ``fraction`` × the wall time its forward took."""

    def __init__(self, model: nn.Module, fraction: float) -> None:
        super().__init__()
        self.model = model
        self.pretrained_cfg = getattr(model, "pretrained_cfg", {})
        self.fraction = fraction

    def forward(self, *args: object, **kwargs: object) -> object:
        start = time.perf_counter()
        out = self.model(*args, **kwargs)
        if torch.cuda.is_initialized():
            torch.cuda.synchronize()
        time.sleep(self.fraction * (time.perf_counter() - start))
        return out


def parse_injection(text: str) -> tuple[tuple[str, float], ...]:
    """Return the ``(pattern, fraction)`` entries of a ``HARNESS_INJECT_SLOWDOWN`` value; HarnessError when an entry
    is not ``PATTERN=FRACTION`` with a fraction ≥ 0."""
    entries = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        pattern, sep, value = item.partition("=")
        try:
            fraction = float(value) if sep and pattern else -1.0
        except ValueError:
            fraction = -1.0
        if fraction < 0:
            raise HarnessError(f"{ENV_VAR}: {item!r} is not PATTERN=FRACTION with a fraction ≥ 0 (e.g. resnet50=0.1)")
        entries.append((pattern, fraction))
    return tuple(entries)


def injected_fraction(model_name: str, environ: dict[str, str] | None = None) -> float:
    """Return the slowdown fraction ``HARNESS_INJECT_SLOWDOWN`` sets for ``model_name`` (the first matching entry), or
    0.0 when the variable is unset or names no matching pattern."""
    text = (os.environ if environ is None else environ).get(ENV_VAR, "")
    return next((fraction for pattern, fraction in parse_injection(text) if fnmatch.fnmatchcase(model_name, pattern)),
                0.0)


def inject_slowdown(model: nn.Module, model_name: str) -> nn.Module:
    """Return ``model`` wrapped in :class:`Slowed` when ``HARNESS_INJECT_SLOWDOWN`` names it, else ``model`` itself."""
    fraction = injected_fraction(model_name)
    return Slowed(model, fraction) if fraction > 0 else model
