"""Local checkpoints: weights loaded with ``torch.load(weights_only=True)``, never arbitrary pickles.

Every failure is a HarnessError naming the file and saying what is wrong with it: no such file; not a regular file
(a directory, a FIFO…: checked before the file is opened, so a pipe never blocks the load); unreadable; empty;
truncated or damaged (torch cannot read it); refused (a pickle holding more than tensors and plain containers;
torch's advice to load it with ``weights_only=False`` is deliberately left out); not a state dict; keys that do not
match the model's (the missing and the unexpected ones, the first :data:`MAX_LISTED` of each with their counts);
tensors of another shape (key, expected shape, shape in the file).
"""

from __future__ import annotations

import pickle
import re
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.errors import HarnessError

#: How many keys of each kind a mismatch message lists before "… (N more)".
MAX_LISTED = 5
#: What a checkpoint must be, for the messages.
EXPECTED = "expected a file saved by torch.save"
#: How torch.save's files begin: a zip archive (torch ≥ 1.6) or the legacy pickle of torch's magic number.
TORCH_MAGIC = (b"PK\x03\x04", b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19")
#: File types that are not regular files, with their names for the messages.
SPECIAL_FILES: tuple[tuple[Callable[[int], bool], str], ...] = (
    (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _file_problem(path: Path) -> str | None:
    """Return what keeps ``path`` from being read as a checkpoint file (without opening it), or None."""
    try:
        status = path.stat()
    except FileNotFoundError:
        return "no such file"
    except OSError as exc:
        return f"cannot be read: {exc.strerror}"
    for is_kind, kind in SPECIAL_FILES:
        if is_kind(status.st_mode):
            return f"is {kind}, {EXPECTED}"
    if not stat.S_ISREG(status.st_mode):
        return f"is not a regular file, {EXPECTED}"
    if status.st_size == 0:
        return f"is empty (0 bytes), {EXPECTED}"
    return None


def _first_sentence(exc: BaseException) -> str:
    """Return the exception's type and the first sentence of its message, on one line."""
    text = re.split(r"(?<=\.) ", " ".join(str(exc).split()), maxsplit=1)[0].rstrip(".")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _refusal(exc: pickle.UnpicklingError) -> str | None:
    """Return why torch's weights-only unpickler refused the file, without torch's advice; None when it could not
    parse the bytes (a damaged file) rather than refusing an object."""
    match = re.search(r"WeightsUnpickler error:\s*(.+)", str(exc))
    if match is None or match.group(1).startswith("Unsupported operand"):
        return None
    found = re.match(r"Unsupported global: GLOBAL (\S+)", match.group(1))
    reason = f"it holds {found.group(1)}" if found else re.split(r"(?<=\.) ", match.group(1), maxsplit=1)[0]
    return (f"refused, it is not plain weights: {reason} (only tensors, numbers, strings and plain containers are "
            "loaded: unpickling other objects can run code)")


def _damage(path: Path, size_bytes: int, exc: Exception) -> str:
    """Return what is wrong with the regular file ``path`` (``size_bytes`` long) that torch.load failed on."""
    with path.open("rb") as file:
        head = file.read(max(len(magic) for magic in TORCH_MAGIC))
    if head.startswith(TORCH_MAGIC):
        return (f"is truncated or damaged, torch cannot read it ({size_bytes} bytes; {_first_sentence(exc)}): "
                "save it or copy it again")
    return f"is not a checkpoint ({size_bytes} bytes beginning {head[:8]!r}), {EXPECTED}"


def _read(path: Path) -> Any:
    """Return what ``torch.load(weights_only=True)`` reads from ``path``; HarnessError saying what is wrong."""
    problem = _file_problem(path)
    if problem:
        raise HarnessError(f"checkpoint {path}: {problem}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise HarnessError(f"checkpoint {path}: cannot be read: {exc.strerror or exc}") from None
    except pickle.UnpicklingError as exc:
        reason = _refusal(exc) or _damage(path, path.stat().st_size, exc)
        raise HarnessError(f"checkpoint {path}: {reason}") from None
    except Exception as exc:  # a damaged file makes torch.load fail in many ways: RuntimeError, EOFError, KeyError…
        raise HarnessError(f"checkpoint {path}: {_damage(path, path.stat().st_size, exc)}") from None


def _listed(items: Sequence[str]) -> str:
    """Return the first :data:`MAX_LISTED` items joined by commas, then how many more there are."""
    more = len(items) - MAX_LISTED
    return ", ".join(items[:MAX_LISTED]) + (f", … ({more} more)" if more > 0 else "")


def _shape(value: Any) -> str:
    return str(list(value.shape)) if isinstance(value, torch.Tensor) else f"a {type(value).__name__}, not a tensor"


def _mismatch(model: nn.Module, state: dict[str, Any]) -> str | None:
    """Return how the state dict ``state`` does not fit ``model``'s (keys, then shapes), or None when it fits."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [str(key) for key in state if key not in expected]
    shapes = [f"{key} (expected {_shape(value)}, got {_shape(state[key])})" for key, value in expected.items()
              if key in state and isinstance(value, torch.Tensor) and _shape(state[key]) != _shape(value)]
    parts = [f"{len(items)} {noun}{'s' if len(items) > 1 else ''} {what}: {_listed(items)}"
             for items, noun, what in ((missing, "key", "of the model missing from the checkpoint"),
                                       (unexpected, "unexpected key", "not in the model"),
                                       (shapes, "tensor", "of another shape")) if items]
    return "; ".join(parts) or None


def load_checkpoint(model: nn.Module, path: str | Path) -> nn.Module:
    """Load the state dict at ``path`` into ``model`` (strict) and return the model.

    Accepts a plain state dict or one under a ``state_dict`` / ``model`` key. Raises HarnessError naming the file
    and what is wrong with it (see the module doc).
    """
    path = Path(path)
    state = _read(path)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise HarnessError(f"checkpoint {path}: expected a state dict (tensor names to tensors, as "
                           f"model.state_dict() returns), got a {type(state).__name__}")
    mismatch = _mismatch(model, state)
    if mismatch:
        raise HarnessError(f"checkpoint {path}: does not fit the model ({type(model).__name__}): {mismatch}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise HarnessError(f"checkpoint {path}: does not fit the model: {str(exc).splitlines()[0]}") from None
    return model
