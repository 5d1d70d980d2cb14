"""What the machine gave us: device, rank, world size. Works with and without torchrun."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class RunContext:
    """Built once from the options and passed explicitly; options say what was asked, this what we got."""

    device: torch.device
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def build_context(gpu_ids: list[int]) -> RunContext:
    """Pick the device from `gpu_ids` (empty = CPU) and join a torchrun process group if launched by one."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if gpu_ids:
        index = gpu_ids[local_rank % len(gpu_ids)] if world_size > 1 else gpu_ids[0]
        device = torch.device("cuda", index)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return RunContext(device=device, rank=rank, local_rank=local_rank, world_size=world_size)


def is_main() -> bool:
    """True on rank 0, and always without torchrun."""
    return not dist.is_initialized() or dist.get_rank() == 0


def print0(*args, **kwargs) -> None:
    """print() on rank 0 only."""
    if is_main():
        print(*args, **kwargs)


def barrier() -> None:
    """Wait for every rank; a no-op without a process group."""
    if dist.is_initialized():
        dist.barrier()


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """The mean of each value over all ranks (collective: every rank must call it); as is without torchrun."""
    if not dist.is_initialized() or not values:
        return values
    backend_device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    stacked = torch.tensor(list(values.values()), dtype=torch.float64, device=backend_device)
    dist.all_reduce(stacked)
    return dict(zip(values, (stacked / dist.get_world_size()).tolist()))
