"""Distributed training plumbing: torchrun start-up, batch sharding, collectives with gradients.

``torchrun`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; :func:`init_distributed`
reads them (``env://``), picks NCCL on GPUs and gloo on CPUs, and returns a
:class:`DistInfo`. Without those variables everything is a single process and
the collectives below are identities, so the same code path runs everywhere.

Gradient convention (the one DDP imposes): DDP *averages* backbone gradients
over ranks, so each rank's loss ``loss_r`` counts as ``(1/W)·Σ_r loss_r``. The
collectives here have the exact adjoint backward (all-gather ↔ sum of the
slices, all-reduce-sum ↔ all-reduce-sum); parameters DDP does not average
(PartialFC's class-centre shards) take :func:`scale_grad` by ``1/W`` instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..errors import UserError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    distributed: bool = False  # a process group is up (torchrun), even at world size 1

    @property
    def is_main(self) -> bool:
        """Only the main rank writes checkpoints, logs and progress."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group torchrun describes (no-op for a plain single process)."""
    if dist.is_available() and dist.is_initialized():
        return current()
    if not launched_by_torchrun():
        return DistInfo()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, init_method="env://")
    return current()


def current() -> DistInfo:
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), True)


def local_device(device: torch.device, info: DistInfo) -> torch.device:
    """Each rank drives its own GPU (``cuda:LOCAL_RANK``)."""
    return torch.device("cuda", info.local_rank) if device.type == "cuda" and info.distributed else device


def shard_range(num: int, world_size: int, rank: int) -> tuple[int, int]:
    """``(start, count)`` of rank's contiguous slice of ``num`` items; the first ``num % W`` get one more."""
    base, extra = divmod(num, world_size)
    return base * rank + min(rank, extra), base + int(rank < extra)


def local_batch(images: torch.Tensor, labels: torch.Tensor, info: DistInfo) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's rows of the *global* batch, so the global batch stays a function of (seed, step)."""
    n = images.shape[0]
    if n % info.world_size:
        raise UserError(f"train.batch_size={n} must be divisible by the world size {info.world_size}")
    b = n // info.world_size
    rows = slice(info.rank * b, (info.rank + 1) * b)
    return images[rows], labels[rows]


def wrap_ddp(model: nn.Module, device: torch.device, info: DistInfo) -> nn.Module:
    """DDP under torchrun (world size 1 too); the bare model otherwise (BN buffers follow rank 0)."""
    if not info.distributed:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _AllGather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.rows = x.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)  # every rank's use of every slice
        r = dist.get_rank()
        return grad[r * ctx.rows : (r + 1) * ctx.rows]


class _AllReduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, factor: float) -> torch.Tensor:
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.factor, None


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's ``x`` (equal shapes) along dim 0; gradients return to their owner."""
    return _AllGather.apply(x) if _active() else x


def all_gather_nograd(x: torch.Tensor) -> torch.Tensor:
    if not _active():
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def all_reduce_sum_with_grad(x: torch.Tensor) -> torch.Tensor:
    return _AllReduceSum.apply(x) if _active() else x


def all_reduce_max_(x: torch.Tensor) -> torch.Tensor:
    """In-place max over ranks of a tensor that needs no gradient (softmax stabiliser)."""
    if _active():
        dist.all_reduce(x, op=dist.ReduceOp.MAX)
    return x


def scale_grad(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Identity forward, gradient × ``factor`` (for parameters DDP does not average)."""
    return x if factor == 1.0 else _ScaleGrad.apply(x, factor)
