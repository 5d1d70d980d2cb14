"""What the machine gave us: device, rank, world size. Works with and without torchrun."""
from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

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
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                                timeout=timedelta(seconds=process_group_timeout()))
        watch_parent(os.getppid())
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


DEFAULT_PG_TIMEOUT_S = 1800  # a collective that waits this long means a peer died or stalls; saves take less


def process_group_timeout() -> float:
    """Seconds a collective waits for a stalled peer before it fails: $HPT_PG_TIMEOUT, else 30 minutes."""
    text = os.environ.get("HPT_PG_TIMEOUT", "")
    try:
        seconds = float(text) if text else DEFAULT_PG_TIMEOUT_S
    except ValueError:
        seconds = -1
    if not seconds > 0:
        from util.io import InputError  # util.io imports torch only: no cycle, but keep the import local

        raise InputError(f"HPT_PG_TIMEOUT must be a positive number of seconds, got {text!r}")
    return seconds


def watch_parent(parent: int, interval: float = 1.0) -> threading.Thread:
    """A daemon thread that ends this process when its parent (the torchrun agent) is gone: a rank whose
    agent was killed would otherwise train, or wait in a collective, forever."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        sys.stderr.write(f"error: rank {os.environ.get('RANK', '?')}: the launcher (pid {parent}) is gone; "
                         "exiting\n")
        sys.stderr.flush()
        os._exit(1)

    thread = threading.Thread(target=watch, name="parent-watch", daemon=True)
    thread.start()
    return thread


def max_over_ranks(value: int) -> int:
    """The largest `value` over all ranks (collective); as is without torchrun. One int: cheap per step."""
    if not dist.is_initialized():
        return value
    backend_device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor([value], dtype=torch.int64, device=backend_device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def is_peer_failure(exc: BaseException) -> bool:
    """True for the errors a collective raises when a peer died (connection closed) or stalled (timeout)."""
    if not dist.is_initialized() or not isinstance(exc, RuntimeError):
        return False
    dist_error = getattr(dist, "DistError", ())
    text = str(exc).lower()
    return (isinstance(exc, dist_error) or "gloo" in text or "nccl" in text) and any(
        word in text for word in ("timed out", "timeout", "connection closed", "connection reset", "broken pipe",
                                  "peer"))
