"""Complexity metric: hand-computed counts on small modules, agreement with torch and torchvision.

Byte counts are fp32 (4 bytes per element) unless a test says otherwise. Conv output side:
floor((H + 2p − d(k − 1) − 1) / s) + 1.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
import torchvision
from pydantic import ValidationError
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode

from harness.case import Case
from harness.metrics import complexity
from harness.metrics.complexity import COLUMNS, FORMULAS, ComplexityCount, OpCost, Options, count, measure

aten = torch.ops.aten
F32 = 4


def counted(model: nn.Module, x: torch.Tensor, **kwargs: object) -> ComplexityCount:
    """Return the fake-tensor count of ``model`` in eval mode on ``x``."""
    return count(model.eval(), x, method="fake", **kwargs)


def conv_out(size: int, k: int, s: int = 1, p: int = 0, d: int = 1) -> int:
    """Return a convolution's output side."""
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def flop_counter_macs(model: nn.Module, x: torch.Tensor, training: bool = False) -> int:
    """Return torch FlopCounterMode's total ÷ 2 for a forward (and backward when ``training``), on fakes."""
    model.train(training)
    with FakeTensorMode(allow_non_fake_inputs=True), FlopCounterMode(display=False) as counter:
        with torch.set_grad_enabled(training):
            out = model(x)
        if training:
            out.backward(torch.ones_like(out))
    model.eval()
    return counter.get_total_flops() // 2


# ------------------------------------------------------------------------------------------------
# Convolution


@pytest.mark.parametrize(
    ("cin", "cout", "k", "stride", "padding", "dilation", "groups", "bias"),
    [
        (3, 8, 3, 1, 1, 1, 1, True),  # plain, with bias
        (8, 16, 3, 2, 1, 1, 1, False),  # strided
        (8, 16, 3, 1, 2, 2, 1, False),  # dilated
        (8, 16, 3, 1, 1, 1, 4, False),  # grouped
        (16, 16, 5, 2, 2, 1, 16, False),  # depth-wise
        (6, 12, 1, 1, 0, 1, 3, True),  # grouped point-wise
    ],
)
def test_conv2d_counts(cin: int, cout: int, k: int, stride: int, padding: int, dilation: int,
                       groups: int, bias: bool) -> None:
    n, h, w = 2, 15, 12
    conv = nn.Conv2d(cin, cout, k, stride, padding, dilation, groups, bias=bias)
    result = counted(conv, torch.randn(n, cin, h, w))
    ho, wo = conv_out(h, k, stride, padding, dilation), conv_out(w, k, stride, padding, dilation)
    out = n * cout * ho * wo
    macs = out * (cin // groups) * k * k
    weights = cout * (cin // groups) * k * k + (cout if bias else 0)
    assert result.total == OpCost(
        macs=macs,
        flops=2 * macs + (out if bias else 0),
        bytes_read=F32 * (n * cin * h * w + weights),
        bytes_written=F32 * out,
        activations=out,
    )
    assert result.coverage == 1.0


@pytest.mark.parametrize("groups", [1, 2])
def test_conv_transpose2d_counts(groups: int) -> None:
    n, cin, cout, k, h = 1, 4, 6, 3, 7
    conv = nn.ConvTranspose2d(cin, cout, k, stride=2, padding=1, output_padding=1, groups=groups, bias=False)
    result = counted(conv, torch.randn(n, cin, h, h))
    ho = (h - 1) * 2 - 2 * 1 + (k - 1) + 1 + 1
    macs = n * cin * h * h * (cout // groups) * k * k  # every input position meets every kernel tap
    assert result.total.macs == macs
    assert result.total.flops == 2 * macs
    assert result.total.activations == n * cout * ho * ho
    assert result.total.mac_bytes == F32 * (n * cin * h * h + cin * (cout // groups) * k * k + n * cout * ho * ho)


def test_conv1d_and_conv3d_counts() -> None:
    conv1 = nn.Conv1d(4, 8, 5, stride=2, bias=False)
    assert counted(conv1, torch.randn(3, 4, 21)).total.macs == 3 * 8 * conv_out(21, 5, 2) * 4 * 5
    conv3 = nn.Conv3d(2, 4, 3, padding=1, bias=False)
    assert counted(conv3, torch.randn(1, 2, 4, 5, 6)).total.macs == 4 * (4 * 5 * 6) * 2 * 27


@pytest.mark.parametrize(("c1", "c2", "h", "w", "groups"), [(32, 64, 14, 14, 1), (24, 48, 7, 9, 1), (32, 64, 8, 8, 4)])
def test_pointwise_conv_mac_matches_shufflenet_v2_eq2(c1: int, c2: int, h: int, w: int, groups: int) -> None:
    """ShuffleNet V2 Eq. (1)/(2): MAC = hw(c1 + c2) + c1·c2/g for a 1×1 convolution, stride 1, batch 1."""
    conv = nn.Conv2d(c1, c2, 1, groups=groups, bias=False)
    result = counted(conv, torch.randn(1, c1, h, w))
    assert result.total.mac_bytes == (h * w * (c1 + c2) + c1 * c2 // groups) * F32
    assert result.total.macs == h * w * c1 * c2 // groups


# ------------------------------------------------------------------------------------------------
# Linear and matmul


def test_linear_with_and_without_bias() -> None:
    n, fin, fout = 5, 12, 7
    result = counted(nn.Linear(fin, fout), torch.randn(n, fin))
    macs = n * fin * fout
    assert result.total == OpCost(macs, 2 * macs + n * fout, F32 * (n * fin + fin * fout + fout),
                                  F32 * n * fout, n * fout)
    tokens = counted(nn.Linear(fin, fout, bias=False), torch.randn(2, 3, fin))
    assert tokens.total.macs == 2 * 3 * fin * fout
    assert tokens.total.flops == 2 * tokens.total.macs
    assert tokens.coverage == 1.0


class MatMul(nn.Module):
    """x @ xᵀ over the last two dimensions."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ x.transpose(-2, -1)


class BatchMatMul(nn.Module):
    """torch.bmm of x with a fixed (b, k, n) weight."""

    def __init__(self, b: int, k: int, n: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(b, k, n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.bmm(x, self.weight)


def test_bmm_counts() -> None:
    b, m, k, n = 3, 4, 5, 6
    result = counted(BatchMatMul(b, k, n), torch.randn(b, m, k))
    macs = b * m * k * n
    assert result.total == OpCost(macs, 2 * macs, F32 * (b * m * k + b * k * n), F32 * b * m * n, b * m * n)


@pytest.mark.parametrize("shape", [(6, 9), (2, 6, 9), (2, 3, 6, 9)])
def test_matmul_counts(shape: tuple[int, ...]) -> None:
    *batch, m, k = shape
    result = counted(MatMul(), torch.randn(shape))
    assert result.total.macs == math.prod(batch) * m * m * k
    assert result.total.activations == math.prod(batch) * m * m
    assert result.coverage == 1.0


class Attention(nn.Module):
    """F.scaled_dot_product_attention with q = k = v = x."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(x, x, x)


def test_scaled_dot_product_attention_counts() -> None:
    b, h, s, d = 2, 3, 10, 8
    result = counted(Attention(), torch.randn(b, h, s, d))
    scores = b * h * s * s
    assert result.total.macs == 2 * scores * d  # q·kᵀ and p·v
    assert result.total.flops == 2 * result.total.macs + 6 * scores
    assert result.coverage == 1.0


# ------------------------------------------------------------------------------------------------
# Normalisation, activations, element-wise, pooling, resampling, views


@pytest.mark.parametrize("method", ["meta", "fake", "real"])
def test_batch_norm_inference_is_two_flops_per_element(method: str) -> None:
    """Writes its output only, whatever the method: torch's meta kernel alone gives it saved statistics."""
    n, c, h, w = 2, 6, 5, 7
    numel = n * c * h * w
    result = count(nn.BatchNorm2d(c).eval(), torch.randn(n, c, h, w), method=method)
    assert result.total == OpCost(flops=2 * numel, bytes_read=F32 * (numel + 4 * c), bytes_written=F32 * numel)


def test_batch_norm_with_batch_statistics() -> None:
    """Statistics (4) + normalise (2) + weight and bias (2) per element; writes mean and invstd per channel."""
    n, c, h, w = 2, 6, 5, 7
    numel = n * c * h * w
    result = counted(nn.BatchNorm2d(c, track_running_stats=False), torch.randn(n, c, h, w))
    assert result.total == OpCost(flops=8 * numel, bytes_read=F32 * (numel + 2 * c),
                                  bytes_written=F32 * (numel + 2 * c))


def test_group_norm_counts() -> None:
    n, c, h, w, groups = 2, 8, 5, 5, 4
    numel = n * c * h * w
    result = counted(nn.GroupNorm(groups, c), torch.randn(n, c, h, w))
    assert result.total == OpCost(flops=8 * numel, bytes_read=F32 * (numel + 2 * c),
                                  bytes_written=F32 * (numel + 2 * n * groups))


def test_layer_norm_counts() -> None:
    n, t, d = 2, 3, 16
    numel = n * t * d
    result = counted(nn.LayerNorm(d), torch.randn(n, t, d))
    assert result.total == OpCost(flops=8 * numel, bytes_read=F32 * (numel + 2 * d),
                                  bytes_written=F32 * (numel + 2 * n * t))
    no_affine = counted(nn.LayerNorm(d, elementwise_affine=False), torch.randn(n, t, d))
    assert no_affine.total.flops == 6 * numel


def test_instance_norm_counts_as_batch_statistics() -> None:
    n, c, h, w = 2, 3, 4, 4
    result = counted(nn.InstanceNorm2d(c), torch.randn(n, c, h, w))
    assert result.total.flops == 6 * n * c * h * w
    assert result.coverage == 1.0


@pytest.mark.parametrize("inplace", [False, True])
def test_relu_reads_and_writes_each_element_once(inplace: bool) -> None:
    numel = 2 * 3 * 4 * 5
    result = counted(nn.ReLU(inplace=inplace), torch.randn(2, 3, 4, 5))
    assert result.total == OpCost(flops=numel, bytes_read=F32 * numel, bytes_written=F32 * numel)


@pytest.mark.parametrize(("act", "per_element"), [(nn.ReLU6(), 2), (nn.Sigmoid(), 4), (nn.SiLU(), 5),
                                                  (nn.Hardswish(), 5), (nn.GELU(), 5)])
def test_activation_flops_per_element(act: nn.Module, per_element: int) -> None:
    assert counted(act, torch.randn(3, 7)).total.flops == 21 * per_element


class Residual(nn.Module):
    """relu(x) + x, out of place or in place."""

    def __init__(self, inplace: bool) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(x)
        if self.inplace:
            y += x
            return y
        return y + x


@pytest.mark.parametrize("inplace", [False, True])
def test_residual_add_reads_two_writes_one(inplace: bool) -> None:
    numel = 2 * 4 * 6 * 6
    result = counted(Residual(inplace), torch.randn(2, 4, 6, 6))
    add = result.by_op["aten.add_" if inplace else "aten.add"]
    assert add == OpCost(flops=numel, bytes_read=2 * F32 * numel, bytes_written=F32 * numel)


def test_max_pool_counts_compares_and_int64_indices() -> None:
    n, c, h = 1, 4, 16
    result = counted(nn.MaxPool2d(3, stride=2, padding=1), torch.randn(n, c, h, h))
    out = n * c * conv_out(h, 3, 2, 1) ** 2
    assert result.total == OpCost(flops=8 * out, bytes_read=F32 * n * c * h * h,
                                  bytes_written=F32 * out + 8 * out)


def test_avg_pool_counts() -> None:
    n, c, h = 2, 3, 8
    result = counted(nn.AvgPool2d(2), torch.randn(n, c, h, h))
    out = n * c * 4 * 4
    assert result.total == OpCost(flops=4 * out, bytes_read=F32 * n * c * h * h, bytes_written=F32 * out)


def test_adaptive_avg_pool_counts() -> None:
    n, c = 2, 3
    global_pool = counted(nn.AdaptiveAvgPool2d(1), torch.randn(n, c, 7, 7))
    assert global_pool.total == OpCost(flops=n * c * 49, bytes_read=F32 * n * c * 49, bytes_written=F32 * n * c)
    # 8 -> 3 pools windows [0, 3), [2, 6), [5, 8): 3 + 4 + 3 = 10 elements per dimension.
    assert counted(nn.AdaptiveAvgPool2d(3), torch.randn(n, c, 8, 8)).total.flops == n * c * 10 * 10


@pytest.mark.parametrize(("mode", "per_output"), [("nearest", 0), ("bilinear", 7)])
def test_upsample_counts(mode: str, per_output: int) -> None:
    n, c, h = 1, 3, 5
    result = counted(nn.Upsample(scale_factor=2, mode=mode), torch.randn(n, c, h, h))
    out = n * c * (2 * h) ** 2
    assert result.total == OpCost(flops=per_output * out, bytes_read=F32 * n * c * h * h,
                                  bytes_written=F32 * out)
    assert result.coverage == 1.0


def test_softmax_counts() -> None:
    result = counted(nn.Softmax(dim=-1), torch.randn(4, 10))
    assert result.total == OpCost(flops=5 * 40, bytes_read=F32 * 40, bytes_written=F32 * 40)


class Views(nn.Module):
    """Only views: view, transpose, permute, flatten, expand, slicing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.view(2, -1).t().reshape(-1, 2).permute(1, 0).flatten()
        return y[1:5].unsqueeze(0).expand(3, -1)


def test_views_cost_nothing_and_count_as_covered() -> None:
    result = counted(Views(), torch.randn(2, 3, 4))
    assert result.total == OpCost()
    assert result.coverage == 1.0
    assert result.calls["aten.view"] >= 1


# ------------------------------------------------------------------------------------------------
# Training (forward + backward)


def test_training_counts_conv_backward() -> None:
    """grad_weight of every conv and grad_input of all but the first each cost the forward's macs.

    (FlopCounterMode's grad_weight formula ignores groups and would count the depth-wise conv C times.)
    """
    model = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.Conv2d(8, 8, 3, groups=8, bias=False))
    x = torch.randn(2, 3, 10, 10)
    first = 2 * 8 * 8 * 8 * 3 * 9
    second = 2 * 8 * 6 * 6 * 1 * 9
    assert counted(model, x).total.macs == first + second
    assert counted(model, x, training=True).total.macs == 2 * first + 3 * second


def test_training_with_frozen_parameters_has_no_backward() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.ReLU()).requires_grad_(False)
    x = torch.randn(1, 3, 6, 6)
    assert counted(model, x, training=True).total == counted(model, x).total


def test_training_matches_flop_counter_on_resnet18() -> None:
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(2, 3, 64, 64)
    result = counted(model, x, training=True)
    assert result.total.macs == flop_counter_macs(model, x, training=True)
    assert result.coverage == 1.0
    assert "aten.convolution_backward" in result.by_op
    assert "aten.native_batch_norm_backward" in result.by_op


# ------------------------------------------------------------------------------------------------
# Agreement with torch FlopCounterMode and torchvision's documented GFLOPS

#: Classifiers checked against torchvision's ``_ops`` (GMACs, measured at the weights' crop size).
TORCHVISION_CLASSIFIERS = [
    "resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0", "shufflenet_v2_x1_0",
    "squeezenet1_1", "regnet_y_400mf", "convnext_tiny", "inception_v3", "vit_b_32", "googlenet",
]


def _documented(name: str) -> tuple[float, int]:
    """Return torchvision's documented GFLOPS (= GMACs) of ``name`` and its input side."""
    weights = next(iter(torchvision.models.get_model_weights(name)))
    return weights.meta["_ops"], weights.transforms.keywords["crop_size"]


@pytest.mark.filterwarnings("ignore:The default weight initialization:FutureWarning")
@pytest.mark.parametrize("name", TORCHVISION_CLASSIFIERS)
def test_macs_match_torchvision_documented_gflops(name: str) -> None:
    documented, side = _documented(name)
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None).eval()
    result = counted(model, torch.randn(1, 3, side, side))
    # Published with 3 decimals: within 0.1 %, or within rounding for the smallest models.
    assert abs(result.total.macs / 1e9 - documented) <= max(1e-3 * documented, 5e-4)
    assert result.coverage == 1.0


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "efficientnet_b0", "shufflenet_v2_x1_0"])
def test_macs_equal_flop_counter_mode_half(name: str) -> None:
    model = torchvision.models.get_model(name, weights=None).eval()
    x = torch.randn(1, 3, 96, 96)
    assert counted(model, x).total.macs == flop_counter_macs(model, x)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "documented"), [("fasterrcnn_resnet50_fpn", 134.38),
                                                  ("retinanet_resnet50_fpn", 151.54)])
def test_detectors_match_torchvision_documented_gflops(name: str, documented: float) -> None:
    """Detectors resize any input to 800 px on the short side (GeneralizedRCNNTransform), so the count
    does not depend on the input size. NMS has no fake kernel, so the count falls back to real tensors.
    Faster R-CNN's box head runs once per RPN proposal: the documented number has the full 1000
    (``rpn_post_nms_top_n_test``); ``rpn_nms_thresh=1.0`` keeps 1000 proposals from a random init too."""
    kwargs = {"rpn_nms_thresh": 1.0} if name.startswith("fasterrcnn") else {}
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, weights_backbone=None, **kwargs).eval()
    result = count(model, torch.rand(1, 3, 800, 800))
    assert result.method == "real"
    assert "nonzero" in (result.fallback_reason or "")
    assert abs(result.total.macs / 1e9 - documented) <= 1e-3 * documented


# ------------------------------------------------------------------------------------------------
# Coverage


def test_coverage_is_full_on_resnet18_and_mobilenet_v2() -> None:
    for name in ("resnet18", "mobilenet_v2"):
        model = torchvision.models.get_model(name, weights=None)
        for training in (False, True):
            result = counted(model, torch.randn(2, 3, 64, 64), training=training)
            assert result.coverage == 1.0, (name, training, result.uncounted)
            assert result.uncounted == {}


@pytest.fixture
def relu_without_formula(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove the formula of in-place ReLU for one test."""
    monkeypatch.delitem(FORMULAS, aten.relu_)


@pytest.mark.usefixtures("relu_without_formula")
def test_op_without_formula_is_listed_and_lowers_coverage() -> None:
    model = torchvision.models.resnet18(weights=None).eval()
    result = counted(model, torch.randn(1, 3, 64, 64))
    assert result.uncounted == {"aten.relu_": 17}
    assert result.coverage == pytest.approx(1 - 17 / sum(result.calls.values()))
    values = measure(model, torch.randn(1, 3, 64, 64), Case("resnet18"), Options())
    assert json.loads(values["complexity_uncounted"]) == {"aten.relu_": 17}
    assert values["complexity_coverage"] < 1.0


@torch.library.custom_op("harness_test::scale", mutates_args=())
def scale(x: torch.Tensor) -> torch.Tensor:
    """A custom op no formula knows."""
    return x * 2


@scale.register_fake
def _(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


class CustomOpModel(nn.Module):
    """A convolution followed by the custom op."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return scale(self.conv(x))


def test_custom_op_is_uncounted() -> None:
    result = counted(CustomOpModel(), torch.randn(1, 3, 4, 4))
    assert result.uncounted == {"harness_test.scale": 1}
    assert result.coverage == 0.5
    assert result.total.macs == 16 * 3 * 4


# ------------------------------------------------------------------------------------------------
# The metric: measure(), options, fallback, the caller's model


def test_columns_and_options() -> None:
    assert complexity.NAME == "complexity"
    assert set(COLUMNS.values()) <= {"int64", "float64", "bool", "string", "list<float64>"}
    with pytest.raises(ValidationError):
        Options(unknown=1)
    with pytest.raises(ValidationError):
        Options(by="layer")


def test_measure_returns_every_column() -> None:
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(1, 3, 64, 64)
    values = measure(model, x, Case("resnet18", resolution=64), Options())
    assert set(values) == set(COLUMNS)
    assert values["params"] == values["params_trainable"] == 11_689_512
    assert values["macs"] == flop_counter_macs(model, x)
    assert values["complexity_method"] == "meta"
    assert values["complexity_coverage"] == 1.0
    assert values["complexity_uncounted"] == "{}"
    assert values["complexity_breakdown"] is None
    assert values["train_macs"] is values["train_flops"] is values["train_mac_bytes"] is None
    assert values["activations"] > 0


def test_measure_training_and_breakdowns() -> None:
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(1, 3, 64, 64)
    by_op = measure(model, x, Case("resnet18", resolution=64), Options(training=True, by="op"))
    ops = json.loads(by_op["complexity_breakdown"])
    assert ops["aten.convolution"]["calls"] == 20
    assert sum(row["macs"] for row in ops.values()) == by_op["macs"]
    assert sum(row["mac_bytes"] for row in ops.values()) == by_op["mac_bytes"]
    assert by_op["train_macs"] > 2 * by_op["macs"]
    assert by_op["train_flops"] > 2 * by_op["flops"]
    by_module = json.loads(measure(model, x, Case("resnet18"), Options(by="module"))["complexity_breakdown"])
    assert by_module["ResNet.conv1"]["macs"] == 64 * 32 * 32 * 3 * 49
    assert sum(row["flops"] for row in by_module.values()) == by_op["flops"]


def test_half_precision_halves_mac_bytes() -> None:
    model = torchvision.models.mobilenet_v2(weights=None).eval()
    x = torch.randn(1, 3, 64, 64)
    fp32 = measure(model, x, Case("mobilenet_v2"), Options())
    for dtype in ("fp16", "bf16"):
        half = measure(model, x, Case("mobilenet_v2", dtype=dtype), Options())
        assert half["mac_bytes"] * 2 == fp32["mac_bytes"]
        assert half["macs"] == fp32["macs"]
        assert half["flops"] == fp32["flops"]
    assert next(model.parameters()).dtype == torch.float32


def test_measure_leaves_the_model_unchanged() -> None:
    model = torchvision.models.resnet18(weights=None).eval()
    model.layer2.train()  # mixed flags must come back as they were
    model.fc.weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [m.training for m in model.modules()]
    values = measure(model, torch.randn(2, 3, 64, 64), Case("resnet18", batch=2), Options(training=True))
    assert values["params_trainable"] == values["params"] - 512 * 1000
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [m.training for m in model.modules()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert not model.fc.weight.requires_grad
    assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in model.parameters())


class DataDependent(nn.Module):
    """A convolution, then boolean-mask indexing (nonzero): no fake kernel can know the output size."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y[y > 0].sum()


def test_falls_back_to_real_tensors_when_fake_run_raises() -> None:
    model = DataDependent().eval()
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(Exception, match="nonzero"):
        count(model, x, method="fake")
    result = count(model, x)
    assert result.method == "real"
    assert "nonzero" in (result.fallback_reason or "")
    assert result.total.macs == 4 * 6 * 6 * 3 * 9
    values = measure(model, x, Case("data_dependent", resolution=8), Options(training=True))
    assert values["complexity_method"] == "real"
    assert values["train_macs"] == 2 * values["macs"]
    assert model.conv.weight.grad is None


class _CachingPeakFinder(nn.Module):
    """Like torchvision's anchor generator, caches tensors on itself in forward; then keeps the values above
    their mean (a data-dependent output size, which fails on meta and fake tensors)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.cells = [torch.zeros(2)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.cells = [c.to(x.device) for c in self.cells]
        y = self.conv(x).flatten()
        return y[(y > y.mean()).nonzero()[:, 0]].sum() + self.cells[0].sum()


def test_data_dependent_ops_are_named_and_caches_survive_the_fallbacks():
    model = _CachingPeakFinder().eval()
    result = count(model, torch.randn(1, 3, 8, 8))
    assert result.method == "real" and "meta" in result.fallback_reason and "fake" in result.fallback_reason
    assert result.data_dependent == {"aten.nonzero": 1}
    assert result.total.macs == 4 * 3 * 9 * 64  # the convolution, counted on the real run
    assert model.cells[0].device.type == "cpu" and type(model.cells[0]) is torch.Tensor  # not left meta or fake
    record = measure(model, torch.randn(1, 3, 8, 8), Case("cache"), Options())
    assert json.loads(record["complexity_data_dependent"]) == {"aten.nonzero": 1}


def test_scans_cost_one_flop_per_element_and_write_their_indices():
    class CornerPool(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.cummax(2).values + x.cumsum(3)

    result = count(CornerPool(), torch.randn(1, 2, 5, 6))
    assert result.uncounted == {}
    assert result.by_op["aten.cummax"].flops == 60 and result.by_op["aten.cumsum"].flops == 60
    assert result.by_op["aten.cummax"].bytes_written == 60 * 4 + 60 * 8  # values and int64 indices


class _SkipsPeaksWhenQuiet(nn.Module):
    """Calls nonzero only when some value is above 10: on meta and fake tensors the branch cannot be decided
    (``bool`` of a tensor stops them); on a quiet real input the branch is not taken."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x > 10).any()):
            return x.flatten()[(x.flatten() > 10).nonzero()[:, 0]].sum()
        return x.sum()


def test_data_dependent_control_flow_is_named_with_the_op_that_stopped_the_fake_count():
    result = count(_SkipsPeaksWhenQuiet(), torch.zeros(1, 3, 4, 4))
    assert result.method == "real" and result.stopped_at == ("aten._local_scalar_dense",)
    assert result.data_dependent == {"aten._local_scalar_dense": 1}  # the branch read back into Python
    assert "aten.nonzero" not in result.calls  # not taken on this input


class _SplitAndCheck(nn.Module):
    """What the zoo's last uncounted ops come from: Sequencer2d's LSTMs (``unsafe_split``) and Gemma's vision encoder
    (``torch._assert_async``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch._assert_async(x.new_ones((), dtype=torch.bool))
        first, second = torch.unsafe_split(x, x.shape[1] // 2, dim=1)
        return first + second


@pytest.mark.parametrize("method", ["meta", "real"])
def test_checks_and_unsafe_splits_cost_nothing_and_are_covered(method):
    result = count(_SplitAndCheck(), torch.randn(1, 4, 3, 3), method=method)
    assert result.coverage == 1.0 and not result.uncounted
    assert {"aten._assert_async", "aten.unsafe_split"} <= set(result.calls)
    assert result.total.flops == 18  # the add alone: one per output element
