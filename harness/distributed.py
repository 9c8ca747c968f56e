"""What a measurement needs to know when it runs in one process of a torch.distributed group.

A case with ``world_size`` > 1 (or norm ``syncbn``) is launched through torchrun
(:mod:`harness.runner.torchrun`): every process builds the same seeded model and takes the same metrics.
Collectives must then be entered the same number of times on every process, so any decision taken from
a clock or from local samples (when warm-up is over, when enough samples are taken) is *agreed*: process
0 decides and the others follow (:func:`agree`). Outside a group every function here is a no-op.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


def in_group() -> bool:
    """Return True when this process belongs to an initialised torch.distributed group of more than one."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """Return this process's rank in the group (0 outside a group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def agree(flag: bool) -> bool:
    """Return process 0's ``flag`` on every process of the group (``flag`` itself outside a group)."""
    if not in_group():
        return flag
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    value = torch.tensor([int(flag)], device=device)
    dist.broadcast(value, src=0)
    return bool(value.item())


def for_training(model: nn.Module) -> nn.Module:
    """Return ``model`` wrapped in DistributedDataParallel inside a group (gradients averaged), else itself."""
    if not in_group():
        return model
    device_ids = [torch.cuda.current_device()] if next(model.parameters()).is_cuda else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
