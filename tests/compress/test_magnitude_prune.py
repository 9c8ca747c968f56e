"""Magnitude pruning: the sparsity asked is reached (over the model or per layer), pruned weights stay zero while
fine-tuning, ``finish`` leaves plain weights, and bad options are rejected."""

from __future__ import annotations

import pydantic
import pytest
import torch
from torch import nn

from harness.case import Case
from harness.errors import SkipCase
from harness.metrics import accuracy
from harness.metrics.train_compressed import trained_compressed
from harness.zoo.build import build_inputs, build_model
from harness.zoo.compress import CompressContext, get_method, method_options

INPUTS = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def tiny_net() -> nn.Module:
    """conv(3→6) → BN → ReLU → conv(6→8) → pool → linear(8→10), the layers' weights of different scales (so a global
    ranking prunes them unevenly), seeded."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    with torch.no_grad():
        net[3].weight.mul_(0.2)
        net[6].weight.mul_(3.0)
    return net


def layers(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def compress(net: nn.Module, finetune: bool, **kwargs):
    method = get_method("magnitude_prune")
    return method, method.apply(net, method_options("magnitude_prune", kwargs), CompressContext(INPUTS,
                                                                                                finetune=finetune))


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.9])
def test_global_scope_reaches_the_sparsity_on_the_smallest_weights(sparsity):
    net = tiny_net()
    before = torch.cat([m.weight.detach().abs().flatten() for m in layers(net)])
    _, done = compress(net, finetune=False, sparsity=sparsity)
    after = torch.cat([m.weight.detach().flatten() for m in layers(net)])
    total = after.numel()
    assert done.info["pruned_layers"] == 3
    assert abs(done.info["sparsity"] - sparsity) <= 1 / total
    assert done.info["sparsity"] == pytest.approx(float((after == 0).float().mean()))
    pruned = after == 0
    if 0 < sparsity:  # every pruned weight is no larger than every kept one, over all layers together
        assert before[pruned].max() <= before[~pruned].min()
    assert torch.equal(after[~pruned].abs(), before[~pruned])  # the kept weights are untouched


def test_global_scope_prunes_layers_unevenly_and_layer_scope_evenly():
    net = tiny_net()
    compress(net, finetune=False, sparsity=0.5)
    uneven = [float((m.weight == 0).float().mean()) for m in layers(net)]
    assert uneven[1] > 0.7 and uneven[2] < 0.1  # the scaled-down conv goes first, the scaled-up linear last
    net = tiny_net()
    _, done = compress(net, finetune=False, sparsity=0.5, scope="layer")
    for m in layers(net):
        assert abs(float((m.weight == 0).float().mean()) - 0.5) <= 1 / m.weight.numel()
    assert abs(done.info["sparsity"] - 0.5) <= len(layers(net)) / sum(m.weight.numel() for m in layers(net))


def test_pruned_weights_stay_zero_while_fine_tuning_and_finish_makes_them_plain():
    net = tiny_net()
    method, done = compress(net, finetune=True, sparsity=0.6)
    model = done.model
    assert all(hasattr(m, "weight_orig") and hasattr(m, "weight_mask") for m in layers(model))
    masks = [m.weight_mask.clone() for m in layers(model)]
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-4)
    start = [m.weight_orig.detach().clone() for m in layers(model)]
    for _ in range(5):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(INPUTS), torch.tensor([0, 1, 2, 3]))
        loss.backward()
        optimizer.step()
    assert all(not torch.equal(m.weight_orig, s) for m, s in zip(layers(model), start, strict=True))  # it trained
    finished = method.finish(model, method_options("magnitude_prune", {"sparsity": 0.6}))
    names = [n for n, _ in finished.model.named_parameters()] + list(finished.model.state_dict())
    assert not any("_orig" in n or "_mask" in n for n in names)
    for m, mask in zip(layers(finished.model), masks, strict=True):
        assert isinstance(m.weight, nn.Parameter)
        assert torch.equal(m.weight == 0, mask == 0)  # zeros exactly where the mask was, the rest trained away
        assert not m._forward_pre_hooks
    assert abs(finished.info["sparsity"] - 0.6) <= 1 / sum(m.weight.numel() for m in layers(model))
    out = finished.model.eval()(INPUTS)
    out.sum().backward()  # the finished model still runs forward and backward
    assert out.shape == (4, 10)


def test_the_cost_path_builds_a_permanently_pruned_model():
    case = Case("tiny_cnn", resolution=8, compress="magnitude_prune", compress_kwargs=(("sparsity", 0.75),))
    model = build_model(case)
    assert not any("_orig" in n for n, _ in model.named_parameters())
    weights = torch.cat([model.conv.weight.flatten(), model.fc.weight.flatten()])
    assert int((weights == 0).sum()) == round(0.75 * weights.numel())  # 216 + 80 weights, 222 zero
    assert model.harness_compress_info == {"sparsity": 222 / 296, "pruned_layers": 2}


@pytest.mark.parametrize("kwargs", [{"sparsity": 1.5}, {"sparsity": -0.1}, {"sparsity": 1.0}, {"scope": "channel"},
                                    {"amount": 0.5}])
def test_bad_options_are_rejected(kwargs):
    with pytest.raises(pydantic.ValidationError):
        method_options("magnitude_prune", kwargs)


def test_a_model_without_conv_or_linear_layers_is_skipped():
    with pytest.raises(SkipCase, match="no convolution or linear layer"):
        compress(nn.Sequential(nn.ReLU()), finetune=False)


def test_the_accuracy_path_fine_tunes_behind_the_masks_and_ends_pruned():
    case = Case("tiny_cnn", resolution=8, batch=8, compress="magnitude_prune", compress_kwargs=(("sparsity", 0.5),))
    model, columns = trained_compressed(build_inputs(case), case, accuracy.Options(train_images=64, limit=40))
    weights = torch.cat([model.conv.weight.flatten(), model.fc.weight.flatten()])
    assert int((weights == 0).sum()) == 148 and not any("_orig" in n for n, _ in model.named_parameters())
    assert columns["compress_sparsity"] == 0.5 and columns["acc_compress_step"] == 6 and columns["acc_train_steps"] == 8
