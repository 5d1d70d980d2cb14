"""Adapters that build a model's official code for `scripts.bench_train --official_root` (one module per model,
named like the model: `dptn.py`, `patn.py`). Each defines `build(spec, random_batch) -> (step, device)`.

The official code is imported from the checkout given by the user (the child process runs there) and runs on
random batches with random loss-network weights; only compatibility shims for current PyTorch, scikit-image
and CPU-only machines are applied (`prepare_official_import`), never changes to what it computes.
"""
from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
OURS = ("data", "models", "options", "util", "losses")  # package names the official repositories use too


def prepare_official_import(cpu_only_cuda_calls: bool = False) -> None:
    """Make the official repository in the current directory importable on current libraries.

    Drops this project from sys.path (the official `util`/`models` folders would otherwise lose to ours),
    stubs matplotlib (only plotting helpers use it), restores skimage.draw.circle (removed in 0.19), makes
    torchvision's vgg19 build random weights (no download), and with `cpu_only_cuda_calls` turns the
    unconditional `.cuda()` calls of some official code into no-ops on machines without CUDA.
    """
    sys.path[:] = [p for p in sys.path if p and Path(p).resolve() != REPO]
    sys.path.insert(0, os.getcwd())
    for name in list(sys.modules):
        if name.split(".")[0] in OURS:
            del sys.modules[name]
    for name in ("matplotlib", "matplotlib.pyplot", "matplotlib.patches"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["matplotlib"].use = lambda *args, **kwargs: None
    import skimage.draw
    import torchvision.models

    if not hasattr(skimage.draw, "circle"):
        skimage.draw.circle = lambda r, c, radius, shape=None: skimage.draw.disk((r, c), radius, shape=shape)
    vgg19 = torchvision.models.vgg19
    torchvision.models.vgg19 = lambda pretrained=False, **kwargs: vgg19(weights=None)
    if cpu_only_cuda_calls and not torch.cuda.is_available():
        torch.nn.Module.cuda = lambda self, *args, **kwargs: self
        torch.Tensor.cuda = lambda self, *args, **kwargs: self


def device_of(spec: dict) -> tuple[list[int], torch.device]:
    """(gpu ids, device) for the child's --gpu_ids."""
    ids = [int(i) for i in spec["gpu_ids"].split(",") if int(i) >= 0 and torch.cuda.is_available()]
    return ids, torch.device("cuda", ids[0]) if ids else torch.device("cpu")
