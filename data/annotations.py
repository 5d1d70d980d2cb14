"""Read and write the field's annotation and pair CSVs, in the exact official format.

annotation: header `name:keypoints_y:keypoints_x`; rows `name: [18 ys]: [18 xs]`; -1 = missing.
pairs:      header `from,to`; rows `source,target`.
Files are read as UTF-8 with or without a byte-order mark (util/text_files.py).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from util.io import InputError, atomic_write_text, raise_problems
from util.text_files import read_text_lines

NUM_KEYPOINTS = 18
ANNOTATION_HEADER = "name:keypoints_y:keypoints_x"
PAIRS_HEADER = "from,to"
MISSING = -1
MAX_COORDINATE = 100_000  # pixels; a larger coordinate is a broken file, not a photo (and overflows int64 later)


def _csv_lines(path: Path, header: str, kind: str) -> list[str]:
    """The file's lines after checking that it exists and starts with `header` (spaces ignored)."""
    if not path.is_file():
        raise InputError(f"{kind} {path} not found")
    lines = read_text_lines(path)
    if not lines or lines[0].replace(" ", "") != header:
        found = lines[0][:60] if lines else "an empty file"
        raise InputError(f"{path.name}: header must be {header!r}, found {found!r}")
    return lines


def _parse_list(text: str, path: Path, row: int, column: str) -> list[int]:
    try:
        values = json.loads(text)
    except ValueError:  # JSONDecodeError, or an integer of more than 4300 digits
        raise InputError(f"{path.name} row {row}: {column} is not a list of integers: {text.strip()[:60]!r}") from None
    if not isinstance(values, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise InputError(f"{path.name} row {row}: {column} must hold integers, got {text.strip()[:60]!r}")
    if len(values) != NUM_KEYPOINTS:
        raise InputError(f"{path.name} row {row}: {column} has {len(values)} values, expected {NUM_KEYPOINTS}")
    huge = [v for v in values if abs(v) > MAX_COORDINATE]
    if huge:
        digits = str(abs(huge[0]))
        shown = str(huge[0]) if len(digits) <= 30 else f"{'-' * (huge[0] < 0)}{digits[:20]}... ({len(digits)} digits)"
        raise InputError(f"{path.name} row {row}: {column} value {shown} is out of range (at most "
                         f"{MAX_COORDINATE} pixels)")
    return values


def read_annotations(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """name -> int64 array (18, 2) of (y, x); -1 marks a missing keypoint (both coordinates).

    Rows are numbered from 1 after the header, as a spreadsheet shows them minus the header line.
    Raises InputError naming the file and row for any malformed row or duplicate name.
    """
    path = Path(path)
    lines = _csv_lines(path, ANNOTATION_HEADER, "annotation file")
    annotations: dict[str, np.ndarray] = {}
    problems: list[str] = []
    for row, line in enumerate(lines[1:], start=1):
        if not line.strip():
            continue
        try:
            name, keypoints = _parse_annotation_row(line, path, row, annotations)
        except InputError as exc:
            problems.append(str(exc))
            continue
        annotations[name] = keypoints
    raise_problems(problems)
    if not annotations:
        raise InputError(f"{path.name}: no annotation rows")
    return annotations


def _parse_annotation_row(line: str, path: Path, row: int, seen: dict) -> tuple[str, np.ndarray]:
    parts = line.split(":")
    if len(parts) != 3:
        raise InputError(f"{path.name} row {row}: expected 'name: [ys]: [xs]' (3 fields separated by ':'), "
                         f"found {len(parts)} fields")
    name = parts[0].strip()
    if not name:
        raise InputError(f"{path.name} row {row}: empty image name")
    if name in seen:
        raise InputError(f"{path.name} row {row}: duplicate image name {name!r}")
    ys = _parse_list(parts[1], path, row, "keypoints_y")
    xs = _parse_list(parts[2], path, row, "keypoints_x")
    keypoints = np.stack([np.asarray(ys, dtype=np.int64), np.asarray(xs, dtype=np.int64)], axis=1)
    if (keypoints < MISSING).any():
        raise InputError(f"{path.name} row {row} ({name}): coordinates below -1")
    # a point missing in one list only is treated as missing altogether
    keypoints[(keypoints == MISSING).any(axis=1)] = MISSING
    return name, keypoints


def format_annotation_row(name: str, keypoints: np.ndarray) -> str:
    """One row in the reference writer's style: `name: [ys]: [xs]`."""
    keypoints = np.asarray(keypoints, dtype=np.int64)
    ys = ", ".join(str(int(v)) for v in keypoints[:, 0])
    xs = ", ".join(str(int(v)) for v in keypoints[:, 1])
    return f"{name}: [{ys}]: [{xs}]"


def write_annotations(path: str | os.PathLike, annotations: dict[str, np.ndarray]) -> None:
    """Atomically write an annotation CSV (rows in the dict's order)."""
    rows = [ANNOTATION_HEADER] + [format_annotation_row(n, k) for n, k in annotations.items()]
    atomic_write_text(path, "\n".join(rows) + "\n")


def read_pairs(path: str | os.PathLike) -> list[tuple[str, str]]:
    """[(source, target), ...] in file order; InputError naming the file and row on bad rows."""
    path = Path(path)
    lines = _csv_lines(path, PAIRS_HEADER, "pair file")
    pairs, problems = [], []
    for row, line in enumerate(lines[1:], start=1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 2 or not all(parts):
            problems.append(f"{path.name} row {row}: expected 'source,target', found {line.strip()[:80]!r}")
            continue
        pairs.append((parts[0], parts[1]))
    raise_problems(problems)
    if not pairs:
        raise InputError(f"{path.name}: no pair rows")
    return pairs


def write_pairs(path: str | os.PathLike, pairs: list[tuple[str, str]]) -> None:
    """Atomically write a pair CSV."""
    atomic_write_text(path, "\n".join([PAIRS_HEADER] + [f"{a},{b}" for a, b in pairs]) + "\n")
