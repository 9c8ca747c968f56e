"""The short training of a compressed case before its accuracy is taken: dense training, compression, fine-tuning.

Protocol (the accuracy metric's training, :mod:`harness.metrics.train`, split in two at a fixed step):

- the case's dense twin (``compress: none``, the same seed: the same initial weights as the dense case) is built;
- it trains for the first ``S = round((1 − finetune_fraction) × steps)`` steps of the case's schedule, minimising
  the method's ``loss_before`` (network slimming's L1 on BN scales) or cross-entropy;
- it is compressed (the method's ``apply`` with ``finetune`` True: pruning masks, fake quantization, shared
  codebooks stay trainable), then fine-tuned with cross-entropy for the remaining steps — the same images in the
  same order and the same learning-rate schedule as the dense twin over those steps (SGD momentum starts afresh,
  as the parameters are new);
- the method's ``finish`` makes it final (masks made permanent, QAT converted to int8 kernels).

A method with ``loss_all`` (distillation) changes only the loss: the whole schedule trains with it and nothing is
compressed part-way (``acc_compress_step`` 0). The dense twin trains the same total steps, so a difference in top-1
is the compression's, seed by seed.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch
from torch import nn

from harness.case import Case
from harness.metrics.classifier_training import ClassifierTrainingOptions, train, training_tensors
from harness.metrics.train import cross_entropy, loss_summary, recompute_batch_averages, run_steps
from harness.zoo.compress import (
    CompressContext,
    Compressed,
    check_requirements,
    get_method,
    info_columns,
    method_options,
)

#: Real training images handed to a method's observers (quantization-aware training's calibration): batches × size.
CALIBRATION_BATCHES = 8
CALIBRATION_BATCH_SIZE = 8


def compress_step(steps: int, finetune_fraction: float) -> int:
    """Return the 0-based step at which the model is compressed: the dense training's length in steps."""
    return round((1.0 - finetune_fraction) * steps)


def trained_compressed(inputs: torch.Tensor, case: Case,
                       options: ClassifierTrainingOptions) -> tuple[nn.Module, dict[str, Any]]:
    """Return the compressed ``case``'s model after the protocol above and its columns: ``acc_train_*`` (over both
    phases), ``acc_compress_step`` and the compression's info columns (``compress_*``)."""
    from harness.zoo.build import build_model

    method = get_method(case.compress)
    check_requirements(method, case)
    opts = method_options(case.compress, dict(case.compress_kwargs))
    dense_case = dataclasses.replace(case, compress="none", compress_kwargs=())
    model = build_model(dense_case)
    images, labels = training_tensors(model, inputs, case, options)
    schedule = options.schedule(case.batch, case.world_size, case.seed)
    calibration = [images[i : i + CALIBRATION_BATCH_SIZE]
                   for i in range(0, CALIBRATION_BATCHES * CALIBRATION_BATCH_SIZE, CALIBRATION_BATCH_SIZE)]

    def train_other(other: nn.Module) -> dict[str, Any]:
        return train(other, inputs, dense_case, options)

    context = CompressContext(images[: case.batch], lambda: calibration, finetune=True, case=case,
                              images=images, labels=labels, train=train_other, train_key=options.model_dump_json())
    start = time.perf_counter()
    if method.loss_all is not None:
        split = 0
        losses = run_steps(model, images, labels, schedule, loss_fn=method.loss_all(opts, context))
        done = method.apply(model, opts, context)
    else:
        split = compress_step(schedule.steps, opts.finetune_fraction)
        before = method.loss_before(opts, context) if method.loss_before is not None else cross_entropy
        losses = run_steps(model, images, labels, schedule, range(split), before)
        done = method.apply(model.eval(), opts, context)
        losses += run_steps(done.model, images, labels, schedule, range(split, schedule.steps))
    if method.finish is not None:
        finished = method.finish(done.model, opts)
        done = Compressed(finished.model, done.info | finished.info)
    model = done.model.eval()
    averaged = recompute_batch_averages(model, images, case.batch, options.batch_average_batches)
    trained = {f"acc_{k}": v for k, v in loss_summary(losses, time.perf_counter() - start).items()}
    return model, trained | {"acc_batch_average_batches": averaged, "acc_compress_step": split} | info_columns(
        done.info)
