"""Norm swaps (harness.zoo.norms): every kind in five timm models, state carried over, SwitchableNorm maths."""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.layers import BatchNormAct2d, LayerNorm2d, SyncBatchNormAct
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from harness.zoo.norms import (
    NORM_CLASSES,
    NormAct,
    SwitchableNorm2d,
    count_norms,
    kind_options,
    norm_kinds,
    recompute_batch_average,
    swap_norm,
)
from harness.zoo.syncbn import CpuSyncBatchNorm2d, CpuSyncBatchNormAct2d

MODELS = ["resnet18", "resnet50", "mobilenetv2_100", "cspdarknet53", "dla34"]
KINDS = ["bn", "gn", "ln", "ln2d", "in", "sn", "syncbn"]
#: Kinds whose layers are BatchNorms (no _BatchNorm may remain after the others).
BN_KINDS = {"bn", "syncbn"}
#: Class of the replacement norm layer per kind.
LAYER_CLASS: dict[str, type[nn.Module]] = {
    "bn": nn.BatchNorm2d,
    "gn": nn.GroupNorm,
    "ln": nn.GroupNorm,
    "ln2d": LayerNorm2d,
    "in": nn.InstanceNorm2d,
    "sn": SwitchableNorm2d,
    "syncbn": CpuSyncBatchNorm2d,
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Run this module on one intra-op thread: on a shared 2-core machine two threads were 10× slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm random affine parameters and running statistics, so copying them is visible."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=generator) + 0.5)
                m.bias.copy_(torch.randn(c, generator=generator) * 0.1)
                m.running_mean.copy_(torch.randn(c, generator=generator) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=generator) + 0.5)
    return model


@functools.cache
def _pristine(name: str) -> nn.Module:
    """Build each model once per test session (callers deep-copy it), with randomized norm state."""
    torch.manual_seed(0)
    return _randomize_norms(timm.create_model(name, pretrained=False, num_classes=10))


def _model(name: str) -> nn.Module:
    """Return a fresh copy of the cached model ``name``."""
    return copy.deepcopy(_pristine(name))


def _image(seed: int = 0) -> Tensor:
    """Return a 2×3×64×64 input batch."""
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", MODELS)
def test_swap_runs_forward_and_backward(name: str, kind: str) -> None:
    model = _model(name)
    before = count_norms(model)
    swap_norm(model, kind)
    norms = [m for m in model.modules() if isinstance(m, LAYER_CLASS[kind])]
    assert len(norms) == sum(before.values())
    # exactly the kind's class; syncbn keeps a fused activation in its own subclass, as timm's converter does
    allowed = {LAYER_CLASS[kind], CpuSyncBatchNormAct2d} if kind == "syncbn" else {LAYER_CLASS[kind]}
    assert all(type(m) in allowed for m in norms)
    if kind not in BN_KINDS:
        assert not any(isinstance(m, _BatchNorm) for m in model.modules())

    out = model.train()(_image())
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()
    F.cross_entropy(out, torch.tensor([1, 7])).backward()
    missing = [
        f"{type(m).__name__}.{p_name}"
        for m in norms
        for p_name, p in m.named_parameters()
        if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())
    ]
    assert not missing


@pytest.mark.parametrize("kind", sorted(BN_KINDS))
def test_bn_kinds_keep_activation_and_statistics(kind: str) -> None:
    original = _model("mobilenetv2_100").eval()
    fused = sum(isinstance(m, BatchNormAct2d) for m in original.modules())
    assert fused > 0
    x = _image(1)
    with torch.no_grad():
        expected = original(x)
        swapped = swap_norm(copy.deepcopy(original), kind)
        got = swapped(x)
    assert not any(type(m) is BatchNormAct2d for m in swapped.modules())
    # bn wraps a fused layer as NormAct; syncbn converts it to CpuSyncBatchNormAct2d, which applies drop and act
    wrapper = NormAct if kind == "bn" else CpuSyncBatchNormAct2d
    wrappers = [m for m in swapped.modules() if isinstance(m, wrapper)]
    assert len(wrappers) == fused
    assert all(isinstance(w.act, nn.ReLU6) or isinstance(w.act, nn.Identity) for w in wrappers)
    assert any(isinstance(w.act, nn.ReLU6) for w in wrappers)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_syncbn_cuda_implementation_uses_timm_converter_and_keeps_activation() -> None:
    """device="cuda" goes through timm's converter (module construction and a forward run on CPU too)."""
    original = _model("mobilenetv2_100").eval()
    swapped = swap_norm(copy.deepcopy(original), "syncbn", device="cuda")
    acts = [m for m in swapped.modules() if isinstance(m, SyncBatchNormAct)]
    assert acts and not any(isinstance(m, NormAct) for m in swapped.modules())
    x = _image(2)
    with torch.no_grad():
        torch.testing.assert_close(swapped(x), original(x), rtol=0, atol=1e-5)


def test_syncbn_passes_process_group() -> None:
    marker = object()
    layer = swap_norm(nn.BatchNorm2d(4), "syncbn", process_group=marker)
    assert type(layer) is CpuSyncBatchNorm2d
    assert layer.process_group is marker


def test_affine_parameters_carry_over_to_gn() -> None:
    resnet, mobilenet = _model("resnet18"), _model("mobilenetv2_100")
    resnet_weight, resnet_bias = resnet.bn1.weight.detach().clone(), resnet.bn1.bias.detach().clone()
    mobile_weight, mobile_act = mobilenet.bn1.weight.detach().clone(), mobilenet.bn1.act
    swap_norm(resnet, "gn")
    swap_norm(mobilenet, "gn")
    assert isinstance(resnet.bn1, nn.GroupNorm)
    torch.testing.assert_close(resnet.bn1.weight.detach(), resnet_weight, rtol=0, atol=0)
    torch.testing.assert_close(resnet.bn1.bias.detach(), resnet_bias, rtol=0, atol=0)
    assert isinstance(mobilenet.bn1, NormAct) and isinstance(mobilenet.bn1.norm, nn.GroupNorm)
    assert mobilenet.bn1.act is mobile_act
    torch.testing.assert_close(mobilenet.bn1.norm.weight.detach(), mobile_weight, rtol=0, atol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_state_eps_mode_dtype_and_frozen_weights_are_kept(kind: str) -> None:
    bn = _randomize_norms(nn.BatchNorm2d(8, eps=1e-3, momentum=0.3))
    bn.weight.requires_grad_(False)
    bn = bn.double().eval()
    layer = swap_norm(nn.Sequential(bn), kind)[0]
    assert not layer.training
    tensors = [*layer.parameters(), *layer.buffers()]
    assert all(t.dtype == torch.float64 for t in tensors if t.is_floating_point())
    assert layer.eps == 1e-3
    assert not layer.weight.requires_grad and layer.bias.requires_grad
    torch.testing.assert_close(layer.weight, bn.weight, rtol=0, atol=0)
    if kind in {"bn", "syncbn", "sn"}:
        torch.testing.assert_close(layer.running_mean, bn.running_mean, rtol=0, atol=0)
        torch.testing.assert_close(layer.running_var, bn.running_var, rtol=0, atol=0)
    if kind in BN_KINDS:
        assert layer.momentum == 0.3


@pytest.mark.parametrize("kind", KINDS)
def test_meta_device_model_swaps_and_runs(kind: str) -> None:
    """Complexity counting builds models on the meta device: swapping must not read their (absent) data."""
    with torch.device("meta"):
        model = nn.Sequential(nn.Conv2d(3, 8, 3), BatchNormAct2d(8), nn.BatchNorm2d(8))
    swap_norm(model, kind)
    assert {t.device.type for t in (*model.parameters(), *model.buffers())} == {"meta"}
    assert model(torch.empty(2, 3, 8, 8, device="meta")).shape == (2, 8, 6, 6)


def test_shared_norm_gets_one_replacement_and_root_norm_is_replaced() -> None:
    shared = nn.BatchNorm2d(4)
    model = swap_norm(nn.Sequential(shared, nn.ReLU(), shared), "gn")
    assert model[0] is model[2] and isinstance(model[0], nn.GroupNorm)
    assert isinstance(swap_norm(nn.BatchNorm2d(4), "in"), nn.InstanceNorm2d)


@pytest.mark.parametrize(
    ("channels", "options", "groups"),
    [(24, {}, 24), (24, {"groups": 16}, 12), (64, {}, 32), (96, {}, 32), (37, {}, 1), (8, {"groups": 1}, 1)],
)
def test_gn_groups_adapt_to_channels(channels: int, options: dict[str, int], groups: int) -> None:
    layer = swap_norm(nn.BatchNorm2d(channels), "gn", **options)
    assert isinstance(layer, nn.GroupNorm)
    assert (layer.num_groups, layer.num_channels) == (groups, channels)


def test_ln_is_one_group() -> None:
    layer = swap_norm(nn.BatchNorm2d(24), "ln")
    assert isinstance(layer, nn.GroupNorm) and layer.num_groups == 1


def test_count_norms() -> None:
    model = nn.Sequential(nn.BatchNorm2d(4), nn.GroupNorm(2, 4), LayerNorm2d(4), nn.InstanceNorm2d(4), nn.ReLU())
    assert count_norms(model) == {"BatchNorm2d": 1, "GroupNorm": 1, "InstanceNorm2d": 1, "LayerNorm2d": 1}
    swap_norm(model, "sn")
    assert count_norms(model)["SwitchableNorm2d"] == 1
    assert SwitchableNorm2d in NORM_CLASSES


def test_unknown_kind_lists_known_kinds() -> None:
    with pytest.raises(ValueError, match="unknown norm kind 'bogus'; known kinds: bn, gn, in, ln, ln2d, sn, syncbn"):
        swap_norm(nn.BatchNorm2d(4), "bogus")
    assert norm_kinds() == sorted(KINDS)


def test_unknown_option_names_kind_and_accepted_options() -> None:
    with pytest.raises(TypeError, match=r"norm kind 'gn' got unknown option\(s\) group; it accepts groups"):
        swap_norm(nn.BatchNorm2d(4), "gn", group=2)
    with pytest.raises(TypeError, match=r"norm kind 'in' got unknown option.*accepts no options"):
        swap_norm(nn.BatchNorm2d(4), "in", groups=2)
    assert kind_options("sn") == ["moving_average", "momentum"]
    assert kind_options("syncbn") == ["process_group", "device"]


def test_bad_option_values_leave_the_model_unchanged() -> None:
    model = nn.Sequential(nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match="groups must be a positive int"):
        swap_norm(model, "gn", groups=0)
    with pytest.raises(ValueError, match="device must be one of"):
        swap_norm(model, "syncbn", device="tpu")
    with pytest.raises(ValueError, match="momentum"):
        swap_norm(model, "sn", momentum=1.5)
    assert type(model[0]) is nn.BatchNorm2d
    head = nn.Sequential(nn.BatchNorm2d(4), nn.Flatten(), nn.BatchNorm1d(4))
    with pytest.raises(ValueError, match="2-D BatchNorms only; not 2-D: 2"):
        swap_norm(head, "gn")
    assert type(head[0]) is nn.BatchNorm2d


# ---- SwitchableNorm2d ------------------------------------------------------------------------------------------

#: Mixing logits selecting one statistic exactly (softmax gives exactly 0 for the others).
ONLY = {"in": [0.0, -1e4, -1e4], "ln": [-1e4, 0.0, -1e4], "bn": [-1e4, -1e4, 0.0]}


def _sn(channels: int = 3, *, seed: int = 0, **kwargs: object) -> SwitchableNorm2d:
    """Return a SwitchableNorm2d with random affine parameters."""
    layer = SwitchableNorm2d(channels, **kwargs)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.weight.copy_(torch.rand(channels, generator=generator) + 0.5)
        layer.bias.copy_(torch.randn(channels, generator=generator))
    return layer


def _set_mixing(layer: SwitchableNorm2d, mean_logits: list[float], var_logits: list[float]) -> None:
    with torch.no_grad():
        layer.mean_weight.copy_(torch.tensor(mean_logits))
        layer.var_weight.copy_(torch.tensor(var_logits))


def _x(n: int = 4, c: int = 3, hw: int = 5, seed: int = 0) -> Tensor:
    """Return an (n, c, hw, hw) batch with per-channel offsets and scales (the statistics then differ)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, hw, hw, generator=generator) * torch.linspace(0.5, 2.0, c).view(1, c, 1, 1)
    return x + torch.linspace(-1.0, 1.0, c).view(1, c, 1, 1)


def _reference_sn(layer: SwitchableNorm2d, x: Tensor) -> Tensor:
    """SN written directly from its definition (float64): IN/LN/BN statistics from x; BN from buffers in eval."""
    x = x.double()
    mean_in = x.mean((2, 3), keepdim=True)
    var_in = x.var((2, 3), keepdim=True)  # unbiased, as SN defines it
    mean_ln = x.mean((1, 2, 3), keepdim=True)
    var_ln = (var_in + mean_in**2).mean(1, keepdim=True) - mean_ln**2
    if layer.training:
        mean_bn = x.mean((0, 2, 3), keepdim=True)
        var_bn = (var_in + mean_in**2).mean(0, keepdim=True) - mean_bn**2
    else:
        mean_bn = layer.running_mean.double().view(1, -1, 1, 1)
        var_bn = layer.running_var.double().view(1, -1, 1, 1)
    w_mean, w_var = (w.detach().double() for w in layer.mixing_weights())
    mean = w_mean[0] * mean_in + w_mean[1] * mean_ln + w_mean[2] * mean_bn
    var = w_var[0] * var_in + w_var[1] * var_ln + w_var[2] * var_bn
    y = (x - mean) / torch.sqrt(var + layer.eps)
    return (
        y * layer.weight.detach().double().view(1, -1, 1, 1) + layer.bias.detach().double().view(1, -1, 1, 1)
    ).float()


def test_sn_mixing_weights_are_softmaxes() -> None:
    layer = _sn()
    for weights in layer.mixing_weights():
        torch.testing.assert_close(weights, torch.full((3,), 1 / 3))
    _set_mixing(layer, [0.3, -1.2, 2.0], [1.0, 0.0, -0.5])
    for weights in layer.mixing_weights():
        assert (weights > 0).all()
        torch.testing.assert_close(weights.sum(), torch.tensor(1.0))
    assert "moving_average=True" in repr(layer)


@pytest.mark.parametrize("training", [True, False])
def test_sn_matches_its_definition(training: bool) -> None:
    layer = _sn()
    _set_mixing(layer, [0.3, -1.2, 2.0], [1.0, 0.0, -0.5])
    with torch.no_grad():
        layer.running_mean.copy_(torch.tensor([0.5, -0.2, 1.0]))
        layer.running_var.copy_(torch.tensor([2.0, 0.7, 1.3]))
    layer.train(training)
    x = _x()
    torch.testing.assert_close(layer(x), _reference_sn(layer, x), rtol=1e-5, atol=1e-5)


def test_sn_bn_only_in_training_is_batch_norm_with_sn_variance() -> None:
    """Exact relation to F.batch_norm: SN's var_bn uses unbiased IN variances.

    var_bn = mean_n(var_in + mean_in²) − mean_bn² with var_in = s²_in·HW/(HW−1) (s² biased) equals
    σ²_B + δ, where σ²_B is the biased batch variance (what BN normalises with) and δ = mean_n(s²_in)/(HW−1).
    So SN = F.batch_norm(x, weight · sqrt(σ²_B + eps)/sqrt(σ²_B + δ + eps), bias), per channel.
    """
    layer = _sn().train()
    _set_mixing(layer, ONLY["bn"], ONLY["bn"])
    x = _x(hw=5)
    hw = x.shape[2] * x.shape[3]
    var_batch = x.var((0, 2, 3), unbiased=False)
    delta = x.var((2, 3), unbiased=False).mean(0) / (hw - 1)
    weight = layer.weight.detach() * torch.sqrt((var_batch + layer.eps) / (var_batch + delta + layer.eps))
    expected = F.batch_norm(x, None, None, weight, layer.bias.detach(), training=True, eps=layer.eps)
    got = layer(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    plain = F.batch_norm(x, None, None, layer.weight.detach(), layer.bias.detach(), training=True, eps=layer.eps)
    assert (got - plain).abs().max() > 1e-3  # the correction is real at H·W = 25

    # mixing logits [0, 0, 10] (BN share 0.99991) on a large H·W (δ small): close to BN in training
    _set_mixing(layer, [0.0, 0.0, 10.0], [0.0, 0.0, 10.0])
    x = _x(hw=32)
    plain = F.batch_norm(x, None, None, layer.weight.detach(), layer.bias.detach(), training=True, eps=layer.eps)
    torch.testing.assert_close(layer(x), plain, rtol=0, atol=5e-3)


def test_sn_eval_uses_stored_bn_statistics() -> None:
    layer = _sn()
    _set_mixing(layer, ONLY["bn"], ONLY["bn"])
    mean, var = torch.tensor([0.5, -0.2, 1.0]), torch.tensor([2.0, 0.7, 1.3])
    with torch.no_grad():
        layer.running_mean.copy_(mean)
        layer.running_var.copy_(var)
    layer.eval()
    x = _x()
    expected = (x - mean.view(1, 3, 1, 1)) / torch.sqrt(var.view(1, 3, 1, 1) + layer.eps)
    expected = expected * layer.weight.detach().view(1, 3, 1, 1) + layer.bias.detach().view(1, 3, 1, 1)
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)
    other = x.clone()
    other[1:] = _x(seed=1)[1:] * 10.0
    torch.testing.assert_close(layer(other)[0], layer(x)[0], rtol=0, atol=0)
    # with IN in the mix, eval statistics come from the current sample: sample 0's output still ignores the others
    _set_mixing(layer, [0.0, -1.0, 1.0], [1.0, 0.0, 0.0])
    torch.testing.assert_close(layer(other)[0], layer(x)[0], rtol=0, atol=0)
    assert not torch.allclose(layer(x * 2.0)[0], layer(x)[0] * 2.0)


def test_sn_moving_average_follows_torch_momentum_convention() -> None:
    layer = _sn(momentum=0.1).train()
    bn = nn.BatchNorm2d(3, momentum=0.1).train()
    x = _x()
    hw = x.shape[2] * x.shape[3]
    layer(x)
    bn(x)
    var_bn = x.var((0, 2, 3), unbiased=False) + x.var((2, 3), unbiased=False).mean(0) / (hw - 1)
    torch.testing.assert_close(layer.running_mean, 0.1 * x.mean((0, 2, 3)))
    torch.testing.assert_close(layer.running_mean, bn.running_mean)
    torch.testing.assert_close(layer.running_var, 0.9 + 0.1 * var_bn)
    assert int(layer.num_batches_tracked) == 1

    frozen = _sn(moving_average=False).train()
    frozen(x)
    torch.testing.assert_close(frozen.running_mean, torch.zeros(3), rtol=0, atol=0)
    torch.testing.assert_close(frozen.running_var, torch.ones(3), rtol=0, atol=0)


def test_recompute_batch_average_matches_formula_and_restores_the_rest() -> None:
    sn = _sn(moving_average=False)
    moving = _sn(seed=1)
    bn = nn.BatchNorm2d(3)
    model = nn.Sequential(sn, nn.Conv2d(3, 3, 1), moving, bn).eval()
    saved = {name: b.clone() for name, b in model.named_buffers() if not name.startswith("0.")}
    batches = [_x(n=3, seed=s) for s in range(3)]
    assert recompute_batch_average(model, batches) == 3

    hw = batches[0].shape[2] * batches[0].shape[3]
    means = torch.stack([b.mean((0, 2, 3)) for b in batches])
    vars_bn = torch.stack(
        [b.var((0, 2, 3), unbiased=False) + b.var((2, 3), unbiased=False).mean(0) / (hw - 1) for b in batches]
    )
    expected_mean = means.mean(0)
    torch.testing.assert_close(sn.running_mean, expected_mean)
    torch.testing.assert_close(sn.running_var, (vars_bn + means**2).mean(0) - expected_mean**2)
    assert int(sn.num_batches_tracked) == 3
    assert not any(m.training for m in model.modules())
    for name, value in model.named_buffers():
        if name in saved:
            torch.testing.assert_close(value, saved[name], rtol=0, atol=0)

    with pytest.raises(ValueError, match="at least one batch"):
        recompute_batch_average(model, [])
    torch.testing.assert_close(sn.running_var, torch.ones(3), rtol=0, atol=0)  # reset, not half-computed
    assert recompute_batch_average(nn.Sequential(_sn()), iter(())) == 0
