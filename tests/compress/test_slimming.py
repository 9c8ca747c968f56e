"""Network slimming: the L1 penalty on BatchNorm scales, and pruning the channels of smallest |γ| over the net."""

from __future__ import annotations

import pydantic
import pytest
import timm
import torch
from timm.layers import BatchNormAct2d
from torch import nn

from harness.case import Case
from harness.errors import SkipCase
from harness.metrics.train import cross_entropy
from harness.zoo.build import build_model
from harness.zoo.compress import CompressContext, count_params, get_method, method_options
from harness.zoo.compress.slimming import batchnorm_scales
from tests.compress.test_channel_prune import INPUTS, PlainNet, prune

OUTPUTS = torch.randn(6, 10, generator=torch.Generator().manual_seed(1))
LABELS = torch.tensor([0, 3, 9, 1, 1, 7])


def slimming_loss(model: nn.Module, l1: float) -> torch.Tensor:
    """Return slimming's training loss at ``l1`` on the fixed OUTPUTS / LABELS for ``model``."""
    loss = get_method("slimming").loss_before(method_options("slimming", {"l1": l1}), CompressContext(INPUTS))
    return loss(OUTPUTS, LABELS, torch.arange(6), model)


def with_scales(model: PlainNet, bn1: list[float], bn2: list[float]) -> PlainNet:
    """Set the BatchNorm scale factors γ of ``model``."""
    with torch.no_grad():
        model.bn1.weight.copy_(torch.tensor(bn1))
        model.bn2.weight.copy_(torch.tensor(bn2))
    return model


def test_at_l1_zero_the_loss_is_plain_cross_entropy():
    assert torch.equal(slimming_loss(PlainNet(), 0.0), cross_entropy(OUTPUTS, LABELS, torch.arange(6), PlainNet()))


def test_the_penalty_is_l1_times_the_sum_of_absolute_scales():
    model = with_scales(PlainNet(), [0.5, -0.25] * 4, [-1.0] * 8 + [0.125] * 8)
    plain = cross_entropy(OUTPUTS, LABELS, torch.arange(6), model)
    # Σ|γ| = 4·(0.5 + 0.25) + 8·1 + 8·0.125 = 3 + 8 + 1 = 12
    loss = slimming_loss(model, 1e-2)
    assert loss.item() == pytest.approx(plain.item() + 1e-2 * 12, rel=1e-6)
    loss.backward()  # its gradient on γ is l1 · sign(γ)
    assert torch.allclose(model.bn1.weight.grad, 1e-2 * torch.tensor([1.0, -1.0] * 4))


def test_timm_batchnorm_act_layers_are_penalised():
    model = timm.create_model("mobilenetv2_100", num_classes=10)
    fused = [m for m in model.modules() if isinstance(m, BatchNormAct2d)]
    assert fused and len(batchnorm_scales(model)) == len(fused)
    expected = sum(m.weight.abs().sum() for m in fused)
    penalty = slimming_loss(model, 1.0) - slimming_loss(model, 0.0)
    assert penalty.item() == pytest.approx(expected.item(), rel=1e-5)


def test_the_channels_of_smallest_scale_are_pruned_over_the_network():
    bn1 = [0.9, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.8]
    bn2 = [0.5 + i / 100 for i in range(10)] + [0.07, 0.08, 0.09, 0.10, 0.11, 0.12]
    model = with_scales(PlainNet(), bn1, bn2)
    info = prune(model, "slimming", ratio=0.5)
    # the 12 smallest of 24 |γ|: six of bn1 (0.01…0.06) and six of bn2 (0.07…0.12): the layers end 2 and 10 wide
    assert torch.equal(model.bn1.weight, torch.tensor([0.9, 0.8]))
    assert torch.equal(model.bn2.weight, torch.tensor(bn2[:10]))
    assert (model.conv1.out_channels, model.conv2.in_channels, model.fc.in_features) == (2, 2, 10)
    assert info["channel_ratio"] == 12 / 24 and info["param_ratio"] == count_params(model) / count_params(PlainNet())


def test_no_layer_loses_more_than_max_layer_ratio():
    model = with_scales(PlainNet(), [1e-3] * 8, [1.0 + i / 100 for i in range(16)])
    prune(model, "slimming", ratio=0.5, max_layer_ratio=0.9)
    # bn1 would lose all 8: it keeps 8 - ⌊0.9·8⌋ = 1 (its first, ties in order), bn2 loses the other 12 - 7 = 5
    assert (model.conv1.out_channels, model.conv2.out_channels) == (1, 11)
    assert torch.equal(model.bn2.weight, torch.tensor([1.0 + i / 100 for i in range(5, 16)]))
    assert model(INPUTS).shape == (2, 10)


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv2_100"])
def test_timm_networks_shrink_and_still_train(name):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10)
    with torch.no_grad():  # scales as a sparse training might leave them, rather than timm's 1 / 0 initialisation
        for gamma in batchnorm_scales(model):
            gamma.copy_(torch.rand(gamma.shape))
    dense = count_params(model)
    info = prune(model, "slimming", ratio=0.5)
    assert info["param_ratio"] == count_params(model) / dense
    assert info["param_ratio"] < 0.6 and 0.3 < info["channel_ratio"] < 0.7
    model.train()
    out = model(INPUTS)
    assert out.shape == (2, 10)
    out.sum().backward()


def test_a_network_without_batchnorm_is_skipped():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    with pytest.raises(SkipCase, match="slimming needs BatchNorm scale factors"):
        prune(model, "slimming")
    with pytest.raises(SkipCase, match="slimming needs BatchNorm scale factors"):
        slimming_loss(model, 1e-4)  # before any training is spent on it


def test_a_network_without_convolutions_is_skipped():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10))
    with pytest.raises(SkipCase, match="finds no channel group of Sequential to prune"):
        prune(model, "slimming")


@pytest.mark.parametrize("kwargs", [{"ratio": 0}, {"ratio": 1}, {"ratio": 1.5}, {"l1": -1e-4}, {"scope": "layer"},
                                    {"ratio": 0.95}])
def test_bad_options_are_rejected(kwargs):
    with pytest.raises(pydantic.ValidationError):
        method_options("slimming", kwargs)


def test_the_defaults_and_the_cost_path():
    assert method_options("slimming", {}).model_dump() == {"finetune_fraction": 0.3, "ratio": 0.5,
                                                           "max_layer_ratio": 0.9, "l1": 1e-4}
    model = build_model(Case("tiny_cnn", resolution=8, compress="slimming"))
    assert model.harness_compress_info["param_ratio"] < 1 and not model.training
