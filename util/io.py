"""Atomic file writes and the one error type that entry points turn into a clean message."""
from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Callable, IO

import torch


class InputError(ValueError):
    """Bad user input (a file, a row, an option). Entry points print it without a traceback."""


MAX_REPORTED_PROBLEMS = 20


def raise_problems(problems: list[str], limit: int = MAX_REPORTED_PROBLEMS) -> None:
    """Raise one InputError listing every problem found (one per line, at most `limit`); no-op if none."""
    if not problems:
        return
    shown = problems[:limit]
    if len(problems) > limit:
        shown.append(f"... and {len(problems) - limit} more problems")
    raise InputError("\n".join(shown))


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Write `path` through `write(f)` so that a crash leaves the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic within one filesystem
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically replace a text file."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def atomic_torch_save(obj: object, path: str | os.PathLike) -> None:
    """Atomically write a torch checkpoint."""
    atomic_write(path, lambda f: torch.save(obj, f))


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line to a log file (logs grow; they are never rewritten)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line.rstrip("\n") + "\n")


def report_input_errors(main: Callable[..., int]) -> Callable[..., int]:
    """Decorate a CLI `main`: an InputError becomes one `error: <message>` line on stderr and exit status 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except InputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    return wrapper
