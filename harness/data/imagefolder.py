"""Any image folder (``<root>/<class>/<image>``) as batches preprocessed the way a model expects.

The transform is timm's evaluation transform for the model (``timm.data.resolve_data_config`` +
``create_transform``: resize to resolution / crop_pct, centre crop, normalise by the model's mean and std;
defaults — ImageNet mean/std, bicubic, crop 0.875 — for a model without a timm ``pretrained_cfg``), except
that the input size is the case's: ``channels`` × ``resolution`` × ``resolution``. Images are read as
RGB for 3 channels and as greyscale for 1; the mean and std are averaged over the colour channels when
the model's have 3 values and the input has 1. Labels are class indices in the sorted order of the class
folders' names (torchvision ``ImageFolder``).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn
from torch.utils.data import DataLoader, Subset

from harness.errors import HarnessError

#: PIL image mode read for each number of input channels.
PIL_MODES: dict[int, str] = {1: "L", 3: "RGB"}


def _load_image(path: str, mode: str) -> Any:
    from PIL import Image

    with Image.open(path) as image:
        return image.convert(mode)


def data_config(model: nn.Module, resolution: int, channels: int) -> dict[str, Any]:
    """Return the model's timm data config (input_size, interpolation, mean, std, crop_pct, crop_mode) at
    ``channels`` × ``resolution`` × ``resolution``."""
    from timm.data import resolve_data_config

    config = resolve_data_config({"input_size": (channels, resolution, resolution)}, model=model)
    for key in ("mean", "std"):
        if len(config[key]) != channels:
            config[key] = (float(np.mean(config[key])),) * channels
    return config


def evenly_spaced(n: int, limit: int | None) -> list[int]:
    """Return ``min(n, limit)`` indices spread evenly over ``range(n)`` (all of them when ``limit`` is None),
    so a limited subset of a class-sorted folder still covers every class."""
    if limit is None or limit >= n:
        return list(range(n))
    return sorted({int(i) for i in np.linspace(0, n - 1, num=limit).round()})


def image_folder_loader(
    root: str | Path,
    model: nn.Module,
    resolution: int,
    channels: int = 3,
    batch_size: int = 64,
    limit: int | None = None,
) -> DataLoader:
    """Return a DataLoader of ``(images, labels)`` from the image folder ``root``, in a fixed order.

    Images are float32 tensors of shape ``[batch, channels, resolution, resolution]`` preprocessed for
    ``model`` (see module doc); labels are int64 class indices. ``limit`` caps the number of images (an
    evenly spaced subset). Raises HarnessError naming ``root`` when it is missing or holds no images, or
    when ``channels`` is neither 1 nor 3.
    """
    from timm.data import create_transform
    from torchvision.datasets import ImageFolder

    root = Path(root)
    if channels not in PIL_MODES:
        raise HarnessError(f"image folder {root}: images have 1 or 3 channels, the case asks for {channels}")
    if not root.is_dir():
        raise HarnessError(f"image folder {root} does not exist")
    config = data_config(model, resolution, channels)
    transform = create_transform(**config, is_training=False)
    load = functools.partial(_load_image, mode=PIL_MODES[channels])
    try:
        dataset = ImageFolder(root, transform=transform, loader=load)
    except FileNotFoundError as exc:  # raised by ImageFolder for no class folder or no image in them
        raise HarnessError(f"image folder {root} holds no images in class folders: {exc}") from exc
    subset = Subset(dataset, evenly_spaced(len(dataset), limit))
    return DataLoader(subset, batch_size=batch_size, shuffle=False, num_workers=0)
