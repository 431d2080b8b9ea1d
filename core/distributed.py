"""Data-parallel plumbing: join a torchrun / accelerate job when one launched us, else run alone."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass
class Ranks:
    rank: int = 0
    world: int = 1
    local: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> Ranks:
    """Join a torchrun/accelerate job when one launched us (NCCL on CUDA, gloo on CPU); on CUDA each
    process works on the GPU of its local rank."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Ranks()
    import torch.distributed as dist

    ranks = Ranks(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    if device.startswith("cuda"):
        # Each process's own GPU before NCCL starts: otherwise its barriers guess the device, and
        # every process's allocations land on cuda:0 until moved.
        torch.cuda.set_device(ranks.local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return ranks


def is_main_process() -> bool:
    """Whether this process speaks for the job (rank 0 of a torchrun/accelerate job, or one run alone),
    so that what it prints once is not printed once per process."""
    return int(os.environ.get("RANK", "0")) == 0


def all_reduce_sum(values: list[float], device) -> list[float]:
    import torch.distributed as dist

    if not dist.is_initialized():
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
