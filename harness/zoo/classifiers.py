"""Classifiers that timm and torchvision lack, written from their papers, and timm aliases.

Every builder cites its paper and table and states the published parameter count and multiply-adds
(MACs) it is checked against in ``tests/test_zoo_classifiers.py``. Builders take timm-style kwargs
(``num_classes``, ``in_chans``) and build randomly initialised weights; nothing is downloaded.

Where timm already has the exact architecture under another name, the registry name is an alias
(``_TIMM_ALIASES``). The architectures written here reuse timm's building blocks: ``ConvNormAct`` for
every conv-BN(-act), timm's ``ResNet`` for the ResNet-style networks (with a custom block), and timm's
NASNet-A cells for NASNet-A Mobile.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import timm
import torch
from timm.layers import ConvNormAct
from timm.models.nasnet import CellStem0, CellStem1, FirstCell, NormalCell, ReductionCell0, ReductionCell1
from timm.models.resnet import Bottleneck, ResNet
from torch import nn
from torch.nn import functional as F

from harness.zoo.registry import register_model

# --------------------------------------------------------------------------------------------------
# timm aliases: registry name -> (timm name, source). Same architecture, the paper's name.
# --------------------------------------------------------------------------------------------------
_TIMM_ALIASES: dict[str, tuple[str, str]] = {
    "mobilenet_v1": (
        "mobilenetv1_100",
        "Howard et al. 2017, MobileNets, Table 8: 1.0 MobileNet-224, 4.2 M params, 569 M mult-adds",
    ),
    "mobilenet_v2": (
        "mobilenetv2_100",
        "Sandler et al. 2018, MobileNetV2, Table 4: 3.4 M params, 300 M mult-adds "
        "(TF-Slim model table: 3.47 M, counted without BatchNorm)",
    ),
    "mobilenet_v3_large": (
        "mobilenetv3_large_100",
        "Howard et al. 2019, Searching for MobileNetV3, Table 3: Large 1.0, 5.4 M params, 219 M mult-adds",
    ),
    # timm's `seresnet50` strides the 3x3 conv (v1.5, 4.09 G MACs); `legacy_seresnet50` is the Caffe
    # SENet layout of the paper: stride in the first 1x1 conv, SE after bn3 before the residual add, r=16.
    "se_resnet50": (
        "legacy_seresnet50",
        "Hu et al. 2018, Squeeze-and-Excitation Networks, Table 2 / §4: 28.1 M params, 3.87 G mult-adds",
    ),
}

for _name, (_timm_name, _source) in _TIMM_ALIASES.items():
    register_model(_name, origin="timm", source=_source)(partial(timm.create_model, _timm_name, pretrained=False))


# --------------------------------------------------------------------------------------------------
# ResNet-50 v1 (stride in the first 1x1 conv) and SCNet-50, both on timm's ResNet.
# --------------------------------------------------------------------------------------------------
class BottleneckV1(Bottleneck):
    """timm's ``Bottleneck`` with the stride moved to the first 1x1 conv, as in He et al.'s Caffe ResNet."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, *args: Any, **kwargs: Any) -> None:
        super().__init__(inplanes, planes, stride, *args, **kwargs)
        self.conv1.stride = (stride, stride)
        self.conv2.stride = (1, 1)


@register_model(
    source="He et al. 2016, Deep Residual Learning for Image Recognition, Table 1: 50-layer, 3.8e9 FLOPs "
    "(mult-adds); 25.6 M params"
)
def resnet50_v1(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> nn.Module:
    """Return ResNet-50 v1: the stride of each downsampling bottleneck sits in its first 1x1 conv.

    He et al. 2016, Table 1: 3.8 G multiply-adds at 224×224 (timm/torchvision's v1.5 layout, with the
    stride in the 3x3 conv, costs 4.09 G); 25.56 M parameters, the same as v1.5.
    """
    return ResNet(BottleneckV1, (3, 4, 6, 3), num_classes=num_classes, in_chans=in_chans, **kwargs)


class SelfCalibratedConv(nn.Module):
    """SC-Conv (Liu et al. 2020, Fig. 2): K4( K3(x) · σ(x + Up(K2(AvgPool_r(x)))) ), each K a 3x3 conv-BN;
    K4 carries the stride and, as in the official code, a ReLU."""

    def __init__(self, chs: int, stride: int = 1, pooling_r: int = 4, dilation: int = 1) -> None:
        super().__init__()
        conv = partial(ConvNormAct, chs, chs, 3, dilation=dilation, apply_act=False)
        self.pool = nn.AvgPool2d(pooling_r, pooling_r)
        self.k2 = conv()
        self.k3 = conv()
        self.k4 = conv(stride=stride, apply_act=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the self-calibrated response of ``x`` (strided by ``stride``)."""
        calibration = torch.sigmoid(x + F.interpolate(self.k2(self.pool(x)), x.shape[2:]))
        return self.k4(self.k3(x) * calibration)


class SCBottleneck(nn.Module):
    """SCNet bottleneck (official MCG-NKU/SCNet ``SCBottleneck``): the 3x3 stage is split in two halves,
    a plain 3x3 conv (K1) and a self-calibrated conv, concatenated before the 1x1 expansion.

    Accepts timm's ResNet block keyword arguments; those this block does not use (``reduce_first``,
    ``drop_block``, ``act_layer``, ``norm_layer``, ``aa_layer``, ``device``, ``dtype``) are ignored.
    """

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        cardinality: int = 1,
        base_width: int = 64,
        dilation: int = 1,
        first_dilation: int | None = None,
        drop_path: nn.Module | None = None,
        **_: Any,
    ) -> None:
        super().__init__()
        half = int(planes * base_width / 64) * cardinality // 2
        first_dilation = first_dilation or dilation
        self.conv1_a = ConvNormAct(inplanes, half, 1)
        self.conv1_b = ConvNormAct(inplanes, half, 1)
        self.k1 = ConvNormAct(half, half, 3, stride=stride, dilation=first_dilation)
        self.scconv = SelfCalibratedConv(half, stride=stride, dilation=first_dilation)
        self.conv3 = ConvNormAct(2 * half, planes * self.expansion, 1, apply_act=False)
        self.downsample = downsample
        self.drop_path = drop_path or nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def zero_init_last(self) -> None:
        """Zero the last BN's scale so each block starts as the identity (called by timm's ResNet)."""
        nn.init.zeros_(self.conv3.bn.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the block output: relu(conv3([K1 half, SC half]) + shortcut(x))."""
        out_a = self.k1(self.conv1_a(x))
        out_b = self.scconv(self.conv1_b(x))
        out = self.drop_path(self.conv3(torch.cat([out_a, out_b], dim=1)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.act(out + shortcut)


@register_model(
    source="Liu et al. 2020, Improving Convolutional Networks with Self-Calibrated Convolutions (CVPR), "
    "Table 1: SCNet-50, 25.56 M params, 4.0 G FLOPs (mult-adds)"
)
def scnet50(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> nn.Module:
    """Return SCNet-50: ResNet-50 (7x7 stem, v1.5 strides) with SC bottlenecks, pooling rate r = 4.

    Published (Liu et al. 2020, Table 1): 25.56 M parameters, 4.0 G multiply-adds at 224×224.
    """
    return ResNet(SCBottleneck, (3, 4, 6, 3), num_classes=num_classes, in_chans=in_chans, **kwargs)


# --------------------------------------------------------------------------------------------------
# ShuffleNet V1
# --------------------------------------------------------------------------------------------------
# Zhang et al. 2018, Table 1: output channels of stage 2 at 1x for each group count g (stages 3, 4 double).
_SHUFFLENET_V1_STAGE2_CHS: dict[int, int] = {1: 144, 2: 200, 3: 240, 4: 272, 8: 384}
_SHUFFLENET_V1_REPEATS = (4, 8, 4)  # units per stage, the first one strided


class ShuffleUnitV1(nn.Module):
    """ShuffleNet unit (Zhang et al. 2018, Fig. 2b/c): GConv1x1-BN-ReLU, channel shuffle, DWConv3x3-BN,
    GConv1x1-BN; added to the input (stride 1) or concatenated with a 3x3 avg-pooled input (stride 2).
    """

    def __init__(self, in_chs: int, out_chs: int, groups: int, stride: int, first_groups: int) -> None:
        super().__init__()
        mid = out_chs // 4
        branch_out = out_chs - in_chs if stride == 2 else out_chs
        self.compress = ConvNormAct(in_chs, mid, 1, groups=first_groups)
        self.shuffle = nn.ChannelShuffle(groups) if groups > 1 else nn.Identity()
        self.depthwise = ConvNormAct(mid, mid, 3, stride=stride, groups=mid, apply_act=False)
        self.expand = ConvNormAct(mid, branch_out, 1, groups=groups, apply_act=False)
        self.shortcut = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else None
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the unit's output (same channels as ``out_chs``)."""
        branch = self.expand(self.depthwise(self.shuffle(self.compress(x))))
        if self.shortcut is None:
            return self.act(x + branch)
        return torch.cat([self.shortcut(x), self.act(branch)], dim=1)


class ShuffleNetV1(nn.Module):
    """ShuffleNet V1 (Zhang et al. 2018, Table 1): 3x3 conv stem, max-pool, three stages of shuffle
    units, global pool, FC. The first pointwise conv of stage 2 is not grouped (its input is narrow).

    ``width`` scales the stages' channels ("ShuffleNet s×"). The paper does not give the stem width of
    the scaled models; ``stem_chs`` follows the authors' release (megvii-model/ShuffleNet-Series: 12, 24,
    24, 48 for 0.5×, 1×, 1.5×, 2×), which reproduces the paper's mult-adds (1.5× with a 36-channel stem
    would cost 300 M instead of 292 M).
    """

    def __init__(
        self,
        groups: int = 3,
        width: float = 1.0,
        stem_chs: int = 24,
        num_classes: int = 1000,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(ConvNormAct(in_chans, stem_chs, 3, stride=2), nn.MaxPool2d(3, stride=2, padding=1))
        base = int(_SHUFFLENET_V1_STAGE2_CHS[groups] * width)
        units: list[nn.Module] = []
        in_chs = stem_chs
        for stage, repeats in enumerate(_SHUFFLENET_V1_REPEATS):
            out_chs = base * 2**stage
            for i in range(repeats):
                first_groups = 1 if stage == 0 and i == 0 else groups
                units.append(ShuffleUnitV1(in_chs, out_chs, groups, 2 if i == 0 else 1, first_groups))
                in_chs = out_chs
        self.stages = nn.Sequential(*units)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_chs, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits of shape (N, num_classes)."""
        return self.fc(self.pool(self.stages(self.stem(x))).flatten(1))


# registry name -> (groups, width, stem channels, published mult-adds at 224x224, "FLOPs" in the paper).
SHUFFLENET_V1_VARIANTS: dict[str, tuple[int, float, int, str]] = {
    "shufflenet_v1_g1": (1, 1.0, 24, "Table 1: 1x, g=1, 143 MFLOPs (MACs)"),
    "shufflenet_v1_g2": (2, 1.0, 24, "Table 1: 1x, g=2, 140 MFLOPs (MACs)"),
    "shufflenet_v1_g3": (3, 1.0, 24, "Table 1: 1x, g=3, 137 MFLOPs (MACs)"),
    "shufflenet_v1_g4": (4, 1.0, 24, "Table 1: 1x, g=4, 133 MFLOPs (MACs)"),
    "shufflenet_v1_g8": (8, 1.0, 24, "Table 1: 1x, g=8, 137 MFLOPs (MACs)"),
    "shufflenet_v1_g3_x0_5": (3, 0.5, 12, "Table 2: 0.5x, 38 MFLOPs (MACs)"),
    "shufflenet_v1_g3_x1_5": (3, 1.5, 24, "Table 5: 1.5x (g=3), 292 MFLOPs (MACs)"),
    "shufflenet_v1_g3_x2_0": (3, 2.0, 48, "Table 5: 2x (g=3), 524 MFLOPs (MACs)"),
}


def shufflenet_v1(groups: int, width: float, stem_chs: int, num_classes: int = 1000, in_chans: int = 3) -> nn.Module:
    """Return ShuffleNet V1 with ``groups`` pointwise groups at ``width``× channels.

    The paper gives no parameter counts, only mult-adds ("FLOPs") at 224×224; see SHUFFLENET_V1_VARIANTS.
    """
    return ShuffleNetV1(groups, width, stem_chs, num_classes, in_chans)


for _name, (_groups, _width, _stem_chs, _table) in SHUFFLENET_V1_VARIANTS.items():
    register_model(_name, source=f"Zhang et al. 2018, ShuffleNet, {_table}")(
        partial(shufflenet_v1, _groups, _width, _stem_chs)
    )


# --------------------------------------------------------------------------------------------------
# NASNet-A Mobile (4 @ 1056), from timm's NASNet-A cells
# --------------------------------------------------------------------------------------------------
class NASNetAMobile(nn.Module):
    """NASNet-A (N @ F) built from timm's NASNet-A cells (Zoph et al. 2018, Fig. 4 and Appendix A).

    Stem: a stride-2 3x3 conv (unpadded) and two reduction stem cells; then three stacks of N normal
    cells separated by two reduction cells. Each cell takes the previous two cells' outputs; the cell
    after a reduction cell takes (reduction output, the cell before it) as in TF-Slim's mobile
    configuration (``skip_reduction_layer_input=0``). The auxiliary head is left out (inference only).
    """

    def __init__(
        self,
        num_normal: int = 4,
        num_features: int = 1056,
        stem_size: int = 32,
        num_classes: int = 1000,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        f = num_features // 24  # filters of the first stack's normal cells (44 for 1056)
        self.conv0 = ConvNormAct(
            in_chans, stem_size, 3, stride=2, padding=0, apply_act=False, norm_kwargs={"eps": 1e-3}
        )
        self.cell_stem_0 = CellStem0(stem_size, num_channels=f // 4)
        self.cell_stem_1 = CellStem1(stem_size, num_channels=f // 2)
        cells: list[nn.Module] = []
        prev, cur = f, 2 * f  # channels of (x_prev, x): the two stem cells' outputs
        for stack, m in enumerate((1, 2, 4)):  # filters double after each reduction
            if stack:
                reduction = (ReductionCell0, ReductionCell1)[stack - 1]
                cells.append(reduction(prev, f * m, cur, f * m))
                prev, cur = cur, 4 * f * m
            cells.append(FirstCell(prev, f * m // 2, cur, f * m))
            prev, cur = cur, 6 * f * m
            for _ in range(num_normal - 1):
                cells.append(NormalCell(prev, f * m, cur, f * m))
                prev = cur
        self.cells = nn.ModuleList(cells)
        self.act = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cur, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the last cell's activated output (N, num_features, H/32, W/32)."""
        x_conv0 = self.conv0(x)
        x_prev = self.cell_stem_0(x_conv0)
        x = self.cell_stem_1(x_conv0, x_prev)
        for cell in self.cells:
            x_prev, x = x, cell(x, x_prev)
        return self.act(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits of shape (N, num_classes)."""
        return self.fc(self.pool(self.forward_features(x)).flatten(1))


@register_model(
    source="Zoph et al. 2018, Learning Transferable Architectures for Scalable Image Recognition, "
    "Table 3: NASNet-A (4 @ 1056), 5.3 M params, 564 M mult-adds"
)
def nasnet_a_mobile(num_classes: int = 1000, in_chans: int = 3) -> nn.Module:
    """Return NASNet-A Mobile (4 @ 1056): 5.3 M parameters, 564 M multiply-adds at 224×224 (Table 3)."""
    return NASNetAMobile(num_classes=num_classes, in_chans=in_chans)


# --------------------------------------------------------------------------------------------------
# Darknet-19 (YOLO9000 classifier)
# --------------------------------------------------------------------------------------------------
# Redmon & Farhadi 2017, Table 6: per stage (after a 2x2/2 max-pool, except the first) the conv layers
# as (out_channels, kernel); 3x3 and 1x1 convs alternate.
_DARKNET19_STAGES: tuple[tuple[tuple[int, int], ...], ...] = (
    ((32, 3),),
    ((64, 3),),
    ((128, 3), (64, 1), (128, 3)),
    ((256, 3), (128, 1), (256, 3)),
    ((512, 3), (256, 1), (512, 3), (256, 1), (512, 3)),
    ((1024, 3), (512, 1), (1024, 3), (512, 1), (1024, 3)),
)


class Darknet19(nn.Module):
    """Darknet-19 (Redmon & Farhadi 2017, Table 6): 18 conv-BN-LeakyReLU(0.1) layers and 5 max-pools,
    then the classifier as in the paper, the 19th conv: 1x1 to the classes on the 7x7 map, then global
    average pool (the same function as pool-then-linear, but counted with the paper's 50 M MACs).
    """

    def __init__(self, num_classes: int = 1000, in_chans: int = 3) -> None:
        super().__init__()
        conv = partial(ConvNormAct, act_layer=nn.LeakyReLU, act_kwargs={"negative_slope": 0.1})
        layers: list[nn.Module] = []
        in_chs = in_chans
        for i, stage in enumerate(_DARKNET19_STAGES):
            if i:
                layers.append(nn.MaxPool2d(2, stride=2))
            for out_chs, kernel in stage:
                layers.append(conv(in_chs, out_chs, kernel))
                in_chs = out_chs
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(in_chs, num_classes, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits of shape (N, num_classes)."""
        return self.pool(self.classifier(self.features(x))).flatten(1)


@register_model(
    source="Redmon & Farhadi 2017, YOLO9000: Better, Faster, Stronger, Table 6 and §3: 5.58 Bn ops at "
    "224x224 (= 2 x mult-adds); Redmon & Farhadi 2018 (YOLOv3) Table 2: 7.29 Bn ops at 256x256"
)
def darknet19(num_classes: int = 1000, in_chans: int = 3) -> nn.Module:
    """Return Darknet-19: 5.58 billion operations (2.79 G multiply-adds) at 224×224 (YOLO9000 §3)."""
    return Darknet19(num_classes, in_chans)


# --------------------------------------------------------------------------------------------------
# A plain VGG-style network: VGG-11's convolutions, a small classifier
# --------------------------------------------------------------------------------------------------
#: VGG configuration A (Simonyan & Zisserman 2015, Table 1): 3x3 conv widths, "M" a 2x2 max-pool.
VGG11_CONFIG: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class PlainVGG(nn.Module):
    """VGG's 3x3 conv-BN-ReLU stack with max-pools, then global average pooling and one linear layer."""

    def __init__(self, config: Sequence[int | str], num_classes: int = 1000, in_chans: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_chs = in_chans
        for width in config:
            if width == "M":
                layers.append(nn.MaxPool2d(2, stride=2))
            else:
                layers.append(ConvNormAct(in_chs, int(width), 3))
                in_chs = int(width)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_chs, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits of shape (N, num_classes)."""
        return self.fc(self.pool(self.features(x)).flatten(1))

    def get_classifier(self) -> nn.Module:
        """Return the final linear layer (timm's interface)."""
        return self.fc


@register_model(
    source="Simonyan & Zisserman 2015, VGG configuration A (Table 1) with BatchNorm, classifier as the CIFAR VGGs "
    "of Liu et al. 2017 (Network Slimming): global average pool + one linear; convolutions as torchvision's "
    "vgg11_bn features (9.23 M params, 7.49 G MACs at 224 px, checked in tests)"
)
def vgg11_bn_gap(num_classes: int = 1000, in_chans: int = 3) -> nn.Module:
    """Return a plain VGG-11 (BN) with a global-average-pool classifier: no residual, 1x1 or depth-wise
    convolution, the network where the compression notes expect low-rank factorisation to pay."""
    return PlainVGG(VGG11_CONFIG, num_classes, in_chans)


# --------------------------------------------------------------------------------------------------
# Stacked hourglass backbones: CornerNet (Hourglass-104) and CornerNet-Squeeze
# --------------------------------------------------------------------------------------------------
class Residual(nn.Module):
    """CornerNet's residual block: conv3x3-BN-ReLU, conv3x3-BN, plus a 1x1 conv-BN projection shortcut
    when the shape changes, then ReLU (princeton-vl/CornerNet-Lite ``py_utils/utils.py``)."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(in_chs, out_chs, 3, stride=stride)
        self.conv2 = ConvNormAct(out_chs, out_chs, 3, apply_act=False)
        projection = stride != 1 or in_chs != out_chs
        self.skip = ConvNormAct(in_chs, out_chs, 1, stride=stride, apply_act=False) if projection else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return relu(residual branch + shortcut)."""
        return self.act(self.conv2(self.conv1(x)) + self.skip(x))


class Fire(nn.Module):
    """CornerNet-Squeeze's fire module (Law et al. 2019, §4.2): a 1x1 squeeze conv-BN to half the output
    width, then 1x1 and depth-wise 3x3 expansion convs concatenated, BN, residual add when shapes match,
    ReLU (CornerNet-Lite ``CornerNet_Squeeze.py``: no ReLU after the squeeze, as there)."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1) -> None:
        super().__init__()
        mid = out_chs // 2
        self.squeeze = ConvNormAct(in_chs, mid, 1, apply_act=False)
        self.expand_1x1 = nn.Conv2d(mid, out_chs // 2, 1, stride=stride, bias=False)
        self.expand_3x3 = nn.Conv2d(mid, out_chs // 2, 3, stride=stride, padding=1, groups=mid, bias=False)
        self.bn = nn.BatchNorm2d(out_chs)
        self.residual = stride == 1 and in_chs == out_chs
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the fire module's output (``out_chs`` channels, strided by ``stride``)."""
        squeezed = self.squeeze(x)
        out = self.bn(torch.cat([self.expand_1x1(squeezed), self.expand_3x3(squeezed)], dim=1))
        return self.act(out + x if self.residual else out)


Block = Callable[..., nn.Module]  # block(in_chs, out_chs, stride=1) -> module


def _blocks(block: Block, in_chs: int, out_chs: int, count: int, stride: int = 1) -> nn.Sequential:
    """Return ``count`` blocks, the first mapping in_chs -> out_chs (with ``stride``), the rest out -> out."""
    return nn.Sequential(block(in_chs, out_chs, stride), *(block(out_chs, out_chs) for _ in range(count - 1)))


def _blocks_reversed(block: Block, in_chs: int, out_chs: int, count: int) -> nn.Sequential:
    """Return ``count`` blocks keeping in_chs, the last one mapping in_chs -> out_chs."""
    return nn.Sequential(*(block(in_chs, in_chs) for _ in range(count - 1)), block(in_chs, out_chs))


class Hourglass(nn.Module):
    """One hourglass module, recursive over ``dims`` (CornerNet §4.4): a skip branch at this resolution,
    and a branch that downsamples (first block strided; no max-pool), recurses, and upsamples back."""

    def __init__(
        self, dims: Sequence[int], counts: Sequence[int], block: Block, upsample: Callable[[int], nn.Module]
    ) -> None:
        super().__init__()
        cur, nxt = dims[0], dims[1]
        self.up1 = _blocks(block, cur, cur, counts[0])
        self.low1 = _blocks(block, cur, nxt, counts[0], stride=2)
        inner = len(dims) > 2
        self.low2 = Hourglass(dims[1:], counts[1:], block, upsample) if inner else _blocks(block, nxt, nxt, counts[1])
        self.low3 = _blocks_reversed(block, nxt, cur, counts[0])
        self.up2 = upsample(cur)

    def forward_levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return the merged (summed) skip and up-sampled branches of every level, innermost first; the
        last is this module's output, same shape as ``x`` (CornerNet-Saccade reads the inner ones)."""
        low = self.low1(x)
        if isinstance(self.low2, Hourglass):
            inner = self.low2.forward_levels(low)
            low = inner[-1]
        else:
            inner, low = [], self.low2(low)
        return [*inner, self.up1(x) + self.up2(self.low3(low))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the merged (summed) skip and up-sampled branches, same shape as ``x``."""
        return self.forward_levels(x)[-1]


class StackedHourglass(nn.Module):
    """Stacked hourglass backbone with intermediate supervision links (CornerNet §4.4), plus a
    classification head (global average pool + linear on the last stack's features).

    ``forward_features`` returns the per-stack feature maps (``dim`` channels each), which the detectors'
    heads consume; ``forward`` classifies from the last one (``num_classes=0``: no classifier; ``forward``
    returns the pooled features).
    """

    def __init__(
        self,
        stem: nn.Module,
        make_hourglass: Callable[[], nn.Module],
        stacks: int = 2,
        dim: int = 256,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        self.stem = stem
        self.hourglasses = nn.ModuleList(make_hourglass() for _ in range(stacks))
        self.cnvs = nn.ModuleList(ConvNormAct(dim, dim, 3) for _ in range(stacks))
        self.inters = nn.ModuleList(Residual(dim, dim) for _ in range(stacks - 1))
        self.merge_inters = nn.ModuleList(ConvNormAct(dim, dim, 1, apply_act=False) for _ in range(stacks - 1))
        self.merge_cnvs = nn.ModuleList(ConvNormAct(dim, dim, 1, apply_act=False) for _ in range(stacks - 1))
        self.act = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(dim, num_classes) if num_classes else nn.Identity()

    def forward_levels(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        """Return per stack its hourglass's merged outputs of every level, innermost first (see
        :meth:`Hourglass.forward_levels`), then the stack's feature map (N, dim, H/s, W/s), s the stem's
        stride."""
        inter = self.stem(x)
        stacks = []
        for i, (hourglass, cnv) in enumerate(zip(self.hourglasses, self.cnvs, strict=True)):
            levels = hourglass.forward_levels(inter)
            stacks.append([*levels, cnv(levels[-1])])
            if i < len(self.inters):
                merged = self.merge_inters[i](inter) + self.merge_cnvs[i](stacks[-1][-1])
                inter = self.inters[i](self.act(merged))
        return stacks

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return one feature map per stack, each (N, dim, H/s, W/s) with s the stem's stride."""
        return [levels[-1] for levels in self.forward_levels(x)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits of shape (N, num_classes) from the last stack's features."""
        return self.fc(self.pool(self.forward_features(x)[-1]).flatten(1))


def _nearest_upsample(_: int) -> nn.Module:
    """Return CornerNet's 2x nearest-neighbour upsampling (parameter-free)."""
    return nn.Upsample(scale_factor=2)


#: Hourglass-104 (CornerNet §4.4): channels per hourglass level, and residual blocks per level.
HOURGLASS104_DIMS = (256, 256, 384, 384, 384, 512)
HOURGLASS104_COUNTS = (2, 2, 2, 2, 2, 4)
#: CornerNet-Squeeze's hourglass (CornerNet-Lite §4.2): channels per level, and fire modules per level.
HOURGLASS_SQUEEZE_DIMS = (256, 256, 384, 384, 512)
HOURGLASS_SQUEEZE_COUNTS = (2, 2, 2, 2, 4)


def residual_hourglass(
    dims: Sequence[int], counts: Sequence[int], stacks: int = 2, num_classes: int = 1000, in_chans: int = 3
) -> StackedHourglass:
    """Return a stacked hourglass of CornerNet's design: a stride-4 stem (7x7/2 conv to ``dims[0]/2``, a
    strided residual block to ``dims[0]``), ``stacks`` hourglass modules of residual blocks over ``dims``
    (channels per level) and ``counts`` (blocks per level), nearest-neighbour upsampling. Hourglass-104
    and CornerNet-Saccade's Hourglass-54 are two settings of it; smaller ones serve fast tests."""
    stem = nn.Sequential(ConvNormAct(in_chans, dims[0] // 2, 7, stride=2), Residual(dims[0] // 2, dims[0], stride=2))
    make_hourglass = partial(Hourglass, tuple(dims), tuple(counts), Residual, _nearest_upsample)
    return StackedHourglass(stem, make_hourglass, stacks=stacks, dim=dims[0], num_classes=num_classes)


@register_model(
    source="Law & Deng 2018, CornerNet: Detecting Objects as Paired Keypoints, §4.4; backbone of "
    "princeton-vl/CornerNet-Lite core/models/CornerNet.py (CornerNet's 201 M include its heads)"
)
def hourglass104(num_classes: int = 1000, in_chans: int = 3) -> nn.Module:
    """Return CornerNet's Hourglass-104: a 7x7/2 conv + strided residual stem (stride 4), then two
    hourglass modules of 5 downsamplings (channels 256, 256, 384, 384, 384, 512; 2 residual blocks per
    level, 4 at the bottom), nearest-neighbour upsampling, and a classification head.

    Parameters: 187,700,352 in the backbone, as in CornerNet's code (``hg``: ``pre``, ``hgs``, ``cnvs``,
    ``inters``, ``inters_``, ``cnvs_``), plus this classifier (257,000 for 1000 classes). The 201 M quoted
    for CornerNet also count the corner-pooling and heat/embedding/offset heads of both stacks
    (13,334,860 in the official code), which belong to the detector, not to the backbone.
    """
    return residual_hourglass(HOURGLASS104_DIMS, HOURGLASS104_COUNTS, num_classes=num_classes, in_chans=in_chans)


def _transposed_upsample(chs: int) -> nn.Module:
    """Return CornerNet-Squeeze's 4x4 stride-2 transposed conv (it replaces nearest upsampling)."""
    return nn.ConvTranspose2d(chs, chs, 4, stride=2, padding=1)


def fire_hourglass(
    dims: Sequence[int], counts: Sequence[int], stacks: int = 2, num_classes: int = 1000, in_chans: int = 3
) -> StackedHourglass:
    """Return a stacked hourglass of CornerNet-Squeeze's design: a stride-8 stem (7x7/2 conv to
    ``dims[0]/2``, two strided residual blocks to ``dims[0]``), ``stacks`` hourglass modules of fire
    modules over ``dims`` and ``counts``, 4x4 transposed-conv upsampling."""
    stem = nn.Sequential(
        ConvNormAct(in_chans, dims[0] // 2, 7, stride=2),
        Residual(dims[0] // 2, dims[0], stride=2),
        Residual(dims[0], dims[0], stride=2),
    )
    make_hourglass = partial(Hourglass, tuple(dims), tuple(counts), Fire, _transposed_upsample)
    return StackedHourglass(stem, make_hourglass, stacks=stacks, dim=dims[0], num_classes=num_classes)


@register_model(
    source="Law et al. 2019, CornerNet-Lite: Efficient Keypoint-Based Object Detection, §4.2; backbone of "
    "princeton-vl/CornerNet-Lite core/models/CornerNet_Squeeze.py"
)
def hourglass_squeeze(num_classes: int = 1000, in_chans: int = 3) -> nn.Module:
    """Return CornerNet-Squeeze's backbone: a stride-8 stem (7x7/2 conv, two strided residual blocks),
    two hourglass modules of 4 downsamplings (channels 256, 256, 384, 384, 512; 2 fire modules per
    level, 4 at the bottom) with depth-wise 3x3 fire modules and 4x4 transposed-conv upsampling, and a
    classification head. The paper gives no parameter count; the official code's backbone has
    24,728,448 (its detection heads add 7,043,404), which the test checks.
    """
    return fire_hourglass(HOURGLASS_SQUEEZE_DIMS, HOURGLASS_SQUEEZE_COUNTS, num_classes=num_classes, in_chans=in_chans)
