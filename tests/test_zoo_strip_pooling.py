"""Strip pooling (Hou et al., CVPR 2020): the SPM, the MPM, the SPM ResNets and SPNet build, run, and have
the sizes of the authors' code; one SPM is counted by hand, term by term, against the complexity counter.

The paper's size tables could not be retrieved here, so the reference sizes below are exact counts of the
authors' code, houqb/SPNet@5e97da3 (``models/resnet.py``, ``customize.py``, ``spnet.py``, ``base.py``),
built with ``spm_on=True`` and counted with this harness's counter (parameters of ``SPNet.pretrained`` and
``SPNet.head``; its auxiliary FCN head, 2,398,358 parameters at 150 classes, is left out of ``spnet*``; MACs of
the backbone at 224 px undilated, and of backbone + head at 480 px dilated, plus the classifier's linear).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

import pytest
import torch
from timm.models.resnet import Bottleneck
from torch import nn

from harness.metrics.complexity import count
from harness.zoo.registry import create_model, get_entry
from harness.zoo.strip_pooling import MixedPooling, StripPooling
from tests.published import Published

CODE = "houqb/SPNet@5e97da3 code, counted"



# fmt: off
PUBLISHED: list[Published] = [
    # Backbone: resnet50/101(deep_base, spm_on=True); classifier: + a 2048x1000 linear (2,049,000; 2,048,000 MACs).
    Published("resnet50_spm", "params", 29_748_864 + 2_049_000, 0.0, f"{CODE}: resnet50 + linear"),
    Published("resnet50_spm", "macs", 5_562_023_936 + 2_048_000, 0.0, f"{CODE}: resnet50(dilated=False) + linear"),
    Published("resnet50_spm", "spm_params", 6_117_056, 0.0, f"{CODE}: the 6 SPBlocks"),
    Published("resnet101_spm", "params", 48_740_992 + 2_049_000, 0.0, f"{CODE}: resnet101 + linear"),
    Published("resnet101_spm", "macs", 9_274_245_120 + 2_048_000, 0.0, f"{CODE}: resnet101(dilated=False) + linear"),
    Published("resnet101_spm", "spm_params", 6_117_056, 0.0, f"{CODE}: the 6 SPBlocks"),
    # SPNet(nclass=150): pretrained (29,748,864 / 48,740,992) + head (15,690,902); MACs at 480 px (ADE20K crop):
    # backbone (97,323,171,840 / 165,506,826,240) + SPHead at 60x60 (45,792,018,432).
    Published("spnet50", "params", 29_748_864 + 15_690_902, 0.0, f"{CODE}: SPNet-50 less auxlayer"),
    Published("spnet50", "macs", 97_323_171_840 + 45_792_018_432, 0.0, f"{CODE}: SPNet-50 less auxlayer", 480),
    Published("spnet101", "params", 48_740_992 + 15_690_902, 0.0, f"{CODE}: SPNet-101 less auxlayer"),
    Published("spnet101", "macs", 165_506_826_240 + 45_792_018_432, 0.0, f"{CODE}: SPNet-101 less auxlayer", 480),
]
# fmt: on


def _params(model: nn.Module, _: int) -> float:
    return sum(p.numel() for p in model.parameters())


def _spm_params(model: nn.Module, res: int) -> float:
    return sum(_params(m, res) for m in model.modules() if isinstance(m, StripPooling))


def _macs(model: nn.Module, res: int) -> float:
    result = count(model, torch.empty(1, 3, res, res, device="meta"))
    assert result.coverage == 1.0, result.uncounted
    return result.total.macs


MEASURES: dict[str, Callable[[nn.Module, int], float]] = {"params": _params, "spm_params": _spm_params, "macs": _macs}
NAMES = ("resnet50_spm", "resnet101_spm", "spnet50", "spnet101")


@cache
def meta_model(name: str, **kwargs: Any) -> nn.Module:
    """Return ``name`` (with ``kwargs``) built on the meta device in eval mode (shared by the size checks)."""
    with torch.device("meta"):
        return create_model(name, **kwargs).eval()


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run on one intra-op thread (small forwards; the CI machine's two cores may be shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("row", PUBLISHED, ids=lambda r: f"{r.name}-{r.quantity}@{r.resolution}")
def test_reference_size(row: Published) -> None:
    measured = MEASURES[row.quantity](meta_model(row.name), row.resolution)
    assert measured == pytest.approx(row.value, rel=row.tol), f"{row.name}: {measured:,.0f} vs {row.source}"


def test_one_spm_counted_by_hand() -> None:
    c, h, w = 64, 16, 16
    with torch.device("meta"):
        spm = StripPooling(c).eval()
    result = count(spm, torch.empty(1, c, h, w, device="meta"))
    assert result.coverage == 1.0, result.uncounted

    conv_h_params, bn_h_params = c * c * 3 * 1, 2 * c  # 3x1 conv C->C without bias, BN scale and shift
    conv_w_params, bn_w_params = c * c * 1 * 3, 2 * c  # 1x3 conv C->C without bias, BN
    gate_params = c * c + c  # 1x1 conv C->C with bias
    assert _params(spm, 0) == conv_h_params + bn_h_params + conv_w_params + bn_w_params + gate_params == 28_992

    conv_h_macs = (c * h * 1) * (c * 3)  # output positions of the H×1 strip × weights per output
    conv_w_macs = (c * 1 * w) * (c * 3)  # output positions of the 1×W strip × weights per output
    gate_macs = (c * h * w) * c  # 1x1 conv over the full map
    assert result.total.macs == conv_h_macs + conv_w_macs + gate_macs == 1_441_792

    pool_flops = c * h * w + c * h * w  # H×1 pool: C·H means of W (W-1 adds + 1 divide), likewise 1×W
    conv_flops = 2 * (conv_h_macs + conv_w_macs + gate_macs) + c * h * w  # multiply + add, gate's bias add
    bn_flops = 2 * (c * h) + 2 * (c * w)  # inference BN: scale and shift per strip element
    add_flops = c * h * w  # rows + cols on the expanded views (the expands themselves cost 0)
    relu_flops = c * h * w
    sigmoid_flops = 4 * c * h * w  # negate, exp, add, divide
    mul_flops = c * h * w  # x · gate
    expected = pool_flops + conv_flops + bn_flops + add_flops + relu_flops + sigmoid_flops + mul_flops
    assert result.total.flops == expected == 3_051_520
    assert result.by_op["aten._adaptive_avg_pool2d"].flops == pool_flops
    assert result.by_op["aten.sigmoid"].flops == sigmoid_flops
    assert result.calls["aten.expand"] == 2


def test_mpm_parameters_and_bilinear_expansion() -> None:
    chs, mid, side = 1024, 256, 8
    with torch.device("meta"):
        mpm = MixedPooling(chs).eval()
    reductions = 2 * (chs * mid + 2 * mid)  # two 1x1 conv-BN-ReLU to C/4
    square = 5 * (9 * mid * mid + 2 * mid)  # 3x3 conv-BN: local, two pooled, two fusions
    strips = 2 * (3 * mid * mid + 2 * mid)  # 1x3 and 3x1 conv-BN
    project = 2 * mid * chs + 2 * chs  # 1x1 conv-BN back to C
    assert _params(mpm, 0) == reductions + square + strips + project == 4_397_568  # the authors' StripPooling(1024)
    result = count(mpm, torch.empty(1, chs, side, side, device="meta"))
    assert result.coverage == 1.0, result.uncounted
    assert result.calls["aten.upsample_bilinear2d"] == 4
    assert result.by_op["aten.upsample_bilinear2d"].flops == 4 * 7 * mid * side * side


def test_spms_sit_where_the_authors_put_them() -> None:
    model = meta_model("resnet50_spm")
    spms = {name: m.gate.in_channels for name, m in model.named_modules() if isinstance(m, StripPooling)}
    assert spms == {
        "layer1.2.aa": 64,
        "layer2.3.aa": 128,
        "layer3.5.aa": 256,
        "layer4.0.aa": 512,
        "layer4.1.aa": 512,
        "layer4.2.aa": 512,
    }


def test_spnet_backbone_is_dilated_with_multi_grid() -> None:
    backbone = meta_model("spnet101").backbone
    assert [b.conv2.dilation[0] for b in backbone.layer3] == [1] + [2] * 22
    assert [(b.conv2.dilation[0], b.conv2.padding[0]) for b in backbone.layer4] == [(4, 4), (8, 8), (16, 16)]
    assert all(b.conv2.stride == (1, 1) for b in (*backbone.layer3, *backbone.layer4))


@pytest.mark.parametrize("name", NAMES)
def test_num_classes_in_chans_and_classifier_on_meta(name: str) -> None:
    with torch.device("meta"):
        model = create_model(name, num_classes=19, in_chans=1).eval()
        out = model(torch.empty(2, 1, 64, 48))
    assert out.shape == ((2, 19, 64, 48) if name.startswith("spnet") else (2, 19))
    classifier = model.get_classifier()
    assert getattr(classifier, "out_channels", getattr(classifier, "out_features", None)) == 19
    entry = get_entry(name)
    assert entry is not None and entry.origin == "harness" and "Hou et al. 2020" in entry.source


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(
    ("name", "side", "out_shape"), [("resnet50_spm", 64, (2, 1000)), ("spnet50", 32, (2, 150, 32, 32))]
)
def test_cpu_forward_and_backward(name: str, side: int, out_shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    model = create_model(name).train()
    for block in model.modules():  # undo timm's zero-init of each residual branch's last BN, which stops the
        if isinstance(block, Bottleneck):  # gradient before it reaches the SPM
            nn.init.ones_(block.bn3.weight)
    out = model(torch.randn(2, 3, side, side))
    assert out.shape == out_shape
    out.square().mean().backward()
    spm_grads = [p.grad for m in model.modules() if isinstance(m, StripPooling) for p in m.parameters()]
    assert len(spm_grads) == 6 * 8  # per SPM: 3x1 conv, its BN (2), 1x3 conv, its BN (2), gate conv + bias
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in spm_grads)


def test_spm_gates_its_input() -> None:
    torch.manual_seed(0)
    spm = StripPooling(8).eval()
    x = torch.randn(2, 8, 5, 7)
    with torch.no_grad():
        y = spm(x)
        nn.init.zeros_(spm.gate.weight)
        nn.init.zeros_(spm.gate.bias)
        halved = spm(x)
    assert y.shape == x.shape
    assert torch.all((y / x).clamp(0, 1) == y / x)  # a sigmoid gate in (0, 1) per element
    torch.testing.assert_close(halved, x / 2)  # σ(0) = 1/2


def test_strip_pooling_off_is_the_same_network_without_its_spms() -> None:
    with_spm = meta_model("resnet50_spm")
    without = meta_model("resnet50_spm", strip_pooling=False)
    assert _spm_params(without, 0) == 0
    assert _params(with_spm, 0) - _params(without, 0) == _spm_params(with_spm, 0) == 6_117_056
