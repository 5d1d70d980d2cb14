"""One training per run folder: `<checkpoints_dir>/<name>/run.lock` holds the owner's pid and host.

The kernel's flock() is the lock itself (it vanishes with its process, even after kill -9); the file's text
only names the owner for the message. A file left by a dead owner on this host is stale: reported and taken
over. One that names another host is refused (we cannot tell whether that run is alive); the message says
which file to delete if it is not.
"""
from __future__ import annotations

import errno
import fcntl
import os
import re
import socket
import time
from pathlib import Path

from util.io import InputError

LOCK_NAME = "run.lock"
_TEMP_FILE = re.compile(r"^\..+\.(\d+)\.tmp$")  # util.io.atomic_write's `.<name>.<pid>.tmp`


def pid_alive(pid: int) -> bool:
    """True when a process `pid` exists on this machine (zombies count as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _owner(text: str) -> tuple[int, str, str]:
    """(pid, host, since) from a lock file's text; pid 0 when unreadable."""
    parts = text.split()
    if len(parts) >= 2 and parts[0].isdigit():
        return int(parts[0]), parts[1], " ".join(parts[2:])
    return 0, "?", ""


class RunLock:
    """Hold `folder/run.lock` until `release()`; `acquire` refuses when a live run holds it."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.created_folder = False
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        self.created_folder = not self.folder.exists()
        self.folder.mkdir(parents=True, exist_ok=True)
        while self._fd is None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                locked = self._flock(fd)
                if not self._same_file(fd):  # the owner deleted it between our open and flock: again
                    os.close(fd)
                    continue
                self._check_previous(fd, locked)
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
        since = time.strftime("%Y-%m-%dT%H:%M:%S")
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()} {socket.gethostname()} {since}\n".encode(), 0)
        os.fsync(self._fd)
        return self

    def _flock(self, fd: int) -> bool:
        """True when flock() took the lock, False where the file system has no flock (pid check only)."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            self._refuse(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
        except OSError as exc:
            if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                return False
            raise

    def _same_file(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def _check_previous(self, fd: int, locked: bool) -> None:
        """A lock file with text but no live flock: its owner ended without releasing it."""
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        if not text:
            return
        pid, host, _ = _owner(text)
        if host not in ("?", socket.gethostname()):
            self._refuse(text, hint=f"if no training of this --name runs on {host}, delete {self.path}")
        if not locked and pid_alive(pid) and pid != os.getpid():
            self._refuse(text)
        print(f"note: {self.path}: its owner (pid {pid} on {host}) is gone without releasing it (killed?); "
              "taking it over")

    def _refuse(self, text: str, hint: str = "wait for it to finish, or choose another --name") -> None:
        pid, host, since = _owner(text)
        started = f", since {since}" if since else ""
        raise InputError(f"{self.folder} is in use by another training (pid {pid} on {host}{started}; lock "
                         f"{self.path}): {hint}")

    def release(self) -> None:
        """Delete the lock file (only if it is still ours) and drop the lock; a folder we made and left
        empty goes too, so a start that failed leaves the disk as it was."""
        if self._fd is None:
            return
        if self._same_file(self._fd):
            self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None
        if self.created_folder:
            try:
                self.folder.rmdir()  # only when empty
            except OSError:
                pass


def remove_stale_temp_files(folder: str | os.PathLike) -> list[tuple[Path, int]]:
    """Delete the `.<name>.<pid>.tmp` files of saves whose process is gone (under `folder`, recursively);
    return (path, bytes) of each. Call it holding the run lock, so that no live writer of ours is there."""
    removed = []
    for path in Path(folder).rglob(".*.tmp"):
        match = _TEMP_FILE.match(path.name)
        if match and path.is_file() and not pid_alive(int(match.group(1))):
            size = path.stat().st_size
            path.unlink(missing_ok=True)
            removed.append((path, size))
    return removed
