"""A timm backbone as a detector's feature extractor: the maps of chosen levels, with their channels and
strides, for any timm architecture that supports ``features_only`` (random weights: nothing downloaded), or any
model of the zoo's registry that lists its maps in a timm-style ``feature_info`` (dicts of ``module``, ``num_chs``,
``reduction``; modules at most one ``nn.Sequential`` deep), wrapped in timm's ``FeatureListNet`` as timm's own
``features_only`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import timm
import torch
from timm.models import FeatureListNet
from torch import nn

from harness.zoo.registry import create_model, get_entry


def _classifier(name: str, **kwargs: Any) -> nn.Module:
    """Return the whole model ``name``: the zoo's builder when the zoo registers it, else timm's (random weights);
    ValueError when a zoo model has no ``feature_info``."""
    if get_entry(name) is None:
        return timm.create_model(name, pretrained=False, **kwargs)
    model = create_model(name, **kwargs)
    if not isinstance(getattr(model, "feature_info", None), list):
        raise ValueError(f"zoo model {name!r} has no feature_info list: it cannot serve as a detector's backbone")
    return model


def feature_levels(name: str) -> list[dict[str, Any]]:
    """Return the ``feature_info`` of architecture ``name`` (timm's or the zoo's): one dict per level (``module``,
    ``num_chs`` channels, ``reduction`` = stride in input pixels), in the order of ``out_indices``.

    The model is built on the meta device, so reading it allocates and initialises nothing.
    """
    with torch.device("meta"):
        model = _classifier(name)
    return list(model.feature_info)


def indices_for_strides(name: str, strides: Sequence[int]) -> tuple[int, ...]:
    """Return the ``out_indices`` of ``name`` whose maps have the given strides (in input pixels), the
    deepest level of each stride; ValueError when the architecture has no map at one of them."""
    by_stride = {level["reduction"]: index for index, level in enumerate(feature_levels(name))}
    missing = [s for s in strides if s not in by_stride]
    if missing:
        raise ValueError(f"model {name!r} has no feature map at stride(s) {missing}; "
                         f"it has {sorted(by_stride)}")
    return tuple(by_stride[s] for s in strides)


class TimmFeatures(nn.Module):
    """The feature maps ``out_indices`` of timm's ``name`` (``features_only=True``, random weights), or of the zoo's
    ``name`` through timm's ``FeatureListNet``.

    ``channels`` and ``strides`` (input pixels per map pixel) list each returned map's width and
    stride, finest first; ``forward`` returns the maps as a list in that order.
    """

    def __init__(self, name: str, out_indices: Sequence[int], **timm_kwargs: Any) -> None:
        super().__init__()
        if get_entry(name) is None:
            self.body = timm.create_model(name, pretrained=False, features_only=True, out_indices=tuple(out_indices),
                                          **timm_kwargs)
        else:
            self.body = FeatureListNet(_classifier(name, **timm_kwargs), tuple(out_indices), flatten_sequential=True)
        self.channels: list[int] = list(self.body.feature_info.channels())
        self.strides: list[int] = list(self.body.feature_info.reduction())

    @classmethod
    def at_strides(cls, name: str, strides: Sequence[int], **timm_kwargs: Any) -> TimmFeatures:
        """Return the extractor of ``name``'s maps at ``strides`` (e.g. (8, 16, 32))."""
        return cls(name, indices_for_strides(name, strides), **timm_kwargs)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return the feature maps of the batch ``x``, finest first."""
        return list(self.body(x))
