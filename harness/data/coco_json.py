"""COCO json read with clear errors: an instances file (``images``, ``annotations``, ``categories``) and a
results file (a list of detections). Torch-free, so ``harness coco-eval`` does not import torch; the COCO
evaluation (:mod:`harness.metrics.coco`) and the dataset (:mod:`harness.data.coco`) both read through it.

Checks (HarnessError naming the file): missing file, invalid JSON (line and column), a json without the
``images``/``annotations``/``categories`` lists or with entries lacking the keys COCOeval reads
(:data:`INSTANCE_KEYS`), an id that is neither an integer nor a string, a list whose ids repeat or mix numbers and
strings (COCOeval sorts them), an annotation or a detection whose ``image_id`` is not an image of the annotations
or whose ``category_id`` is not one of their categories (COCOeval would silently ignore it), a ``bbox`` (detected
or annotated) that is not ``[x, y, width, height]`` of finite numbers with width and height ≥ 0, an ``area`` that
is not a finite number ≥ 0, an ``iscrowd`` other than 0 or 1, a score that is not a finite number.

Ids are normalised by :func:`coco_id` as pycocotools indexes them: ``1.0`` is image ``1``, a string stays a
string. A missing ``iscrowd`` is 0 (not a crowd), as faster-coco-eval reads it.
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
BOX_EXPECTED = "expected [x, y, width, height] (finite numbers, width and height ≥ 0)"


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


def coco_id(value: Any) -> int | str | None:
    """Return the COCO id ``value`` in the form pycocotools indexes it by: an integral number (``1``, ``1.0``, a
    numpy integer) as an int, a string as itself; None when ``value`` is no id (a fraction, a bool, null, a list…)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, Real):
        return None
    if isinstance(value, Integral):
        return int(value)
    return int(value) if math.isfinite(value) and float(value).is_integer() else None


def _own_ids(where: str, key: str, entries: list[dict[str, Any]]) -> list[int | str]:
    """Return the normalised ``id`` of each entry of the instances list ``key``; HarnessError naming the entry
    whose id is no id, repeats an earlier one or is a string among numbers (or the reverse)."""
    ids: list[int | str] = []
    seen: dict[int | str, int] = {}
    for i, entry in enumerate(entries):
        value = coco_id(entry["id"])
        if value is None:
            raise HarnessError(f"{where}: {key}[{i}].id: expected an integer or a string, got {entry['id']!r}")
        if value in seen:
            raise HarnessError(f"{where}: {key}[{i}].id {value!r} repeats {key}[{seen[value]}].id "
                               "(ids must be unique)")
        if ids and isinstance(value, str) != isinstance(ids[0], str):
            raise HarnessError(f"{where}: {key}[{i}].id {value!r}: the ids of {key} mix numbers and strings "
                               f"({key}[0].id is {ids[0]!r}); COCOeval sorts them, so use one kind")
        seen[value] = i
        ids.append(value)
    return ids


def _annotation_problem(annotation: dict[str, Any], image_ids: set[int | str],
                        category_ids: set[int | str]) -> str | None:
    """Return what is wrong with one entry of an instances file's ``annotations`` (its field first), or None."""
    if coco_id(annotation["image_id"]) not in image_ids:
        return f"image_id {annotation['image_id']!r} is not the id of an entry of images"
    if coco_id(annotation["category_id"]) not in category_ids:
        return f"category_id {annotation['category_id']!r} is not the id of an entry of categories"
    if not is_box(annotation["bbox"]):
        return f"bbox: {BOX_EXPECTED}, got {annotation['bbox']!r}"
    area = annotation["area"]
    if isinstance(area, bool) or not (isinstance(area, Real) and math.isfinite(area) and area >= 0):
        return f"area: expected a finite number ≥ 0 (px²), got {area!r}"
    if annotation.get("iscrowd", 0) not in (0, 1):
        return f"iscrowd: expected 0 or 1, got {annotation['iscrowd']!r}"
    return None


def read_instances(source: str | Path | dict[str, Any]) -> dict[str, Any]:
    """Return a COCO instances dataset (a dict with the lists ``images``, ``annotations``, ``categories``) read
    from the json file ``source`` or given as a dict, as new dicts (the caller's are left alone) with every id
    normalised by :func:`coco_id` and each annotation's ``iscrowd`` an int (0 where missing); HarnessError naming
    the first problem (see the module doc)."""
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
    ids = {key: _own_ids(where, key, data[key]) for key in INSTANCE_KEYS}
    image_ids, category_ids = set(ids["images"]), set(ids["categories"])
    for i, annotation in enumerate(data["annotations"]):
        problem = _annotation_problem(annotation, image_ids, category_ids)
        if problem:
            raise HarnessError(f"{where}: annotations[{i}].{problem}")
    annotations = [annotation | {"id": own, "image_id": coco_id(annotation["image_id"]),
                                 "category_id": coco_id(annotation["category_id"]),
                                 "iscrowd": int(annotation.get("iscrowd", 0))}
                   for annotation, own in zip(data["annotations"], ids["annotations"], strict=True)]
    return data | {"images": [image | {"id": own} for image, own in zip(data["images"], ids["images"], strict=True)],
                   "annotations": annotations,
                   "categories": [category | {"id": own}
                                  for category, own in zip(data["categories"], ids["categories"], strict=True)]}


def _detection_problem(det: Any, image_ids: set[int | str], category_ids: set[int | str]) -> str | None:
    """Return what is wrong with one COCO results entry, or None when it is a valid detection."""
    if not isinstance(det, dict) or any(k not in det for k in DETECTION_KEYS):
        return f"expected an object with {', '.join(DETECTION_KEYS)}, got {det!r}"
    if coco_id(det["image_id"]) not in image_ids:
        return f"image_id {det['image_id']!r} is not an image of the annotations"
    if coco_id(det["category_id"]) not in category_ids:
        return f"category_id {det['category_id']!r} is not a category of the annotations"
    if not is_box(det["bbox"]):
        return f"bbox: {BOX_EXPECTED}, got {det['bbox']!r}"
    if not (isinstance(det["score"], Real) and math.isfinite(det["score"])):
        return f"score: expected a finite number, got {det['score']!r}"
    return None


def read_detections(source: str | Path | Sequence[dict[str, Any]], annotations: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the detections as new dicts ``{image_id, category_id, bbox: [x, y, w, h] floats in px, score}``
    (ids normalised by :func:`coco_id`), read from a COCO results json (a list) or given as a list, checked against
    ``annotations`` (an instances dict returned by :func:`read_instances`); HarnessError naming the first bad
    detection."""
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
        detections.append({"image_id": coco_id(det["image_id"]), "category_id": coco_id(det["category_id"]),
                           "bbox": [float(v) for v in det["bbox"]], "score": float(det["score"])})
    return detections
