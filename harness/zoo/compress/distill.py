"""Knowledge distillation (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network").

The student (the case's model) trains on the whole schedule with

    loss = α · T² · KL(softmax(z_t / T) ‖ softmax(z_s / T)) + (1 − α) · cross-entropy(z_s, labels)

where ``z_t`` are the teacher's logits for the same images, ``T`` the ``temperature`` and ``α`` the weight of the
soft targets (T² keeps the soft term's gradients at the scale of the hard term's as T changes, the paper's §2). At
α = 0 the loss is plain cross-entropy: the student trained without a teacher, which is the dense case itself.

The teacher is ``teacher``, a model of the zoo, built with the student's ``model_kwargs`` (its number of classes) at
the student's seed and trained first by the same protocol on the same images (``CompressContext.train``); it sees
the images preprocessed for the student. Its logits over the training split are computed once, in eval mode, and
cached on disk by the teacher case's id and the training protocol (``$HARNESS_DATA_DIR/teachers``, default
``~/.cache/harness/teachers``), so every student of a suite trained against that teacher reuses them.

Nothing about the student's structure changes: its cost metrics are the dense model's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from harness.data.digits import data_home
from harness.errors import HarnessError
from harness.metrics.train import LossFn
from harness.zoo.compress import CompressContext, Compressed, CompressOptions, register_compression

#: Images per forward pass when the teacher's logits are computed.
TEACHER_BATCH = 64


class Options(CompressOptions):
    """Distillation options: the teacher model, the softmax ``temperature`` and ``alpha``, the soft targets'
    weight (0 = no teacher)."""

    teacher: str = Field("resnet50", min_length=1)
    temperature: float = Field(4.0, gt=0)
    alpha: float = Field(0.9, ge=0, le=1)

    @field_validator("teacher")
    @classmethod
    def _known_teacher(cls, name: str) -> str:
        from harness.zoo import is_known_model

        if not is_known_model(name):
            raise ValueError(f"unknown teacher model {name!r}; expected a name from `harness list models`")
        return name


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, temperature: float,
                      alpha: float) -> torch.Tensor:
    """Return α·T²·KL(teacher soft targets ‖ student) + (1 − α)·cross-entropy (a scalar; both logits [batch,
    classes])."""
    hard = F.cross_entropy(student.float(), labels)
    if alpha == 0:
        return hard
    soft = F.kl_div(F.log_softmax(student.float() / temperature, dim=1),
                    F.log_softmax(teacher.float() / temperature, dim=1), reduction="batchmean", log_target=True)
    return alpha * temperature**2 * soft + (1 - alpha) * hard


def teacher_cache_dir() -> Path:
    """Return the folder of cached teacher logits: ``$HARNESS_DATA_DIR/teachers`` (``~/.cache/harness/teachers``)."""
    return data_home() / "teachers"


def teacher_logits(options: Options, context: CompressContext) -> torch.Tensor:
    """Return the trained teacher's logits [images, classes] (fp32, on the images' device) over ``context.images``,
    from the disk cache when this teacher case and protocol were trained before."""
    from harness.zoo.build import build_model

    if context.images is None or context.train is None or context.case is None:
        raise HarnessError("distill needs the training images and protocol: it applies to a training (accuracy "
                           "with train_images > 0)")
    teacher_case = dataclasses.replace(context.case, model=options.teacher, compress="none", compress_kwargs=())
    key = hashlib.sha256(f"{teacher_case.case_id}|{context.train_key}|{tuple(context.images.shape)}".encode())
    path = teacher_cache_dir() / f"{key.hexdigest()[:24]}.pt"
    if path.exists():
        return torch.load(path, map_location=context.images.device)
    teacher = build_model(teacher_case)
    context.train(teacher)
    with torch.inference_mode():
        logits = torch.cat([teacher(context.images[i : i + TEACHER_BATCH]).float()
                            for i in range(0, len(context.images), TEACHER_BATCH)])
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(logits.cpu(), temporary)
    os.replace(temporary, path)
    return logits


def loss_all(options: Options, context: CompressContext) -> LossFn:
    """Return the distillation loss for the whole training (the teacher trained, or read from the cache, first)."""
    logits = teacher_logits(options, context) if options.alpha > 0 else None

    def loss(outputs: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor, _model: nn.Module) -> torch.Tensor:
        teacher = logits[indices] if logits is not None else outputs.detach()
        return distillation_loss(outputs, teacher, labels, options.temperature, options.alpha)

    return loss


@register_compression("distill", Options, loss_all=loss_all)
def apply(model: nn.Module, options: Options, _context: CompressContext) -> Compressed:
    """Distillation changes the training only: return ``model`` as it is, with the teacher and settings as info."""
    info: dict[str, Any] = {"teacher": options.teacher, "temperature": options.temperature, "alpha": options.alpha}
    return Compressed(model, info)
