"""`--dataset_mode keypoint`: PATN's data layout, as its official loader reads it (tengteng95/Pose-Transfer,
`data/keypoint.py`), so that the official README commands run verbatim.

    <dataroot>/<phase>/<name>              images: Market 128x64, DeepFashion 256x176 (never resized)
    --pairLst <csv>                        the pairs (from,to), any path
    <dataroot>/<phase>K/<name>.npy         pose maps (H, W, 18), as PATN's tool/generate_pose_map_*.py write
                                           them (optional: without them the maps are computed on the fly)
    <dataroot>/market-annotation-<phase>.csv or fasion-resize-annotation-<phase>.csv
                                           the keypoints (the README puts them beside the pairs)

The annotation file names the format (Market or DeepFashion). With `--pose_maps auto` (the default) the
stored maps are read when `<phase>K/` exists; DeepFashion's are one-pixel uint8 maps (see docs/models/patn.md).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch

from data.base_dataset import PairDataset, add_pose_options, dataroot_path
from data.fashion_dataset import FASHION_SIZE, find_csv
from data.market_dataset import MARKET_SIZE
from util.io import InputError

SIZES = {"market": MARKET_SIZE, "fashion": FASHION_SIZE}
MAP_DTYPES = (np.float32, np.float64, np.uint8)
SHOW = 5


def annotation_file(root: Path, phase: str) -> tuple[str, Path]:
    """(format, annotation CSV) found in `root`; InputError naming what was looked for."""
    market = root / f"market-annotation-{phase}.csv"
    if market.is_file():
        return "market", market
    try:
        return "fashion", find_csv(root, "annotation", phase)
    except InputError as exc:
        raise InputError(f"--dataset_mode keypoint: neither {market.name} nor a DeepFashion annotation file is in "
                         f"{root} ({exc})") from None


def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of a .npy file from its header alone."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f)
    return shape, dtype


class KeypointDataset(PairDataset):
    """PATN's `keypoint` mode: pairs from --pairLst, pose maps from `<phase>K/` when present."""

    @staticmethod
    def modify_commandline_options(parser: argparse.ArgumentParser, is_train: bool) -> argparse.ArgumentParser:
        parser = add_pose_options(parser, is_train)
        g = parser.add_argument_group("keypoint mode (PATN's layout)")
        g.add_argument("--pairLst", type=str, default="./keypoint_data/market-pairs-train.csv",
                       help="the pair CSV (from,to) to read (PATN's flag and default)")
        g.add_argument("--pose_maps", type=str, default="auto", choices=["auto", "files", "compute"],
                       help="files: read <dataroot>/<phase>K/<name>.npy; compute: build them from the annotation "
                            "CSV (--pose_encoding, --pose_sigma); auto: files when <phase>K/ exists")
        return parser

    @staticmethod
    def derive_options(opt) -> None:
        root = dataroot_path(opt, "keypoint")
        opt.data_format = annotation_file(root, opt.phase)[0]
        if getattr(opt, "fashion_frame", "native") != "native":
            raise InputError(f"--dataset_mode keypoint serves PATN's native frames; a model that asks for the "
                             f"{opt.fashion_frame} DeepFashion frame needs --dataset_mode fashion")

    def __init__(self, opt) -> None:
        root = dataroot_path(opt, "keypoint")
        fmt, annotations = annotation_file(root, opt.phase)
        pairs = Path(opt.pairLst)
        if not pairs.is_file():
            raise InputError(f"--pairLst {pairs}: pair file not found")
        super().__init__(opt, root, annotations, pairs, SIZES[fmt], "native")
        folder = root / f"{opt.phase}K"
        self.map_dir = folder if opt.pose_maps == "files" or (opt.pose_maps == "auto" and folder.is_dir()) else None
        if self.map_dir is not None:
            self._check_map_files()

    def _check_map_files(self) -> None:
        """Every image of the pairs has `<name>.npy` of shape (H, W, 18) and a float or uint8 dtype."""
        if not self.map_dir.is_dir():
            raise InputError(f"--pose_maps files: folder {self.map_dir} not found")
        if self.flip_prob > 0:
            raise InputError("--flip_prob: stored pose maps are not flipped here; use --pose_maps compute to flip")
        names = list(dict.fromkeys(name for pair in self.pairs for name in pair))
        present = set(os.listdir(self.map_dir))
        absent = [n for n in names if f"{n}.npy" not in present]
        if absent:
            shown = ", ".join(f"{n}.npy" for n in absent[:SHOW]) + (", ..." if len(absent) > SHOW else "")
            raise InputError(f"{len(absent)} pose map file(s) missing from {self.map_dir}: {shown} (or pass "
                             "--pose_maps compute)")
        expected = (*self.image_size, 18)
        for name in names:
            path = self.map_dir / f"{name}.npy"
            try:
                shape, dtype = npy_header(path)
            except (OSError, ValueError) as exc:
                raise InputError(f"{path}: not a readable .npy file ({exc})") from None
            if tuple(shape) != expected or dtype not in MAP_DTYPES:
                raise InputError(f"{path}: pose maps of shape {tuple(shape)} and dtype {dtype}, expected "
                                 f"{expected} float32 or uint8")
        print(f"pose maps read from {self.map_dir} (--pose_encoding and --pose_sigma do not apply to them)")

    def pose_maps(self, keypoints: np.ndarray, name: str) -> torch.Tensor:
        """(18, H, W) float32: the stored map, as the official loader converts it, else computed."""
        if self.map_dir is None:
            return super().pose_maps(keypoints, name)
        stored = np.load(self.map_dir / f"{name}.npy")  # (H, W, 18)
        return torch.from_numpy(stored).float().permute(2, 0, 1).contiguous()
