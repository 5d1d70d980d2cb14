"""The pretrained files the evaluator reads, asked for together before any scoring (util/weights.py fetches them)."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from util.weights import ALEXNET, INCEPTION_LEGACY, INCEPTION_TF, WeightSpec, ensure_weights

RANDOM_SWITCH = "--random_weights"


def seeded_build(build):
    """`build()` under a fixed torch seed, leaving the caller's RNG untouched: random-weight runs repeat."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build()


def needed_weights(wanted: set[str] | list[str], legacy: bool) -> list[WeightSpec]:
    """The files the metrics `wanted` read: AlexNet for LPIPS, the protocol's Inception(s) for FID and IS."""
    wanted = set(wanted)
    specs = []
    if {"lpips", "mask_lpips"} & wanted:
        specs.append(ALEXNET)
    if "fid" in wanted:
        specs.append(INCEPTION_LEGACY if legacy else INCEPTION_TF)
    if {"is", "mask_is"} & wanted and INCEPTION_TF not in specs:
        specs.append(INCEPTION_TF)  # IS always uses the TF graph (legacy: 'tf-is' input, clean: pytorch-fid's)
    return specs


def find_weights(spec: WeightSpec, weights_dir: str | os.PathLike | None, download: bool = True) -> Path:
    """One file of the evaluator: in `weights_dir` (never downloaded into) or the hub cache (fetched if missing)."""
    return ensure_weights([spec], download, weights_dir)[0]
