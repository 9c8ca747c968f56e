"""COCO json read with clear errors: an instances file (``images``, ``annotations``, ``categories``) and a
results file (a list of detections). Torch-free, so ``harness coco-eval`` does not import torch; the COCO
evaluation (:mod:`harness.metrics.coco`) and the dataset (:mod:`harness.data.coco`) both read through it.

Checks (HarnessError naming the file): missing file, invalid JSON (line and column), a json without the
``images``/``annotations``/``categories`` lists or with entries lacking the keys COCOeval reads
(:data:`INSTANCE_KEYS`), a detection whose ``image_id`` is not an image of the annotations or whose ``category_id``
is not one of their categories (COCOeval would silently ignore it), a ``bbox`` (detected or annotated) that is not
``[x, y, width, height]`` of finite numbers with width and height ≥ 0, a score that is not a finite number.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from numbers import Integral, Real
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

#: Keys each entry of an instances json's lists must have (what COCOeval reads).
INSTANCE_KEYS: dict[str, tuple[str, ...]] = {
    "images": ("id",),
    "annotations": ("id", "image_id", "category_id", "bbox", "area"),
    "categories": ("id", "name"),
}
DETECTION_KEYS = ("image_id", "category_id", "bbox", "score")


def read_json(path: str | Path, what: str) -> Any:
    """Return the parsed content of the JSON file ``path``; HarnessError naming the file (``what`` it should be)
    when it is missing or unreadable, and its line and column when it is not valid JSON."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HarnessError(f"{path}: no such {what}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise HarnessError(f"{path}: cannot read the {what}: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise HarnessError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON in the {what}: {exc.msg}") from None


def is_box(value: Any) -> bool:
    """Return whether ``value`` is a COCO box ``[x, y, width, height]``: 4 finite numbers, width and height ≥ 0."""
    return (isinstance(value, (list, tuple)) and len(value) == 4
            and all(isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v) for v in value)
            and value[2] >= 0 and value[3] >= 0)


def _is_id(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def read_instances(source: str | Path | dict[str, Any]) -> dict[str, Any]:
    """Return a COCO instances dataset (a dict with the lists ``images``, ``annotations``, ``categories``) read
    from the json file ``source`` or given as a dict; HarnessError when a list, a key of :data:`INSTANCE_KEYS`
    or an annotation's valid ``bbox`` is missing."""
    where = "annotations" if isinstance(source, dict) else str(source)
    data = source if isinstance(source, dict) else read_json(source, "COCO annotation file")
    if not isinstance(data, dict):
        raise HarnessError(f"{where}: expected a COCO instances JSON object with images, annotations and "
                           f"categories, got a {type(data).__name__}")
    for key, fields in INSTANCE_KEYS.items():
        entries = data.get(key)
        if not isinstance(entries, list):
            raise HarnessError(f"{where}: expected a list {key!r} (a COCO instances file has images, annotations "
                               "and categories)")
        for i, entry in enumerate(entries):
            missing = [f for f in fields if not isinstance(entry, dict) or f not in entry]
            if missing:
                raise HarnessError(f"{where}: {key}[{i}] has no {', '.join(missing)}")
    for i, annotation in enumerate(data["annotations"]):
        if not is_box(annotation["bbox"]):
            raise HarnessError(f"{where}: annotations[{i}].bbox: expected [x, y, width, height] (finite numbers, "
                               f"width and height ≥ 0), got {annotation['bbox']!r}")
    return data


def _detection_problem(det: Any, image_ids: set[int], category_ids: set[int]) -> str | None:
    """Return what is wrong with one COCO results entry, or None when it is a valid detection."""
    if not isinstance(det, dict) or any(k not in det for k in DETECTION_KEYS):
        return f"expected an object with {', '.join(DETECTION_KEYS)}, got {det!r}"
    if not (_is_id(det["image_id"]) and det["image_id"] in image_ids):
        return f"image_id {det['image_id']!r} is not an image of the annotations"
    if not (_is_id(det["category_id"]) and det["category_id"] in category_ids):
        return f"category_id {det['category_id']!r} is not a category of the annotations"
    if not is_box(det["bbox"]):
        return f"bbox: expected [x, y, width, height] (finite numbers, width and height ≥ 0), got {det['bbox']!r}"
    if not (isinstance(det["score"], Real) and math.isfinite(det["score"])):
        return f"score: expected a finite number, got {det['score']!r}"
    return None


def read_detections(source: str | Path | Sequence[dict[str, Any]], annotations: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the detections as new dicts ``{image_id, category_id, bbox: [x, y, w, h] floats in px, score}``,
    read from a COCO results json (a list) or given as a list, checked against ``annotations`` (an instances
    dict); HarnessError naming the first bad detection."""
    where = str(source) if isinstance(source, (str, Path)) else "detections"
    data = read_json(source, "COCO results file") if isinstance(source, (str, Path)) else source
    if not isinstance(data, Sequence) or isinstance(data, str):
        raise HarnessError(f"{where}: expected a JSON list of detections {{image_id, category_id, bbox, score}}, "
                           f"got a {type(data).__name__}")
    image_ids = {image["id"] for image in annotations["images"]}
    category_ids = {category["id"] for category in annotations["categories"]}
    detections = []
    for i, det in enumerate(data):
        problem = _detection_problem(det, image_ids, category_ids)
        if problem:
            raise HarnessError(f"{where}: detection {i}: {problem}")
        detections.append({"image_id": int(det["image_id"]), "category_id": int(det["category_id"]),
                           "bbox": [float(v) for v in det["bbox"]], "score": float(det["score"])})
    return detections
