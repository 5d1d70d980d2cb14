"""Atomic file writes and the one error type that entry points turn into a clean message."""
from __future__ import annotations

import functools
import errno
import os
import shutil
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


class _WriteErrorRecorder:
    """A file wrapper that remembers the OSError of a failed write: torch.save turns it into an opaque
    RuntimeError ("enforce fail ... unexpected pos"), and a full disk must be reported as such."""

    def __init__(self, file: IO[bytes]) -> None:
        self._file = file
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self._file.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def __getattr__(self, name: str):
        return getattr(self._file, name)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Write `path` through `write(f)` so that a crash leaves the old file or the new one, never half.

    A failed write removes its temp file and raises the OSError (e.g. ENOSPC) with `path` as its filename,
    whatever the writer made of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    recorder = None
    try:
        with open(tmp, "wb") as f:
            recorder = _WriteErrorRecorder(f)
            write(recorder)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic within one filesystem
    except Exception as exc:
        failed = recorder.error if recorder is not None and recorder.error is not None else exc
        if isinstance(failed, OSError) and failed.errno is not None:
            raise OSError(failed.errno, os.strerror(failed.errno), str(path)) from exc
        raise
    finally:
        tmp.unlink(missing_ok=True)


def tensor_bytes(obj: object) -> int:
    """The bytes of every tensor in a nested dict/list/tuple: about what torch.save writes for it."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def check_free_space(folder: str | os.PathLike, needed: int, what: str) -> None:
    """InputError naming `folder` when its file system has less than `needed` bytes (plus 5% and 1 MiB) free."""
    folder = Path(folder)
    free = shutil.disk_usage(folder if folder.exists() else folder.parent).free
    wanted = int(needed * 1.05) + 2**20
    if free < wanted:
        raise InputError(f"not enough disk space in {folder}: {what} needs about {wanted / 2**20:.1f} MiB, "
                         f"{free / 2**20:.1f} MiB free; nothing was written (the previous files are intact): "
                         "free some space, then resume with --continue_train")


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


# OS failures a user meets on their own paths: one line, not a traceback
EXPECTED_OS_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR,
                      errno.EISDIR}
BUG_NOTE = ("this is a bug in Human Pose Transfer, not in your input: please report it with the traceback above "
            "on the project's issue tracker (see README.md)")


def os_error_line(exc: OSError) -> str:
    """`<what>: <path>` for an OSError, e.g. 'No space left on device: checkpoints/run/latest_net_G.pth'."""
    what = exc.strerror or os.strerror(exc.errno)
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    return f"{what}: {' -> '.join(paths)}" if paths else what


def _note_bug(exc: Exception) -> None:
    """Python prints a note after the traceback's last line (3.11+); older ones get the line first."""
    if hasattr(exc, "add_note"):
        exc.add_note(BUG_NOTE)
    else:
        print(BUG_NOTE, file=sys.stderr)


def input_error_text(exc: InputError) -> str:
    """The user's message of an InputError, also when a DataLoader worker re-raised it wrapped in the worker's
    traceback ("Caught InputError in DataLoader worker process 0. Original Traceback ...")."""
    text = str(exc)
    marker = f"\n{InputError.__module__}.{InputError.__qualname__}: "
    if text.startswith("Caught ") and marker in text:
        return text.rsplit(marker, 1)[1].strip()
    return text


def report_input_errors(main: Callable[..., int]) -> Callable[..., int]:
    """Decorate a CLI `main`: an InputError, or an expected OS failure (disk full, read-only, no permission, a
    file where a folder belongs), becomes one `error: ...` line on stderr and exit status 2; Ctrl-C one line
    and 130. Anything else is a bug: it propagates (traceback, exit status 1) with a last line saying so."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except InputError as exc:
            print(f"error: {input_error_text(exc)}", file=sys.stderr)
            return 2
        except OSError as exc:
            if exc.errno not in EXPECTED_OS_ERRORS:
                _note_bug(exc)
                raise
            print(f"error: {os_error_line(exc)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("error: interrupted (Ctrl-C)", file=sys.stderr)
            return 130
        except Exception as exc:
            _note_bug(exc)
            raise

    return wrapper
