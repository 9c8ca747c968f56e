"""CpuSyncBatchNorm2d on 2 gloo ranks equals nn.BatchNorm2d on the concatenated batch; convert_cpu_syncbn.

The 2-rank checks all run in one ``torch.multiprocessing.spawn`` (each child imports torch and the harness,
several seconds): :func:`gloo_results` runs every scenario on both ranks and the tests compare its results with
plain ``nn.BatchNorm2d`` computed here, in the test process. A scenario that raises is recorded as a
traceback and fails only its own test.

Tolerance: ``torch.testing.assert_close(rtol=1e-5, atol=1e-6)`` (``TOL``) throughout. Relative, because the
reference is itself float32 BN: against float64 BN its weight/bias gradients (sums over 200 positions, size ~18)
are off by up to 2e-6, its outputs and input gradients by a few 1e-7.
"""

from __future__ import annotations

import copy
import os
import socket
import traceback
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
from torch.nn.modules.batchnorm import _BatchNorm

from harness.metrics.complexity import count
from harness.zoo.syncbn import CpuSyncBatchNorm2d, CpuSyncBatchNormAct2d, convert_cpu_syncbn

WORLD = 2
TOL = {"rtol": 1e-5, "atol": 1e-6}
C, HW = 4, 5


# --------------------------------------------------------------------------------------------------------------
# running a function on W gloo ranks


def _free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, fn: Callable[[int, int], Any], world: int, port: int, out_dir: str) -> None:
    """Join the gloo group as ``rank``, run ``fn(rank, world)`` and save its result to ``out_dir/rank<rank>.pt``."""
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=60))
    try:
        result = fn(rank, world)
    finally:
        dist.destroy_process_group()
    torch.save(result, Path(out_dir) / f"rank{rank}.pt")


def run_on_ranks(fn: Callable[[int, int], Any], world: int, out_dir: Path) -> list[Any]:
    """Return ``[fn(0, world), ..., fn(world - 1, world)]``, each run in its own process of one gloo group.

    ``fn`` must be importable (a module-level function); its results travel back through files in ``out_dir``.
    """
    mp.spawn(_worker, args=(fn, world, _free_port(), str(out_dir)), nprocs=world, join=True)
    return [torch.load(out_dir / f"rank{rank}.pt", weights_only=False) for rank in range(world)]


# --------------------------------------------------------------------------------------------------------------
# data and models shared by the ranks and the reference


def _batch(step: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the full batch of ``step`` (n × C × HW × HW, mean ≈ 1, std ≈ 3) and its upstream-gradient weights."""
    gen = torch.Generator().manual_seed(100 + step)
    x = torch.randn(n, C, HW, HW, generator=gen) * 3 + 1
    return x, torch.randn(n, C, HW, HW, generator=gen)


def _bn(cls: type[_BatchNorm], momentum: float | None = 0.1) -> _BatchNorm:
    """Return a ``cls`` BN over C channels with non-trivial weight, bias and running statistics."""
    bn = cls(C, momentum=momentum)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(C, generator=gen) + 0.5)
        bn.bias.copy_(torch.randn(C, generator=gen))
        bn.running_mean.copy_(torch.randn(C, generator=gen))
        bn.running_var.copy_(torch.rand(C, generator=gen) + 0.5)
    return bn


def _train_steps(bn: _BatchNorm, sizes: list[int], part: slice) -> dict[str, Any]:
    """Run a training step of ``bn`` per full-batch size in ``sizes``, on its ``part`` rows; return the results.

    The loss is (y · w).sum() with fixed random w; gradients are taken per step (no accumulation). After the
    steps: the running statistics and the eval-mode output on the part of a fresh batch.
    """
    out: dict[str, Any] = {"y": [], "dx": [], "dweight": [], "dbias": []}
    bn.train()
    for step, n in enumerate(sizes):
        x, w = _batch(step, n)
        x = x[part].clone().requires_grad_(True)
        y = bn(x)
        dx, dweight, dbias = torch.autograd.grad((y * w[part]).sum(), [x, bn.weight, bn.bias])
        for key, value in zip(out, [y.detach(), dx, dweight, dbias], strict=True):
            out[key].append(value)
    out["running_mean"] = bn.running_mean.clone()
    out["running_var"] = bn.running_var.clone()
    out["num_batches_tracked"] = int(bn.num_batches_tracked)
    bn.eval()
    with torch.no_grad():
        out["y_eval"] = bn(_batch(99, sizes[0])[0][part])
    return out


EQUAL = [8, 8, 8]  # 4 + 4 rows per step
UNEQUAL = [8, 8]  # 3 + 5 rows per step
UNEQUAL_SPLIT = 3


def _rows(rank: int, n: int, split: int | None) -> slice:
    """Return rank's rows of a batch of n: equal halves, or [0, split) and [split, n) for 2 ranks."""
    if split is None:
        per = n // WORLD
        return slice(rank * per, (rank + 1) * per)
    return slice(0, split) if rank == 0 else slice(split, n)


def _net(norm: type[nn.BatchNorm2d]) -> nn.Sequential:
    """Return conv → BN → ReLU → conv → BN → pool → linear, initialised from a fixed seed."""
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), norm(6), nn.ReLU(),
        nn.Conv2d(6, 6, 3, padding=1), norm(6), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5),
    )


def _net_data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return images (n × 3 × 6 × 6, mean 2, std 2) and labels for the DDP step."""
    gen = torch.Generator().manual_seed(11)
    return torch.randn(n, 3, 6, 6, generator=gen) * 2 + 2, torch.randint(0, 5, (n,), generator=gen)


def _sgd_step(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> None:
    """Run one SGD step (lr 0.1, momentum 0.9) with the mean cross-entropy over ``x``."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.train()
    F.cross_entropy(model(x), target).backward()
    opt.step()


# --------------------------------------------------------------------------------------------------------------
# the scenarios run on every rank


def _scenario_equal(rank: int) -> dict[str, Any]:
    return _train_steps(_bn(CpuSyncBatchNorm2d), EQUAL, _rows(rank, EQUAL[0], None))


def _scenario_unequal(rank: int, split: int = UNEQUAL_SPLIT) -> dict[str, Any]:
    return _train_steps(_bn(CpuSyncBatchNorm2d, momentum=None), UNEQUAL, _rows(rank, UNEQUAL[0], split))


def _scenario_empty(rank: int) -> dict[str, Any]:
    return _scenario_unequal(rank, split=0)


def _no_affine_step(bn: nn.Module, part: slice) -> dict[str, torch.Tensor]:
    """Return y and dx of one training step of an affine-free, untracked ``bn`` on ``part`` of a batch."""
    x, w = _batch(0, 8)
    x = x[part].clone().requires_grad_(True)
    y = bn.train()(x)
    (dx,) = torch.autograd.grad((y * w[part]).sum(), [x])
    return {"y": y.detach(), "dx": dx}


def _scenario_no_affine(rank: int) -> dict[str, torch.Tensor]:
    group = dist.new_group([0, 1])  # an explicit process group rather than the default one
    bn = CpuSyncBatchNorm2d(C, affine=False, track_running_stats=False, process_group=group)
    return _no_affine_step(bn, _rows(rank, EQUAL[0], None))


def _meta_and_fake(rank: int = 0) -> dict[str, Any]:
    """Return what a training forward gives on meta and fake tensors, and the complexity counts of a small net.

    The layer is built on the meta device (a meta input with real parameters fails in plain BN too); the
    counts are the harness's own (``count(..., training=True)`` on meta and on fake tensors).
    """
    meta = CpuSyncBatchNorm2d(3, device="meta").train()(torch.empty(2, 3, 5, 5, device="meta"))
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        fake = CpuSyncBatchNorm2d(3).train()(mode.from_tensor(torch.empty(2, 3, 5, 5)))
    x = torch.randn(2, 3, 6, 6)
    norms = (CpuSyncBatchNorm2d, nn.BatchNorm2d)
    counts = {m: [count(_net(norm), x, training=True, method=m).total for norm in norms] for m in ("meta", "fake")}
    return {"meta": (meta.device.type, tuple(meta.shape)), "fake": isinstance(fake, FakeTensor), "counts": counts}


def _scenario_ddp(rank: int) -> dict[str, Any]:
    model = nn.parallel.DistributedDataParallel(_net(CpuSyncBatchNorm2d))
    x, target = _net_data(8)
    part = slice(rank * 4, (rank + 1) * 4)
    _sgd_step(model, x[part], target[part])
    return {k: v.detach().clone() for k, v in model.module.state_dict().items()}


SCENARIOS: dict[str, Callable[[int], Any]] = {
    "equal": _scenario_equal,
    "unequal": _scenario_unequal,
    "empty": _scenario_empty,
    "no_affine": _scenario_no_affine,
    "fake": _meta_and_fake,
    "ddp": _scenario_ddp,
}


def _all_scenarios(rank: int, world: int) -> dict[str, Any]:
    """Run every scenario; return its result or ``{"error": traceback}`` by name."""
    assert world == WORLD
    results: dict[str, Any] = {}
    for name, scenario in SCENARIOS.items():
        try:
            results[name] = scenario(rank)
        except Exception:
            results[name] = {"error": traceback.format_exc()}
    return results


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Run each test on one intra-op thread: on a loaded 2-core machine, 2 threads made MobileNetV2 100× slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def gloo_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Return every rank's scenario results (one spawn of WORLD gloo processes for the whole module)."""
    return run_on_ranks(_all_scenarios, WORLD, tmp_path_factory.mktemp("syncbn"))


def _scenario(results: list[dict[str, Any]], name: str) -> list[Any]:
    """Return the ranks' results of scenario ``name``, failing with the traceback of a rank where it raised."""
    for rank, res in enumerate(results):
        if isinstance(res[name], dict) and "error" in res[name]:
            pytest.fail(f"rank {rank} raised in scenario {name}:\n{res[name]['error']}")
    return [res[name] for res in results]


def _check_against_bn(ranks: list[dict[str, Any]], reference: dict[str, Any]) -> None:
    """Compare the ranks' results of :func:`_train_steps` with plain BN's on the concatenated batches.

    Outputs and input gradients concatenate over ranks. Each rank's weight/bias gradient is its local
    contribution (the loss on the full batch is the sum of the ranks' losses), so their sum over ranks must equal
    BN's gradient on the full batch. Running statistics and eval outputs are the same on every rank.
    """
    for step in range(len(reference["y"])):
        for key in ("y", "dx"):
            got = torch.cat([r[key][step] for r in ranks])
            torch.testing.assert_close(got, reference[key][step], **TOL, msg=f"{key} at step {step}")
        for key in ("dweight", "dbias"):
            got = torch.stack([r[key][step] for r in ranks]).sum(0)
            torch.testing.assert_close(got, reference[key][step], **TOL, msg=f"{key} at step {step}")
    for r in ranks:
        for key in ("running_mean", "running_var"):
            torch.testing.assert_close(r[key], reference[key], **TOL, msg=key)
        assert r["num_batches_tracked"] == reference["num_batches_tracked"]
    torch.testing.assert_close(torch.cat([r["y_eval"] for r in ranks]), reference["y_eval"], **TOL)


# --------------------------------------------------------------------------------------------------------------
# 2 gloo ranks


def test_two_ranks_equal_batches_match_bn_on_concatenation(gloo_results: list[dict[str, Any]]) -> None:
    ranks = _scenario(gloo_results, "equal")
    reference = _train_steps(_bn(nn.BatchNorm2d), EQUAL, slice(None))
    _check_against_bn(ranks, reference)
    assert reference["num_batches_tracked"] == len(EQUAL)


@pytest.mark.parametrize(("scenario", "split"), [("unequal", UNEQUAL_SPLIT), ("empty", 0)])
def test_two_ranks_unequal_batches_match_bn_on_concatenation(
    gloo_results: list[dict[str, Any]], scenario: str, split: int
) -> None:
    """Rank 0 has 3 rows (or none) and rank 1 the other 5 (or all 8); momentum None (cumulative average) on top."""
    ranks = _scenario(gloo_results, scenario)
    assert [len(r["y"][0]) for r in ranks] == [split, UNEQUAL[0] - split]
    _check_against_bn(ranks, _train_steps(_bn(nn.BatchNorm2d, momentum=None), UNEQUAL, slice(None)))


def test_two_ranks_explicit_group_without_affine_or_running_stats(gloo_results: list[dict[str, Any]]) -> None:
    ranks = _scenario(gloo_results, "no_affine")
    reference = _no_affine_step(nn.BatchNorm2d(C, affine=False, track_running_stats=False), slice(None))
    for key in ("y", "dx"):
        torch.testing.assert_close(torch.cat([r[key] for r in ranks]), reference[key], **TOL, msg=key)


def _check_meta_and_fake(res: dict[str, Any]) -> None:
    assert res["meta"] == ("meta", (2, 3, 5, 5))
    assert res["fake"]
    for method, (sync, plain) in res["counts"].items():
        assert sync == plain, method


def test_meta_and_fake_inputs_skip_the_collective_in_a_world_of_two(gloo_results: list[dict[str, Any]]) -> None:
    """Complexity counting on meta/fake tensors works in a live 2-rank group, and counts what plain BN counts."""
    for res in _scenario(gloo_results, "fake"):
        _check_meta_and_fake(res)


def test_ddp_sgd_step_matches_bn_net_on_concatenated_batch(gloo_results: list[dict[str, Any]]) -> None:
    """DDP averages gradients of per-rank mean losses = gradient of the mean loss over the full (equal-split) batch."""
    ranks = _scenario(gloo_results, "ddp")
    reference = _net(nn.BatchNorm2d)
    _sgd_step(reference, *_net_data(8))
    expected = reference.state_dict()
    for state in ranks:
        assert state.keys() == expected.keys()
        for key, value in expected.items():
            torch.testing.assert_close(state[key], value, **TOL, msg=key)


# --------------------------------------------------------------------------------------------------------------
# no process group


@pytest.mark.parametrize("shape", [(6, C, HW, HW), (6, C, 7), (6, C)])
def test_without_process_group_training_is_plain_bn(shape: tuple[int, ...]) -> None:
    assert not dist.is_initialized()
    sync, plain = _bn(CpuSyncBatchNorm2d), _bn(nn.BatchNorm1d if len(shape) < 4 else nn.BatchNorm2d)
    x = torch.randn(shape) * 3 + 1
    for bn in (sync, plain):
        bn.train()
    xs, xp = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ys, yp = sync(xs), plain(xp)
    torch.testing.assert_close(ys, yp, rtol=0, atol=0)
    (ys * ys).sum().backward()
    (yp * yp).sum().backward()
    torch.testing.assert_close(xs.grad, xp.grad, rtol=0, atol=0)
    torch.testing.assert_close(sync.running_var, plain.running_var, rtol=0, atol=0)


def test_other_ranks_are_refused() -> None:
    with pytest.raises(ValueError, match="expected 2D, 3D or 4D input"):
        CpuSyncBatchNorm2d(3)(torch.zeros(2, 3, 2, 2, 2))


def test_meta_and_fake_inputs_without_process_group() -> None:
    _check_meta_and_fake(_meta_and_fake())


def test_repr_and_process_group_attribute() -> None:
    bn = CpuSyncBatchNorm2d(3, momentum=None)
    assert bn.process_group is None
    assert "cpu_sync=True" in repr(bn) and "momentum=None" in repr(bn)


# --------------------------------------------------------------------------------------------------------------
# convert_cpu_syncbn


def test_convert_mobilenetv2_keeps_activations_and_outputs() -> None:
    """timm's MobileNetV2 uses BatchNormAct2d (BN + ReLU6); converted, it computes the same in eval and train."""
    import timm

    original = timm.create_model("mobilenetv2_100", pretrained=False, num_classes=10)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():  # non-trivial BN parameters and statistics, so ReLU6 clamps both ends
        for m in original.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=gen) * 2 + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 2)
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    original.eval()
    converted = convert_cpu_syncbn(copy.deepcopy(original))

    bns = [m for m in converted.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(isinstance(m, CpuSyncBatchNorm2d) for m in bns)
    assert isinstance(converted.bn1, CpuSyncBatchNormAct2d) and isinstance(converted.bn1.act, nn.ReLU6)
    assert not converted.training and not converted.bn1.training

    x = torch.randn(2, 3, 64, 64, generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(converted(x), original(x), **TOL)
        dropped = nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(original))  # torch's converter drops act
        assert (dropped(x) - original(x)).abs().max() > 1e-2
        original.train()
        converted.train()
        torch.testing.assert_close(converted(x), original(x), **TOL)
    torch.testing.assert_close(converted.bn1.running_var, original.bn1.running_var, **TOL)


def test_convert_plain_bn_root_shares_tensors_and_settings() -> None:
    bn = _bn(nn.BatchNorm2d, momentum=None).eval()
    converted = convert_cpu_syncbn(bn, process_group=None)
    assert type(converted) is CpuSyncBatchNorm2d
    assert converted.momentum is None and converted.eps == bn.eps and not converted.training
    for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        assert getattr(converted, name) is getattr(bn, name)
    assert convert_cpu_syncbn(converted) is converted


def test_convert_refuses_bn_subclasses_with_their_own_forward() -> None:
    from timm.layers import SplitBatchNorm2d

    with pytest.raises(TypeError, match="SplitBatchNorm2d"):
        convert_cpu_syncbn(nn.Sequential(SplitBatchNorm2d(4, num_splits=2)))
