"""Synchronized batch normalization that trains on CPU tensors (gloo), for multi-process CPU runs.

Why it exists: ``torch.nn.SyncBatchNorm`` refuses to train on CPU input. In training mode with an initialised
process group it raises ``ValueError("SyncBatchNorm expected input tensor to be on GPU ...")`` before it even
looks at the world size, so a gloo group of any size (1 included) cannot use it; only eval mode or "no process
group" work (implementation notes §6.2, torch 2.13 and 2.14.1; re-checked on 2.14.1 with a gloo world of 1).

What it computes: :class:`CpuSyncBatchNorm2d` normalises with the statistics of the *global* batch, the
concatenation of every rank's local batch, exactly as ``nn.BatchNorm2d`` would on that concatenated batch:

- each rank forms, per channel, Σx and Σx² over its local (N, H, W) positions and its local count n = N·H·W;
- these are summed over the process group; mean = Σx / n, biased variance = Σx² / n − mean²;
- the output is (x − mean) / √(var + eps) · weight + bias (the biased variance, as BN normalises);
- the running statistics are updated, as BN does, with the *unbiased* variance var · n / (n − 1) and torch's
  momentum convention ``running = (1 − momentum) · running + momentum · batch`` (with momentum ``None``:
  the cumulative average, factor 1 / num_batches_tracked).

Local batches may differ in size (the counts are summed too), and a rank may even bring an empty batch.

What is communicated: one all-reduce (sum) of 2C + 1 float64 values per layer per training forward, and,
when a loss is back-propagated, one all-reduce of the 2C + 1 gradients of those values in backward. No
collective runs in eval mode, without an initialised process group, in a group of world size 1, or on
meta/fake tensors (complexity counting runs models on those); then the layer is exactly ``nn.BatchNorm2d``.

The collective is ``torch.distributed._functional_collectives.all_reduce`` followed by ``wait_tensor``.
It is differentiable: torch registers an autograd formula for ``_c10d_functional::all_reduce`` (its backward
all-reduces the gradient with the same op) and an identity one for ``wait_tensor``; checked with torch
2.14.1 on gloo with CPU tensors (2 ranks: each rank's input gradient is the sum of every rank's upstream
gradient). It is used rather than ``torch.distributed.nn.functional.all_reduce``, which is deprecated, and rather
than a hand-written ``autograd.Function``, which would only repeat torch's formula.

Precision: the sums are accumulated in float64, whatever the input dtype. Σx² / n − mean² cancels
catastrophically in float32 when |mean| ≫ std; in float64 it stays exact to float32 precision unless
|mean| / std exceeds about 10⁴. The cost is a float64 copy of the input, kept for backward. The normalisation
itself runs in float32 (float64 for float64 input) and returns the input's dtype.

:func:`convert_cpu_syncbn` swaps the ``nn.BatchNorm2d`` layers of a model, timm's ``BatchNormAct2d``
(norm + drop + activation in one module) included, for these layers.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as funcol
from timm.layers import BatchNormAct2d
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor

__all__ = ["CpuSyncBatchNorm2d", "CpuSyncBatchNormAct2d", "convert_cpu_syncbn"]


class CpuSyncBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training statistics are those of the batch of all ranks of ``process_group``.

    Takes (N, C, H, W) input, and (N, C) or (N, C, L) input as ``nn.BatchNorm1d`` does. ``process_group``
    (``None``: the default group) is the group whose ranks share their statistics, as in ``nn.SyncBatchNorm``.
    See the module docstring for what is computed and communicated.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        process_group: dist.ProcessGroup | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            num_features, eps=eps, momentum=momentum, affine=affine, track_running_stats=track_running_stats,
            device=device, dtype=dtype,
        )
        self.process_group = process_group

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() not in (2, 3, 4):
            raise ValueError(f"expected 2D, 3D or 4D input (got {input.dim()}D input)")

    def extra_repr(self) -> str:
        """Return BN's description plus the CPU sync variant and its group."""
        group = "default" if self.process_group is None else "custom"
        return f"{super().extra_repr()}, cpu_sync=True, process_group={group}"

    def _needs_sync(self, x: torch.Tensor) -> bool:
        """Return whether this forward must share statistics: training, in a real group of >1 ranks, on real data."""
        if not self.training or not dist.is_available() or not dist.is_initialized():
            return False
        if x.device.type == "meta" or isinstance(x, FakeTensor):
            return False
        return dist.get_world_size(self.process_group) > 1

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Return the normalised input: global-batch statistics when synchronising, else ``nn.BatchNorm2d``'s."""
        if not self._needs_sync(input):
            return super().forward(input)
        self._check_input_dim(input)
        channels = input.shape[1]
        dims = [0, *range(2, input.dim())]
        shape = [1, channels] + [1] * (input.dim() - 2)

        x64 = input.to(torch.float64)
        local = torch.cat([x64.sum(dims), (x64 * x64).sum(dims), x64.new_tensor([input.numel() / channels])])
        group = self.process_group if self.process_group is not None else dist.group.WORLD
        total = funcol.wait_tensor(funcol.all_reduce(local, "sum", group))
        count = float(total[-1].detach())
        if count <= 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got {count:.0f} over all ranks")
        mean = total[:channels] / count
        var = (total[channels : 2 * channels] / count - mean * mean).clamp_min(0.0)

        factor = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                rm, rv = self.running_mean, self.running_var
                rm.copy_((1 - factor) * rm.to(torch.float64) + factor * mean)
                rv.copy_((1 - factor) * rv.to(torch.float64) + factor * var * (count / (count - 1)))

        scale = torch.rsqrt(var + self.eps)
        if self.weight is not None:
            scale = scale * self.weight
        compute = torch.promote_types(input.dtype, torch.float32)
        y = (input.to(compute) - mean.to(compute).view(shape)) * scale.to(compute).view(shape)
        if self.bias is not None:
            y = y + self.bias.to(compute).view(shape)
        return y.to(input.dtype)


class CpuSyncBatchNormAct2d(CpuSyncBatchNorm2d):
    """:class:`CpuSyncBatchNorm2d` followed by ``drop`` then ``act``, the order of timm's ``BatchNormAct2d``.

    Takes :class:`CpuSyncBatchNorm2d`'s arguments, plus ``drop`` and ``act`` (keyword-only), which default
    to ``nn.Identity``; :func:`convert_cpu_syncbn` moves them over from the
    ``BatchNormAct2d`` it replaces (as timm's ``SyncBatchNormAct`` does on GPUs).
    """

    def __init__(self, *args: Any, drop: nn.Module | None = None, act: nn.Module | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.drop = drop if drop is not None else nn.Identity()
        self.act = act if act is not None else nn.Identity()

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Return ``act(drop(norm(input)))``."""
        return self.act(self.drop(super().forward(input)))


def convert_cpu_syncbn(module: nn.Module, process_group: dist.ProcessGroup | None = None) -> nn.Module:
    """Return ``module`` with every ``nn.BatchNorm2d`` replaced by a :class:`CpuSyncBatchNorm2d` on ``process_group``.

    Like ``nn.SyncBatchNorm.convert_sync_batchnorm``: the replacement is done in place on the children, and
    the (possibly new) root is returned; the new layers take over the old ones' parameters and buffers (the
    same tensors, not copies: weight, bias, running_mean, running_var, num_batches_tracked), eps, momentum
    and train/eval mode. timm's ``BatchNormAct2d`` becomes a :class:`CpuSyncBatchNormAct2d` that keeps its
    ``drop`` and ``act`` (torch's converter silently drops the activation). Layers that already are
    :class:`CpuSyncBatchNorm2d` are kept as they are.

    Raises TypeError for other ``nn.BatchNorm2d`` subclasses that override ``forward`` (e.g. timm's
    ``SplitBatchNorm2d``), whose behaviour a plain synchronised BN would silently change.
    """
    output = module
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, CpuSyncBatchNorm2d):
        if type(module).forward is BatchNormAct2d.forward:
            output = CpuSyncBatchNormAct2d(
                module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats,
                process_group, drop=module.drop, act=module.act,
            )
        elif type(module).forward is nn.BatchNorm2d.forward:
            output = CpuSyncBatchNorm2d(
                module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats,
                process_group,
            )
        else:
            raise TypeError(f"cannot convert {type(module).__name__}: it overrides BatchNorm2d.forward")
        if module.affine:
            output.weight = module.weight
            output.bias = module.bias
        output.running_mean = module.running_mean
        output.running_var = module.running_var
        output.num_batches_tracked = module.num_batches_tracked
        output.training = module.training
    for name, child in module.named_children():
        output.add_module(name, convert_cpu_syncbn(child, process_group))
    return output
