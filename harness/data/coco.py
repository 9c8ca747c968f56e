"""A COCO-format detection dataset: an image folder and a COCO instances json (``images``, ``annotations``,
``categories``), read as (image, :class:`~harness.data.targets.Target`) pairs for training and scoring.

- **Images**: in ascending ``image_id`` order (``image_ids``), read from ``images_dir / file_name`` with PIL
  as RGB, returned as a uint8 tensor (3, H, W). Every image file is checked when the dataset is opened.
- **Classes**: the categories sorted by id become class indices 0…C−1 (``category_ids[i]`` is the COCO id of
  class ``i``, ``class_names[i]`` its name), the contiguous labels a detector predicts.
- **Targets**: ``boxes`` float32 (M, 4) x1, y1, x2, y2 in pixels (from COCO's ``[x, y, w, h]``), ``labels``
  int64 (M,), ``extra["image_id"]``. Crowd annotations (``iscrowd`` 1) and boxes of zero width or height are
  left out of the targets; evaluation reads the json itself (:mod:`harness.metrics.coco`), where COCOeval
  treats crowd regions as "ignore".

The json is read and checked by :func:`harness.data.coco_json.read_instances` (torch-free, shared with the
evaluation). :data:`DATASETS` names the COCO-format datasets the harness writes itself
(:mod:`harness.data.digit_boxes`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from harness.data import digit_boxes
from harness.data.coco_json import read_instances
from harness.data.targets import Target
from harness.errors import HarnessError

#: COCO-format datasets known by name: name -> function of a split returning (images_dir, annotation_file).
DATASETS: dict[str, Callable[[str], tuple[Path, Path]]] = {digit_boxes.NAME: digit_boxes.split_paths}


class CocoDetection:
    """The images of ``images_dir`` with the boxes of the COCO instances json ``annotation_file``; item ``i`` is
    (image uint8 (3, H, W) RGB, Target) of image ``image_ids[i]`` (see the module doc)."""

    def __init__(self, images_dir: str | Path, annotation_file: str | Path) -> None:
        self.images_dir, self.annotation_file = Path(images_dir), Path(annotation_file)
        #: The annotation file's content, checked (what COCOeval scores against).
        self.instances = instances = read_instances(self.annotation_file)
        categories = sorted(instances["categories"], key=lambda c: c["id"])
        self.category_ids: list[int] = [c["id"] for c in categories]
        self.class_names: list[str] = [str(c["name"]) for c in categories]
        images = sorted(instances["images"], key=lambda image: image["id"])
        self.image_ids: list[int] = [image["id"] for image in images]
        self._files = [self._image_file(image) for image in images]
        self._targets = self._training_targets(instances["annotations"])

    def _image_file(self, image: dict) -> Path:
        """Return the existing file of one ``images`` entry; HarnessError naming it when it is missing."""
        if "file_name" not in image:
            raise HarnessError(f"{self.annotation_file}: image {image['id']} has no file_name")
        path = self.images_dir / image["file_name"]
        if not path.is_file():
            raise HarnessError(f"{self.annotation_file}: image {image['id']}: no image file {path}")
        return path

    def _training_targets(self, annotations: list[dict]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Return (boxes (M, 4) float32 x1, y1, x2, y2 px, labels (M,) int64) per image, in ``image_ids`` order,
        of the non-crowd annotations with a positive width and height."""
        class_of = {category_id: i for i, category_id in enumerate(self.category_ids)}
        position = {image_id: i for i, image_id in enumerate(self.image_ids)}
        boxes: list[list[list[float]]] = [[] for _ in self.image_ids]
        labels: list[list[int]] = [[] for _ in self.image_ids]
        for annotation in annotations:
            if annotation["category_id"] not in class_of or annotation["image_id"] not in position:
                raise HarnessError(f"{self.annotation_file}: annotation {annotation['id']} refers to an unknown "
                                   f"category {annotation['category_id']} or image {annotation['image_id']}")
            x, y, w, h = annotation["bbox"]
            if annotation.get("iscrowd", 0) or w <= 0 or h <= 0:
                continue
            at = position[annotation["image_id"]]
            boxes[at].append([x, y, x + w, y + h])
            labels[at].append(class_of[annotation["category_id"]])
        return [(np.asarray(b, dtype=np.float32).reshape(-1, 4), np.asarray(c, dtype=np.int64))
                for b, c in zip(boxes, labels, strict=True)]

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Target]:
        """Return image ``index``: its pixels, uint8 (3, H, W) RGB, and its training target."""
        with Image.open(self._files[index]) as image:
            pixels = np.array(image.convert("RGB"))
        boxes, labels = self._targets[index]
        return (torch.from_numpy(pixels).permute(2, 0, 1).contiguous(),
                Target(torch.tensor(boxes), torch.tensor(labels), {"image_id": self.image_ids[index]}))
