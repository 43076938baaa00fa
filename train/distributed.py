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


def agree_to_stop(world: World, stop: bool) -> bool:
    """True when rank 0 says stop, so every process leaves a loop at the same step."""
    if not world.distributed:
        return stop
    flag = torch.tensor([1.0 if stop else 0.0], device=world.device)
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def mean_across(world: World, value: float) -> float:
    """The average of a number over all processes."""
    if not world.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=world.device)
    dist.all_reduce(t)
    return float(t.item()) / world.size
