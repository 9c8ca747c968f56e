"""Short, reproducible training of a detector on a small COCO-format dataset, before its AP is taken.

Protocol (the detection metric records every setting):

- **Data**: the images and non-crowd boxes of the training split (:class:`harness.data.coco.CocoDetection`),
  held in memory as uint8; no augmentation. Each step pre-processes its images with the detector's own
  :meth:`~harness.zoo.detectors.base.Detector.preprocess` and scales the boxes the same way.
- **Schedule**: :class:`harness.metrics.train.Schedule` — a fixed number of images seen whatever the batch size,
  the learning rate scaled by global batch / ``lr_reference_batch`` with linear warm-up and cosine decay,
  seeded per-epoch permutations (:func:`harness.metrics.train.batch_indices`).
- **Step**: forward in training mode, the detector's :meth:`~harness.zoo.detectors.base.Detector.loss`
  (the sum of its terms), backward, gradient norm clipped to ``clip_grad_norm``, then Adam (as CenterNet and
  CornerNet train) or SGD with momentum; weight decay on every parameter.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from harness.data.targets import Target
from harness.distributed import for_training
from harness.metrics.train import Schedule, batch_indices, loss_summary
from harness.zoo.detectors.base import Detector

#: Optimisers by name: (parameters, schedule) -> optimiser.
OPTIMIZERS: dict[str, Callable[[Any, Schedule], torch.optim.Optimizer]] = {
    "adam": lambda params, s: torch.optim.AdamW(params, lr=s.lr_at(0), weight_decay=s.weight_decay),
    "sgd": lambda params, s: torch.optim.SGD(params, lr=s.lr_at(0), momentum=s.momentum,
                                             weight_decay=s.weight_decay),
}


def train_detector(model: Detector, images: Sequence[torch.Tensor], targets: Sequence[Target], schedule: Schedule,
                   optimizer: str = "adam", clip_grad_norm: float = 10.0) -> dict[str, float | int]:
    """Train ``model`` in place on ``images`` (uint8 (3, H, W) each) and their ``targets`` (boxes in the
    images' pixels); return ``train_steps``, ``train_loss_first`` / ``train_loss_last`` (mean summed loss of
    the first / last tenth of the steps) and ``train_s`` (seconds). The model is left in eval mode."""
    params = [p for p in model.parameters() if p.requires_grad]
    optim = OPTIMIZERS[optimizer](params, schedule)
    trained = for_training(model)
    device = next(model.parameters()).device
    model.train()
    losses: list[float] = []
    start = time.perf_counter()
    try:
        for step, index in enumerate(batch_indices(len(images), schedule)):
            for group in optim.param_groups:
                group["lr"] = schedule.lr_at(step)
            chosen = index.tolist()
            batch, metas = model.preprocess([images[i] for i in chosen])
            moved = [Target(targets[i].boxes.to(device), targets[i].labels.to(device)) for i in chosen]
            terms = model.loss(trained(batch), model.targets_to_input(moved, metas))
            loss = sum(terms.values())
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, clip_grad_norm)
            optim.step()
            losses.append(float(loss.detach()))
    finally:
        model.eval()
    return loss_summary(losses, time.perf_counter() - start)
