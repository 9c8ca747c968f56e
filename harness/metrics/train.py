"""Short, reproducible training of a classifier on a small image folder, before its accuracy is taken.

Protocol (the accuracy metric records every setting):

- **Data**: the ``train`` split of the image folder, preprocessed once with the model's evaluation
  transform (no augmentation) and held in memory, so this is for small datasets (the digits: 1 438 images).
- **Schedule**: a fixed number of images, ``train_images``, whatever the batch size, so every batch size
  sees the same data; steps = ``train_images`` // global batch (global batch = per-process ``batch`` ×
  ``world_size``). SGD with momentum and weight decay (on every parameter); the learning rate follows the
  linear scaling rule (Goyal et al. 2017), ``lr × global batch / lr_reference_batch``, with a linear
  warm-up over the first ``warmup_fraction`` of the steps and a cosine decay to zero after it.
- **Order**: each epoch is a permutation drawn from a generator seeded with ``seed + epoch``; global batch
  ``s`` of an epoch is images ``[s·B, (s+1)·B)`` of it (a partial last batch is dropped) and process ``r``
  of a group takes the ``r``-th slice of ``batch`` of them; weights are seeded by the model build.
- **Switchable Norm** layers with ``moving_average=False`` get their batch-average statistics recomputed
  over ``batch_average_batches`` training batches after the last step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.utils.data import DataLoader

from harness.distributed import for_training, rank


@dataclass(frozen=True)
class Schedule:
    """A training schedule: images to see, global and per-process batch, optimiser settings, seed."""

    images: int
    batch: int
    world_size: int = 1
    lr: float = 0.1
    lr_reference_batch: int = 32
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.1
    seed: int = 0

    @property
    def global_batch(self) -> int:
        """Return the images per step over all processes."""
        return self.batch * self.world_size

    @property
    def steps(self) -> int:
        """Return the number of optimiser steps: images // global batch (at least 1)."""
        return max(1, self.images // self.global_batch)

    @property
    def peak_lr(self) -> float:
        """Return the learning rate after warm-up: lr scaled linearly by global batch / reference batch."""
        return self.lr * self.global_batch / self.lr_reference_batch

    def lr_at(self, step: int) -> float:
        """Return the learning rate of 0-based ``step``: linear warm-up, then cosine decay to zero."""
        warmup = int(self.warmup_fraction * self.steps)
        if step < warmup:
            return self.peak_lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, self.steps - warmup)
        return self.peak_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


class TrainingOptions(BaseModel):
    """The options of a short training before a metric scores a model (``train_images`` 0: no training);
    metrics that train subclass it, changing defaults where their models train otherwise."""

    model_config = ConfigDict(extra="forbid")
    train_images: int = Field(0, ge=0)
    train_split: str = "train"
    lr: float = Field(0.1, gt=0)
    lr_reference_batch: int = Field(32, ge=1)
    momentum: float = Field(0.9, ge=0)
    weight_decay: float = Field(1e-4, ge=0)
    warmup_fraction: float = Field(0.1, ge=0, lt=1)

    def schedule(self, batch: int, world_size: int, seed: int = 0) -> Schedule:
        """Return the schedule of these options for ``batch`` images per process in a group of ``world_size``,
        its data order drawn from ``seed`` (the case's)."""
        return Schedule(images=self.train_images, batch=batch, world_size=world_size, lr=self.lr,
                        lr_reference_batch=self.lr_reference_batch, momentum=self.momentum,
                        weight_decay=self.weight_decay, warmup_fraction=self.warmup_fraction, seed=seed)


def load_tensors(loader: DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
    """Return all images ``[n, C, H, W]`` (float32) and labels ``[n]`` (int64) of ``loader``, in order."""
    images, labels = zip(*loader, strict=True)
    return torch.cat(images), torch.cat(labels)


def batch_indices(n: int, schedule: Schedule, steps: range | None = None) -> Iterator[torch.Tensor]:
    """Yield this process's image indices for each step of ``steps`` (default: all the schedule's steps), the
    same indices whatever range is asked (see the module doc)."""
    per_epoch = n // schedule.global_batch
    if per_epoch == 0:
        raise ValueError(f"the training split has {n} images, fewer than one global batch ({schedule.global_batch})")
    steps = range(schedule.steps) if steps is None else steps
    lo = rank() * schedule.batch
    for step in steps:
        epoch, index = divmod(step, per_epoch)
        if index == 0 or step == steps.start:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(schedule.seed + epoch))
        start = index * schedule.global_batch
        yield order[start + lo : start + lo + schedule.batch]


#: A training loss: (model outputs [batch, classes], labels [batch], the batch's indices in the training set, the
#: model) -> scalar. The default is cross-entropy; a compression method may add to it (harness.zoo.compress).
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, nn.Module], torch.Tensor]


def cross_entropy(outputs: torch.Tensor, labels: torch.Tensor, _indices: torch.Tensor, _model: nn.Module
                  ) -> torch.Tensor:
    """Return the mean cross-entropy of ``outputs`` [batch, classes] against ``labels`` (the default LossFn)."""
    return F.cross_entropy(outputs.float(), labels)


def run_steps(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, schedule: Schedule,
              steps: range | None = None, loss_fn: LossFn = cross_entropy) -> list[float]:
    """Train ``model`` in place over ``steps`` of ``schedule`` (default: all of them; each step its own images and
    learning rate, so a training split in two ranges is the same training), minimising ``loss_fn`` with SGD on
    the model's parameters (momentum starts afresh); return each step's loss. The model is left in eval mode."""
    optimizer = torch.optim.SGD(
        model.parameters(), lr=schedule.lr_at(0), momentum=schedule.momentum, weight_decay=schedule.weight_decay
    )
    steps = range(schedule.steps) if steps is None else steps
    trained = for_training(model)
    model.train()
    losses: list[float] = []
    for step, index in zip(steps, batch_indices(len(images), schedule, steps), strict=True):
        for group in optimizer.param_groups:
            group["lr"] = schedule.lr_at(step)
        loss = loss_fn(trained(images[index]), labels[index], index, model)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


def train_classifier(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, schedule: Schedule
) -> dict[str, float | int]:
    """Train ``model`` in place (cross-entropy, SGD) on ``images``/``labels`` (already on its device, in its
    dtype); return ``train_steps``, ``train_loss_first`` / ``train_loss_last`` (mean cross-entropy of the
    first / last tenth of the steps) and ``train_s`` (seconds). The model is left in eval mode."""
    start = time.perf_counter()
    losses = run_steps(model, images, labels, schedule)
    return loss_summary(losses, time.perf_counter() - start)


def loss_summary(losses: list[float], seconds: float) -> dict[str, float | int]:
    """Return ``train_steps``, ``train_loss_first`` / ``train_loss_last`` (mean loss of the first / last tenth
    of the steps) and ``train_s`` (seconds) of a training whose step losses were ``losses``."""
    tenth = max(1, len(losses) // 10)
    return {
        "train_steps": len(losses),
        "train_loss_first": sum(losses[:tenth]) / tenth,
        "train_loss_last": sum(losses[-tenth:]) / tenth,
        "train_s": seconds,
    }


def recompute_batch_averages(model: nn.Module, images: torch.Tensor, batch: int, batches: int) -> int:
    """Recompute the batch-average statistics of the model's Switchable Norm layers (those with
    ``moving_average=False``) over the first ``batches`` batches of ``images``; return the batches used
    (0 when the model has no such layer)."""
    from harness.zoo.norms import SwitchableNorm2d, recompute_batch_average

    if not any(isinstance(m, SwitchableNorm2d) and not m.moving_average for m in model.modules()):
        return 0
    chunks = [images[i : i + batch] for i in range(0, min(len(images), batches * batch), batch)]
    return recompute_batch_average(model, [c for c in chunks if len(c) == batch])
