"""Pretrained weights from an explicit path or the torch hub cache; never downloaded, never silently random."""
from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import torch

from util.io import InputError


def hub_checkpoint_dir() -> Path:
    """`$TORCH_HOME/hub/checkpoints`, where torchvision and torch.hub keep downloaded weights."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def local_weights(filename: str, explicit: str | os.PathLike | None = None, flag: str = "--weights_dir",
                  what: str = "pretrained weights") -> Path:
    """The path of `filename`: `explicit` (a file, or a folder holding `filename`) or the hub cache.

    Raises one InputError naming the file and where it goes when it is absent (this machine may be offline).
    """
    if explicit is not None:
        path = Path(explicit)
        if path.is_dir():
            path = path / filename
    else:
        path = hub_checkpoint_dir() / filename
    if not path.is_file():
        raise InputError(f"missing {what}: {path} not found. Fetch {filename} on a connected machine and copy "
                         f"it to {hub_checkpoint_dir()}/ (the torch hub cache), or pass {flag}")
    return path


def load_state_dict_file(path: Path) -> dict:
    """torch.load a weights file on CPU (weights_only); InputError naming it when unreadable."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated downloads and wrong files raise many different errors
        raise InputError(f"weights file {path} is unreadable ({type(exc).__name__}: {exc})") from None


def file_sha256(path: str | os.PathLike, prefix: int = 12) -> str:
    """The first `prefix` hex digits of the file's SHA-256, for provenance records."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:prefix]


def warn_random_weights(network: str, switch: str) -> None:
    """Announce loudly that `network` uses random weights because `switch` was given."""
    message = (f"{switch}: {network} uses RANDOM weights, not pretrained ones. Results are meaningless "
               "except for tests and offline demos.")
    warnings.warn(message, stacklevel=2)
    print(f"WARNING: {message}")
