"""``harness profile``: the complexity of one model at one input shape, with a per-layer table.

Runs in the calling process (no worker, no suite): builds the model with random weights, counts it
with :func:`harness.metrics.complexity.count` on meta tensors, and returns plain rows for printing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


def parse_input_shape(text: str) -> tuple[int, ...]:
    """Return the shape spelled ``NxCxHxW`` (or ``CxHxW``, batch 1) as a 4-tuple of positive ints.

    Raises ValueError naming what was expected (argparse shows it as a usage error).
    """
    dims = tuple(int(d) for d in text.split("x")) if re.fullmatch(r"\d+(x\d+){2,3}", text) else ()
    if not dims or 0 in dims:
        raise ValueError(f"{text!r}: expected NxCxHxW or CxHxW of positive integers, e.g. 1x3x224x224")
    return dims if len(dims) == 4 else (1, *dims)


@dataclass(frozen=True)
class Profile:
    """The complexity of one model: totals (counts; ``mac_bytes`` in bytes) and per-layer rows."""

    model: str
    input_shape: tuple[int, ...]
    dtype: str
    totals: dict[str, Any]
    rows: list[dict[str, Any]]
    norm: str = "native"

    def as_json(self) -> dict[str, Any]:
        """Return one JSON-ready object: model, input, dtype, norm, the totals and the rows as ``breakdown``."""
        return {"model": self.model, "input": list(self.input_shape), "dtype": self.dtype, "norm": self.norm,
                **self.totals,
                "breakdown": self.rows}


def profile_model(name: str, input_shape: tuple[int, ...], dtype: str = "fp32", by: str = "module",
                  top: int = 0, norm: str = "native") -> Profile:
    """Count ``name`` at ``input_shape`` (NCHW); rows per ``by`` ("module" or "op"), ``top`` largest by MACs.

    ``top`` = 0 keeps every row, in execution order. ``norm`` other than ``native`` swaps every BatchNorm
    for that kind first (:func:`harness.zoo.norms.swap_norm`, default options).
    """
    import torch

    from harness.metrics.complexity import DTYPE_BYTES, count, param_counts
    from harness.zoo import create_model

    model = create_model(name, in_chans=input_shape[1]) if input_shape[1] != 3 else create_model(name)
    if norm != "native":
        from harness.zoo.norms import swap_norm

        swap_norm(model, norm)
    model.eval()
    # read only when the count falls back to real tensors (a detector's data-dependent ops): seeded noise
    inputs = torch.randn(input_shape, generator=torch.Generator().manual_seed(0))
    result = count(model, inputs, dtype_bytes=DTYPE_BYTES[dtype])
    totals = {
        **param_counts(model),
        "macs": result.total.macs,
        "flops": result.total.flops,
        "mac_bytes": result.total.mac_bytes,
        "activations": result.total.activations,
        "coverage": result.coverage,
        "uncounted": dict(sorted(result.uncounted.items())),
        "data_dependent": result.data_dependent,
        "method": result.method,
    }
    source = result.by_module if by == "module" else result.by_op
    rows = [{by: key, "macs": c.macs, "flops": c.flops, "mac_bytes": c.mac_bytes, "activations": c.activations}
            for key, c in source.items()]
    if by == "op":
        for row in rows:
            row["calls"] = result.calls[row["op"]]
    if top:
        rows = sorted(rows, key=lambda r: r["macs"], reverse=True)[:top]
    return Profile(name, tuple(input_shape), dtype, totals, rows, norm)
