"""Person ids and cameras from Market-1501 and DeepFashion file names, and the sorted image lists re-id scores.

Market-1501 (Zheng et al., ICCV 2015): `0002_c1s1_000451_03.jpg` is person 0002 in camera 1. As fast-reid's
loader (JDAI-CV/fast-reid `fastreid/data/datasets/market1501.py`) does, the pid and camera come from
`([-\\d]+)_c(\\d)`, camid = camera - 1, junk boxes (pid -1) are dropped from the gallery and the distractors
(pid 0000) stay as ordinary negatives.
DeepFashion In-shop: `fashionWOMENDressesid0000553705_4full.jpg` (the older split spells it `fasion...`).
The pid is the 10-digit token after `id` (item id + photo set: one model in one outfit), or the 8-digit item
id with `--fashion_pid item`; the "camera" is the view digit (1 front, 2 side, 3 back, 4 full, 6 flat,
7 additional).
Lists are sorted by file name, so the ranking never depends on the directory listing (ties keep that order).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from util.io import InputError

DATASETS = ("market", "fashion")
FASHION_PIDS = ("id", "item")
MARKET_NAME = re.compile(r"^([-\d]+)_c(\d)")
FASHION_NAME = re.compile(r"id(\d{8})(\d{2})_(\d)")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
MARKET_JUNK_PID = -1


@dataclass(frozen=True)
class Item:
    """One image with its identity and camera."""

    name: str  # file name, e.g. 0002_c1s1_000451_03.jpg
    path: Path
    pid: int
    camid: int


def pid_cam(name: str, dataset: str, fashion_pid: str = "id") -> tuple[int, int]:
    """(pid, camid) of a file name; InputError naming the file when it does not parse."""
    if dataset == "market":
        found = MARKET_NAME.match(Path(name).name)
        if found is None:
            raise InputError(f"{name}: not a Market-1501 name (expected <pid>_c<camera>..., e.g. "
                             "0002_c1s1_000451_03.jpg)")
        return int(found.group(1)), int(found.group(2)) - 1
    if dataset == "fashion":
        found = FASHION_NAME.search(Path(name).name)
        if found is None:
            raise InputError(f"{name}: not a DeepFashion name (expected ...id<8 digits><2 digits>_<view digit>..., "
                             "e.g. fashionWOMENDressesid0000553705_4full.jpg)")
        if fashion_pid not in FASHION_PIDS:
            raise InputError(f"--fashion_pid {fashion_pid!r}: expected one of {', '.join(FASHION_PIDS)}")
        item, photo_set, view = found.groups()
        return int(item + photo_set) if fashion_pid == "id" else int(item), int(view)
    raise InputError(f"unknown --dataset {dataset!r}; available: {', '.join(DATASETS)}")


def image_names(folder: Path) -> list[str]:
    """Image file names directly inside `folder`, sorted; InputError if the folder is missing or empty."""
    if not folder.is_dir():
        raise InputError(f"image folder {folder} not found")
    with os.scandir(folder) as entries:
        names = sorted(e.name for e in entries if e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES))
    if not names:
        raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return names


def list_items(folder: Path, dataset: str, fashion_pid: str = "id", drop_junk: bool = False) -> tuple[list[Item], int]:
    """(items sorted by name, number dropped). `drop_junk` drops Market's pid -1 boxes (the gallery rule)."""
    items, dropped = [], 0
    for name in image_names(folder):
        pid, camid = pid_cam(name, dataset, fashion_pid)
        if drop_junk and dataset == "market" and pid == MARKET_JUNK_PID:
            dropped += 1
            continue
        items.append(Item(name, folder / name, pid, camid))
    if not items:
        raise InputError(f"{folder}: every image is a junk box (pid -1); nothing left to rank")
    return items, dropped
