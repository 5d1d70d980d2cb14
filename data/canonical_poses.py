"""Pose normalisation at test time: every image of a folder in each of a few fixed "canonical" poses.

PN-GAN (Qian et al., "Pose-Normalized Image Generation for Person Re-identification", ECCV 2018; official code
naiq/PN_GAN `script/GAN/dataset.py` `Market_test`) renders each re-id image in 8 canonical poses. Here the poses
are an annotation CSV (`name:keypoints_y:keypoints_x`, one row per pose, in the dataset frame) passed to test.py
with `--canonical_poses`; pose k is the k-th row (1-based). Items are built by the datasets' own
`PairDataset.make_item`, so the pose maps are exactly those of training; they carry no target image.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import UnidentifiedImageError

from data.annotations import MISSING, NUM_KEYPOINTS, read_annotations
from data.base_dataset import BaseDataset, PairDataset, read_image_header
from data.synthetic_dataset import READERS  # opt.data_format -> the reader (geometry and file names)
from util.image import read_rgb
from util.io import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def canonical_name(index: int) -> str:
    """The target name of canonical pose `index` (1-based): results are `<stem>_2_canon<k>_vis.<ext>`."""
    return f"canon{index}"


def read_canonical_poses(path: str | Path) -> list[np.ndarray]:
    """The (18, 2) (y, x) keypoints of each row, in file order; errors name the file and row."""
    return list(read_annotations(Path(path)).values())


def list_images(folder: Path, image_list: str | None) -> list[str]:
    """Image names of `folder` in name order, or those of `image_list` (one name per line, # comments)."""
    if image_list is None:
        if not folder.is_dir():
            raise InputError(f"image folder {folder} not found (--dataroot, --phase)")
        names = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not names:
            raise InputError(f"{folder} holds no .jpg/.png images")
        return names
    path = Path(image_list)
    if not path.is_file():
        raise InputError(f"--image_list {path} not found")
    names, problems = [], []
    for row, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        name = line.split("#", 1)[0].strip()
        if not name:
            continue
        if not (folder / name).is_file():
            problems.append(f"{path.name} row {row}: {folder / name} not found")
        names.append(name)
    if problems:
        raise InputError("; ".join(problems[:5]) + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""))
    if not names:
        raise InputError(f"--image_list {path} names no images")
    return names


class CanonicalPoseDataset(BaseDataset):
    """(image, canonical pose k) items for every listed image and every row of --canonical_poses.

    Item i is image i // K in pose i % K + 1. Source keypoints come from the split's annotation CSV when it has
    the image's row; without one the source pose is all-missing, which only a model that reads no source pose
    may accept (`needs_source_pose=False`); otherwise the missing rows are an error.
    """

    def __init__(self, opt, needs_source_pose: bool = True) -> None:
        super().__init__(opt)
        reader = READERS.get(getattr(opt, "data_format", None))
        if reader is None:
            raise InputError(f"--canonical_poses needs a market or fashion data format, got "
                             f"{getattr(opt, 'data_format', None)!r}")
        if opt.dataroot is None:
            raise InputError("--canonical_poses needs --dataroot: the folder holding <phase>/ images")
        root = Path(opt.dataroot)
        self.folder = root / opt.phase
        self.frames = PairDataset.in_memory(opt, reader.image_size, reader.frame_for(opt))
        self.image_size, self.frame = self.frames.image_size, self.frames.frame
        self.poses = read_canonical_poses(opt.canonical_poses)
        self.check_poses(Path(opt.canonical_poses))
        names = list_images(self.folder, opt.image_list)
        if math.isfinite(opt.max_dataset_size):
            names = names[: max(int(opt.max_dataset_size), 0)]
        self.names = names
        self.check_images()
        annotation_path = reader.locate(root, opt.phase)[0]
        known = read_annotations(annotation_path) if annotation_path.is_file() else {}
        unknown = [n for n in names if n not in known]
        if unknown and needs_source_pose:
            where = annotation_path.name if annotation_path.is_file() else f"{annotation_path} (absent)"
            raise InputError(f"--model {opt.model} reads the source pose, but {len(unknown)} image(s) have no row "
                             f"in {where}: {', '.join(unknown[:5])}")
        missing = np.full((NUM_KEYPOINTS, 2), MISSING, dtype=np.int64)
        self.source_keypoints = {n: known.get(n, missing) for n in names}

    def check_poses(self, path: Path) -> None:
        """Every canonical keypoint lies inside the dataset frame (or is -1)."""
        height, width = self.image_size
        for row, kps in enumerate(self.poses, start=1):
            present = (kps != MISSING).all(axis=1)
            inside = (kps[:, 0] < height) & (kps[:, 1] < width)
            if (present & ~inside).any():
                k = int(np.flatnonzero(present & ~inside)[0])
                raise InputError(f"{path.name} row {row}: keypoint {k} at y={kps[k, 0]}, x={kps[k, 1]} lies outside "
                                 f"the {height}x{width} frame")

    def check_images(self) -> None:
        height, width = self.image_size
        for name in self.names:
            path = self.folder / name
            try:
                w, h, _ = read_image_header(path)
            except (UnidentifiedImageError, OSError) as exc:
                raise InputError(f"{path}: not a readable image ({exc})") from None
            if (h, w) != (height, width):
                raise InputError(f"{path}: image is {h}x{w} (height x width), expected {height}x{width}")

    def __len__(self) -> int:
        return len(self.names) * len(self.poses)

    def __getitem__(self, item: int | tuple[int, int]) -> dict:
        index = item[0] if isinstance(item, tuple) else item
        name = self.names[index // len(self.poses)]
        k = index % len(self.poses)
        image = read_rgb(self.folder / name)
        out = self.frames.make_item(image, self.source_keypoints[name], image, self.poses[k], name,
                                    canonical_name(k + 1))
        out.pop("target_image")  # there is no target photo; only its pose
        out.pop("target_mask", None)
        return out

    def output_to_uint8(self, images: torch.Tensor) -> np.ndarray:
        """(B, 3, Hn, Wn) network images in [-1, 1] -> uint8 (B, H, W, 3) as saved (as the pair datasets)."""
        return self.frames.output_to_uint8(images)
