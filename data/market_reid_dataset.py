"""`--dataset_mode market_reid`: Market-1501 person crops with identity labels, for training a re-id network.

Reads `<dataroot>/train/` (the layout `datasets/prepare_market.py` writes; names
`<pid>_c<cam>s<seq>_<frame>_<box>.jpg`) as fast-reid's Market1501 loader does
(https://github.com/JDAI-CV/fast-reid, `fastreid/data/datasets/market1501.py`): pid -1 (junk) is dropped and
the identities are relabelled 0..C-1 in sorted order (751 on Market). Batches come from the P x K
`NaiveIdentitySampler` (data/identity_sampler.py). The train transform is fast-reid's bagtricks one
(`fastreid/data/transforms/build.py`): PIL bicubic resize to --reid_size, flip p 0.5, pad 10 (zeros) and a
random crop back to --reid_size, a float 0..255 tensor (no /255), RandomErasing p 0.5 filled with
255 x the ImageNet mean (scale 0.02-0.33, ratio 0.3-3.3). Every random draw depends only on
(--seed, epoch, position in the epoch), so a resumed run is exact.

Generated data (PATN / PIDM-style augmentation, Zhu et al. CVPR 2019 section 5): --extra_train_dir with
--extra_pairs adds `<from>_2_<to>_vis.jpg` images labelled with the SOURCE identity; --real_fraction keeps a
fraction of each identity's real images. --pngan_branch trains on PN-GAN canonical-pose images
`<stem>_2_canon<k>_vis.jpg` alone (Qian et al., ECCV 2018: "Network B").
"""
from __future__ import annotations

import argparse
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from data.annotations import read_pairs
from data.base_dataset import BaseDataset, read_image_header
from data.identity_sampler import NaiveIdentitySampler
from util.distributed import print0
from util.image import read_rgb
from util.io import InputError

MARKET_NAME = re.compile(r"^(-?\d+)_c(\d)")
CANONICAL_NAME = re.compile(r"^(?P<stem>.+)_2_canon(?P<k>\d+)_vis\.(jpg|jpeg|png)$", re.IGNORECASE)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
PAD = 10  # fast-reid INPUT.PADDING.SIZE
IMAGENET_MEAN = (0.485, 0.456, 0.406)
ERASE_SCALE, ERASE_RATIO = (0.02, 0.33), (0.3, 3.3)  # torchvision RandomErasing defaults
SHOW = 5


@dataclass(frozen=True)
class ReidItem:
    path: Path
    pid: int  # the Market identity number (before relabelling)
    camid: int  # camera - 1
    name: str


def parse_market_name(name: str) -> tuple[int, int] | None:
    """(pid, camid) from a Market-1501 file name (camid = camera - 1), or None when the name does not match."""
    match = MARKET_NAME.match(name)
    return (int(match.group(1)), int(match.group(2)) - 1) if match else None


def _images(folder: Path) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_SUFFIXES))


def _real_items(folder: Path, fraction: float, seed: int) -> list[ReidItem]:
    """The folder's labelled images without pid -1; with fraction < 1, a seeded subset of each identity."""
    if not folder.is_dir():
        raise InputError(f"training image folder {folder} not found (--dataroot: the prepared Market layout "
                         "with train/, see datasets/prepare_market.py)")
    by_pid: dict[int, list[ReidItem]] = {}
    for name in _images(folder):
        parsed = parse_market_name(name)
        if parsed is None:
            raise InputError(f"{folder / name}: not a Market-1501 name (<pid>_c<camera>s<seq>_<frame>_<box>.jpg)")
        if parsed[0] != -1:  # fast-reid: "junk images are just ignored"
            by_pid.setdefault(parsed[0], []).append(ReidItem(folder / name, parsed[0], parsed[1], name))
    items = []
    for pid in sorted(by_pid):
        group = by_pid[pid]
        if fraction < 1.0:
            keep = max(1, round(fraction * len(group))) if fraction > 0 else 0
            order = np.random.default_rng([seed % 2**32, pid, 0xF4AC]).permutation(len(group))
            group = [group[i] for i in sorted(order[:keep].tolist())]
        items += group
    return items


def _generated_file(folder: Path, source: str, target: str) -> Path | None:
    stem = f"{Path(source).stem}_2_{Path(target).stem}_vis"
    for suffix in (".jpg", ".png"):
        if (folder / (stem + suffix)).is_file():
            return folder / (stem + suffix)
    return None


def _pair_items(folder: Path, pairs_path: Path) -> list[ReidItem]:
    """One generated image per pair row, labelled with the source's identity (camid: the source's)."""
    if not folder.is_dir():
        raise InputError(f"--extra_train_dir {folder} is not a folder")
    items, missing = [], []
    for row, (source, target) in enumerate(read_pairs(pairs_path), start=1):
        parsed = parse_market_name(source)
        if parsed is None:
            raise InputError(f"{pairs_path.name} row {row}: source {source!r} is not a Market-1501 name")
        path = _generated_file(folder, source, target)
        if path is None:
            missing.append(f"{Path(source).stem}_2_{Path(target).stem}_vis.jpg ({pairs_path.name} row {row})")
        elif parsed[0] != -1:
            items.append(ReidItem(path, parsed[0], parsed[1], path.name))
    if missing:
        raise InputError(f"{len(missing)} generated image(s) of --extra_pairs are missing from {folder}: "
                         + ", ".join(missing[:SHOW]) + (", ..." if len(missing) > SHOW else ""))
    return items


def _canonical_items(folder: Path) -> list[ReidItem]:
    """PN-GAN canonical-pose images `<stem>_2_canon<k>_vis.jpg`, labelled with the pid of `<stem>`."""
    if not folder.is_dir():
        raise InputError(f"--extra_train_dir {folder} is not a folder")
    items = []
    for name in _images(folder):
        match = CANONICAL_NAME.match(name)
        parsed = parse_market_name(match.group("stem")) if match else None
        if parsed is not None and parsed[0] != -1:
            items.append(ReidItem(folder / name, parsed[0], parsed[1], name))
    if not items:
        raise InputError(f"--pngan_branch: {folder} holds no <market name>_2_canon<k>_vis.jpg images")
    return items


def training_items(opt) -> list[ReidItem]:
    """Every training image of the options, in a fixed order (real images first, then generated ones)."""
    if opt.dataroot is None:
        raise InputError("--dataset_mode market_reid needs --dataroot: a prepared Market folder holding train/")
    if opt.pngan_branch:
        return _canonical_items(Path(opt.extra_train_dir))
    items = _real_items(Path(opt.dataroot) / opt.phase, opt.real_fraction, opt.seed)
    if opt.extra_train_dir:
        items += _pair_items(Path(opt.extra_train_dir), Path(opt.extra_pairs))
    if not items:
        raise InputError(f"no training images with an identity in {Path(opt.dataroot) / opt.phase}")
    return items


def _check_options(opt) -> None:
    if not opt.is_train:
        raise InputError("--dataset_mode market_reid is a training mode; score a re-id network with "
                         "python -m metrics.reid")
    height, width = opt.reid_size
    if height < 1 or width < 1:
        raise InputError(f"--reid_size {height} {width}: both must be >= 1")
    if opt.num_instances < 1 or opt.batch_size % opt.num_instances:
        raise InputError(f"--batchSize {opt.batch_size} must be a multiple of --num_instances {opt.num_instances}")
    if not 0.0 <= opt.real_fraction <= 1.0:
        raise InputError(f"--real_fraction must be in [0, 1], got {opt.real_fraction}")
    if bool(opt.extra_train_dir) != bool(opt.extra_pairs) and not opt.pngan_branch:
        raise InputError("--extra_train_dir and --extra_pairs go together (generated images and their pair list)")
    if opt.pngan_branch and (not opt.extra_train_dir or opt.extra_pairs or opt.real_fraction != 1.0):
        raise InputError("--pngan_branch trains on the canonical-pose images of --extra_train_dir alone: give "
                         "--extra_train_dir, and neither --extra_pairs nor --real_fraction")
    if opt.real_fraction == 0.0 and not opt.extra_train_dir:
        raise InputError("--real_fraction 0 leaves no training image without --extra_train_dir/--extra_pairs")
    refused = [("--serial_batches", opt.serial_batches), ("--pairs_per_epoch", opt.pairs_per_epoch != 0),
               ("--last_batch keep", opt.last_batch != "drop"),
               ("--max_dataset_size", math.isfinite(opt.max_dataset_size))]
    for flag, used in refused:
        if used:
            raise InputError(f"{flag} does not apply to --dataset_mode market_reid: its batches come from the "
                             "P x K identity sampler (--num_instances), an epoch being len(images) // batch")


class MarketReidDataset(BaseDataset):
    """Labelled person crops; items {"image": (3, H, W) float 0..255, "pid": label, "camid", "name"}."""

    @staticmethod
    def modify_commandline_options(parser: argparse.ArgumentParser, is_train: bool) -> argparse.ArgumentParser:
        g = parser.add_argument_group("market_reid data", "re-id training images (fast-reid bagtricks recipe)")
        g.add_argument("--num_instances", type=int, default=4,
                       help="K images per identity in a batch (P = --batchSize / K identities)")
        g.add_argument("--reid_size", type=int, nargs=2, default=[256, 128], metavar=("H", "W"),
                       help="network input size (PIL bicubic resize), for training and evaluation")
        g.add_argument("--extra_train_dir", type=str, default="",
                       help="folder of generated images <from>_2_<to>_vis.jpg (with --extra_pairs), or of "
                            "canonical-pose images (with --pngan_branch)")
        g.add_argument("--extra_pairs", type=str, default="",
                       help="pair CSV (from,to) of the generated images to add; each is labelled with the "
                            "identity of its source image")
        g.add_argument("--real_fraction", type=float, default=1.0,
                       help="keep this fraction of each identity's real images (a seeded choice, at least one "
                            "per identity when > 0)")
        g.add_argument("--pngan_branch", action="store_true",
                       help="PN-GAN Network B: train on the <stem>_2_canon<k>_vis.jpg images of "
                            "--extra_train_dir only")
        return parser

    @staticmethod
    def derive_options(opt) -> None:
        """Check the flags, then count the identities: the model's classifier needs C before any batch."""
        opt.data_format = "market"
        _check_options(opt)
        pids = {item.pid for item in training_items(opt)}
        opt.reid_num_classes = len(pids)

    def __init__(self, opt) -> None:
        super().__init__(opt)
        self.items = training_items(opt)
        self.classes = sorted({item.pid for item in self.items})
        if len(self.classes) != opt.reid_num_classes:
            raise InputError(f"the training images changed while starting: {len(self.classes)} identities, "
                             f"{opt.reid_num_classes} when the options were parsed")
        self.label_of = {pid: label for label, pid in enumerate(self.classes)}
        self.labels = [self.label_of[item.pid] for item in self.items]
        self.size = tuple(opt.reid_size)
        self._draws = 0
        self._check_readable()
        print0(f"market_reid: {len(self.items)} images of {len(self.classes)} identities")

    def _check_readable(self) -> None:
        for item in self.items:
            try:
                read_image_header(item.path)
            except (UnidentifiedImageError, OSError) as exc:
                raise InputError(f"{item.path}: not a readable image ({exc})") from None

    def make_sampler(self, opt, ctx) -> NaiveIdentitySampler:
        return NaiveIdentitySampler(self.labels, opt.batch_size, opt.num_instances, opt.seed,
                                    num_replicas=ctx.world_size, rank=ctx.rank)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: int | tuple[int, int, int]) -> dict:
        """Item `key`: an index, or (index, epoch, slot) from the sampler (augmentation fixed by them)."""
        if isinstance(key, tuple):
            index, epoch, slot = key
        else:
            index, epoch, slot = key, -1, self._draws
            self._draws += 1
        item = self.items[index]
        rng = np.random.default_rng([self.opt.seed % 2**32, epoch + 1, slot, 0xB07])
        tensor = train_transform(read_rgb(item.path), self.size, rng)  # damaged data: InputError naming it
        return {"image": tensor, "pid": self.labels[index], "camid": item.camid, "name": item.name}


def train_transform(image: Image.Image, size: tuple[int, int], rng: np.random.Generator) -> torch.Tensor:
    """fast-reid's bagtricks train transform on an RGB image -> (3, H, W) float32 on the 0..255 scale."""
    height, width = size
    image = image.resize((width, height), Image.Resampling.BICUBIC)
    array = np.asarray(image, dtype=np.uint8)
    if rng.random() < 0.5:
        array = array[:, ::-1]
    padded = np.zeros((height + 2 * PAD, width + 2 * PAD, 3), dtype=np.uint8)
    padded[PAD:PAD + height, PAD:PAD + width] = array
    top, left = int(rng.integers(0, 2 * PAD + 1)), int(rng.integers(0, 2 * PAD + 1))
    crop = padded[top:top + height, left:left + width]
    tensor = torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1))).float()
    if rng.random() < 0.5:
        erase(tensor, rng)
    return tensor


def erase(tensor: torch.Tensor, rng: np.random.Generator) -> None:
    """torchvision RandomErasing's rectangle (10 tries), filled in place with 255 x the ImageNet mean."""
    _, height, width = tensor.shape
    area = height * width
    log_low, log_high = math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1])
    for _ in range(10):
        target = area * rng.uniform(*ERASE_SCALE)
        aspect = math.exp(rng.uniform(log_low, log_high))
        h, w = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if h < height and w < width:
            top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
            fill = torch.tensor([255.0 * m for m in IMAGENET_MEAN]).view(3, 1, 1)
            tensor[:, top:top + h, left:left + w] = fill
            return
