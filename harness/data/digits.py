"""The scikit-learn digits as an image folder: 1 797 real scanned handwritten digits, 10 classes.

Source: ``sklearn.datasets.load_digits()`` — the test set of the UCI "Optical Recognition of Handwritten
Digits" data (8×8 images, 16 grey levels), shipped inside the scikit-learn wheel, so nothing is
downloaded. :func:`digits_root` writes it once as PNG files::

    <root>/<split>/<class>/<index>.png      split: train | test; class: 0…9; index: 0000…1796

Each image is upscaled by **nearest neighbour** from 8×8 to ``IMAGE_SIZE``×``IMAGE_SIZE`` (32×32) px, so
every 4×4 block holds one original pixel exactly (value v of 0…16 becomes round(v·255/16)), and stored as
RGB with R = G = B. The split is stratified and fixed: within each class, a permutation drawn with
``numpy.random.default_rng(SPLIT_SEED)`` puts its first round(``TEST_FRACTION`` · n) images in ``test``
(359 images in all, 35–37 per class) and the rest in ``train`` (1 438).

The folder is ``$HARNESS_DATA_DIR/digits``, default ``~/.cache/harness/digits``. It is written into a
temporary folder beside it and renamed into place, so a reader never sees a half-written folder and
concurrent writers do not collide; ``manifest.json`` records how it was made, and a folder whose manifest
differs from the current one is rebuilt (a folder there without a manifest is not touched: HarnessError).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import HarnessError

NAME = "digits"
IMAGE_SIZE = 32
SPLIT_SEED = 0
TEST_FRACTION = 0.2
SPLITS = ("train", "test")
#: What the folder holds; a folder with another manifest is rebuilt.
MANIFEST: dict[str, Any] = {
    "dataset": "sklearn.datasets.load_digits",
    "format": 1,
    "image_size": IMAGE_SIZE,
    "upscale": "nearest",
    "mode": "RGB",
    "split_seed": SPLIT_SEED,
    "test_fraction": TEST_FRACTION,
}


def data_home() -> Path:
    """Return the folder under which harness datasets are cached: ``$HARNESS_DATA_DIR`` or ``~/.cache/harness``."""
    return Path(os.environ.get("HARNESS_DATA_DIR") or Path.home() / ".cache" / "harness")


def split_indices(targets: np.ndarray) -> dict[str, np.ndarray]:
    """Return the sorted sample indices of each split: stratified, ``TEST_FRACTION`` of each class in test."""
    rng = np.random.default_rng(SPLIT_SEED)
    test: list[np.ndarray] = []
    for label in np.unique(targets):
        members = rng.permutation(np.flatnonzero(targets == label))
        test.append(members[: round(TEST_FRACTION * len(members))])
    in_test = np.zeros(len(targets), dtype=bool)
    in_test[np.concatenate(test)] = True
    return {"train": np.flatnonzero(~in_test), "test": np.flatnonzero(in_test)}


def _write_images(folder: Path) -> dict[str, Any]:
    """Write every digit as a PNG under ``folder/<split>/<class>/``; return the manifest's counts."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    scale = IMAGE_SIZE // digits.images.shape[1]
    grey = np.rint(digits.images * (255 / 16)).astype(np.uint8)
    pixels = np.repeat(np.repeat(grey, scale, axis=1), scale, axis=2)  # nearest-neighbour upscaling
    counts: dict[str, int] = {}
    for split, indices in split_indices(digits.target).items():
        for index in indices:
            class_dir = folder / split / str(digits.target[index])
            class_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels[index]).convert("RGB").save(class_dir / f"{index:04d}.png")
        counts[split] = len(indices)
    return {"images": counts, "classes": 10}


def _manifest_matches(root: Path, expected: dict[str, Any]) -> bool:
    try:
        manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return {k: manifest.get(k) for k in expected} == expected


def write_once(root: Path, manifest: dict[str, Any], write: Callable[[Path], dict[str, Any]]) -> Path:
    """Return ``root`` after making sure it holds the folder ``manifest`` describes, writing it when missing or stale.

    ``write(folder)`` fills an empty staging folder beside ``root`` and returns entries added to the manifest
    (counts); the staging folder is then renamed to ``root``, so a reader never sees a half-written folder
    and concurrent writers do not collide. A folder whose ``manifest.json`` lacks or differs in a key of
    ``manifest`` is rebuilt; a folder without ``manifest.json`` is never touched (HarnessError).
    """
    if _manifest_matches(root, manifest):
        return root
    if root.exists() and not (root / "manifest.json").exists():
        raise HarnessError(f"{root} exists but was not written by the harness (no manifest.json): move it away")
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        written = manifest | write(staging)
        (staging / "manifest.json").write_text(json.dumps(written, indent=2) + "\n", encoding="utf-8")
        if root.exists() and not _manifest_matches(root, manifest):  # stale: written by another version
            trash = Path(tempfile.mkdtemp(prefix=f".{root.name}-stale-", dir=root.parent))
            root.rename(trash / root.name)
            shutil.rmtree(trash, ignore_errors=True)
        try:
            staging.rename(root)
        except OSError:
            if not _manifest_matches(root, manifest):  # otherwise another process renamed its valid folder first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def digits_root(root: Path | None = None) -> Path:
    """Return the digits image folder (see module doc), writing it first when it is missing or stale.

    ``root`` defaults to ``data_home() / "digits"``. A second call finds the folder and writes nothing.
    """
    return write_once(Path(root) if root is not None else data_home() / NAME, MANIFEST, _write_images)
