"""util/cpu_memory.py: with 'reuse', freed big CPU tensors are reused instead of mapped and faulted in anew."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from util.cpu_memory import set_cpu_memory_policy

REPO = Path(__file__).resolve().parents[1]
PROBE = """
import resource, sys, torch
from util.cpu_memory import set_cpu_memory_policy
took = set_cpu_memory_policy(sys.argv[1])
block = 64 * 2 ** 20 // 4  # a 64 MiB float32 tensor: above glibc's largest mmap threshold
for _ in range(20):  # glibc settles its free blocks within a few rounds
    x = torch.ones(block); del x
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    x = torch.ones(block); del x
print(took, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(policy: str) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, policy], cwd=REPO, capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_reuse_avoids_the_page_faults_of_remapping_big_tensors():
    took, reuse = page_faults("reuse")
    released, release = page_faults("release")
    assert took and not released
    assert release > 5 * 16384 * 0.9  # five fresh 64 MiB mappings of 4 KiB pages
    assert reuse < 1000


def test_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="--cpu_memory"):
        set_cpu_memory_policy("cache")
