"""Model registry: name -> builder, with timm as the fallback for every name not registered here.

Modelled on timm's ``register_model`` / ``create_model``: a builder is a function returning an
``nn.Module``; registering it under a name makes it usable in suites, ``harness list`` and the CLI.
Names that are not registered resolve through ``timm.create_model(name, pretrained=False)``, so no
weights are ever downloaded by building a model.
"""

from __future__ import annotations

import fnmatch
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError, UnknownModelError

if TYPE_CHECKING:
    from torch import nn

Builder = Callable[..., "nn.Module"]


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its builder, where it comes from, and the paper it follows."""

    name: str
    builder: Builder
    origin: str
    source: str = ""


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str | None = None, *, origin: str = "harness", source: str = ""
) -> Callable[[Builder], Builder]:
    """Return a decorator that registers a builder under ``name`` (default: the function's name).

    ``origin`` says who implements it (``harness``, ``torchvision``, ``testing``); ``source`` cites the
    paper and table the builder follows. Registering a name twice raises ``ValueError``.
    """

    def decorator(builder: Builder) -> Builder:
        key = name or builder.__name__
        if key in _REGISTRY:
            raise ValueError(f"model {key!r} is already registered")
        _REGISTRY[key] = ModelEntry(key, builder, origin, source)
        return builder

    return decorator


def _ensure_loaded() -> None:
    """Import the zoo modules whose import registers their builders."""
    import harness.zoo  # noqa: F401  (registers builders on import)


@functools.cache
def _timm_all_names() -> frozenset[str]:
    import timm

    return frozenset(timm.list_models())


def _timm_names(pattern: str = "*") -> list[str]:
    return sorted(n for n in _timm_all_names() if fnmatch.fnmatchcase(n, pattern))


def get_entry(name: str) -> ModelEntry | None:
    """Return the registry entry for ``name``, or None when it is not registered (timm may know it)."""
    _ensure_loaded()
    return _REGISTRY.get(name)


def is_known_model(name: str) -> bool:
    """Return True when ``name`` is registered here or is a timm architecture."""
    return get_entry(name) is not None or name in _timm_all_names()


def list_models(pattern: str = "*") -> list[tuple[str, str]]:
    """Return sorted ``(name, origin)`` pairs matching ``pattern`` — an fnmatch pattern when it has a wildcard
    (``*``, ``?``, ``[``), else a substring of the name; origin ``timm`` for timm's."""
    _ensure_loaded()
    if not any(c in pattern for c in "*?["):
        pattern = f"*{pattern}*"
    found = {n: e.origin for n, e in _REGISTRY.items() if fnmatch.fnmatchcase(n, pattern)}
    for n in _timm_names(pattern):
        found.setdefault(n, "timm")
    return sorted(found.items())


def create_model(name: str, *, checkpoint: str | None = None, **kwargs: Any) -> nn.Module:
    """Build the model ``name`` with random weights, or the weights of a local ``checkpoint`` file.

    A timm model given ``pretrained=True`` gets timm's pretrained weights, which are downloaded from the
    Hugging Face hub (or read from its cache): HarnessError when they cannot be had (offline, unknown).
    Raises UnknownModelError for an unknown name; see harness.zoo.weights for what a checkpoint may be.
    """
    entry = get_entry(name)
    if entry is not None:
        model = entry.builder(**kwargs)
    elif name in _timm_all_names():
        import timm

        pretrained = bool(kwargs.pop("pretrained", False))
        try:
            model = timm.create_model(name, pretrained=pretrained, **kwargs)
        except (OSError, RuntimeError) as exc:
            if not pretrained:
                raise
            raise HarnessError(f"timm's pretrained weights for {name!r} could not be loaded (offline? "
                               f"HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '')!r}): {exc}") from exc
    else:
        raise UnknownModelError(f"unknown model {name!r}: not registered in harness.zoo and not a timm model")
    if checkpoint is not None:
        from harness.zoo.weights import load_checkpoint

        load_checkpoint(model, checkpoint)
    return model
