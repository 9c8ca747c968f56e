"""Digit boxes: a small real-pixel detection dataset in COCO format, composed from the scikit-learn digits.

Each image is a ``canvas_px``×``canvas_px`` RGB canvas (default 128) of dark noise (every channel uniform in
0…``BACKGROUND_MAX``−1) on which 1–6 real scanned handwritten digits (``sklearn.datasets.load_digits``, see
:mod:`harness.data.digits`) are pasted:

- **Digit**: drawn uniformly from the split's digit images. The splits use disjoint digit images: ``train``
  draws from the digits classification ``train`` split, ``val`` from its ``test`` split
  (:func:`harness.data.digits.split_indices`).
- **Size**: the 8×8 digit is upscaled by nearest neighbour to a square of side ``SIDE_PX`` (12…120 px,
  log-uniform), so every source pixel becomes a block. Every digit fills its 8 rows and about 6 of its 8
  columns, so its box is about side × 0.75·side: sides below ~37 px give COCO *small* boxes (area < 32²),
  up to ~110 px *medium* ones (< 96²), above that *large* ones (a large digit fills most of a 128 px canvas,
  so they are rare). With the defaults: train 3 159 small, 2 013 medium, 176 large objects (5 348 in 2 000
  images); val 316 small, 187 medium, 19 large (522 in 200 images); ``manifest.json`` records the counts.
- **Ink**: a source value v of 1…16 is drawn as ``INK_FLOOR`` + (255 − ``INK_FLOOR``)·v/16, tinted by a
  colour whose channels are uniform in 0.6…1, and composited by maximum with the background. Even the
  faintest ink (≥ 63) is brighter than any background pixel (< ``BACKGROUND_MAX`` = 40), so every pixel of a
  digit is visible and nothing but background lies outside the boxes.
- **Box**: the tight box of the upscaled digit's nonzero pixels, in pixel edges (``[x, y, w, h]``, integers,
  a pixel's box is 1×1), so boxes are exact; ``area`` = w·h, ``iscrowd`` 0; category ids 1…10 named "0"…"9";
  ``digit_index``: the digit's index in ``load_digits()`` (provenance).
- **Placement**: the digits of an image are placed largest first, each at the first of ``PLACEMENT_TRIES``
  uniform random positions (the pasted square inside the canvas) where its box shares no pixel with an
  earlier box; with no such position the digit is left out (so an image holds 1–6 digits, fewer when large
  ones fill it). Boxes never overlap.
- **Randomness**: image ``i`` of a split is drawn with ``numpy.random.default_rng((SEED, split number, i))``,
  so it does not depend on how many images the split has: the first 20 val images are the same in a
  20-image and a 200-image folder.

Written once by :func:`digit_boxes_root` through :func:`harness.data.digits.write_once` (staging folder
renamed into place, ``manifest.json``, rebuilt when the parameters differ)::

    <root>/<split>/<image_id>.png                   image ids 1…n per split
    <root>/annotations/instances_<split>.json       COCO instances (images, annotations, categories)

The root is ``$HARNESS_DATA_DIR/digit_boxes``, default ``~/.cache/harness/digit_boxes``. With the defaults
(2 000 train and 200 val images) writing takes ~10 s of CPU, most of it PNG encoding, and 38 MB (noise
compresses poorly).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from harness.data.digits import data_home, split_indices, write_once
from harness.errors import HarnessError

NAME = "digit_boxes"
#: Split names, and the digits classification split each draws its digit images from.
SPLITS: dict[str, str] = {"train": "train", "val": "test"}
SEED = 0
SIDE_PX = (12, 120)
DIGITS_PER_IMAGE = (1, 6)
PLACEMENT_TRIES = 20
BACKGROUND_MAX = 40
INK_FLOOR = 96
TINT = (0.6, 1.0)
#: zlib level of the PNG files: 1 encodes this noise ~3× faster than PIL's default 6, at about the same size.
PNG_COMPRESS_LEVEL = 1
#: COCOeval's area ranges (px²): an object is small below 32², medium below 96², large from 96² on.
AREA_RANGES: dict[str, tuple[float, float]] = {"small": (0, 32**2), "medium": (32**2, 96**2), "large": (96**2, np.inf)}
CATEGORIES: list[dict[str, Any]] = [{"id": d + 1, "name": str(d), "supercategory": "digit"} for d in range(10)]


def _manifest(train_images: int, val_images: int, canvas_px: int) -> dict[str, Any]:
    return {"dataset": "sklearn.datasets.load_digits", "composition": NAME, "format": 1, "seed": SEED,
            "canvas_px": canvas_px, "images": {"train": train_images, "val": val_images}, "side_px": list(SIDE_PX),
            "digits_per_image": list(DIGITS_PER_IMAGE), "placement_tries": PLACEMENT_TRIES,
            "background_max": BACKGROUND_MAX, "ink_floor": INK_FLOOR, "tint": list(TINT), "upscale": "nearest"}


def _glyph(source: np.ndarray, side_px: int, tint: np.ndarray) -> np.ndarray:
    """Return the 8×8 digit (values 0…16) drawn in ink (see the module doc) tinted by ``tint`` (3,) and upscaled
    by nearest neighbour: (side_px, side_px, 3) uint8, 0 where the digit has no ink."""
    ink = np.where(source > 0, INK_FLOOR + (255 - INK_FLOOR) * source / 16, 0.0)
    tinted = np.rint(ink[..., None] * tint).astype(np.uint8)
    rows = np.arange(side_px) * source.shape[0] // side_px
    cols = np.arange(side_px) * source.shape[1] // side_px
    return tinted[rows[:, None], cols[None, :]]


def _free(candidates: np.ndarray, taken: np.ndarray) -> np.ndarray:
    """Return a mask of the candidate boxes (T, 4) that share no pixel with any taken box (K, 4); boxes are
    x1, y1, x2, y2 in pixel edges."""
    c, t = candidates[:, None, :], taken[None, :, :]
    overlap = (c[..., 0] < t[..., 2]) & (t[..., 0] < c[..., 2]) & (c[..., 1] < t[..., 3]) & (t[..., 1] < c[..., 3])
    return ~overlap.any(axis=1)


def _compose(rng: np.random.Generator, sources: np.ndarray, pool: np.ndarray,
             canvas_px: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Return one canvas (H, W, 3) uint8 of digits drawn from ``sources[pool]``, their boxes (K, 4) int x1, y1,
    x2, y2 in px and their indices in ``sources``."""
    canvas = np.repeat(rng.integers(0, BACKGROUND_MAX, size=(canvas_px, canvas_px, 1), dtype=np.uint8), 3, axis=2)
    count = int(rng.integers(DIGITS_PER_IMAGE[0], DIGITS_PER_IMAGE[1] + 1))
    sides = np.sort(np.exp(rng.uniform(*np.log(SIDE_PX), size=count)).astype(int))[::-1]
    boxes, indices = np.zeros((0, 4), dtype=np.int64), []
    for side in sides:
        index = int(pool[rng.integers(len(pool))])
        glyph = _glyph(sources[index], int(side), rng.uniform(*TINT, size=3))
        inked = glyph.any(axis=2)
        rows, cols = np.flatnonzero(inked.any(axis=1)), np.flatnonzero(inked.any(axis=0))
        corners = rng.integers(0, canvas_px - side + 1, size=(PLACEMENT_TRIES, 2))  # x, y of the pasted square
        ink_box = np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1])  # x1, y1, x2, y2 in the square
        candidates = np.tile(corners, 2) + ink_box
        free = np.flatnonzero(_free(candidates, boxes))
        if free.size:
            x, y = corners[free[0]]
            region = canvas[y:y + side, x:x + side]
            np.maximum(region, glyph, out=region)
            boxes = np.vstack([boxes, candidates[free[0]]])
            indices.append(index)
    return canvas, boxes, indices


def _write_split(folder: Path, split: str, count: int, digits: Any, pool: np.ndarray,
                 canvas_px: int) -> dict[str, Any]:
    """Write ``count`` images of ``split``, composed of the digits ``pool`` (indices into ``digits``, the result
    of ``load_digits()``), and its instances json; return the object count per COCO area range."""
    from PIL import Image

    (folder / split).mkdir(parents=True)
    images, annotations = [], []
    for image_id in range(1, count + 1):
        rng = np.random.default_rng((SEED, list(SPLITS).index(split), image_id))
        pixels, boxes, indices = _compose(rng, digits.images, pool, canvas_px)
        file_name = f"{image_id}.png"
        Image.fromarray(pixels).save(folder / split / file_name, compress_level=PNG_COMPRESS_LEVEL)
        images.append({"id": image_id, "file_name": file_name, "width": canvas_px, "height": canvas_px})
        for (x1, y1, x2, y2), index in zip(boxes.tolist(), indices, strict=True):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": int(digits.target[index]) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                                "area": (x2 - x1) * (y2 - y1), "iscrowd": 0, "digit_index": index})
    instances = {"info": {"description": f"harness {NAME} {split}: sklearn digits pasted on noise"},
                 "images": images, "annotations": annotations, "categories": CATEGORIES}
    (folder / "annotations" / f"instances_{split}.json").write_text(json.dumps(instances), encoding="utf-8")
    return area_counts([a["area"] for a in annotations])


def area_counts(areas_px2: list[float]) -> dict[str, int]:
    """Return how many of the areas (px²) fall in each COCO area range of ``AREA_RANGES``."""
    return {name: sum(low <= a < high for a in areas_px2) for name, (low, high) in AREA_RANGES.items()}


def digit_boxes_root(train_images: int = 2000, val_images: int = 200, canvas_px: int = 128) -> Path:
    """Return the digit boxes folder (see module doc), writing it first when it is missing or was written with
    other parameters. A second call with the same parameters finds the folder and writes nothing."""
    if canvas_px < SIDE_PX[1] or min(train_images, val_images) < 1:
        raise HarnessError(f"digit_boxes: need canvas_px ≥ {SIDE_PX[1]} and at least 1 image per split, got "
                           f"canvas_px={canvas_px}, train_images={train_images}, val_images={val_images}")
    manifest = _manifest(train_images, val_images, canvas_px)

    def write(folder: Path) -> dict[str, Any]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        pools = split_indices(digits.target)
        (folder / "annotations").mkdir()
        return {"objects": {split: _write_split(folder, split, manifest["images"][split], digits, pools[source],
                                                canvas_px) for split, source in SPLITS.items()}}

    return write_once(data_home() / NAME, manifest, write)


def _checked(split: str) -> str:
    if split not in SPLITS:
        raise HarnessError(f"digit_boxes has no split {split!r}; it has: {', '.join(SPLITS)}")
    return split


def images_dir(split: str, root: Path | None = None) -> Path:
    """Return the folder of ``split``'s PNG images under ``root`` (default: :func:`digit_boxes_root`'s)."""
    return (root or digit_boxes_root()) / _checked(split)


def annotation_file(split: str, root: Path | None = None) -> Path:
    """Return the COCO instances json of ``split`` under ``root`` (default: :func:`digit_boxes_root`'s)."""
    return (root or digit_boxes_root()) / "annotations" / f"instances_{_checked(split)}.json"


def split_paths(split: str) -> tuple[Path, Path]:
    """Return ``(images_dir, annotation_file)`` of ``split`` in the default folder (written when missing)."""
    root = digit_boxes_root()
    return images_dir(split, root), annotation_file(split, root)
