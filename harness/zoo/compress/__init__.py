"""Model compression as a case axis (``compress`` and its options ``compress_kwargs``): one module per method,
found through :data:`METHODS` (name -> :class:`Method`), each registered with :func:`register_compression`.

A method takes a built fp32 model (on its device, in eval mode) and returns a :class:`Compressed`: the model to
measure (a new module or the same one changed in place) and ``info``, what it did (achieved sparsity, ranks kept,
storage implied...). Where it is applied:

- **cost metrics** (complexity, latency, memory...): :func:`harness.zoo.build.build_model` compresses the seeded
  random-weight model right after it is built (``apply`` with ``context.finetune`` False, then ``finish``), so the
  counter and the timer see the real compressed structure;
- **accuracy** with a training (:mod:`harness.metrics.accuracy`): the dense model trains for the first
  ``1 − finetune_fraction`` of the case's schedule (with the method's ``loss_before``, e.g. network slimming's
  L1 on BN scales), is compressed (``apply`` with ``context.finetune`` True: pruning masks and fake-quantization
  stay trainable), fine-tunes for the rest of the same seeded schedule (same images, same order, same total
  steps as the dense twin), then ``finish`` makes it final (masks made permanent, weights re-clustered, QAT
  converted to int8 kernels) before it is scored.

Methods: see each module. ``compress: none`` is the dense twin.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from harness.metrics.train import LossFn


class CompressOptions(BaseModel):
    """Options every method takes (``compress_kwargs``); each method's options subclass it."""

    model_config = ConfigDict(extra="forbid")
    #: the share of the training's steps spent fine-tuning the compressed model (the dense model trains the rest).
    finetune_fraction: float = Field(0.3, ge=0, lt=1)


@dataclass
class CompressContext:
    """What a method may need besides the model: ``example_inputs`` (a batch as the model is fed, fp32, on its
    device), ``calibration`` (a function returning batches of real training images, for observers), ``finetune``
    (True when a fine-tuning follows: keep what must stay trainable until ``finish``) and ``case`` (the case).
    When the model trains (the accuracy metric): ``images`` / ``labels``, the training set as the model is fed, and
    ``train``, a function training a model of the zoo in place by the case's protocol (a distillation's teacher),
    and ``train_key``, text that changes whenever that protocol does (for a cache of what it trains)."""

    example_inputs: torch.Tensor
    calibration: Callable[[], list[torch.Tensor]] | None = None
    finetune: bool = False
    case: Any = None
    images: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    train: Callable[[nn.Module], dict[str, Any]] | None = None
    train_key: str = ""


@dataclass
class Compressed:
    """A compressed model and what the compression did (``info``: ``{name: number or text}``, recorded as JSON in
    ``compress_info_json``; the keys :data:`INFO_COLUMNS` name also get a column of their own)."""

    model: nn.Module
    info: dict[str, Any] = field(default_factory=dict)


#: info keys that become columns of their own: column -> (info key, type).
INFO_COLUMNS: dict[str, tuple[str, str]] = {
    "compress_sparsity": ("sparsity", "float64"),  # share of the prunable weights that are zero (0…1)
    "compress_param_ratio": ("param_ratio", "float64"),  # params after / params before (0…1]
    "compress_storage_bytes": ("storage_bytes", "int64"),  # bytes the method's own encoding needs (weight sharing)
}
#: The store columns a compression's info fills: those of INFO_COLUMNS and the whole info as JSON text.
INFO_COLUMN_TYPES: dict[str, str] = {c: t for c, (_, t) in INFO_COLUMNS.items()} | {"compress_info_json": "string"}
#: The attribute of a model built by :func:`harness.zoo.build.build_model` holding its compression's info.
INFO_ATTRIBUTE = "harness_compress_info"


def info_columns(info: dict[str, Any]) -> dict[str, Any]:
    """Return the store columns of a compression's ``info`` (:data:`INFO_COLUMN_TYPES`; absent keys left out)."""
    out: dict[str, Any] = {c: info[k] for c, (k, _) in INFO_COLUMNS.items() if k in info}
    return out | {"compress_info_json": json.dumps(info, sort_keys=True, default=str)}


@dataclass(frozen=True)
class Method:
    """A compression method: its options model, ``apply`` (model, options, context) -> :class:`Compressed`,
    optional ``finish`` (model, options) -> :class:`Compressed` run after fine-tuning (or right after ``apply`` when
    there is none), optional ``loss_before`` / ``loss_all`` (options, context) -> a :data:`LossFn` used in place of
    cross-entropy before the compression point / for the whole training, and ``requirements``: case fields the
    method needs (field -> value), else the case is skipped."""

    name: str
    options: type[CompressOptions]
    apply: Callable[[nn.Module, Any, CompressContext], Compressed]
    finish: Callable[[nn.Module, Any], Compressed] | None = None
    loss_before: Callable[[Any, CompressContext], LossFn] | None = None
    loss_all: Callable[[Any, CompressContext], LossFn] | None = None
    requirements: dict[str, str] = field(default_factory=dict)
    doc: str = ""


#: method name -> module defining it (imported on first use, so `harness validate` needs no torch-pruning).
METHOD_MODULES: dict[str, str] = {
    "magnitude_prune": "harness.zoo.compress.magnitude_prune",
    "channel_prune": "harness.zoo.compress.channel_prune",
    "slimming": "harness.zoo.compress.slimming",
    "low_rank": "harness.zoo.compress.low_rank",
    "weight_sharing": "harness.zoo.compress.weight_sharing",
    "distill": "harness.zoo.compress.distill",
    "qat_int8": "harness.zoo.compress.qat_int8",
}

METHODS: dict[str, Method] = {}


def register_compression(name: str, options: type[CompressOptions], **hooks: Any) -> Callable:
    """Decorator registering ``apply`` as the compression ``name`` with its ``options`` model and ``hooks``
    (``finish``, ``loss_before``, ``loss_all``, ``requirements``: see :class:`Method`); returns ``apply``."""

    def decorate(apply: Callable[[nn.Module, Any, CompressContext], Compressed]) -> Callable:
        METHODS[name] = Method(name, options, apply, doc=(apply.__doc__ or "").strip(), **hooks)
        return apply

    return decorate


def get_method(name: str) -> Method:
    """Return the registered method ``name`` (importing its module); KeyError for an unknown name."""
    if name not in METHODS:
        importlib.import_module(METHOD_MODULES[name])
    return METHODS[name]


def method_options(name: str, kwargs: dict[str, Any]) -> CompressOptions:
    """Return ``kwargs`` validated by method ``name``'s options model (pydantic ValidationError when invalid)."""
    return get_method(name).options.model_validate(kwargs)


def check_requirements(method: Method, case: Any) -> None:
    """Raise SkipCase when ``case`` does not hold a field value ``method`` requires (``method.requirements``)."""
    from harness.errors import SkipCase

    if case.world_size != 1:
        raise SkipCase(f"compress {method.name} runs in one process; the case has world_size {case.world_size}")
    for name, wanted in method.requirements.items():
        if getattr(case, name) != wanted:
            raise SkipCase(f"compress {method.name} needs {name} {wanted}, the case has {getattr(case, name)}")


def compress_model(model: nn.Module, case: Any, example_inputs: torch.Tensor) -> nn.Module:
    """Return ``model`` (fp32, on the CPU, eval mode) compressed by ``case.compress`` with ``case.compress_kwargs``
    and no training (``apply`` then ``finish``), its info in the attribute :data:`INFO_ATTRIBUTE`. SkipCase when
    the case lacks a field value the method requires."""
    method = get_method(case.compress)
    check_requirements(method, case)
    options = method_options(case.compress, dict(case.compress_kwargs))

    def calibration() -> list[torch.Tensor]:
        from harness.zoo.quantize import calibration_batches

        return calibration_batches(case, model)

    done = method.apply(model, options, CompressContext(example_inputs, calibration, finetune=False, case=case))
    if method.finish is not None:
        finished = method.finish(done.model, options)
        done = Compressed(finished.model, done.info | finished.info)
    setattr(done.model, INFO_ATTRIBUTE, done.info)
    return done.model.eval()


def prunable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Return ``(name, module)`` of every convolution and linear layer of ``model`` (the layers pruning and
    factorisation act on), in module order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))]


def classifier_layer(model: nn.Module) -> nn.Module | None:
    """Return the model's final classifier layer (timm's ``get_classifier()``, else the last linear layer), which
    structured methods leave whole so the number of outputs is unchanged; None when there is none."""
    get = getattr(model, "get_classifier", None)
    head = get() if callable(get) else None
    if isinstance(head, nn.Module) and not isinstance(head, nn.Identity):
        return head
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def count_params(model: nn.Module) -> int:
    """Return the number of parameter elements of ``model`` (pruning masks' ``*_orig`` counted once)."""
    return sum(p.numel() for p in model.parameters())
