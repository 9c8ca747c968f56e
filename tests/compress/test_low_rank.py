"""Low-rank factorisation: exact at full rank, the SVD's Eckart–Young error below it, the replaced structure, whole
timm models, and the options."""

from __future__ import annotations

import pydantic
import pytest
import timm
import torch
from torch import nn

from harness.case import Case
from harness.zoo.build import build_model
from harness.zoo.compress import CompressContext, count_params, get_method, method_options
from harness.zoo.compress import low_rank as lr

FULL = {"rank_fraction": 1.0, "only_if_smaller": False, "classifier": True}


def options(**kwargs) -> lr.Options:
    return method_options("low_rank", kwargs)


def compress(model: nn.Module, **kwargs):
    return get_method("low_rank").apply(model, options(**kwargs), CompressContext(torch.zeros(1)))


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got - want).norm() / want.norm()).item()


class Net(nn.Module):
    """A k×k conv with stride, a reflect-padded dilated non-square conv, a 1×1 conv with stride, a depth-wise conv
    and a linear head."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 12, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(12, 10, (3, 2), padding="same", dilation=2, padding_mode="reflect"), nn.ReLU(),
            nn.Conv2d(10, 16, 1, stride=2), nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        return self.fc(self.features(x))


@pytest.mark.parametrize("conv", ["tucker2", "cp"])
def test_at_full_rank_the_factorised_net_computes_the_original_function(conv):
    torch.manual_seed(0)
    net, x = Net().eval(), torch.randn(4, 3, 15, 13)
    want = net(x)
    done = compress(net, conv=conv, **FULL)
    assert relative_error(done.model(x), want) < 1e-5
    assert done.info["factorised_layers"] == 4 and done.info["skipped_grouped"] == 1
    assert done.info["ranks"] == {"mean_fraction": 1.0, "min_fraction": 1.0, "max_fraction": 1.0}
    assert isinstance(net.features[6], nn.Conv2d) and net.features[6].groups == 16  # depth-wise left as it is
    assert all(isinstance(net.features[i], nn.Sequential) for i in (0, 2, 4)) and isinstance(net.fc, nn.Sequential)
    assert not any(m.training for m in net.modules())  # the replacements keep the eval mode


@pytest.mark.parametrize("shape", [(12, 20), (20, 12)])
def test_the_truncated_svd_meets_the_eckart_young_bound(shape):
    torch.manual_seed(0)
    layer = nn.Linear(shape[1], shape[0])
    sigma = torch.linalg.svdvals(layer.weight.detach().double())
    x = torch.randn(64, shape[1])
    errors = []
    for rank in (1, 4, 8, 12):
        down, up = lr.factorise_linear(layer, rank)
        approx = (up.weight @ down.weight).detach().double()
        assert (layer.weight.detach().double() - approx).norm() ** 2 == pytest.approx(
            (sigma[rank:] ** 2).sum().item(), rel=1e-4, abs=1e-9)
        out_error = (up(down(x)) - layer(x)).norm(dim=1)
        assert (out_error <= (sigma[rank] if rank < len(sigma) else 0) * x.norm(dim=1) + 1e-4).all()
        errors.append(out_error.mean().item())
    assert errors == sorted(errors, reverse=True) and errors[-1] < 1e-5


def test_a_pointwise_conv_becomes_two_pointwise_convs_with_the_svd_error():
    torch.manual_seed(0)
    conv = nn.Conv2d(10, 14, 1, stride=2, padding=1)
    sigma = torch.linalg.svdvals(conv.weight.detach().flatten(1).double())
    first, second = lr.factorise_pointwise(conv, 4)
    assert (first.in_channels, first.out_channels, first.stride, first.padding, first.bias) == (10, 4, (2, 2),
                                                                                                (1, 1), None)
    assert (second.in_channels, second.out_channels, second.stride, second.padding) == (4, 14, (1, 1), (0, 0))
    assert torch.equal(second.bias, conv.bias)
    approx = (second.weight.flatten(1) @ first.weight.flatten(1)).detach().double()
    assert (conv.weight.detach().flatten(1).double() - approx).norm() ** 2 == pytest.approx(
        (sigma[4:] ** 2).sum().item(), rel=1e-4)
    x = torch.randn(2, 10, 9, 9)
    assert relative_error(lr.factorise_pointwise(conv, 10)(x), conv(x)) < 1e-6


def tucker_kernel(seq: nn.Sequential) -> torch.Tensor:
    first, middle, last = seq
    return torch.einsum("na,abhw,bc->nchw", last.weight[:, :, 0, 0], middle.weight, first.weight[:, :, 0, 0])


def cp_kernel(seq: nn.Sequential) -> torch.Tensor:
    first, vertical, horizontal, last = seq
    return torch.einsum("nr,rh,rw,rc->nchw", last.weight[:, :, 0, 0], vertical.weight[:, 0, :, 0],
                        horizontal.weight[:, 0, 0, :], first.weight[:, :, 0, 0])


@pytest.mark.parametrize("iterations", [0, 3])
def test_tucker2_error_is_within_the_hosvd_bound_and_falls_as_the_rank_grows(iterations):
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 12, 3, padding=1)
    weight = conv.weight.detach().double()
    sigma_out = torch.linalg.svdvals(weight.flatten(1))
    sigma_in = torch.linalg.svdvals(weight.transpose(0, 1).flatten(1))
    errors = []
    for rank_in, rank_out in [(2, 3), (4, 6), (6, 9), (8, 12)]:
        seq = lr.tucker2(conv, rank_in, rank_out, iterations)
        error = ((tucker_kernel(seq).double() - weight).norm() ** 2).item()
        assert error <= (sigma_out[rank_out:] ** 2).sum() + (sigma_in[rank_in:] ** 2).sum() + 1e-9
        errors.append(error)
    assert errors == sorted(errors, reverse=True) and errors[-1] < 1e-10
    x = torch.randn(2, 8, 7, 7)
    assert relative_error(seq(x), conv(x)) < 1e-5


def test_cp_error_falls_as_the_rank_grows_and_is_exact_at_full_rank():
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 5, 3, stride=2, padding=1)
    assert lr.cp_full_rank((5, 6, 3, 3)) == 45
    errors = [relative_error(cp_kernel(lr.cp(conv, rank)), conv.weight) for rank in (2, 8, 20, 45)]
    assert errors == sorted(errors, reverse=True) and errors[0] > 0.5 and errors[-1] < 1e-6
    x = torch.randn(2, 6, 9, 9)
    assert relative_error(lr.cp(conv, 45)(x), conv(x)) < 1e-5


def test_the_replacements_have_the_expected_shapes_and_parameters():
    conv, linear = nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.Linear(20, 12)
    tucker = lr.plan(conv, options(rank_fraction=0.5))  # r_out = 16 of 32, r_in = 8 of 16
    assert tucker.params == 16 * 8 + 8 * 16 * 9 + 16 * 32 + 32 and tucker.rank_fraction == 0.5
    seq = tucker.build()
    assert [(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.bias is None) for m in seq] == [
        (16, 8, (1, 1), (1, 1), True), (8, 16, (3, 3), (2, 2), True), (16, 32, (1, 1), (1, 1), False)]
    assert count_params(seq) == tucker.params == 1824
    cp = lr.plan(conv, options(rank=4, conv="cp"))
    seq = cp.build()
    assert [(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.groups) for m in seq] == [
        (16, 4, (1, 1), (1, 1), 1), (4, 4, (3, 1), (2, 1), 4), (4, 4, (1, 3), (1, 2), 4), (4, 32, (1, 1), (1, 1), 1)]
    assert count_params(seq) == cp.params == 4 * (16 + 3 + 3 + 32) + 32
    assert cp.rank_fraction == 4 / (16 * 9)
    svd = lr.plan(linear, options(rank=5))
    down, up = svd.build()
    assert (down.in_features, down.out_features, down.bias, up.in_features, up.out_features) == (20, 5, None, 5, 12)
    assert count_params(nn.Sequential(down, up)) == svd.params == 5 * 32 + 12
    assert lr.plan(linear, options(rank=100)).params == 12 * 32 + 12  # capped at the full rank 12


def test_energy_keeps_the_smallest_rank_with_that_share_of_squared_singular_values():
    q1, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))
    q2, _ = torch.linalg.qr(torch.randn(9, 4, dtype=torch.float64))
    matrix = q1[:, :4] @ torch.diag(torch.tensor([4.0, 3, 2, 1], dtype=torch.float64)) @ q2.T  # σ² 16, 9, 4, 1
    assert [lr.energy_rank(matrix, e) for e in (0.5, 0.53, 0.8, 0.9, 0.97, 1.0)] == [1, 1, 2, 3, 4, 4]
    assert lr.energy_rank(matrix.T, 0.8) == 2 and lr.energy_rank(torch.zeros(3, 5), 0.9) == 1
    assert lr.kept_rank(options(energy=0.8), 4, matrix) == 2
    assert lr.kept_rank(options(rank_fraction=0.3), 10, matrix) == 3
    assert lr.kept_rank(options(), 7, matrix) == 4  # the default: half the full rank, rounded up


def test_a_layer_is_kept_dense_unless_factorising_makes_it_smaller():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 3))
    done = compress(model, rank=6)
    assert isinstance(model[0], nn.Linear) and isinstance(model[2], nn.Sequential)  # 6·16 ≥ 64; 6·72 < 512
    assert isinstance(model[4], nn.Linear)  # the classifier
    assert {k: done.info[k] for k in ("factorised_layers", "kept_dense", "skipped_grouped")} == {
        "factorised_layers": 1, "kept_dense": 1, "skipped_grouped": 0}
    assert done.info["param_ratio"] == pytest.approx((72 + 6 * 8 + 6 * 64 + 64 + 195) / (72 + 576 + 195))
    assert done.info["ranks"]["mean_fraction"] == 6 / 8
    done = compress(nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)), rank=6, only_if_smaller=False)
    assert done.info["factorised_layers"] == 1 and done.info["kept_dense"] == 0


def test_layers_it_cannot_see_through_are_left_as_they_are():
    attention = nn.MultiheadAttention(8, 2)
    model = nn.Sequential(nn.Conv1d(4, 8, 3), timm.layers.Conv2dSame(4, 8, 3))
    model.attention, model.head = attention, nn.Linear(8, 2)
    done = compress(model)
    assert done.info["skipped_other"] == 3 and done.info["factorised_layers"] == 0
    assert type(attention.out_proj) is nn.modules.linear.NonDynamicallyQuantizableLinear


@pytest.mark.parametrize("name, dense_convs", [("resnet18", 0), ("mobilenetv2_100", 17)])
def test_whole_timm_models_compress_and_train(name, dense_convs):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10).eval()
    depthwise = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    before = count_params(model)
    done = compress(model)
    assert done.model is model and model.pretrained_cfg["architecture"] == name
    assert done.info["skipped_grouped"] == len(depthwise) == dense_convs
    assert all(any(m is d for m in model.modules()) for d in depthwise)
    assert type(model.get_classifier()) is nn.Linear
    assert done.info["param_ratio"] == pytest.approx(count_params(model) / before) and done.info["param_ratio"] < 0.65
    assert done.info["ranks"]["min_fraction"] == 0.5 and done.info["ranks"]["max_fraction"] < 0.6
    model.train()
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_the_classifier_is_factorised_on_request():
    model = timm.create_model("resnet18", num_classes=10)
    compress(model, rank=4, classifier=True)
    assert isinstance(model.fc, nn.Sequential) and model.fc[0].out_features == 4


def test_build_model_measures_the_factorised_structure():
    model = build_model(Case("tiny_cnn", resolution=8, compress="low_rank"))
    assert [tuple(m.weight.shape) for m in model.conv] == [(2, 3, 1, 1), (4, 2, 3, 3), (8, 4, 1, 1)]  # 3×3 3→8
    assert model.harness_compress_info["factorised_layers"] == 1
    assert model.harness_compress_info["param_ratio"] == pytest.approx((110 + 16 + 90) / (216 + 16 + 90))


@pytest.mark.parametrize("kwargs", [{"rank": 0}, {"rank_fraction": 0}, {"rank_fraction": 1.5}, {"energy": 1.2},
                                    {"energy": 0}, {"rank": 4, "energy": 0.9}, {"rank_fraction": 0.5, "rank": 2},
                                    {"conv": "tt"}, {"tucker_iterations": -1}, {"ranks": 3}])
def test_bad_options_are_rejected(kwargs):
    with pytest.raises(pydantic.ValidationError):
        method_options("low_rank", kwargs)


def test_the_default_scheme_is_half_the_rank():
    assert options().rank_fraction == 0.5 and options().rank is None and options().energy is None
    assert options(energy=0.9).rank_fraction is None
