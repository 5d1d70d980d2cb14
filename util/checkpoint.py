"""Network weights and full training state on disk: atomic writes, strict loads, clear errors."""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

from util.distributed import print0
from util.io import InputError, atomic_torch_save

STATE_FORMAT_VERSION = 1
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
INSTANCE_NORMS = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def strip_wrapper_prefixes(state: dict) -> dict:
    """Drop the DataParallel/DDP 'module.' and torch.compile '_orig_mod.' prefixes from every key."""
    cleaned = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in _WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        cleaned[key] = value
    return cleaned


def unwrap(net: nn.Module) -> nn.Module:
    """The bare network inside DistributedDataParallel/DataParallel and torch.compile wrappers."""
    while True:
        if isinstance(net, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            net = net.module
        elif hasattr(net, "_orig_mod"):
            net = net._orig_mod
        else:
            return net


def save_weights(net: nn.Module, path: str | os.PathLike) -> None:
    """Save the bare network's state_dict (no wrapper prefixes) atomically."""
    atomic_torch_save(unwrap(net).state_dict(), path)


def read_checkpoint(path: str | os.PathLike, weights_only: bool = True) -> dict:
    """torch.load with an InputError naming the file when it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint {path} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as exc:  # truncated or corrupt files raise many different errors
        raise InputError(f"checkpoint {path} is unreadable ({type(exc).__name__}: {exc})") from None


def upgrade_legacy_norm_keys(state: dict, net: nn.Module) -> dict:
    """Make a state_dict written by an old PyTorch load into `net`: InstanceNorm layers that keep no running
    statistics drop the `running_mean`/`running_var` that PyTorch <= 0.3 saved for them (they never entered
    the output), and BatchNorm layers get the `num_batches_tracked` counter (0) that PyTorch < 0.4.1 did not
    write. A note says how many keys were dropped or added."""
    dropped, added = [], []
    state = dict(state)
    for name, module in net.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, INSTANCE_NORMS) and not module.track_running_stats:
            for leaf in ("running_mean", "running_var"):
                if state.pop(prefix + leaf, None) is not None:
                    dropped.append(prefix + leaf)
        elif isinstance(module, BATCH_NORMS) and module.track_running_stats:
            key = prefix + "num_batches_tracked"
            if key not in state and prefix + "running_mean" in state:
                state[key] = torch.tensor(0, dtype=torch.long)
                added.append(key)
    if dropped or added:
        print0(f"note: old-PyTorch checkpoint: dropped {len(dropped)} InstanceNorm running statistics, added "
               f"{len(added)} BatchNorm num_batches_tracked counters")
    return state


def load_weights(net: nn.Module, path: str | os.PathLike) -> None:
    """Load weights strictly; a partial match is refused with the missing/unexpected keys named.

    Wrapper prefixes (`module.`, `_orig_mod.`) are stripped and old-PyTorch norm keys upgraded first.
    """
    target = unwrap(net)
    state = upgrade_legacy_norm_keys(strip_wrapper_prefixes(read_checkpoint(path)), target)
    expected = target.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
                   if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong_shape:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
            if keys:
                shown = ", ".join(keys[:8]) + (f" ... (+{len(keys) - 8} more)" if len(keys) > 8 else "")
                parts.append(f"{len(keys)} {label}: {shown}")
        raise InputError(f"checkpoint {path} does not match the network: " + "; ".join(parts))
    target.load_state_dict(state, strict=True)


def rng_state() -> dict:
    """The random states of python, numpy, torch (CPU) and CUDA, for an exact resume."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_state(path: str | os.PathLike, model_state: dict, progress: dict, options: dict) -> None:
    """Write <tag>_train_state.pth: the model's nets/optimizers/schedulers, loop progress, RNG, options."""
    atomic_torch_save({"format_version": STATE_FORMAT_VERSION, "model": model_state, "progress": progress,
                       "rng": rng_state(), "options": options}, path)


def load_training_state(path: str | os.PathLike) -> dict:
    """Read a training state written by `save_training_state`; InputError if absent, corrupt or foreign."""
    state = read_checkpoint(path, weights_only=False)
    if not isinstance(state, dict) or state.get("format_version") != STATE_FORMAT_VERSION:
        raise InputError(f"{path} is not a training state of this project (format {STATE_FORMAT_VERSION})")
    return state


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices) so that the same seed gives the same run on CPU."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def checkpoint_tags(folder: str | os.PathLike, suffix: str) -> list[str]:
    """Tags of the files `<tag><suffix>` in `folder`, newest first (e.g. suffix '_net_G.pth')."""
    files = sorted(Path(folder).glob(f"*{suffix}"), key=lambda p: p.stat().st_mtime, reverse=True)
    return [p.name[: -len(suffix)] for p in files]


def newest_intact_state(folder: str | os.PathLike, excluding: str | os.PathLike) -> str | None:
    """The tag of the newest `<tag>_train_state.pth` in `folder` (other than `excluding`) that loads."""
    for tag in checkpoint_tags(folder, "_train_state.pth"):
        path = Path(folder) / f"{tag}_train_state.pth"
        if path.resolve() == Path(excluding).resolve():
            continue
        try:
            load_training_state(path)
            return tag
        except InputError:
            continue
    return None
