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
    """torch.load with an InputError naming the file when it is missing, empty or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint {path} not found")
    if path.stat().st_size == 0:
        raise InputError(f"checkpoint {path} is empty (0 bytes; an interrupted copy or save?): copy it again or "
                         "choose another --which_epoch")
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as exc:  # truncated or corrupt files raise many different errors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise InputError(f"checkpoint {path} is unreadable ({type(exc).__name__}: {first})") from None


def describe_content(obj: object) -> str:
    """'a list of 3 items', 'a bare tensor of shape (2, 3)': what a foreign checkpoint holds, for messages."""
    if isinstance(obj, torch.Tensor):
        return f"a bare tensor of shape {tuple(obj.shape)}"
    if isinstance(obj, (list, tuple)):
        return f"a {type(obj).__name__} of {len(obj)} items"
    if isinstance(obj, dict):
        if "format_version" in obj and "model" in obj:
            return "a training state (<tag>_train_state.pth)"
        return f"a dict of {len(obj)} entries that are not all tensors"
    return f"a {type(obj).__name__}"


def weights_dict(obj: object, path: str | os.PathLike) -> dict:
    """`obj` if it is a state_dict (names -> tensors), else an InputError naming the file and what it holds."""
    if isinstance(obj, dict) and obj and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                             for k, v in obj.items()):
        return obj
    what = "an empty dict" if isinstance(obj, dict) and not obj else describe_content(obj)
    raise InputError(f"checkpoint {path} holds {what}, not network weights (a state_dict of named tensors): is it "
                     "a file of this project (<tag>_net_<X>.pth)?")


def shape_hint(saved: tuple, wanted: tuple, shaped_by: dict[str, object]) -> str:
    """' (the file looks like --ngf 16; this run has --ngf 128)' when one integer option explains a width ratio,
    else ' (shaped by --ngf, --mobilenet: give the values it was trained with)'; '' without options."""
    ints = {flag: value for flag, value in shaped_by.items() if isinstance(value, int) and not isinstance(value, bool)
            and value > 0}
    if len(saved) == len(wanted):
        for got, want in zip(saved, wanted):
            if got == want or got == 0:
                continue
            for flag, value in ints.items():
                if want % value == 0 and (value * got) % want == 0:  # the dim scales with the option
                    return f" (the file looks like {flag} {value * got // want}; this run has {flag} {value})"
            break
    if shaped_by:
        return f" (shaped by {', '.join(shaped_by)}: give the values it was trained with)"
    return ""


def mismatch_message(path: str | os.PathLike, state: dict, expected: dict, shaped_by: dict[str, object]) -> str:
    """'' when `state` fits `expected` (names and shapes), else one line: the first tensor of the wrong shape with
    both shapes and the option that likely shapes it, or the missing and unexpected names."""
    wrong = [k for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if wrong:
        key = wrong[0]
        saved, wanted = tuple(state[key].shape), tuple(expected[key].shape)
        more = f"; {len(wrong)} tensors of the wrong shape in all" if len(wrong) > 1 else ""
        keys = f", {len(missing)} missing, {len(unexpected)} unexpected" if missing or unexpected else ""
        return (f"checkpoint {path} does not match the network: wrong shape of {key}: {saved} in the file, {wanted} "
                f"in the network{shape_hint(saved, wanted, shaped_by)}{more}{keys}")
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected)):
        if keys:
            shown = ", ".join(keys[:8]) + (f" ... (+{len(keys) - 8} more)" if len(keys) > 8 else "")
            parts.append(f"{len(keys)} {label}: {shown}")
    return f"checkpoint {path} does not match the network: " + "; ".join(parts) if parts else ""


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


def load_weights(net: nn.Module, path: str | os.PathLike, shaped_by: dict[str, object] | None = None) -> None:
    """Load weights strictly; a foreign file or a partial match is one InputError naming the file.

    Wrapper prefixes (`module.`, `_orig_mod.`) are stripped and old-PyTorch norm keys upgraded first.
    `shaped_by` ({"--ngf": 64, ...}, the options that shape `net`) lets a shape mismatch name its likely option.
    """
    target = unwrap(net)
    state = weights_dict(read_checkpoint(path), path)
    state = upgrade_legacy_norm_keys(strip_wrapper_prefixes(state), target)
    problem = mismatch_message(path, state, target.state_dict(), shaped_by or {})
    if problem:
        raise InputError(problem)
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
        raise InputError(f"{path} is not a training state of this project (format {STATE_FORMAT_VERSION}): it "
                         f"holds {describe_content(state) if not isinstance(state, dict) else 'a dict of other keys'}")
    missing = [key for key in ("model", "progress", "rng") if not isinstance(state.get(key), dict)]
    if missing:
        raise InputError(f"{path} is an incomplete training state (no {', '.join(missing)})")
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
