"""Multi-process training on PyTorch's own engine: torchrun sets the environment, we join the group."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (rank 0 writes every file)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        """True on the process that writes files and prints progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when more than one process trains."""
        return self.size > 1


def join_world(device: torch.device) -> World:
    """Join the process group that torchrun describes in the environment (gloo on CPU, nccl on GPU)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World(device=device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    world = World(int(os.environ["RANK"]), size, local_rank, device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return world


def leave_world(world: World) -> None:
    """Tear the process group down (a no-op for a single process)."""
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    """Wait for every process."""
    if world.distributed:
        dist.barrier()


def rank0_decides(world: World, *flags: bool) -> tuple[bool, ...]:
    """Rank 0's values of some flags, so every process takes the same branch at the same step."""
    if not world.distributed:
        return flags
    t = torch.tensor([1.0 if f else 0.0 for f in flags], device=world.device)
    dist.broadcast(t, src=0)
    return tuple(bool(v) for v in t.tolist())


def mean_across(world: World, value: float) -> float:
    """The average of a number over all processes."""
    if not world.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=world.device)
    dist.all_reduce(t)
    return float(t.item()) / world.size
