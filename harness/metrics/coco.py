"""COCO box evaluation as a library: read COCO json with clear errors, turn detections into COCO results, and
compute COCOeval's 12 summary stats. Not a metric family: the detection metric and ``harness coco-eval`` use it.

- **Protocol**: COCOeval with ``iouType="bbox"`` and its default parameters (IoU thresholds 0.50:0.05:0.95,
  101 recall points, maxDets 1, 10, 100, areas in px² all / small < 32² / medium < 96² / large ≥ 96²):
  ``evaluate()``, ``accumulate()``, ``summarize()``, then its ``stats`` in the order of :data:`STAT_NAMES`.
- **Evaluators** (:data:`EVALUATORS`): ``faster`` (faster-coco-eval, the default: the same numbers within 2e-16
  on the cocoapi golden set, in 0.14 s instead of 0.9 s) and ``pycocotools`` (the reference implementation).
  Their console output (pycocotools prints its progress and summary to stdout) is swallowed; faster-coco-eval
  logs through ``logging`` at DEBUG/INFO level only.
- **Values**: AP and AR are fractions 0…1; a stat is −1 where the annotations hold no (non-crowd) object in
  its area range. With no detections at all every stat is 0 where there are objects and −1 where there are
  none (both evaluators; pycocotools' ``loadRes`` crashes on an empty list, so this module builds the empty
  results itself).
- **Checks**: the annotations and detections are read and checked by :mod:`harness.data.coco_json`
  (HarnessError naming the file and the first bad entry), which normalises their ids (``1.0`` is ``1``).
- **Ids**: both evaluators get the same inputs from :func:`evaluation_inputs`: image and category ids replaced by
  their rank 1…N in sorted order (COCOeval's own order, so the numbers are those of pycocotools run on the file;
  faster-coco-eval takes integer ids only), annotation ids by 1…N in file order (COCOeval marks a matched
  detection with its annotation's id, 0 meaning unmatched: pycocotools run directly miscounts an annotation with
  id 0).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.data.coco_json import read_detections, read_instances
from harness.errors import HarnessError

#: COCOeval's summary stats in ``stats`` order: name -> (precision or recall, IoU, area range, maxDets).
STATS: dict[str, tuple[str, str, str, int]] = {
    "AP": ("AP", "0.50:0.95", "all", 100),
    "AP50": ("AP", "0.50", "all", 100),
    "AP75": ("AP", "0.75", "all", 100),
    "APs": ("AP", "0.50:0.95", "small", 100),
    "APm": ("AP", "0.50:0.95", "medium", 100),
    "APl": ("AP", "0.50:0.95", "large", 100),
    "AR1": ("AR", "0.50:0.95", "all", 1),
    "AR10": ("AR", "0.50:0.95", "all", 10),
    "AR100": ("AR", "0.50:0.95", "all", 100),
    "ARs": ("AR", "0.50:0.95", "small", 100),
    "ARm": ("AR", "0.50:0.95", "medium", 100),
    "ARl": ("AR", "0.50:0.95", "large", 100),
}
STAT_NAMES: tuple[str, ...] = tuple(STATS)


@dataclass(frozen=True)
class Evaluator:
    """A COCOeval implementation: the pip package that provides it and a function importing its
    ``(COCO, COCOeval)`` classes."""

    package: str
    classes: Callable[[], tuple[type, type]]


def _faster_coco_eval() -> tuple[type, type]:
    from faster_coco_eval import COCO, COCOeval_faster

    return COCO, COCOeval_faster


def _pycocotools() -> tuple[type, type]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    return COCO, COCOeval


EVALUATORS: dict[str, Evaluator] = {
    "faster": Evaluator("faster-coco-eval", _faster_coco_eval),
    "pycocotools": Evaluator("pycocotools", _pycocotools),
}


def _coco(coco_class: type, dataset: dict[str, Any]) -> Any:
    """Return a COCO object of ``coco_class`` indexing ``dataset`` (an instances or results dict)."""
    coco = coco_class()
    coco.dataset = dataset
    coco.createIndex()
    return coco


def evaluation_inputs(instances: dict[str, Any],
                      results: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Return new copies of ``instances`` and ``results`` (as :mod:`harness.data.coco_json` reads them) with the
    integer ids both evaluators are given (see the module doc); COCOeval marks the dicts it reads, so the caller's
    are left alone."""
    image = {old: new for new, old in enumerate(sorted(entry["id"] for entry in instances["images"]), 1)}
    category = {old: new for new, old in enumerate(sorted(entry["id"] for entry in instances["categories"]), 1)}
    truth = instances | {
        "images": [entry | {"id": image[entry["id"]]} for entry in instances["images"]],
        "categories": [entry | {"id": category[entry["id"]]} for entry in instances["categories"]],
        "annotations": [entry | {"id": n, "image_id": image[entry["image_id"]],
                                 "category_id": category[entry["category_id"]]}
                        for n, entry in enumerate(instances["annotations"], 1)]}
    found = [entry | {"image_id": image[entry["image_id"]], "category_id": category[entry["category_id"]]}
             for entry in results]
    return truth, found


def evaluate(annotations: str | Path | dict[str, Any], detections: str | Path | Sequence[dict[str, Any]],
             evaluator: str = "faster") -> dict[str, float]:
    """Return COCOeval's 12 bbox stats ``{name: value}`` in :data:`STAT_NAMES` order: AP/AR as fractions 0…1,
    −1 where the annotations have no object in the stat's area range (see the module doc).

    ``annotations``: a COCO instances json path or dict; ``detections``: a COCO results json path or a list of
    ``{image_id, category_id, bbox: [x, y, w, h] px, score}``; ``evaluator``: a name of :data:`EVALUATORS`.
    """
    if evaluator not in EVALUATORS:
        raise HarnessError(f"unknown COCO evaluator {evaluator!r}; known: {', '.join(EVALUATORS)}")
    instances = read_instances(annotations)
    truth_data, results = evaluation_inputs(instances, read_detections(detections, instances))
    try:
        coco_class, cocoeval_class = EVALUATORS[evaluator].classes()
    except ImportError as exc:
        raise HarnessError(f"the {evaluator} COCO evaluator is not installed ({exc}): "
                           f"pip install {EVALUATORS[evaluator].package}") from None
    with contextlib.redirect_stdout(io.StringIO()):
        truth = _coco(coco_class, truth_data)
        found = (truth.loadRes(results) if results else
                 _coco(coco_class, {"images": truth_data["images"], "categories": truth_data["categories"],
                                    "annotations": []}))
        cocoeval = cocoeval_class(truth, found, "bbox")
        cocoeval.evaluate()
        cocoeval.accumulate()
        cocoeval.summarize()
    return {name: float(value) for name, value in zip(STAT_NAMES, cocoeval.stats, strict=True)}


def summary_lines(stats: dict[str, float]) -> list[str]:
    """Return one line per stat in the layout of COCOeval's ``summarize()``, prefixed by the stat's name."""
    titles = {"AP": "Average Precision", "AR": "Average Recall"}
    return [f"{name:<6} {titles[kind]:<18} ({kind}) @[ IoU={iou:<9} | area={area:>6s} | maxDets={max_dets:>3d} ] "
            f"= {stats[name]:0.3f}" for name, (kind, iou, area, max_dets) in STATS.items()]


def detections_to_coco(image_id: int | str, boxes_px: Any, scores: Any, labels: Any,
                       category_ids: Sequence[int | str]) -> list[dict[str, Any]]:
    """Return one image's detections as COCO results ``{image_id, category_id, bbox: [x, y, w, h] px, score}``.

    ``image_id``: the image's COCO id (an integer, or a string id as it is); ``boxes_px``: (N, 4) x1, y1, x2, y2
    in pixels; ``scores``: (N,); ``labels``: (N,) 0-based class indices, mapped to COCO category ids through
    ``category_ids`` (index -> id). Anything ``numpy.asarray`` takes: numpy arrays, lists, CPU torch tensors.
    """
    boxes, scores, labels = np.asarray(boxes_px, dtype=np.float64), np.asarray(scores), np.asarray(labels)
    n = len(scores)
    if boxes.shape != (n, 4) or scores.shape != (n,) or labels.shape != (n,):
        raise HarnessError(f"detections of image {image_id}: expected boxes (N, 4), scores (N,), labels (N,), got "
                           f"{boxes.shape}, {scores.shape}, {labels.shape}")
    if n and not (np.issubdtype(labels.dtype, np.integer) and 0 <= labels.min() and labels.max() < len(category_ids)):
        raise HarnessError(f"detections of image {image_id}: labels must be class indices 0…{len(category_ids) - 1}, "
                           f"got {labels.dtype} values {labels.min()}…{labels.max()}")
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).tolist()
    categories = np.asarray(category_ids)[labels].tolist()
    image_id = image_id if isinstance(image_id, str) else int(image_id)
    return [{"image_id": image_id, "category_id": category, "bbox": bbox, "score": score}
            for category, bbox, score in zip(categories, xywh, scores.astype(np.float64).tolist(), strict=True)]
