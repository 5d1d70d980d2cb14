"""Market-1501 in the official layout: 128x64 crops, seen at 128x64 or, when the model asks, 256x128.

`opt.market_frame` is 'native' (the default these hooks declare) or 'double' (256x128, PIL bicubic), set by a
model that needs it (PN-GAN's `--load_size 256 128`); see data/geometry.py. It has no flag of its own, so the
models that cannot run at 256x128 never see it.

The layout (`train/`, `test/`, `market-annotation-<phase>.csv`, `market-pairs-<phase>.csv`) is that of
tengteng95/Pose-Transfer and of PangzeCheung/Dual-task-Pose-Transformer-Network `data/market_dataset.py`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from data.base_dataset import PairDataset, add_pose_options, dataroot_path
from data.geometry import MARKET_FRAMES

MARKET_SIZE = (128, 64)  # (H, W)


def add_market_frame_default(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """opt.market_frame = 'native' for the modes that read Market; its presence tells a model's derive_options
    that the dataset honours another value (those that set it check for it)."""
    parser.set_defaults(market_frame="native")
    return parser


class MarketDataset(PairDataset):
    """`<dataroot>/<phase>/*.jpg`, `market-annotation-<phase>.csv`, `market-pairs-<phase>.csv`."""

    image_size = MARKET_SIZE

    @staticmethod
    def modify_commandline_options(parser: argparse.ArgumentParser, is_train: bool) -> argparse.ArgumentParser:
        return add_market_frame_default(add_pose_options(parser, is_train))

    @staticmethod
    def derive_options(opt) -> None:
        opt.data_format = "market"

    @staticmethod
    def locate(root: Path, phase: str) -> tuple[Path, Path]:
        """(annotation CSV, pair CSV) of `phase` under `root`; existence is checked by the readers."""
        return root / f"market-annotation-{phase}.csv", root / f"market-pairs-{phase}.csv"

    @staticmethod
    def frame_for(opt) -> str:
        """opt.market_frame: native 128x64 unless the model chose 'double' (modes without it are native)."""
        frame = getattr(opt, "market_frame", "native")
        if frame not in MARKET_FRAMES:
            raise ValueError(f"unknown Market frame {frame!r}; available: {', '.join(MARKET_FRAMES)}")
        return frame

    def __init__(self, opt) -> None:
        root = dataroot_path(opt, "market")
        annotation_path, pairs_path = self.locate(root, opt.phase)
        super().__init__(opt, root, annotation_path, pairs_path, MARKET_SIZE, self.frame_for(opt))
