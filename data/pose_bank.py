"""The pose bank the synthetic datasets are drawn on: a few hundred real poses, read from datasets/pose_bank/.

The CSVs and their README stay in datasets/pose_bank/ beside the command that rebuilds them
(`python -m datasets.pose_bank`); this module only reads them, by path.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from data.annotations import read_annotations
from util.io import InputError

BANK_DIR = Path(__file__).resolve().parents[1] / "datasets" / "pose_bank"
BANK_FILES = {"market": "market_poses.csv", "fashion": "fashion_poses.csv"}
FRAMES = {"market": (128, 64), "fashion": (256, 176)}  # (H, W) of the bank's coordinates
FASHION_VIEWS = ("1front", "2side", "3back", "4full", "7additional")  # 6flat shows no person


def fashion_view(name: str) -> str:
    """`fasionWOMENDressesid0000553705_4full.jpg` -> `4full`."""
    return name.rsplit("_", 1)[-1].split(".")[0]


def load_pose_bank(fmt: str, bank_dir: str | Path = BANK_DIR) -> tuple[list[str], np.ndarray]:
    """(source image names, int64 keypoints (N, 18, 2) as (y, x), -1 missing) in the format's frame."""
    if fmt not in BANK_FILES:
        raise InputError(f"unknown pose bank {fmt!r}; available: {', '.join(BANK_FILES)}")
    bank = read_annotations(Path(bank_dir) / BANK_FILES[fmt])
    return list(bank), np.stack(list(bank.values()))
