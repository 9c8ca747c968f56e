"""What a model compression did and what it implies for storage and sparse kernels (every model, dense included).

- ``compress_*``: the compression's own account (:mod:`harness.zoo.compress`): achieved sparsity, params after /
  before, the bytes of the method's own encoding (weight sharing's indices and codebooks), and its whole info as
  JSON. Empty for ``compress: none``.
- ``macs_nonzero``: multiply-accumulates whose weight is nonzero: for every module that runs MACs (counted by
  :func:`harness.metrics.complexity.count`), its MACs × the share of nonzero elements of its ``weight``. Equal to
  ``macs`` for a dense model; what a sparse kernel could save after unstructured pruning (a dense kernel runs all
  ``macs``). Modules without a weight count whole. Counted at the case's input on meta tensors, like ``macs``.
- ``model_bytes``: the size in bytes of the model's ``state_dict`` as ``torch.save`` writes it (fp32 tensors 4
  bytes per element, int8 packed weights 1): what storing the model takes without a compression-specific encoding.

The dense twin of a compressed case (``compress: none``, the same other fields) carries the same columns, so the
report divides one by the other (``compression_ratio``, ``speedup``) instead of storing ratios.
"""

from __future__ import annotations

import io
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from harness.case import Case
from harness.zoo.compress import INFO_ATTRIBUTE, INFO_COLUMN_TYPES, info_columns

NAME = "compression"


class Options(BaseModel):
    """The compression metric takes no options."""

    model_config = ConfigDict(extra="forbid")


COLUMNS: dict[str, str] = INFO_COLUMN_TYPES | {"macs_nonzero": "int64", "model_bytes": "int64"}


def weight_density(module: nn.Module) -> float:
    """Return the share (0…1) of nonzero elements of ``module``'s weight (a quantized module's dequantized packed
    weight), 1.0 when it has none."""
    weight = getattr(module, "weight", None)
    if callable(weight) and not isinstance(weight, torch.Tensor):
        weight = weight()  # quantized modules return their unpacked weight
    if not isinstance(weight, torch.Tensor) or weight.numel() == 0 or weight.is_meta:
        return 1.0
    if weight.is_quantized:
        weight = weight.dequantize()
    return float(torch.count_nonzero(weight.detach())) / weight.numel()


def nonzero_macs(model: nn.Module, macs_by_module: dict[str, int]) -> int:
    """Return the MACs of ``macs_by_module`` (module-tracker names, ``<RootClass>.<path>``, → MACs) whose weight is
    nonzero: each module's MACs × :func:`weight_density` of that module (names not found count whole)."""
    total = 0.0
    for name, macs in macs_by_module.items():
        path = name.split(".", 1)[1] if "." in name else ""
        try:
            module = model.get_submodule(path) if path else model
        except AttributeError:
            module = None
        total += macs * (weight_density(module) if module is not None else 1.0)
    return round(total)


def state_dict_bytes(model: nn.Module) -> int:
    """Return the size in bytes of ``model.state_dict()`` serialised by ``torch.save``."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def measure(model: nn.Module, inputs: Any, case: Case, options: Options) -> dict[str, Any]:
    """Return the compression's info columns (none for a dense model), ``macs_nonzero`` (count) and
    ``model_bytes`` (bytes) of ``model`` at ``inputs``."""
    from harness.metrics.complexity import DTYPE_BYTES, count

    counted = count(model, inputs, dtype_bytes=DTYPE_BYTES[case.dtype])
    info = getattr(model, INFO_ATTRIBUTE, None)
    out = info_columns(info) if info is not None else {}
    by_module = {name: cost.macs for name, cost in counted.by_module.items() if cost.macs}
    return out | {"macs_nonzero": nonzero_macs(model, by_module), "model_bytes": state_dict_bytes(model)}
