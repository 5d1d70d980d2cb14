"""The pretrained files the evaluator reads, where they come from, and one lookup that never downloads."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from util.io import InputError
from util.weights import local_weights

# file name -> where to fetch it on a connected machine (the libraries' own download addresses)
SOURCES = {
    "inception_v3_google-0cc3c7bd.pth": "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
    "inception_v3_google-1a9a5a14.pth": "torchvision <= 0.8 (e.g. the DPTN docker's torch hub cache)",
    "pt_inception-2015-12-05-6726825d.pth":
        "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
    "alexnet-owt-7be5be79.pth": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
}
RANDOM_SWITCH = "--random_weights"


def seeded_build(build):
    """`build()` under a fixed torch seed, leaving the caller's RNG untouched: random-weight runs repeat."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build()


def find_weights(filenames: tuple[str, ...], weights_dir: str | os.PathLike | None, what: str) -> Path:
    """The first of `filenames` in `weights_dir` (or the torch hub cache); else one InputError naming it.

    The message names the first (preferred) file, where it goes, where to get it, and the alternatives.
    """
    first_error = None
    for name in filenames:
        try:
            explicit = Path(weights_dir) / name if weights_dir is not None else None
            return local_weights(name, explicit, "--weights_dir", what)
        except InputError as exc:
            first_error = first_error or exc
    message = f"{first_error}. Source: {SOURCES.get(filenames[0], 'unknown')}"
    if len(filenames) > 1:
        message += f". Also accepted: {', '.join(filenames[1:])}"
    raise InputError(message)
