"""Market-1501 in the official layout: 128x64 crops, never padded or resized.

The layout (`train/`, `test/`, `market-annotation-<phase>.csv`, `market-pairs-<phase>.csv`) is that of
tengteng95/Pose-Transfer and of PangzeCheung/Dual-task-Pose-Transformer-Network `data/market_dataset.py`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from data.base_dataset import PairDataset, add_pose_options, dataroot_path

MARKET_SIZE = (128, 64)  # (H, W)


class MarketDataset(PairDataset):
    """`<dataroot>/<phase>/*.jpg`, `market-annotation-<phase>.csv`, `market-pairs-<phase>.csv`."""

    image_size = MARKET_SIZE

    @staticmethod
    def modify_commandline_options(parser: argparse.ArgumentParser, is_train: bool) -> argparse.ArgumentParser:
        return add_pose_options(parser, is_train)

    @staticmethod
    def derive_options(opt) -> None:
        opt.data_format = "market"

    @staticmethod
    def locate(root: Path, phase: str) -> tuple[Path, Path]:
        """(annotation CSV, pair CSV) of `phase` under `root`; existence is checked by the readers."""
        return root / f"market-annotation-{phase}.csv", root / f"market-pairs-{phase}.csv"

    @staticmethod
    def frame_for(opt) -> str:
        """Market is always seen in its own 128x64 frame."""
        return "native"

    def __init__(self, opt) -> None:
        root = dataroot_path(opt, "market")
        annotation_path, pairs_path = self.locate(root, opt.phase)
        super().__init__(opt, root, annotation_path, pairs_path, MARKET_SIZE, self.frame_for(opt))
