"""The benchmark networks of ShuffleNet V2 §2 (Ma et al. 2018, ECCV), one builder per guideline.

§2 validates four guidelines with small networks at 56×56 input, each a stack of 10 building blocks,
the total FLOPs held fixed within a table by varying the channel counts:

- G1 (Table 1) ``sv2_g1``: blocks of two 1×1 convs, c1→c2 then c2→c1, at the ratios c1:c2;
- G2 (Table 2) ``sv2_g2``: 1×1 group convs c→c with g groups;
- G3 (Table 3, appendix Fig. 1 of the arXiv version) ``sv2_g3``: blocks of 1 to 4 1×1 convs in
  series or in parallel;
- G4 (Table 4) ``sv2_g4``: ResNet "bottleneck" units with and without their ReLUs and shortcut.

The paper tests different channel counts on its two platforms for Tables 1 and 2 (its ARM column,
one Snapdragon 810 thread, has 1/16 and 1/4 of the GPU column's FLOPs); ``platform`` picks the
column whose configuration is built. Tables 3 and 4 give the channels ``c`` per column, passed as
``channels``. The networks are only these blocks: no stem, no head, no batch norm (folded at
inference), no bias, stride 1, so the output has the input's 56×56 size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar

import torch
from torch import nn

from harness.zoo.registry import register_model

#: Building blocks stacked in every benchmark network of §2.
BLOCKS = 10

Platform = Literal["arm", "gpu"]

#: Table 1: c1:c2 -> (c1, c2) for ×1, per platform column; ×2 and ×4 multiply both.
G1_CHANNELS: dict[str, dict[str, tuple[int, int]]] = {
    "gpu": {"1:1": (128, 128), "1:2": (90, 180), "1:6": (52, 312), "1:12": (36, 432)},
    "arm": {"1:1": (32, 32), "1:2": (22, 44), "1:6": (13, 78), "1:12": (9, 108)},
}

#: Table 2: groups g -> channels c for ×1, per platform column; ×2 and ×4 multiply c.
G2_CHANNELS: dict[str, dict[int, int]] = {
    "gpu": {1: 128, 2: 180, 4: 256, 8: 360},
    "arm": {1: 64, 2: 90, 4: 128, 8: 180},
}

K = TypeVar("K")
V = TypeVar("V")


def _lookup(table: Mapping[K, V], key: K, what: str) -> V:
    """Return ``table[key]``; raise ValueError naming the accepted keys when ``key`` is not one."""
    if key not in table:
        raise ValueError(f"unknown {what} {key!r}; expected one of: {', '.join(map(str, table))}")
    return table[key]


def _conv(c_in: int, c_out: int, kernel: int = 1, groups: int = 1) -> nn.Conv2d:
    """Return a stride-1, bias-free convolution that keeps the spatial size."""
    return nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, groups=groups, bias=False)


def _stack(block: Callable[[], nn.Module]) -> nn.Sequential:
    """Return :data:`BLOCKS` blocks built by ``block`` in sequence."""
    return nn.Sequential(*(block() for _ in range(BLOCKS)))


def g1_channels(ratio: str, scale: int = 1, platform: Platform = "arm") -> tuple[int, int]:
    """Return (c1, c2) of Table 1's ``ratio`` row in the ``platform`` column at ``scale`` (×1, ×2, ×4)."""
    c1, c2 = _lookup(_lookup(G1_CHANNELS, platform, "platform"), ratio, "ratio c1:c2")
    return c1 * scale, c2 * scale


def g2_channels(groups: int, scale: int = 1, platform: Platform = "arm") -> int:
    """Return the channels c of Table 2's ``groups`` row in the ``platform`` column at ``scale``.

    c is rounded half up to a multiple of ``groups``, which a group convolution needs: this changes
    only the ARM ×1 row g = 8, where the paper prints c = 180 (22.5 channels a group) and 184 is built
    (FLOPs 3% above the g = 1 row; 176 would be 5.5% below).
    """
    c = _lookup(_lookup(G2_CHANNELS, platform, "platform"), groups, "group count") * scale
    return groups * math.floor(c / groups + 0.5)


@register_model(
    origin="harness",
    source="Ma et al. 2018, ShuffleNet V2, §2 G1, Table 1: 10 blocks of 1x1 convs c1->c2->c1, 56x56",
)
def sv2_g1(ratio: str = "1:1", scale: int = 1, platform: Platform = "arm") -> nn.Module:
    """Return Table 1's benchmark network: 10 blocks of a 1×1 conv c1→c2 and a 1×1 conv c2→c1.

    (c1, c2) come from :data:`G1_CHANNELS` (the paper's ×1 values, rounded by the paper, so the
    FLOPs of the ratios differ by up to 5.5%) times ``scale``. Input and output have c1 channels.
    Assumed: the block is the two convolutions only (the paper names no normalisation or activation).
    """
    c1, c2 = g1_channels(ratio, scale, platform)
    return _stack(lambda: nn.Sequential(_conv(c1, c2), _conv(c2, c1)))


@register_model(
    origin="harness",
    source="Ma et al. 2018, ShuffleNet V2, §2 G2, Table 2: 10 pointwise group convs c->c, 56x56",
)
def sv2_g2(groups: int = 1, scale: int = 1, platform: Platform = "arm") -> nn.Module:
    """Return Table 2's benchmark network: 10 layers of 1×1 group convolution c→c with ``groups`` groups.

    c comes from :data:`G2_CHANNELS` times ``scale``; input and output have c channels. Assumed: no
    channel shuffle between the layers (the paper stacks "10 pointwise group convolution layers").
    """
    c = g2_channels(groups, scale, platform)
    return _stack(lambda: _conv(c, c, groups=groups))


class Concat(nn.Module):
    """Branches applied to the same input, their outputs concatenated along the channels."""

    def __init__(self, branches: Iterable[nn.Module]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the branches' outputs on ``x``, concatenated along dimension 1."""
        return torch.cat([branch(x) for branch in self.branches], dim=1)


@dataclass(frozen=True)
class Arrangement:
    """How a G3 block arranges its k fragments: their widths from c, and how they are joined."""

    widths: Callable[[int, int], tuple[int, int]]
    """(c, k) -> (the block's input and output channels, each fragment's output channels); every
    fragment is a 1×1 conv from the first to the second."""
    join: Callable[[list[nn.Module]], nn.Module]
    """The k fragments -> the block."""


#: Series: k convs w→w with w = c/√k (k·w² = c²), rounded down as the paper rounds 128/√2 to 90.
#: Parallel: k convs c→c/k on the block's input, concatenated (k·c·c/k = c²).
ARRANGEMENTS: dict[str, Arrangement] = {
    "series": Arrangement(lambda c, k: (math.floor(c / math.sqrt(k)),) * 2, lambda f: nn.Sequential(*f)),
    "parallel": Arrangement(lambda c, k: (c, c // k), Concat),
}

#: Table 3's rows: structure -> (arrangement, number of 1×1 conv fragments per block).
G3_STRUCTURES: dict[str, tuple[str, int]] = {
    "1-fragment": ("series", 1),
    "2-fragment-series": ("series", 2),
    "4-fragment-series": ("series", 4),
    "2-fragment-parallel": ("parallel", 2),
    "4-fragment-parallel": ("parallel", 4),
}


def g3_widths(structure: str, channels: int) -> tuple[int, int]:
    """Return (input channels, fragment output channels) of Table 3's ``structure`` for the column c."""
    arrangement, k = _lookup(G3_STRUCTURES, structure, "structure")
    return ARRANGEMENTS[arrangement].widths(channels, k)


@register_model(
    origin="harness",
    source="Ma et al. 2018, ShuffleNet V2, §2 G3, Table 3 and appendix Fig. 1: 10 blocks of 1-4 1x1 convs "
    "in series or parallel at the FLOPs of one 1x1 conv c->c, 56x56",
)
def sv2_g3(structure: str = "1-fragment", channels: int = 64) -> nn.Module:
    """Return Table 3's benchmark network: 10 blocks of ``structure`` at the FLOPs of a 1×1 conv c→c.

    ``channels`` is the table's c, "the number of channels for 1-fragment"; the paper adjusts the
    channels of the other structures to the same FLOPs without saying how, and shows the blocks only
    in a figure. Assumed here (see :data:`ARRANGEMENTS`): k fragments in series are k convs w→w with
    w = ⌊c/√k⌋, so the network's input has w channels (:func:`g3_widths`); k fragments in
    parallel are k convs c→c/k reading the block's input, concatenated (Inception-style), so the
    input keeps c channels.
    """
    arrangement, k = _lookup(G3_STRUCTURES, structure, "structure")
    c_in, c_out = g3_widths(structure, channels)
    return _stack(lambda: ARRANGEMENTS[arrangement].join([_conv(c_in, c_out) for _ in range(k)]))


class Bottleneck(nn.Module):
    """ResNet's bottleneck unit (He et al. 2016) without batch norm: 1×1 c→c/4, 3×3 c/4→c/4, 1×1 c/4→c;
    a ReLU after each conv (the last after the shortcut's addition) when ``relu``, the identity
    shortcut added when ``shortcut``."""

    def __init__(self, channels: int, relu: bool, shortcut: bool) -> None:
        super().__init__()
        width = channels // 4
        self.convs = nn.ModuleList([_conv(channels, width), _conv(width, width, 3), _conv(width, channels)])
        self.act = nn.ReLU(inplace=True) if relu else nn.Identity()
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the unit's output on ``x`` (same shape as ``x``)."""
        out = x
        for conv in self.convs[:-1]:
            out = self.act(conv(out))
        out = self.convs[-1](out)
        return self.act(out + x if self.shortcut else out)


@register_model(
    origin="harness",
    source="Ma et al. 2018, ShuffleNet V2, §2 G4, Table 4: 10 ResNet bottleneck units with/without ReLU "
    "and shortcut, 56x56",
)
def sv2_g4(relu: bool = True, shortcut: bool = True, channels: int = 32) -> nn.Module:
    """Return Table 4's benchmark network: 10 ResNet bottleneck units (:class:`Bottleneck`) of c channels.

    Assumed: the table's c ("the number of channels in unit") is the unit's input and output width and
    the inner width is c/4, as in ResNet. (With every conv c wide the ARM column's 56.7 images/s at
    c = 32 would need over 20 G multiply-adds/s from one Cortex-A57 thread; with c/4 it is 1.9 G.)
    No batch norm (folded at inference), so the element-wise ops are exactly the ReLUs and the add.
    """
    return _stack(lambda: Bottleneck(channels, relu, shortcut))
