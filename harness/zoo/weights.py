"""Local checkpoints: weights loaded with ``torch.load(weights_only=True)``, never arbitrary pickles."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from harness.errors import HarnessError


def load_checkpoint(model: nn.Module, path: str | Path) -> nn.Module:
    """Load the state dict at ``path`` into ``model`` (strict) and return the model.

    Accepts a plain state dict or one under a ``state_dict`` / ``model`` key. Raises HarnessError for a
    missing file, a pickle that is more than tensors and plain containers, or keys that do not match.
    """
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"checkpoint {path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise HarnessError(f"checkpoint {path}: refused, it is not plain weights (weights_only=True): "
                           f"{str(exc).splitlines()[0]}") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise HarnessError(f"checkpoint {path}: expected a state dict, got {type(state).__name__}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise HarnessError(f"checkpoint {path}: does not fit the model: {str(exc).splitlines()[0]}") from None
    return model
