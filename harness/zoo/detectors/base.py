"""The interface every detector of the zoo shares: images in, per image (boxes, scores, labels) out, in
three parts that are timed apart.

1. :meth:`Detector.preprocess`: a list of images (CHW, uint8 0–255 or float 0–1, RGB, any size) →
   one float batch ``(N, 3, S, S)`` with ``S = input_size``: each image resized keeping its aspect ratio so
   its longer side is ``S``, pasted at the top-left of a zero canvas (after normalisation, so the pad is the
   mean), normalised by the detector's ``mean``/``std``; plus an :class:`ImageMeta` per image.
2. ``forward(batch)``: the network alone (backbone, neck, heads) → raw outputs, whatever the family needs.
   This is what the complexity and latency metrics measure, as for a classifier.
3. :meth:`Detector.postprocess`: raw outputs → :class:`Detections` per image in the original image's
   pixels: the family's :meth:`Detector.decode` (candidates in input pixels, before suppression), then the
   suppression of :attr:`Detector.suppression` (:mod:`harness.zoo.detectors.postprocess`), then the boxes
   mapped back and clipped to the image.

Training: :meth:`Detector.loss` takes the raw outputs of a batch and the targets in input pixels
(:meth:`Detector.targets_to_input`) and returns named loss terms whose sum is minimised. A family may offer other
training choices than its paper's, named by :attr:`Detector.BOX_LOSSES` (box-regression losses of
:mod:`harness.zoo.detectors.box_losses`) and :attr:`Detector.NEGATIVES` (``hard_mining``, ``focal``); a case
sets :attr:`Detector.box_loss` and :attr:`Detector.negatives` (``default``: the paper's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness.data.targets import Target
from harness.zoo.detectors.postprocess import Suppression, suppress

#: ImageNet mean and std (RGB, 0–1 scale), the normalisation of timm's and torchvision's backbones.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Detections:
    """What a detector found in one image: ``boxes`` (N, 4) float x1, y1, x2, y2 in pixels, ``scores`` (N,)
    in 0…1 and ``labels`` (N,) int64 class indices 0…num_classes−1, sorted by descending score."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.scores.numel())

    @classmethod
    def empty(cls, device: torch.device | str = "cpu") -> Detections:
        """Return detections of nothing."""
        return cls(torch.zeros(0, 4, device=device), torch.zeros(0, device=device),
                   torch.zeros(0, dtype=torch.int64, device=device))


@dataclass(frozen=True)
class ImageMeta:
    """How one image became its slot of the batch: ``original_hw`` its (height, width) in pixels and
    ``scale`` the factor its pixels were resized by (input pixel = original pixel × scale)."""

    original_hw: tuple[int, int]
    scale: float


class Detector(nn.Module):
    """Base class of the zoo's detectors; subclasses define ``forward`` (the network) and ``decode``.

    ``num_classes``: classes scored (no background class); ``input_size``: side ``S`` of the square
    network input in pixels; ``suppression``: the post-processing applied after decoding (each family's
    paper default unless a case chooses another); ``mean``/``std``: input normalisation, RGB, 0–1 scale.
    """

    #: Box-regression losses :meth:`loss` can use in place of its own (``default``), by name.
    BOX_LOSSES: tuple[str, ...] = ()
    #: Treatments of the negatives :meth:`loss` can use in place of its own (``default``): hard_mining, focal.
    NEGATIVES: tuple[str, ...] = ()

    def __init__(self, num_classes: int, input_size: int, suppression: Suppression,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.input_size = input_size
        self.suppression = suppression
        self.box_loss = "default"
        self.negatives = "default"
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    # ------------------------------------------------------------------------------- the three parts

    def preprocess(self, images: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[ImageMeta]]:
        """Return the normalised ``(N, 3, S, S)`` batch (on the detector's device, in its buffers' dtype) and
        an :class:`ImageMeta` per image; see the module docstring."""
        size = self.input_size
        batch = torch.zeros(len(images), 3, size, size, device=self.mean.device, dtype=self.mean.dtype)
        metas = []
        for i, image in enumerate(images):
            x = image.to(device=self.mean.device)
            x = x.float() / 255.0 if not x.is_floating_point() else x.float()
            h, w = x.shape[-2:]
            scale = size / max(h, w)
            nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
            x = F.interpolate(x[None], size=(nh, nw), mode="bilinear", align_corners=False, antialias=scale < 1)
            batch[i, :, :nh, :nw] = ((x - self.mean.float()) / self.std.float())[0].to(batch.dtype)
            metas.append(ImageMeta((int(h), int(w)), scale))
        return batch, metas

    def decode(self, raw: Any, metas: Sequence[ImageMeta]) -> list[Detections]:
        """Return the candidate detections per image from the raw outputs, boxes in input pixels, before
        suppression (scores may be below threshold: the suppression drops them). Subclasses define it."""
        raise NotImplementedError(f"{type(self).__name__} does not define decode()")

    def postprocess(self, raw: Any, metas: Sequence[ImageMeta]) -> list[Detections]:
        """Return the final detections per image, boxes in the original image's pixels, clipped to it."""
        out = []
        for candidates, meta in zip(self.decode(raw, metas), metas, strict=True):
            kept = suppress(candidates.boxes, candidates.scores, candidates.labels, self.suppression)
            boxes = kept.boxes / meta.scale
            h, w = meta.original_hw
            boxes = torch.stack([boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h),
                                 boxes[:, 2].clamp(0, w), boxes[:, 3].clamp(0, h)], dim=1)
            out.append(Detections(boxes, kept.scores, kept.labels))
        return out

    @torch.inference_mode()
    def detect(self, images: Sequence[torch.Tensor]) -> list[Detections]:
        """Return the detections per image of ``images`` (pre-processing, network, post-processing)."""
        batch, metas = self.preprocess(images)
        return self.postprocess(self(batch), metas)

    # ------------------------------------------------------------------------------------- training

    @staticmethod
    def targets_to_input(targets: Sequence[Target], metas: Sequence[ImageMeta]) -> list[Target]:
        """Return the targets with boxes scaled from original to input pixels (as :meth:`preprocess` did)."""
        return [Target(t.boxes * m.scale, t.labels, t.extra) for t, m in zip(targets, metas, strict=True)]

    def loss(self, raw: Any, targets: Sequence[Target]) -> dict[str, torch.Tensor]:
        """Return the named loss terms (scalars, summed for the step) of the raw outputs of a batch against
        its targets in input pixels. Subclasses that can be trained define it."""
        raise NotImplementedError(f"{type(self).__name__} cannot be trained here (no loss())")
