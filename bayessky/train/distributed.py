"""Data-parallel training over several processes: ``torchrun`` + ``torch.distributed`` + DDP.

``torchrun --nproc_per_node N $(which bayessky) train ...`` starts N copies of the command with
``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` in the environment.
:func:`init_from_env` joins them into one process group (gloo on CPU, nccl on CUDA with one GPU
per local rank); :func:`bayessky.train.loop.fit` then sees :func:`current_group` and trains with
:class:`torch.nn.parallel.DistributedDataParallel`. Every process holds the whole data set and
draws the same global permutation; each takes its slice of every global batch (:meth:`Group.shard`).

What torch does not do and this module adds: the contiguous slice of a global batch per rank
(``DistributedSampler`` shards per epoch by striding, not per batch of one shared permutation,
so it cannot reproduce the single-process batches), and a module whose ``forward`` is the training
objective (DDP hooks ``forward`` only, the objectives call ``log_prob`` / ``elbo``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["Group", "current_group", "env_world_size", "init_from_env", "shutdown", "data_parallel"]


@dataclass(frozen=True)
class Group:
    """The default process group of a data-parallel run (more than one process)."""

    rank: int
    world_size: int
    backend: str
    device: torch.device  # where collective tensors live (CPU for gloo, this rank's GPU for nccl)

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and shows progress."""
        return self.rank == 0

    def all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        """The element-wise sum of ``t`` over the processes (a new tensor, on ``t``'s device)."""
        out = t.detach().to(self.device, copy=True)
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out.to(t.device)

    def total(self, value: float) -> float:
        """The sum of a float over the processes (in float64)."""
        return float(self.all_reduce(torch.tensor([float(value)], dtype=torch.float64)))

    def barrier(self) -> None:
        dist.barrier()

    def shard(self, n: int) -> tuple[int, int]:
        """``(start, stop)`` of this rank's contiguous part of ``n`` items, sized as
        ``torch.tensor_split`` sizes them (the first ``n % world_size`` ranks get one more)."""
        q, r = divmod(int(n), self.world_size)
        start = self.rank * q + min(self.rank, r)
        return start, start + q + (self.rank < r)


def current_group() -> Group | None:
    """The initialised default process group when it spans more than one process, else None."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() <= 1:
        return None
    backend = str(dist.get_backend())
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    return Group(dist.get_rank(), dist.get_world_size(), backend, device)


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name}: expected an integer in the environment, got {text!r}") from None
    if value < 0:
        raise ValueError(f"{name}: expected a non-negative integer in the environment, got {value}")
    return value


def env_world_size() -> int:
    """``WORLD_SIZE`` as torchrun sets it (1 when unset)."""
    return max(_env_int("WORLD_SIZE", 1), 1)


def init_from_env(device: torch.device) -> tuple[Group | None, torch.device]:
    """Join torchrun's process group when ``WORLD_SIZE > 1``; return it and this rank's device.

    CPU: backend gloo. CUDA: backend nccl, device ``cuda:LOCAL_RANK`` (one GPU per process; an
    explicit other index is refused). With ``WORLD_SIZE`` 1 or unset nothing happens:
    ``(None, device)``. A group already initialised by the caller is used as it is.
    """
    world = env_world_size()
    if world <= 1:
        return None, device
    if not dist.is_available():
        raise ValueError("WORLD_SIZE: this torch build has no torch.distributed")
    if not dist.is_initialized():
        if device.type == "cuda":
            local = _env_int("LOCAL_RANK", 0)
            if device.index is not None and device.index != local:
                raise ValueError(f"device: under torchrun each process uses cuda:LOCAL_RANK (here "
                                 f"cuda:{local}), got {device}; pass cuda or auto")
            if local >= torch.cuda.device_count():
                raise ValueError(f"LOCAL_RANK: {local} but only {torch.cuda.device_count()} GPUs here")
            device = torch.device("cuda", local)
            torch.cuda.set_device(device)
            dist.init_process_group("nccl", device_id=device)
        elif device.type == "cpu":
            dist.init_process_group("gloo")
        else:
            raise ValueError(f"device: data-parallel training runs on cpu or cuda, got {device}")
    return current_group(), device


def shutdown() -> None:
    """Leave the process group (all ranks, after their last collective)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class _Objective(torch.nn.Module):
    """``forward(x, c) = objective(model, x, c)``: the per-map loss as a forward pass DDP can hook."""

    def __init__(self, model: torch.nn.Module, objective):
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        return self.objective(self.model, x, context)


def data_parallel(model: torch.nn.Module, objective, device: torch.device):
    """``DistributedDataParallel`` around ``objective(model, x, c)``; calling it returns the
    per-map loss and its backward averages the gradients over the processes.

    Construction broadcasts rank 0's parameters and buffers, so every rank starts from the same
    weights whatever its own initialisation.
    """
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(_Objective(model, objective), device_ids=ids)
