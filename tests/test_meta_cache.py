"""Replayed op outputs on meta tensors (harness.metrics.meta_cache): the replayed metadata equals the op's own on
fuzzed shapes, strides, dtypes and broadcasts, and counts with and without replay are identical."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
import timm
import torch

from harness.metrics.complexity import _count_meta
from harness.metrics.meta_cache import SHORTCUTS, MetaCache, replayable

aten = torch.ops.aten


@dataclass(frozen=True)
class T:
    """A meta tensor to build: its shape, dtype, and layout (channels_last, or column-major last two dims)."""

    shape: tuple[int, ...]
    dtype: torch.dtype = torch.float32
    channels_last: bool = False
    transposed: bool = False

    def build(self) -> torch.Tensor:
        t = torch.empty(self.shape, dtype=self.dtype, device="meta")
        if self.channels_last and len(self.shape) == 4:
            t = t.contiguous(memory_format=torch.channels_last)
        if self.transposed and len(self.shape) >= 2:
            t = t.transpose(-1, -2).contiguous().transpose(-1, -2)  # same shape, column-major strides
        return t


def _build(spec):
    """Return fresh arguments from ``spec``: each T a new meta tensor, lists and tuples part by part."""
    if isinstance(spec, T):
        return spec.build()
    if isinstance(spec, (list, tuple)):
        return type(spec)(_build(part) for part in spec)
    return spec


def _calls(rng: random.Random):
    """Yield (op, argument spec) pairs over random shapes, dtypes, layouts and broadcasts."""
    for _ in range(60):
        n, c, h, w = rng.choice([1, 2]), rng.choice([3, 8, 16]), rng.choice([5, 7, 14]), rng.choice([5, 7, 14])
        dtype = rng.choice([torch.float32, torch.bfloat16, torch.float16])
        cl, tr = rng.random() < 0.5, rng.random() < 0.3
        groups = rng.choice([1, c])
        stride, padding, k = rng.choice([1, 2]), rng.choice([0, 1]), rng.choice([1, 3])
        x = T((n, c, h, w), dtype, cl)
        other = rng.choice([(c, 1, 1), (1, c, h, w), (w,), ()])
        yield aten.add.Tensor, (T((n, c, h, w), dtype, cl, tr), T(other, dtype))
        yield aten.mul.Tensor, (x, T(()))
        yield aten.hardtanh_.default, (x, 0.0, 6.0)
        yield aten.relu_.default, (T((n, c, h, w), dtype, cl, tr),)
        yield aten.convolution.default, (x, T((c, c // groups, k, k), dtype, cl), None, [stride, stride],
                                         [padding, padding], [1, 1], False, [0, 0], groups)
        yield aten.native_batch_norm.default, (x, T((c,)), T((c,)), T((c,)), T((c,)), False, 0.1, 1e-5)
        yield aten.avg_pool2d.default, (x, [k, k], [stride, stride])
        yield aten.max_pool2d_with_indices.default, (x, [k, k], [stride, stride], [k // 2, k // 2])
        yield aten.mean.dim, (x, [-1, -2], rng.random() < 0.5)
        yield aten._softmax.default, (T((n, c, h * w), dtype, False, tr), -1, False)
        yield aten.addmm.default, (T((w,), dtype), T((n * h, c), dtype, False, tr), T((c, w), dtype))
        yield aten.cat.default, ([x, T((n, 3, h, w), dtype, cl)], 1)


def _metadata(out):
    if isinstance(out, torch.Tensor):
        return (tuple(out.shape), out.stride(), out.dtype, out.storage_offset())
    return tuple(_metadata(o) for o in out)


@pytest.mark.parametrize("seed", range(4))
def test_replayed_outputs_have_the_ops_own_metadata(seed):
    cache = MetaCache()
    for op, spec in _calls(random.Random(seed)):
        expected = op(*_build(spec))  # the op itself, on arguments of the same metadata
        cache.call(op, _build(spec), {})
        args = _build(spec)
        hits = cache.hits
        replayed = cache.call(op, args, {})
        assert cache.hits == hits + 1, op  # every fuzzed call is replayable
        assert _metadata(replayed) == _metadata(expected), op
        if op._schema.returns[0].alias_info is not None:  # in place: the argument itself comes back
            assert replayed is args[0]


def test_ops_that_change_metadata_in_place_or_return_views_are_not_replayed():
    cache = MetaCache()
    x = T((2, 3)).build()
    cache.call(aten.t_.default, (x,), {})
    assert not cache.eligible[aten.t_.default] and not cache.outputs
    assert not replayable(aten.transpose.int) and replayable(aten.relu_.default) and replayable(aten.add.Tensor)
    real = torch.ones(2)
    assert cache.call(aten.add.Tensor, (real, real), {}).device.type == "cpu" and cache.misses == 1  # not keyed


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv2_100", "efficientnet_b0", "convnext_atto", "regnetx_002"])
@pytest.mark.parametrize("training", [False, True])
def test_counts_are_identical_with_and_without_replay(name, training):
    model = timm.create_model(name).eval()
    x = torch.randn(2, 3, 96, 96).contiguous(memory_format=torch.channels_last)
    replayed = _count_meta(model, x, 2, training, replay=True)
    plain = _count_meta(model, x, 2, training, replay=False)
    assert replayed.total == plain.total
    assert (replayed.by_op, replayed.by_module, replayed.calls, replayed.uncounted) == (
        plain.by_op, plain.by_module, plain.calls, plain.uncounted)


#: Extra arguments of each in-place activation after ``self``.
ACTIVATION_ARGS = {
    aten.relu_.default: (), aten.hardtanh_.default: (-1.0, 1.0), aten.silu_.default: (), aten.hardswish_.default: (),
    aten.hardsigmoid_.default: (), aten.leaky_relu_.default: (0.2,), aten.elu_.default: (1.0, 1.0, 1.0),
    aten.sigmoid_.default: (), aten.tanh_.default: (), aten.gelu_.default: (), aten.clamp_.default: (0.0, 6.0),
    aten.clamp_min_.default: (0.0,), aten.threshold_.default: (0.5, 0.0)}


def _shortcut_calls(op, rng: random.Random):
    """Yield argument specs of ``op`` over random shapes, dtypes and layouts."""
    for _ in range(30):
        shape = rng.choice([(2, 8, 5, 5), (1, 3, 7, 4), (4, 6, 9), (5, 16)])
        dtype = rng.choice([torch.float32, torch.bfloat16, torch.float16, torch.float64])
        x = T(shape, dtype, channels_last=rng.random() < 0.5, transposed=rng.random() < 0.3)
        if op is aten.native_layer_norm.default:
            normalized = list(shape[-rng.choice(range(1, len(shape) + 1)):])
            affine = (T(tuple(normalized), dtype), T(tuple(normalized), dtype)) if rng.random() < 0.7 else (None, None)
            yield (x, normalized, *affine, 1e-5)
        elif op is aten.native_batch_norm.default:
            c, training = shape[1], rng.random() < 0.5
            stats = (T((c,)), T((c,))) if not training or rng.random() < 0.5 else (None, None)
            affine = (T((c,)), T((c,))) if rng.random() < 0.7 else (None, None)
            yield (x, *affine, *stats, training, 0.1, 1e-5)
        else:
            yield (x, *ACTIVATION_ARGS[op])


def test_every_shortcut_is_fuzzed():
    assert set(SHORTCUTS) == {*ACTIVATION_ARGS, aten.native_batch_norm.default, aten.native_layer_norm.default}


@pytest.mark.parametrize("op", sorted(SHORTCUTS, key=str), ids=str)
def test_shortcuts_give_the_ops_own_metadata(op):
    for spec in _shortcut_calls(op, random.Random(str(op))):
        args = _build(spec)
        expected = op(*_build(spec))
        answered = SHORTCUTS[op](args, {})
        assert _metadata(answered) == _metadata(expected), (op, spec)
        if op in ACTIVATION_ARGS:
            assert answered is args[0]


@pytest.mark.parametrize("name", ["deit_tiny_patch16_224", "eva02_tiny_patch14_224"])
@pytest.mark.parametrize("training", [False, True])
def test_attention_on_the_cpu_counts_on_meta_as_on_fake_tensors(name, training):
    from harness.metrics.complexity import _count_fake, count

    model = timm.create_model(name).eval()
    x = torch.randn(1, 3, 224, 224)
    meta, fake = _count_meta(model, x, 4, training), _count_fake(model, x, 4, training)
    assert meta.calls["aten._scaled_dot_product_flash_attention_for_cpu"] == 12
    assert (meta.total, meta.by_op, meta.by_module, meta.calls, meta.uncounted) == (
        fake.total, fake.by_op, fake.by_module, fake.calls, fake.uncounted)
    assert count(model, x).method == "meta"
