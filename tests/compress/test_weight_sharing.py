"""Weight sharing: k-means leaves exactly k values a layer, the codebook fine-tunes with summed gradients,
``finish`` leaves plain weights, the storage is counted by the documented formula, bad options are rejected."""

from __future__ import annotations

import pydantic
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from harness.case import Case
from harness.metrics import accuracy
from harness.metrics.train_compressed import trained_compressed
from harness.zoo.build import build_inputs, build_model
from harness.zoo.compress import CompressContext, get_method, method_options
from harness.zoo.compress.weight_sharing import cluster_weights

INPUTS = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def tiny_net() -> nn.Module:
    """conv(3→4, 3×3, 108 weights + 4 biases) → BN(4) → ReLU → pool → linear(4→10, 40 weights + 10 biases), seeded."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 10))


def layers(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def share(net: nn.Module, clusters: int, finetune: bool = True):
    method = get_method("weight_sharing")
    options = method_options("weight_sharing", {"clusters": clusters})
    return method, options, method.apply(net, options, CompressContext(INPUTS, finetune=finetune))


def distinct(m: nn.Module) -> int:
    return int(torch.unique(m.weight.detach()).numel())


def test_fine_tuning_trains_the_shared_codebook_and_finish_keeps_k_values_a_layer():
    net = tiny_net()
    method, options, done = share(net, clusters=8)
    model = done.model
    codebooks = [m.parametrizations.weight.original for m in layers(model)]
    assert [c.shape for c in codebooks] == [(8,), (8,)]
    parameters = {id(p) for p in model.parameters()}
    assert all(id(c) in parameters for c in codebooks)  # SGD on model.parameters() reaches the codebooks
    assert [distinct(m) for m in layers(model)] == [8, 8]
    start = [c.detach().clone() for c in codebooks]
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-4)
    for _ in range(5):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(INPUTS), torch.tensor([0, 1, 2, 3])).backward()
        optimizer.step()
    assert all(not torch.equal(c, s) for c, s in zip(codebooks, start, strict=True))  # the centroids trained
    assert [distinct(m) for m in layers(model)] == [8, 8]
    finished = method.finish(model, options)
    assert not any(parametrize.is_parametrized(m) for m in layers(finished.model))
    assert not any("parametrizations" in n for n in finished.model.state_dict())
    for m, codebook in zip(layers(finished.model), codebooks, strict=True):
        assert isinstance(m.weight, nn.Parameter)
        assert torch.equal(torch.unique(m.weight.detach()), torch.unique(codebook.detach()))
    out = finished.model.eval()(INPUTS)
    out.sum().backward()
    assert out.shape == (4, 10)


def test_a_centroid_gets_the_sum_of_its_weights_gradients():
    net = tiny_net()
    _, _, done = share(net, clusters=4)
    layer = layers(done.model)[1]
    indices = layer.parametrizations.weight[0].indices
    dense = nn.Linear(4, 10)
    with torch.no_grad():
        dense.weight.copy_(layer.weight)
        dense.bias.copy_(layer.bias)
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(2))
    (layer(x) ** 2).sum().backward()
    (dense(x) ** 2).sum().backward()
    expected = torch.zeros(4).index_add_(0, indices.flatten(), dense.weight.grad.flatten())
    assert torch.allclose(layer.parametrizations.weight.original.grad, expected, atol=1e-5)


def test_k_means_is_a_fixed_point_from_a_linear_initialisation():
    torch.manual_seed(3)
    groups = torch.cat([torch.randn(300) * 0.01 + c for c in (-1.0, 0.2, 0.5)])
    labels, k = cluster_weights(groups, 3)
    assert k == 3 and torch.equal(torch.bincount(labels), torch.tensor([300, 300, 300]))
    weights = torch.randn(2000, dtype=torch.float64)
    labels, k = cluster_weights(weights, 16)
    centroids = torch.stack([weights[labels == i].mean() for i in range(k)])
    assert torch.all(centroids[1:] > centroids[:-1])  # numbered by increasing centroid, none empty
    nearest = (weights[:, None] - centroids[None, :]).abs().argmin(dim=1)
    assert torch.equal(nearest, labels)  # each weight sits with its nearest centroid: Lloyd converged


def test_an_empty_cluster_is_moved_so_the_layer_keeps_k_values():
    torch.manual_seed(4)
    # linear initialisation puts most of the 16 centroids in the gap between the bulk and the outliers
    weights = torch.cat([torch.randn(5000) * 0.01, torch.tensor([-1.0, 1.0, 0.95])])
    labels, k = cluster_weights(weights, 16)
    assert k == 16 and torch.unique(labels).numel() == 16


def test_storage_bytes_and_info_on_a_tiny_net():
    # k = 16: 4-bit indices; conv 108 × 4 / 8 = 54 B + 16 × 4 B codebook, linear 40 × 4 / 8 = 20 B + 64 B;
    # other tensors: conv bias 4, BN weight/bias/mean/var 4 × 4, num_batches_tracked 1, linear bias 10 = 31 × 4 B
    _, _, done = share(tiny_net(), clusters=16, finetune=False)
    assert done.info == {"clusters": 16, "shared_layers": 2, "index_bits": 4, "storage_bytes": 54 + 64 + 20 + 64 + 124}
    # k = 5: 3-bit indices; conv ⌈108 × 3 / 8⌉ = ⌈40.5⌉ = 41 B + 20 B, linear 40 × 3 / 8 = 15 B + 20 B
    _, _, done = share(tiny_net(), clusters=5, finetune=False)
    assert done.info["storage_bytes"] == 41 + 20 + 15 + 20 + 124 and done.info["index_bits"] == 3
    # a layer with fewer distinct weights than k keeps them all: the linear's 3 values take 2 bits, a 3-entry codebook
    net = tiny_net()
    with torch.no_grad():
        net[5].weight.copy_(torch.tensor([-1.0, 0.0, 1.0]).repeat(14)[:40].view(10, 4))
    _, _, done = share(net, clusters=16, finetune=False)
    assert distinct(net[5]) == 3 and net[5].parametrizations.weight.original.shape == (3,)
    assert done.info["storage_bytes"] == 54 + 64 + 10 + 12 + 124


def test_the_cost_path_builds_plain_weights_with_k_values():
    case = Case("tiny_cnn", resolution=8, compress="weight_sharing", compress_kwargs=(("clusters", 4),))
    model = build_model(case)
    assert not any(parametrize.is_parametrized(m) for m in model.modules())
    assert distinct(model.conv) == 4 and distinct(model.fc) == 4
    # conv 216 weights at 2 bits = 54 B, fc 80 at 2 bits = 20 B, two 16 B codebooks; BN 4 × 8 + 1, fc bias 10
    assert model.harness_compress_info == {"clusters": 4, "shared_layers": 2, "index_bits": 2,
                                           "storage_bytes": 54 + 20 + 32 + 4 * 43}


@pytest.mark.parametrize("kwargs", [{"clusters": 1}, {"clusters": 300}, {"clusters": 2.5}, {"bits": 4}])
def test_bad_options_are_rejected(kwargs):
    with pytest.raises(pydantic.ValidationError):
        method_options("weight_sharing", kwargs)


def test_the_accuracy_path_fine_tunes_the_codebooks_and_ends_with_k_values():
    case = Case("tiny_cnn", resolution=8, batch=8, compress="weight_sharing", compress_kwargs=(("clusters", 4),))
    model, columns = trained_compressed(build_inputs(case), case, accuracy.Options(train_images=64, limit=40))
    assert distinct(model.conv) == 4 and distinct(model.fc) == 4
    assert not any(parametrize.is_parametrized(m) for m in model.modules())
    assert columns["compress_storage_bytes"] == 54 + 20 + 32 + 4 * 43 and columns["acc_compress_step"] == 6
