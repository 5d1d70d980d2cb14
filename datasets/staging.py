"""What every dataset tool shares: output paths checked up front, a staging folder beside the output that is
published only when complete, and checked image decoding (text files: util.text_files).

A failed run (bad raw image, full disk, Ctrl-C) removes its staging folder, so it leaves nothing that blocks a
rerun; the staging folder of a killed run (its pid gone) is removed by the next run.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from util.io import InputError

STAGING_SUFFIX = ".tmp"


def check_out_path(path: Path, kind: str, option: str = "--out") -> None:
    """InputError when `path` cannot become a `kind` ("file" or "folder"): it exists as the other kind, or a
    part of its parent path is a file."""
    if path.exists() and (path.is_dir() if kind == "file" else not path.is_dir()):
        actual = "folder" if path.is_dir() else "file"
        raise InputError(f"{option} {path} is a {actual}, expected a {kind}; choose another {option}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{option} {path}: {parent} is a file, not a folder; choose another {option}")
            return


def check_positive(value: int | None, option: str) -> None:
    """InputError for a count below 1 (None: not given)."""
    if value is not None and value < 1:
        raise InputError(f"{option} must be >= 1, got {value}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_staging(out: Path) -> None:
    """Remove `.<name>.<pid>.tmp` folders beside `out` left by runs that were killed (their pid is gone)."""
    if not out.parent.is_dir():
        return
    prefix = f".{out.name}."
    for entry in out.parent.iterdir():
        middle = entry.name[len(prefix):-len(STAGING_SUFFIX)]
        if (entry.name.startswith(prefix) and entry.name.endswith(STAGING_SUFFIX) and middle.isdigit()
                and entry.is_dir() and not _pid_alive(int(middle))):
            shutil.rmtree(entry, ignore_errors=True)


@contextlib.contextmanager
def staging_folder(out: Path) -> Iterator[Path]:
    """A fresh folder beside `out` (same file system, so publishing is a rename); removed on the way out."""
    remove_stale_staging(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = out.with_name(f".{out.name}.{os.getpid()}{STAGING_SUFFIX}")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def publish_folder(stage: Path, out: Path) -> None:
    """Move the complete `stage` to `out`: one rename when `out` is absent or empty, else file by file (each
    an atomic rename) into the existing folder, whose other files stay."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        os.replace(stage, out)
        return
    for path in sorted(stage.rglob("*")):
        if path.is_dir() and not path.is_symlink():
            continue
        target = out / path.relative_to(stage)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)


def refuse_unwritable(targets: list[Path]) -> None:
    """InputError when a file to write is a folder, or its folder is a file (even --overwrite cannot help)."""
    for target in targets:
        if target.is_dir() and not target.is_symlink():
            raise InputError(f"{target} is a folder where the file {target.name} goes; move it away")
        if target.parent.exists() and not target.parent.is_dir():
            raise InputError(f"{target.parent} is a file where a folder goes; move it away")
