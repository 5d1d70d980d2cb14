"""DeepFashion In-shop, PATN split, in the official layout: 256x176 crops.

The layout (`train/`, `test/`, `fasion-resize-annotation-<phase>.csv`, `fasion-resize-pairs-<phase>.csv`) is
that of tengteng95/Pose-Transfer and of PangzeCheung/Dual-task-Pose-Transformer-Network `data/fashion_dataset.py`.

`--fashion_frame` chooses what the networks see: 'native' 256x176, 'pad256' (PG2: 40 white columns each
side) or 'stretch256' (official DPTN: stretched to 256x256); see data/geometry.py.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from data.base_dataset import PairDataset, add_frame_option, add_pose_options, dataroot_path
from util.io import InputError

FASHION_SIZE = (256, 176)  # (H, W)
# the field spells it "fasion"; the -resize files belong to the 256x176 PATN split
PREFIXES = ("fasion-resize", "fashion-resize", "fasion", "fashion")


def find_csv(root: Path, kind: str, phase: str) -> Path:
    """The first existing `<prefix>-<kind>-<phase>.csv` under `root`; InputError listing every name tried."""
    candidates = [root / f"{prefix}-{kind}-{phase}.csv" for prefix in PREFIXES]
    for path in candidates:
        if path.is_file():
            return path
    raise InputError(f"no DeepFashion {kind} file for --phase {phase} in {root}: looked for "
                     + ", ".join(p.name for p in candidates))


class FashionDataset(PairDataset):
    """`<dataroot>/<phase>/*.jpg`, `fasion-resize-annotation-<phase>.csv`, `fasion-resize-pairs-<phase>.csv`."""

    image_size = FASHION_SIZE

    @staticmethod
    def modify_commandline_options(parser: argparse.ArgumentParser, is_train: bool) -> argparse.ArgumentParser:
        return add_frame_option(add_pose_options(parser, is_train))

    @staticmethod
    def derive_options(opt) -> None:
        opt.data_format = "fashion"

    @staticmethod
    def locate(root: Path, phase: str) -> tuple[Path, Path]:
        """(annotation CSV, pair CSV) of `phase` under `root`, accepting the field's spellings."""
        return find_csv(root, "annotation", phase), find_csv(root, "pairs", phase)

    @staticmethod
    def frame_for(opt) -> str:
        return opt.fashion_frame

    def __init__(self, opt) -> None:
        root = dataroot_path(opt, "fashion")
        annotation_path, pairs_path = self.locate(root, opt.phase)
        super().__init__(opt, root, annotation_path, pairs_path, FASHION_SIZE, self.frame_for(opt))
