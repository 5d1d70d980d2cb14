"""Find plug-in classes by the name a user types (`--model PG2` -> models/pg2_model.py::PG2Model)."""
from __future__ import annotations

import importlib
from pathlib import Path

from util.io import InputError


def available_names(folder: Path, suffix: str, excluded: tuple[str, ...]) -> list[str]:
    """Names of the plug-ins in `folder`: files `<name><suffix>.py` not listed in `excluded`."""
    return sorted(p.stem[: -len(suffix)] for p in folder.glob(f"*{suffix}.py")
                  if p.stem not in excluded)


def find_plugin_class(name: str, package: str, folder: Path, suffix: str, base: type,
                      excluded: tuple[str, ...], option: str) -> type:
    """Import `<package>.<name><suffix>` and return its `base` subclass named `<Name><Suffix>`.

    Underscores do not count in the class name: `reid_bagtricks` finds `ReidBagtricksModel`.

    Raises InputError listing the available names when `name` is unknown.
    """
    known = available_names(folder, suffix, excluded)
    key = (name or "").lower()
    if key not in known:
        raise InputError(f"unknown {option} {name!r}; available: {', '.join(known)}")
    module = importlib.import_module(f"{package}.{key}{suffix}")
    wanted = (key + suffix).replace("_", "")
    for obj in vars(module).values():
        if isinstance(obj, type) and issubclass(obj, base) and obj.__name__.lower().replace("_", "") == wanted:
            return obj
    raise ImportError(f"{package}/{key}{suffix}.py defines no {base.__name__} subclass named like {name}")
