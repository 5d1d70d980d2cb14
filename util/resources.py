"""The machine's limits as the user meets them: torch's CPU thread count, and out-of-memory errors turned into
one line that says which flag to change."""
from __future__ import annotations

import torch

from util.io import InputError

_CPU_ALLOCATOR_FAILURE = "DefaultCPUAllocator: can't allocate memory"


def set_torch_threads(threads: int) -> None:
    """--torch_threads N: torch.set_num_threads(N) for the intra-op CPU work; 0 leaves torch's default."""
    if threads < 0:
        raise InputError(f"--torch_threads must be >= 0, got {threads}")
    if threads > 0:
        torch.set_num_threads(threads)


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError, the CPU allocator's RuntimeError, or Python's MemoryError."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(exc, RuntimeError) and _CPU_ALLOCATOR_FAILURE in str(exc)


def out_of_memory_message(device: torch.device, batch_size: int, accum_steps: int) -> str:
    """One line: where memory ran out, at which batch size, and the flags that need less of it."""
    micro = batch_size // accum_steps
    where = "GPU" if device.type == "cuda" else "CPU"
    advice = []
    if micro > 1 and micro % 2 == 0:
        advice.append(f"--accum_steps {accum_steps * 2} (the same step in micro-batches of {micro // 2})")
    advice.append(f"a smaller --batchSize than {batch_size}")
    return (f"out of {where} memory ({device}) with --batchSize {batch_size}"
            f"{f' in {accum_steps} micro-batches' if accum_steps > 1 else ''}: try " + " or ".join(advice))
