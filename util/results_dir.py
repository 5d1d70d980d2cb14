"""The guard of a results folder: the result set of one checkpoint only, so that metrics never score a mix.

A marker file records the owner (run, checkpoint by its weights' content, items, output form) and how many
results were asked for. The same owner may write again with as many or more results (every old file is
rewritten); another owner, or fewer results, is refused unless --overwrite, which first removes the whole old
set (the files the writers produce, nothing else in the folder).
"""
from __future__ import annotations

import glob
import hashlib
import os
from pathlib import Path

from util.distributed import print0
from util.io import InputError, atomic_write_text

RESULTS_MARKER = "results_of.txt"  # which run, checkpoint and settings produced the images in a results folder
RESULT_PATTERNS = ("*_vis.*", "images/*_vis.*", "*_to_*.png", "*_sample_*.*", "*_interpolate_*.*",
                   "*_interpolate.gif")  # what test.py's modes write (single, patn5, canonical, DPIG's tasks)
PAGE_PATTERNS = ("index.html", "page_*.html", "web/index.html", "web/page_*.html", "web/panels/*.jpg",
                 "web/panels/*.gif")  # the HTML pages and their panels (patn5 beside images/, else in web/)
WRITER_FOLDERS = ("web/panels", "web", "images")  # removed after an overwrite when nothing else is in them
COUNT_KEY = "results: "  # the marker's last line: how many results the owner asked for
OVERWRITE_ADVICE = "pass --overwrite to replace the whole set, or choose another --results_dir"


def file_digest(path: Path) -> str:
    """The first 12 hex digits of the file's sha256 (weights are read at load time anyway, so this is cheap)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def weights_identity(folder: str | os.PathLike, tag: str) -> str:
    """The checkpoint `tag` in `folder` by content: '<tag>_net_<X>.pth <sha256 prefix>' per weight file. More
    training under the same tag, or other weights copied in, is another checkpoint; a copy of the same weights
    (imported, with or without a training state) is the same one."""
    files = sorted(Path(folder).glob(f"{glob.escape(tag)}_net_*.pth"))
    if not files:
        return f"{tag} (no weight files in {folder})"
    return ", ".join(f"{p.name} {file_digest(p)}" for p in files)


def items_digest(items: object) -> str:
    """The first 12 hex digits of the sha256 of `repr(items)` (a list of pairs or names)."""
    return hashlib.sha256(repr(items).encode()).hexdigest()[:12]


def check_results_path(folder: str | os.PathLike, flag: str = "--results_dir") -> None:
    """Refuse, before any work, a results folder that is a file or lies under one, or cannot be created."""
    folder = Path(folder)
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None:
        return
    if not existing.is_dir():
        where = "is a file" if existing == folder else f"lies under the file {existing}"
        raise InputError(f"{flag} {folder} {where}; give a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{flag} {folder}: {existing} is not writable; choose another {flag}")


def check_output_file(path: str | os.PathLike, flag: str) -> None:
    """Refuse, before any work, an output file name that is a folder, lies under a file, or cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{flag} {path} is a folder; give a file name")
    try:
        check_results_path(path.parent, flag)
    except InputError:
        existing = next(p for p in path.parents if p.exists())
        why = f"lies under the file {existing}" if not existing.is_dir() else f"{existing} is not writable"
        raise InputError(f"{flag} {path}: {why}; give another file name") from None


def held_results(folder: Path, patterns: tuple[str, ...] = RESULT_PATTERNS) -> list[Path]:
    """The result files in `folder` that match `patterns`."""
    if not folder.is_dir():
        return []
    return sorted({p for pattern in patterns for p in folder.glob(pattern) if p.is_file()})


def split_marker(text: str) -> tuple[str, int | None]:
    """(owner text, count or None) of a marker's text."""
    lines = text.splitlines(keepends=True)
    if lines and lines[-1].startswith(COUNT_KEY):
        try:
            return "".join(lines[:-1]), int(lines[-1][len(COUNT_KEY):])
        except ValueError:
            pass
    return text, None


def one_line(text: str) -> str:
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def conflict(previous: str | None, owner: str, count: int | None) -> str | None:
    """Why writing (owner, count) would mix result sets with the recorded owner, or None when it would not."""
    if previous is None:
        return f"results of unknown origin (no {RESULTS_MARKER})"
    old_owner, old_count = split_marker(previous)
    if old_owner.rstrip("\n") != owner.rstrip("\n"):
        recorded = set(old_owner.splitlines())
        changed = "\n".join(line for line in owner.splitlines() if line not in recorded) or owner
        return f"results of {one_line(previous)}; asked to write {one_line(changed)}"
    if count is not None and old_count is not None and count < old_count:
        return (f"{old_count} results of {one_line(owner)}; asked to write {count}, which would leave "
                f"{old_count - count} of the old ones beside them")
    return None


def remove_result_set(folder: Path, patterns: tuple[str, ...]) -> int:
    """Delete the files matching `patterns` (and the writers' folders they leave empty); returns how many."""
    doomed = held_results(folder, patterns)
    for path in doomed:
        path.unlink()
    for sub in WRITER_FOLDERS:
        try:
            (folder / sub).rmdir()
        except OSError:  # absent, or holds something that is not ours
            pass
    return len(doomed)


def claim_results_dir(folder: str | os.PathLike, owner: str, overwrite: bool, count: int | None = None,
                      patterns: tuple[str, ...] = RESULT_PATTERNS, pages: tuple[str, ...] = PAGE_PATTERNS,
                      advice: str = OVERWRITE_ADVICE) -> Path:
    """Refuse a folder holding results of another owner, or more results of this one, unless `overwrite`;
    with `overwrite` remove the old set (`patterns` and `pages`) first; then record `owner` and `count`.

    owner: the marker's text (lines 'key: value'); count: results this run writes (None: not compared).
    """
    folder = Path(folder)
    check_results_path(folder)
    marker = folder / RESULTS_MARKER
    if held_results(folder, patterns):
        previous = marker.read_text(errors="replace") if marker.is_file() else None
        reason = conflict(previous, owner, count)
        if reason is not None and not overwrite:
            raise InputError(f"{folder} already holds {reason}; {advice}")
        if overwrite:
            removed = remove_result_set(folder, patterns + pages)
            print0(f"--overwrite: removed {removed} files of the old result set in {folder}")
    text = owner if count is None else f"{owner.rstrip(chr(10))}\n{COUNT_KEY}{count}\n"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(marker, text)
    except OSError as exc:
        raise InputError(f"{folder}: cannot write the results folder ({exc.strerror or exc})") from None
    return folder
