"""Keep freed CPU memory inside the process, so that the next step's tensors reuse it (glibc's malloc).

Why: PyTorch's CPU allocator has no cache of its own. glibc serves every block above its mmap threshold (32 MiB
at most) with a fresh mapping and unmaps it when the tensor is freed, so every training step page-faults and
zeroes its largest activations anew: on a 2-core CPU a DPTN DeepFashion step (256x256) spent ~2 s of its ~10 s
in the kernel doing so. With mmap off for the main heap and trimming off, freed blocks are reused; the numbers
computed are the same, and the process keeps its peak memory until it exits (scripts/bench_train.py measures
both). Elsewhere (macOS, Windows, musl) this is a no-op.
"""
from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_MAX = -4
POLICIES = ("reuse", "release")


def set_cpu_memory_policy(policy: str) -> bool:
    """'reuse': keep freed memory for reuse (glibc only); 'release': leave the C library's defaults.

    Returns whether the C library took the setting.
    """
    if policy not in POLICIES:
        raise ValueError(f"--cpu_memory must be one of {', '.join(POLICIES)}, got {policy!r}")
    if policy == "release" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    # glibc still maps requests that its other arenas (threads) cannot hold; only the main heap stops mapping
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2 ** 31 - 1))
