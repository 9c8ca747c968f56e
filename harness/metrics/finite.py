"""The check that a model's outputs are finite, shared by the metrics that run the model for real."""

from __future__ import annotations

from typing import Any

import torch

from harness.errors import NonFiniteOutput


def assert_finite(value: Any, what: str) -> None:
    """Raise NonFiniteOutput naming ``what`` and the counts of NaN and infinite values when any floating
    tensor inside ``value`` (a tensor, or lists, tuples, dicts and dataclass-free containers of them) is not
    finite; return None otherwise."""
    for index, leaf in enumerate(torch.utils._pytree.tree_leaves(value)):
        if not isinstance(leaf, torch.Tensor) or not (leaf.is_floating_point() or leaf.is_complex()):
            continue
        finite = torch.isfinite(leaf)
        if bool(finite.all()):
            continue
        nan = int(torch.isnan(leaf).sum())
        raise NonFiniteOutput(f"{what} is not finite: tensor {index} of shape {tuple(leaf.shape)} holds {nan} NaN "
                              f"and {int((~finite).sum()) - nan} infinite values of {leaf.numel()}")
