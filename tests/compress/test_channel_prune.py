"""Structured filter pruning by L1 norm (channel_prune): the network shrinks, consistently, by the right filters."""

from __future__ import annotations

import pydantic
import pytest
import timm
import torch
import torchvision
from torch import nn

from harness.case import Case
from harness.errors import SkipCase
from harness.zoo.build import build_model
from harness.zoo.compress import CompressContext, count_params, get_method, method_options

INPUTS = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


class PlainNet(nn.Module):
    """conv3x3 3→8, BN, ReLU, conv3x3 8→16, BN, ReLU, global pool, linear 16→10 (1586 parameters)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))
        return self.fc(x.mean(dim=(2, 3)))


def prune(model: nn.Module, method: str = "channel_prune", **kwargs) -> dict:
    """Prune ``model`` in place by ``method`` with ``kwargs``; return the info."""
    return get_method(method).apply(model.eval(), method_options(method, kwargs), CompressContext(INPUTS)).info


def with_filter_norms(model: PlainNet, conv1_scale: list[float], conv2_scale: list[float]) -> PlainNet:
    """Set each conv filter to a constant (its L1 norm: constant × 27 for conv1, × 72 for conv2)."""
    with torch.no_grad():
        model.conv1.weight.copy_(torch.tensor(conv1_scale).view(8, 1, 1, 1).expand(8, 3, 3, 3))
        model.conv2.weight.copy_(torch.tensor(conv2_scale).view(16, 1, 1, 1).expand(16, 8, 3, 3))
    return model


@pytest.mark.parametrize(("name", "scope"), [("resnet18", "layer"), ("resnet18", "global"),
                                             ("mobilenetv2_100", "layer")])
def test_timm_networks_shrink_and_still_train(name, scope):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10)
    dense = count_params(model)
    info = prune(model, scope=scope)
    assert info["param_ratio"] == count_params(model) / dense
    assert 0.2 < info["param_ratio"] < 0.3  # half the channels in and out: about a quarter of the weights
    assert info["channel_ratio"] == pytest.approx(0.5, abs=0.01)
    assert info["groups_left_whole"] == 0
    assert model.get_classifier().out_features == 10 and model.pretrained_cfg  # timm attributes kept
    model.train()
    out = model(INPUTS)
    assert out.shape == (2, 10)
    out.sum().backward()  # residual additions and depth-wise convolutions stayed consistent
    if name == "resnet18":  # the residual stream of each stage shrank as one
        assert model.conv1.out_channels == model.layer1[1].conv2.out_channels == model.layer2[0].conv1.in_channels
        assert model.layer2[0].downsample[0].out_channels == model.layer2[1].conv2.out_channels


def test_the_pruned_plain_network_has_the_hand_counted_parameters():
    model = PlainNet()
    info = prune(model, ratio=0.5)
    # conv1 3→4: 3·4·9 = 108, bn1: 2·4 = 8, conv2 4→8: 4·8·9 = 288, bn2: 2·8 = 16, fc 8→10: 8·10 + 10 = 90
    assert count_params(model) == 108 + 8 + 288 + 16 + 90 == 510
    # dense: 3·8·9 = 216, 16, 8·16·9 = 1152, 32, 16·10 + 10 = 170
    assert info == {"param_ratio": 510 / (216 + 16 + 1152 + 32 + 170), "channel_ratio": (4 + 8) / (8 + 16),
                    "ratio": 0.5, "groups_left_whole": 0}
    assert model(INPUTS).shape == (2, 10)


def test_the_filters_of_smallest_l1_norm_are_removed():
    conv1 = [0.5, 0.1, 0.7, 0.2, 0.8, 0.3, 0.6, 0.4]  # smallest four: filters 1, 3, 5, 7
    conv2 = [(-1) ** i * (i + 1) / 10 for i in range(16)]  # |·| grows with i: the first eight go
    model = with_filter_norms(PlainNet(), conv1, conv2)
    dense = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.bn1.weight.copy_(torch.arange(8.0))
    prune(model, ratio=0.5)
    kept1, kept2 = [0, 2, 4, 6], list(range(8, 16))
    assert torch.equal(model.conv1.weight, dense["conv1.weight"][kept1])
    assert torch.equal(model.bn1.weight, torch.tensor([0.0, 2.0, 4.0, 6.0]))  # the coupled BN channels went too
    assert torch.equal(model.conv2.weight, dense["conv2.weight"][kept2][:, kept1])
    assert torch.equal(model.fc.weight, dense["fc.weight"][:, kept2])


def test_global_scope_ranks_filters_across_layers():
    # conv2 filters relative to their layer's mean: eight at ~0.002, eight at ~2; conv1's all at 1
    model = with_filter_norms(PlainNet(), [1.0] * 8, [0.001] * 8 + [1.0] * 8)
    info = prune(model, ratio=0.5, scope="global")
    # 12 of 24 go: conv2's eight small ones, then four of conv1's tied ones (network order)
    assert (model.conv1.out_channels, model.conv2.out_channels) == (4, 8)
    assert torch.equal(model.conv2.weight[:, 0], torch.ones(8, 3, 3))
    assert info["channel_ratio"] == 0.5


def test_a_classifier_that_is_a_convolution_keeps_its_outputs():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 10, 1),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten())
    info = prune(model, ratio=0.5)
    assert (model[0].out_channels, model[3].out_channels) == (4, 10)
    assert model(INPUTS).shape == (2, 10) and info["channel_ratio"] == (4 + 10) / (8 + 10)


class Branchy(nn.Module):
    """A network whose forward picks a convolution by the data (Python control flow: one trace sees one path)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.bn = nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)
        self.positive, self.negative = nn.Conv2d(8, 16, 3), nn.Conv2d(8, 16, 3)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.stem(x))
        x = self.positive(x) if x.mean() > 0 else self.negative(x)
        return self.fc(x.mean(dim=(2, 3)))


def test_data_dependent_control_flow_is_skipped():
    with pytest.raises(SkipCase, match=r"does not reach (positive|negative)"):
        prune(Branchy())


def test_a_network_torch_pruning_cannot_trace_is_skipped():
    # torchvision's ShuffleNetV2 channel shuffle (view/transpose of channels) breaks torch-pruning's index mapping
    with pytest.raises(SkipCase, match="channel_prune: torch-pruning cannot trace ShuffleNetV2: ZeroDivisionError"):
        prune(torchvision.models.shufflenet_v2_x0_5(num_classes=10))


@pytest.mark.parametrize("kwargs", [{"ratio": 0}, {"ratio": 1}, {"ratio": 1.5}, {"scope": "model"},
                                    {"ratio": 0.8, "max_layer_ratio": 0.7}, {"sparsity": 0.5}])
def test_bad_options_are_rejected(kwargs):
    with pytest.raises(pydantic.ValidationError):
        method_options("channel_prune", kwargs)


def test_the_cost_path_builds_the_shrunk_model():
    model = build_model(Case("tiny_cnn", resolution=8, compress="channel_prune", compress_kwargs=(("ratio", 0.25),)))
    dense = build_model(Case("tiny_cnn", resolution=8))
    info = model.harness_compress_info
    assert info["param_ratio"] == count_params(model) / count_params(dense) < 1
    assert info["ratio"] == 0.25 and not model.training
