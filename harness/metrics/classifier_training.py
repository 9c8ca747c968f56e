"""The accuracy metric's training of a classifier (:mod:`harness.metrics.accuracy`): its data, options and the runs
of :mod:`harness.metrics.train`'s schedule for a plain case and an int8 one (its fp32 twin trained, then quantized);
:mod:`harness.metrics.train_compressed` trains a compressed case with the same data."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from pydantic import Field

from harness.case import Case
from harness.data.digits import digits_root
from harness.data.imagefolder import image_folder_loader
from harness.errors import HarnessError
from harness.metrics.train import TrainingOptions, load_tensors, recompute_batch_averages, train_classifier

#: Datasets known by name (name -> function returning its root folder); any other name is a path.
DATASETS: dict[str, Callable[[], Path]] = {"digits": digits_root}


class ClassifierTrainingOptions(TrainingOptions):
    """The training options of a classifier metric: its image folder dataset (a name of ``DATASETS`` or a path),
    loader batch size, and the batches over which BatchNorm's running averages are recomputed after training."""

    dataset: str = "digits"
    batch_size: int = Field(64, ge=1)
    batch_average_batches: int = Field(50, ge=1)


def dataset_root(dataset: str) -> Path:
    """Return the root folder of ``dataset``: a name of ``DATASETS`` (written if needed) or a path."""
    find = DATASETS.get(dataset)
    return find() if find is not None else Path(dataset).expanduser()


def case_memory_format(case: Case) -> torch.memory_format:
    """Return the memory format of the case's input tensors (channels-last when the case says so)."""
    return torch.channels_last if case.channels_last else torch.contiguous_format


def training_tensors(model: torch.nn.Module, inputs: torch.Tensor, case: Case,
                     options: ClassifierTrainingOptions) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the training split's images (preprocessed for ``model`` at the case's resolution, on the device, in
    the dtype and memory format of ``inputs``) and labels, in order."""
    loader = image_folder_loader(dataset_root(options.dataset) / options.train_split, model, case.resolution,
                                 case.channels, batch_size=options.batch_size)
    images, labels = load_tensors(loader)
    images = images.to(device=inputs.device, dtype=inputs.dtype, memory_format=case_memory_format(case))
    return images, labels.to(inputs.device)


def train(model: torch.nn.Module, inputs: torch.Tensor, case: Case,
          options: ClassifierTrainingOptions) -> dict[str, Any]:
    """Train ``model`` in place on the training split (see module doc); return the ``acc_train_*`` columns."""
    if case.quant != "none":
        raise HarnessError("accuracy: an int8-quantized model cannot train; train its fp32 twin (trained_int8)")
    images, labels = training_tensors(model, inputs, case, options)
    schedule = options.schedule(case.batch, case.world_size, case.seed)
    done = train_classifier(model, images, labels, schedule)
    averaged = recompute_batch_averages(model, images, case.batch, options.batch_average_batches)
    return {f"acc_{k}": v for k, v in done.items()} | {"acc_batch_average_batches": averaged}


def trained_int8(inputs: torch.Tensor, case: Case,
                 options: ClassifierTrainingOptions) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Return the int8 model of an int8 ``case`` after training: its fp32 twin (``quant: none``, same seed: the
    same initial weights and data order as the fp32 case) built, trained and then quantized, calibrated on real
    images; and the ``acc_train_*`` columns of that training."""
    from harness.zoo.build import build_model
    from harness.zoo.quantize import calibration_batches, quantize_int8

    twin = dataclasses.replace(case, quant="none")
    model = build_model(twin)
    trained = train(model, inputs, twin, options)
    return quantize_int8(model, calibration_batches(case, model)), trained
