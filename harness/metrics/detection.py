"""Detectors measured the same way: split timing on real images and COCO box AP.

Protocol (recorded with every result):

- **Data**: ``dataset`` is a COCO-format dataset the harness writes (``digit_boxes``: real scanned digits
  pasted on canvases, :mod:`harness.data.digit_boxes`) or, with ``images`` and ``annotations``, an image
  folder and its COCO instances json (e.g. COCO val2017). Images are taken in ascending image id order.
- **Split timing**: the first ``timing_images`` images of ``split``, cycled into batches of the case's
  ``batch``; one sample times a whole batch in three phases with the latency module's clock (CUDA events on
  a GPU): **pre-processing** (:meth:`Detector.preprocess`: resize keeping the aspect ratio to the case's
  ``resolution``, pad, normalise), **network** (``forward``), **post-processing** (decode + the case's
  ``postprocess`` suppression + mapping back to the image); warm-up and the adaptive number of samples follow
  :mod:`harness.metrics.latency` (options under ``latency``). The content of the images matters:
  suppression time grows with the candidates a detector finds, so timings are only comparable on the same
  images. ``det_fps`` = batch ÷ median total seconds (images per second; 1 / total at batch 1).
- **Accuracy**: the first ``limit`` images of ``split`` are detected (batches of ``batch_size``) and scored
  by COCOeval (``evaluator``: faster-coco-eval, or pycocotools, the reference) against the annotations of
  exactly those images: AP@[.5:.95], AP50, AP75, AP small / medium / large, AR@1/10/100 and AR by area, as
  fractions 0…1 (−1 where no object of that area exists); ``limit: 0`` skips scoring (random weights score
  nothing worth recording). The suppression's ``score_threshold`` and
  ``max_detections`` are recorded (and may be overridden here; COCO's protocol uses 100 detections).
- **Training** (``train_images`` > 0): before timing and scoring, the detector is trained from its seeded
  random (or loaded) weights on ``train_split`` by :mod:`harness.metrics.train_detector`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from harness.case import Case
from harness.errors import HarnessError, SkipCase
from harness.metrics import latency as latency_metric
from harness.metrics.coco import STAT_NAMES, detections_to_coco, evaluate
from harness.metrics.latency import Options as LatencyOptions
from harness.metrics.train import TrainingOptions

NAME = "detection"
#: Its values depend on the case's seed (weights, training order): a suite's `repeats` takes it at every seed.
SEEDED = True


class Options(TrainingOptions):
    """Options of the detection protocol (and of the training before it); every one is recorded with the result."""

    dataset: str = "digit_boxes"
    images: str | None = None
    annotations: str | None = None
    split: str = "val"
    limit: int = Field(200, ge=0)
    batch_size: int = Field(8, ge=1)
    timing_images: int = Field(16, ge=1)
    evaluator: Literal["faster", "pycocotools"] = "faster"
    score_threshold: float | None = Field(None, ge=0)
    iou_threshold: float | None = Field(None, gt=0, le=1)
    max_detections: int | None = Field(None, ge=1)
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    lr_reference_batch: int = Field(16, ge=1)
    clip_grad_norm: float = Field(10.0, gt=0)
    latency: LatencyOptions = Field(default_factory=lambda: LatencyOptions(min_time_s=0.5, max_time_s=5.0))


#: COCO stat name -> column.
STAT_COLUMNS: dict[str, str] = {name: f"acc_{name.lower()}" for name in STAT_NAMES}

COLUMNS: dict[str, str] = {
    "det_pre_ms_median": "float64",
    "det_network_ms_median": "float64",
    "det_post_ms_median": "float64",
    "det_total_ms_median": "float64",
    "det_total_ms_iqr": "float64",
    "det_total_ms_samples": "list<float64>",
    "det_fps": "float64",
    "det_detections_per_image": "float64",
    "det_timing_images": "int64",
    "det_postprocess": "string",
    "det_score_threshold": "float64",
    "det_iou_threshold": "float64",
    "det_max_detections": "int64",
    "det_method": "string",
    "det_backbone": "string",
    **{column: "float64" for column in STAT_COLUMNS.values()},
    "det_images": "int64",
    "det_dataset": "string",
    "det_evaluator": "string",
    "det_train_steps": "int64",
    "det_train_loss_first": "float64",
    "det_train_loss_last": "float64",
    "det_train_s": "float64",
}


def dataset_paths(options: Options, split: str) -> tuple[Path, Path]:
    """Return ``(images_dir, annotation_file)`` of ``split``: the ``images``/``annotations`` options when given
    (the same folder for every split), else the named ``dataset`` (written when missing)."""
    from harness.data.coco import DATASETS

    if options.images or options.annotations:
        if not (options.images and options.annotations):
            raise HarnessError("detection: give both `images` (a folder) and `annotations` (a COCO json), or neither")
        return Path(options.images).expanduser(), Path(options.annotations).expanduser()
    if options.dataset not in DATASETS:
        raise HarnessError(f"detection: unknown dataset {options.dataset!r}; known: {', '.join(DATASETS)} "
                           "(or give `images` and `annotations`)")
    return DATASETS[options.dataset](split)


def _detector(model: torch.nn.Module, case: Case) -> Any:
    from harness.zoo.detectors import Detector

    if not isinstance(model, Detector):
        wrapped = "quantized, autocast or compiled " if case.quant != "none" or case.precision == "autocast" or \
            case.compile != "none" else ""
        raise SkipCase(f"metric detection needs a detector; {case.model!r} is a {wrapped}{type(model).__name__}")
    if case.world_size > 1:
        raise SkipCase("metric detection runs in one process (world_size 1)")
    return model


def paper_names(case: Case, detector: Any) -> dict[str, str]:
    """Return ``det_method`` and ``det_backbone``: the registered detector's names as papers print them (the
    class name and the ``backbone`` model kwarg for others); a ``backbone`` model kwarg names the backbone."""
    from harness.zoo.detectors import PAPER_NAMES

    method, backbone = PAPER_NAMES.get(case.model, (type(detector).__name__, ""))
    return {"det_method": method, "det_backbone": str(dict(case.model_kwargs).get("backbone", backbone))}


def _loaded(dataset: Any, count: int) -> tuple[list[torch.Tensor], list[Any]]:
    items = [dataset[i] for i in range(min(count, len(dataset)))]
    return [image for image, _ in items], [target for _, target in items]


def train(model: Any, case: Case, options: Options) -> dict[str, Any]:
    """Train the detector in place on the training split; return the ``det_train_*`` columns."""
    from harness.data.coco import CocoDetection
    from harness.metrics.train_detector import train_detector

    dataset = CocoDetection(*dataset_paths(options, options.train_split))
    images, targets = _loaded(dataset, len(dataset))
    schedule = options.schedule(case.batch, case.world_size, case.seed)
    done = train_detector(model, images, targets, schedule, options.optimizer, options.clip_grad_norm)
    return {f"det_{k}": v for k, v in done.items()}


def time_phases(model: Any, images: list[torch.Tensor], case: Case, options: Options) -> dict[str, Any]:
    """Return the split timing of batches of ``images`` (pre, network, post, total medians in ms per batch, the
    total's samples and IQR, images per second) and the mean detections per image."""
    batch = [images[i % len(images)] for i in range(case.batch)]
    clock = latency_metric.PhaseClock(case.device)
    phases: list[list[float]] = []
    found: list[int] = []

    def sample() -> float:
        with torch.inference_mode():
            clock.mark()
            x, metas = model.preprocess(batch)
            clock.mark()
            raw = model(x)
            clock.mark()
            detections = model.postprocess(raw, metas)
            clock.mark()
        phases.append(clock.phases_ms())
        found.append(sum(len(d) for d in detections))
        return sum(phases[-1])

    latency_metric.warm_up(sample, lambda fn, _calls: fn(), options.latency)
    phases.clear()
    samples, _, _ = latency_metric.adaptive_samples(sample, options.latency)
    pre, network, post = np.median(np.asarray(phases), axis=0)
    totals = np.asarray(samples)
    q1, q3 = np.percentile(totals, [25, 75])
    median = float(np.median(totals))
    return {"det_pre_ms_median": float(pre), "det_network_ms_median": float(network),
            "det_post_ms_median": float(post), "det_total_ms_median": median, "det_total_ms_iqr": float(q3 - q1),
            "det_total_ms_samples": samples, "det_fps": case.batch / (median / 1e3),
            "det_detections_per_image": float(np.mean(found)) / case.batch}


def score(model: Any, dataset: Any, options: Options) -> dict[str, Any]:
    """Return the COCO stats (``acc_*`` fractions) of the model's detections on the first ``limit`` images,
    scored against the annotations of exactly those images, and how many images were scored."""
    count = min(options.limit, len(dataset))
    results: list[dict[str, Any]] = []
    for start in range(0, count, options.batch_size):
        chosen = range(start, min(count, start + options.batch_size))
        images = [dataset[i][0] for i in chosen]
        for i, found in zip(chosen, model.detect(images), strict=True):
            results += detections_to_coco(dataset.image_ids[i], found.boxes.float().cpu(), found.scores.float().cpu(),
                                          found.labels.cpu(), dataset.category_ids)
    instances = dataset.instances
    scored = set(dataset.image_ids[:count])
    subset = instances | {"images": [im for im in instances["images"] if im["id"] in scored],
                          "annotations": [a for a in instances["annotations"] if a["image_id"] in scored]}
    stats = evaluate(subset, results, options.evaluator)
    return {STAT_COLUMNS[name]: value for name, value in stats.items()} | {"det_images": count}


def measure(model: torch.nn.Module, inputs: torch.Tensor, case: Case, options: Options) -> dict[str, Any]:
    """Return split timing (ms per batch, images per second), detections per image, COCO AP/AR (fractions
    0…1) and the post-processing protocol, after the short training when ``train_images`` > 0."""
    from harness.data.coco import CocoDetection

    detector = _detector(model, case)
    overrides = {"score_threshold": options.score_threshold, "iou_threshold": options.iou_threshold,
                 "max_detections": options.max_detections}
    detector.suppression = replace(detector.suppression, **{k: v for k, v in overrides.items() if v is not None})
    trained = train(detector, case, options) if options.train_images else {"det_train_steps": 0}
    images_dir, annotation_file = dataset_paths(options, options.split)
    dataset = CocoDetection(images_dir, annotation_file)
    timing_images, _ = _loaded(dataset, options.timing_images)
    out = time_phases(detector, timing_images, case, options)
    if options.limit:
        out |= score(detector, dataset, options)
    suppression = detector.suppression
    return out | trained | {
        "det_timing_images": len(timing_images),
        "det_postprocess": suppression.method,
        "det_score_threshold": suppression.score_threshold,
        "det_iou_threshold": suppression.iou_threshold,
        "det_max_detections": suppression.max_detections,
        **paper_names(case, detector),
        "det_dataset": options.dataset if not options.annotations else str(annotation_file),
        "det_evaluator": options.evaluator,
    }
