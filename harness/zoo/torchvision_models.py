"""Architectures only torchvision has (timm lacks them), registered under torchvision's own names.

Each entry of ``TORCHVISION_MODELS`` is built with ``weights=None`` (random initialisation, nothing
downloaded) and takes the zoo's timm-style kwargs: ``num_classes`` and ``in_chans`` (for ``in_chans``
other than 3 the first convolution is rebuilt with that many input channels).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torchvision.models as tvm
from torch import nn

from harness.zoo.registry import register_model

#: registry name -> source of the architecture and of its published size.
TORCHVISION_MODELS: dict[str, str] = {
    "squeezenet1_0": "Iandola et al. 2016, SqueezeNet, Table 1: 1,248,424 params (before pruning)",
    "squeezenet1_1": "SqueezeNet v1.1 (forresti/SqueezeNet release notes: 2.4x less computation than v1.0); "
    "torchvision SqueezeNet1_1_Weights: 1,235,496 params, 0.35 GFLOPS",
    "shufflenet_v2_x0_5": "Ma et al. 2018, ShuffleNet V2, Table 5: 0.5x, 41 MFLOPs (MACs), 1.4 M weights",
    "shufflenet_v2_x1_0": "Ma et al. 2018, ShuffleNet V2, Table 5: 1x, 146 MFLOPs (MACs), 2.3 M weights",
    "shufflenet_v2_x1_5": "Ma et al. 2018, ShuffleNet V2, Table 5: 1.5x, 299 MFLOPs (MACs), 3.5 M weights",
    "shufflenet_v2_x2_0": "Ma et al. 2018, ShuffleNet V2, Table 5: 2x, 591 MFLOPs (MACs), 7.4 M weights",
}


def _set_in_chans(model: nn.Module, in_chans: int) -> None:
    """Replace the model's first Conv2d by one with ``in_chans`` inputs and otherwise the same settings."""
    parent, attr, conv = next(
        (parent, attr, child)
        for parent in model.modules()
        for attr, child in parent.named_children()
        if isinstance(child, nn.Conv2d)
    )
    setattr(
        parent,
        attr,
        nn.Conv2d(
            in_chans,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=conv.bias is not None,
            device=conv.weight.device,
        ),
    )


def build_torchvision(name: str, num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> nn.Module:
    """Return torchvision's ``name`` with random weights (``weights=None``) and ``num_classes`` outputs."""
    model = tvm.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    if in_chans != 3:
        _set_in_chans(model, in_chans)
    return model


for _name, _source in TORCHVISION_MODELS.items():
    register_model(_name, origin="torchvision", source=_source)(partial(build_torchvision, _name))
