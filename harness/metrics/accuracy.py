"""Classification accuracy (top-1, top-5) on a labelled image folder, by default the digits test split.

Protocol (recorded with every result):

- **Data**: ``dataset`` is ``digits`` (the scikit-learn handwritten digits, written once as an image
  folder: :mod:`harness.data.digits`) or the path of an image folder whose ``<split>`` folder holds one
  folder per class. Labels are class indices in the sorted order of the class folders' names, so output
  ``i`` of the model is read as the ``i``-th class. At most ``limit`` images are taken, evenly spaced over
  the class-sorted split (every class represented), in a fixed order.
- **Preprocessing**: the model's timm evaluation transform at the case's resolution and channels
  (:mod:`harness.data.imagefolder`); batches of ``batch_size`` are put on the device, in the dtype, of
  the case's inputs (fp32 for an int8-quantized model, which quantizes its input itself), in
  channels-last memory format when the case says so.
- **Scoring**: forward under ``torch.inference_mode``; an image counts for top-k when its label is among
  the k largest of all the model's outputs (k capped at the number of outputs). The model must return a
  ``[batch, outputs]`` tensor with at least as many outputs as the dataset has classes.

- **Training** (``train_images`` > 0): before it is scored, the model is trained from its seeded random
  (or loaded) weights on the ``train_split`` of the same folder, ``batch`` images per process per step,
  by the protocol of :mod:`harness.metrics.train` (fixed images seen, SGD, linear-scaled learning rate with
  warm-up and cosine decay, fixed seed); in a torch.distributed group every process trains on its slice
  of each global batch through DistributedDataParallel (so ``syncbn`` layers see the global batch).
  An ``int8`` case trains its fp32 twin (the same case at ``quant: none`` and the same seed, so the very weights
  the fp32 case reaches), then quantizes that trained model (calibrated as any int8 case,
  :mod:`harness.zoo.quantize`) and scores it: post-training quantization of a trained model, whose accuracy is
  comparable seed by seed with the fp32 case's.
  A compressed case (``compress`` not ``none``) trains its dense twin's weights (the same seed) and is compressed
  part-way through the same schedule, then fine-tuned for the rest (:mod:`harness.metrics.train_compressed`), so it is
  comparable seed by seed with the dense case's; its ``compress_*`` columns describe the trained compression.

``acc_top1`` / ``acc_top5``: fraction of the images (0…1); ``acc_images``: images scored;
``acc_dataset``: ``<dataset>/<split>``; ``acc_train_*``: what the training did (0 steps = not trained).
A randomly initialised model scores near chance (1 / classes).
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from harness.case import Case
from harness.data.imagefolder import image_folder_loader
from harness.errors import HarnessError
from harness.metrics.classifier_training import (
    ClassifierTrainingOptions,
    case_memory_format,
    dataset_root,
    train,
    trained_int8,
)
from harness.zoo.compress import INFO_COLUMN_TYPES

NAME = "accuracy"
#: Its values depend on the case's seed (weights, training order): a suite's `repeats` takes it at every seed.
SEEDED = True
TOP_K = (1, 5)


class Options(ClassifierTrainingOptions):
    """Options of the accuracy protocol (and of the training before it); every one is recorded with the result."""

    split: str = "test"
    limit: int = Field(512, ge=1)


COLUMNS: dict[str, str] = {
    "acc_top1": "float64",
    "acc_top5": "float64",
    "acc_images": "int64",
    "acc_dataset": "string",
    "acc_train_steps": "int64",
    "acc_train_loss_first": "float64",
    "acc_train_loss_last": "float64",
    "acc_train_s": "float64",
    "acc_batch_average_batches": "int64",
    "acc_compress_step": "int64",
} | INFO_COLUMN_TYPES


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> int:
    """Return how many rows of ``logits`` [batch, outputs] have their label among their k largest values."""
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return int((top == labels.unsqueeze(1)).any(dim=1).sum())


def _check_logits(logits: Any, classes: int) -> torch.Tensor:
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise HarnessError(f"accuracy needs a model returning logits [batch, outputs]; it returned {shape}")
    if logits.shape[1] < classes:
        raise HarnessError(f"accuracy: the model has {logits.shape[1]} outputs, the dataset {classes} classes")
    return logits.float()


def measure(model: torch.nn.Module, inputs: torch.Tensor, case: Case, options: Options) -> dict[str, Any]:
    """Return top-1 and top-5 accuracy (fractions, 0…1), the number of images and the dataset/split, after
    the short training when ``train_images`` > 0."""
    if options.train_images and case.compress != "none":
        from harness.metrics.train_compressed import trained_compressed

        model, trained = trained_compressed(inputs, case, options)
    elif options.train_images and case.quant != "none":
        model, trained = trained_int8(inputs, case, options)
    elif options.train_images:
        trained = train(model, inputs, case, options)
    else:
        trained = {"acc_train_steps": 0}
    loader = image_folder_loader(
        dataset_root(options.dataset) / options.split,
        model,
        case.resolution,
        case.channels,
        batch_size=options.batch_size,
        limit=options.limit,
    )
    classes = len(loader.dataset.dataset.classes)
    memory_format = case_memory_format(case)
    correct = dict.fromkeys(TOP_K, 0)
    images = 0
    with torch.inference_mode():
        for batch, labels in loader:
            x = batch.to(device=inputs.device, dtype=inputs.dtype, memory_format=memory_format)
            logits = _check_logits(model(x), classes)
            labels = labels.to(logits.device)
            for k in TOP_K:
                correct[k] += topk_correct(logits, labels, k)
            images += len(labels)
    return {
        "acc_top1": correct[1] / images,
        "acc_top5": correct[5] / images,
        "acc_images": images,
        "acc_dataset": f"{options.dataset}/{options.split}",
    } | trained
