"""BaseDataset (the plug-in interface of `--dataset_mode`) and PairDataset, the shared pose-pair reader.

PairDataset reads the official layout (`<root>/<phase>/` images, an annotation CSV and a pair CSV), validates
it completely at construction, and returns one dict per pair in the network frame (data/geometry.py).
The layout is that of tengteng95/Pose-Transfer and of PangzeCheung/Dual-task-Pose-Transformer-Network
(`data/market_dataset.py`, `data/fashion_dataset.py`); the inputs per model are in docs/models/pg2.md,
docs/models/dptn.md and docs/models/patn.md.
"""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from data.annotations import read_annotations, read_pairs
from data.geometry import (FRAMES, images_to_dataset_frame, image_to_network, keypoints_to_network, network_size, pad_maps,
                           uint8_to_dataset_frame)
from data.keypoints import (DPIG_MASK_RADIUS, KEYPOINT_NAMES, MASK_RECIPES, body_mask, disc_pose_maps, drop_outside,
                            flip_keypoints, gaussian_heatmaps, pixel_pose_maps, visible)
from util.image import SUPPORTED_MODES, read_rgb, tensor_to_uint8, uint8_to_tensor
from util.io import InputError, raise_problems
from util.run_options import mark_run_shaping

POSE_ENCODINGS = ("gaussian", "pixel", "tf_disc")
KEYPOINTS_OUTSIDE = ("error", "missing", "draw")
SHOW = 5  # how many offending names an error message lists


class BaseDataset(Dataset):
    """A dataset of (source, target) pairs; `modify_commandline_options` adds the mode's flags."""

    @staticmethod
    def modify_commandline_options(parser: argparse.ArgumentParser, is_train: bool) -> argparse.ArgumentParser:
        return parser

    @staticmethod
    def derive_options(opt) -> None:
        """Fill values that depend on other options; must set opt.data_format to 'market' or 'fashion'.

        Called once inside parse(), before the model's derive_options.
        """

    def __init__(self, opt) -> None:
        self.opt = opt

    def make_sampler(self, opt, ctx):
        """The training sampler this dataset needs, or None for data/sampler.py's ResumableSampler.

        A sampler returned here must offer what train.py drives: `set_epoch(epoch, skip)` (skip: samples of
        this rank already consumed), `rank_indices()` (this rank's indices of the epoch) and `__len__`; its
        order must follow from (seed, epoch) alone and be split over `ctx.world_size` ranks, so that a run
        resumed mid-epoch is exact (data/identity_sampler.py, the re-id P x K sampler, is an example).
        """
        return None


def add_pose_options(parser: argparse.ArgumentParser, is_train: bool) -> argparse.ArgumentParser:
    """The pose flags every pair mode shares; models change their defaults with parser.set_defaults."""
    g = parser.add_argument_group("pose")
    g.add_argument("--pose_encoding", type=str, default="gaussian", choices=POSE_ENCODINGS,
                   help="pose maps: 18 Gaussian heatmaps in [0,1] (PG2, DPTN, PATN), pixel = 1 at each keypoint "
                        "pixel only (what PATN's DeepFashion script stores as uint8), or TF PG2's radius-4 discs "
                        "in {-1,+1}")
    g.add_argument("--pose_sigma", type=float, default=6.0, help="sigma of the Gaussian heatmaps, in pixels")
    g.add_argument("--mask_recipe", type=str, default="none", choices=("none",) + MASK_RECIPES,
                   help="body masks returned with each pair (target_mask, and source_mask of the source image): "
                        "none, pg2 (TF PG2 recipe), hpt (HPT recipe) or dpig (the pg2 recipe with discs of "
                        "--fg_mask_radius, DPIG's foreground mask)")
    g.add_argument("--fg_mask_radius", type=int, default=None,
                   help=f"--mask_recipe dpig only: disc radius of the mask, in pixels (default {DPIG_MASK_RADIUS}, "
                        "what DPIG's TF converter stores; its data folders' names suggest 6 may have been used)")
    g.add_argument("--keypoints_outside", type=str, default="error", choices=KEYPOINTS_OUTSIDE,
                   help="an annotated keypoint outside the image: error (names the CSV row), missing (dropped), "
                        "or draw (kept: its Gaussian's tail reaches into the frame, as PATN's and DPTN's "
                        "official map scripts draw it)")
    g.add_argument("--resize_mismatched", action="store_true",
                   help="resize images whose size differs from the dataset's (default: such images are an error)")
    mark_run_shaping(g, "pose_encoding", "pose_sigma")  # the pose maps a trained network reads
    if is_train:  # test.py never flips: the flag is a training option there
        g.add_argument("--flip_prob", type=float, default=0.0,
                       help="probability of mirroring a training pair (source and target together, "
                            "left/right keypoints swapped)")
    else:
        parser.set_defaults(flip_prob=0.0)
    return parser


def add_frame_option(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """--fashion_frame for the modes that can read DeepFashion; each model sets its own default with
    parser.set_defaults(fashion_frame=...)."""
    parser.add_argument("--fashion_frame", type=str, default="native", choices=FRAMES,
                        help="network frame for DeepFashion: native 256x176 (PATN), pad256 (40 white columns each "
                             "side, PG2) or stretch256 (resized to 256x256, official DPTN)")
    mark_run_shaping(parser, "fashion_frame")
    return parser


def mask_radius(opt) -> int | None:
    """The disc radius of --mask_recipe dpig (None for the other recipes); InputError for a radius given to
    another recipe, or one below 1."""
    if opt.mask_recipe != "dpig":
        if opt.fg_mask_radius is not None:
            raise InputError(f"--fg_mask_radius applies to --mask_recipe dpig only, not {opt.mask_recipe}")
        return None
    radius = DPIG_MASK_RADIUS if opt.fg_mask_radius is None else opt.fg_mask_radius
    if radius < 1:
        raise InputError(f"--fg_mask_radius must be >= 1, got {radius}")
    return radius


def dataroot_path(opt, mode: str) -> Path:
    """opt.dataroot as a Path; InputError if it is unset or not a folder."""
    if opt.dataroot is None:
        raise InputError(f"--dataset_mode {mode} needs --dataroot: a folder holding {opt.phase}/ and the "
                         "annotation and pair CSVs")
    root = Path(opt.dataroot)
    if not root.is_dir():
        raise InputError(f"--dataroot {root} does not exist or is not a folder")
    return root


_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # JPEG start-of-frame (not DHT/JPG/DAC)


_PNG_COLOUR_TYPES = {0: "L", 2: "RGB", 3: "P", 4: "LA", 6: "RGBA"}
_JPEG_COMPONENTS = {1: "L", 3: "RGB", 4: "CMYK"}


def _jpeg_png_header(head: bytes) -> tuple[int, int, str] | None:
    """(width, height, PIL-style mode) from the first bytes of a JPEG or PNG file, or None to let PIL decide."""
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and len(head) >= 26:
        depth, mode = head[24], _PNG_COLOUR_TYPES.get(head[25], "?")
        if mode == "L" and depth != 8:  # PIL reads 16-bit grey as I;16 and 1-bit as 1
            mode = {16: "I;16", 1: "1"}.get(depth, "L")
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big"), mode
    if head[:2] != b"\xff\xd8":
        return None
    at = 2
    while at + 10 <= len(head):
        if head[at] != 0xFF:
            return None
        marker = head[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in _SOF_MARKERS:
            height, width = int.from_bytes(head[at + 5:at + 7], "big"), int.from_bytes(head[at + 7:at + 9], "big")
            mode = _JPEG_COMPONENTS.get(head[at + 9], "?")
            return (width, height, mode) if height and width else None
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length field
            at += 2
            continue
        at += 2 + int.from_bytes(head[at + 2:at + 4], "big")
    return None


def read_image_header(path: Path) -> tuple[int, int, str]:
    """(width, height, mode) of an image file from its header only (as PIL's Image.size and .mode report).

    JPEG and PNG headers are parsed directly, 10x faster than Image.open, so that validating the ~50k
    images of a DeepFashion split takes seconds; anything else goes through PIL.
    """
    with open(path, "rb") as f:
        header = _jpeg_png_header(f.read(65536))
    if header is not None:
        return header
    with Image.open(path) as image:  # lazy: decodes the header only
        return image.size[0], image.size[1], image.mode


def read_image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file from its header only."""
    return read_image_header(path)[:2]


def is_truncated(path: Path) -> bool:
    """True when a JPEG lacks its end-of-image marker or a PNG its IEND chunk at the end of the file.

    Reads only the last bytes, so start-up can check every image; other formats are not judged. A file
    that is merely followed by other bytes (valid for JPEG) also answers True: decode it to be sure.
    """
    with open(path, "rb") as f:
        head = f.read(8)
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 32))
        tail = f.read()
    if head[:3] == b"\xff\xd8\xff":
        return b"\xff\xd9" not in tail
    if head == b"\x89PNG\r\n\x1a\n":
        return b"IEND" not in tail
    return False


def _check_cut(path: Path) -> None:
    """A file without its end marker at the very end: decoded in full, it is either a JPEG followed by other
    bytes (accepted) or a cut-off copy (InputError naming it)."""
    try:
        read_rgb(path)
    except InputError as exc:
        raise InputError(f"{path}: the image file is truncated or damaged: {str(exc).removeprefix(f'{path}: ')}") \
            from None


def _listing(names: list[str], rows: dict[str, int], pairs_name: str) -> str:
    shown = ", ".join(f"{n!r} ({pairs_name} row {rows[n]})" for n in names[:SHOW])
    return shown + (", ..." if len(names) > SHOW else "")


class PairDataset(BaseDataset):
    """(source, target) pairs of images and keypoints, served in the network frame.

    Subclasses say where the files are; everything else (validation, maps, masks, flips) lives here.
    Attributes: image_size (H, W) of the files, frame, network_size (H, W) of the tensors, pairs.
    """

    def __init__(self, opt, root: Path, annotation_path: Path, pairs_path: Path,
                 image_size: tuple[int, int], frame: str) -> None:
        super().__init__(opt)
        self.root = Path(root)
        self.image_dir = self.root / opt.phase
        self.image_size = tuple(image_size)
        self.frame = frame
        self.network_size = network_size(self.image_size, frame)
        if not 0.0 <= opt.flip_prob <= 1.0:
            raise InputError(f"--flip_prob must be in [0, 1], got {opt.flip_prob}")
        if opt.pose_sigma <= 0:
            raise InputError(f"--pose_sigma must be > 0, got {opt.pose_sigma}")
        mask_radius(opt)
        self.flip_prob = opt.flip_prob if opt.is_train else 0.0
        self._draws = 0  # per-process counter that varies the flip coin between epochs

        annotations = read_annotations(annotation_path)  # raises first on a missing file
        pairs = read_pairs(pairs_path)
        if not self.image_dir.is_dir():
            raise InputError(f"image folder {self.image_dir} not found (--dataroot {self.root}, --phase {opt.phase})")
        if math.isfinite(opt.max_dataset_size):
            pairs = pairs[: max(int(opt.max_dataset_size), 0)]
        if not pairs:
            raise InputError(f"{pairs_path.name}: --max_dataset_size {opt.max_dataset_size} leaves no pairs")
        self.pairs = pairs
        names, rows = self._names_in_order(pairs)
        self._check_annotated(names, rows, annotations, annotation_path, pairs_path)
        self._check_images(names, rows, pairs_path)
        if opt.keypoints_outside == "error":
            self._check_inside(names, annotations, annotation_path)
        if opt.keypoints_outside == "draw":  # points outside stay, for the pose maps (the frame tests again)
            self.keypoints = {n: annotations[n] for n in names}
        else:  # with --keypoints_outside missing, points outside the image count as missing
            self.keypoints = {n: drop_outside(annotations[n], *self.image_size) for n in names}

    # --- validation ------------------------------------------------------------------------------------

    @staticmethod
    def _names_in_order(pairs: list[tuple[str, str]]) -> tuple[list[str], dict[str, int]]:
        """Distinct names in pair-file order, and the first pair-file row (from 1) naming each."""
        rows: dict[str, int] = {}
        for row, pair in enumerate(pairs, start=1):
            for name in pair:
                rows.setdefault(name, row)
        return list(rows), rows

    @staticmethod
    def _check_annotated(names, rows, annotations, annotation_path: Path, pairs_path: Path) -> None:
        unknown = [n for n in names if n not in annotations]
        if unknown:
            raise InputError(f"{pairs_path}: {len(unknown)} image name(s) have no row in {annotation_path.name}: "
                             + _listing(unknown, rows, pairs_path.name))

    def _check_inside(self, names, annotations, annotation_path: Path) -> None:
        """Every visible keypoint of the used rows lies inside the image (else one line per row)."""
        height, width = self.image_size
        row_of = {name: row for row, name in enumerate(annotations, start=1)}
        problems = []
        for name in names:
            kps = annotations[name]
            present = (kps != -1).all(axis=1)
            outside = present & ~visible(kps, height, width)
            if outside.any():
                k = int(np.flatnonzero(outside)[0])
                problems.append(f"{annotation_path.name} row {row_of[name]} ({name}): keypoint {k} "
                                f"({KEYPOINT_NAMES[k]}) at y={kps[k, 0]}, x={kps[k, 1]} lies outside the "
                                f"{height}x{width} image (pass --keypoints_outside missing to drop such points)")
        raise_problems(problems)

    def _check_images(self, names, rows, pairs_path: Path) -> None:
        """Every image exists and has the expected size; reads only the headers, so it stays fast."""
        present = set(os.listdir(self.image_dir))
        absent = [n for n in names if n not in present]
        if absent:
            raise InputError(f"{len(absent)} image(s) named in {pairs_path.name} are missing from "
                             f"{self.image_dir}: " + _listing(absent, rows, pairs_path.name))
        height, width = self.image_size
        wrong, not_rgb = [], []
        for name in names:
            path = self.image_dir / name
            try:
                w, h, mode = read_image_header(path)
            except (UnidentifiedImageError, OSError) as exc:
                raise InputError(f"{path}: not a readable image ({exc})") from None
            if is_truncated(path):
                _check_cut(path)
            if mode not in SUPPORTED_MODES and mode != "?":  # "?": PIL decides when the image is loaded
                raise InputError(f"{path}: image mode {mode} is not supported; convert it to 8-bit RGB")
            if (w, h) != (width, height):
                wrong.append((name, w, h))
            if mode != "RGB":
                not_rgb.append((name, mode))
        if not_rgb:
            print(f"warning: {len(not_rgb)} image(s) in {self.image_dir} are not RGB (first: {not_rgb[0][0]}, "
                  f"{not_rgb[0][1]}); they are converted to RGB when loaded (16-bit and float images scaled "
                  "to 8 bits, transparency composited on white)")
        if wrong and not self.opt.resize_mismatched:
            name, w, h = wrong[0]
            more = f" ({len(wrong)} images have a wrong size)" if len(wrong) > 1 else ""
            raise InputError(f"{self.image_dir / name}: image is {h}x{w} (height x width), expected "
                             f"{height}x{width}{more}; pass --resize_mismatched to resize such images")
        if wrong:
            print(f"warning: {len(wrong)} image(s) in {self.image_dir} are not {height}x{width} (first: "
                  f"{wrong[0][0]}, {wrong[0][2]}x{wrong[0][1]}); --resize_mismatched resizes them (bilinear)")
        self.mismatched = {name for name, _, _ in wrong}

    # --- items -----------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.pairs)

    def flip_coin(self, index: int, epoch: int | None = None) -> bool:
        """Whether to mirror pair `index`: one coin per pair, reproducible from --seed.

        With `epoch` (a sampler yielding (index, epoch) items) the coin depends only on (seed, index, epoch),
        so a resumed run flips exactly as an uninterrupted one; otherwise a per-process draw counter is used.
        """
        if self.flip_prob <= 0.0:
            return False
        draw = epoch if epoch is not None else self._draws
        self._draws += 1
        rng = np.random.default_rng([self.opt.seed % 2**32, index, draw, 0x5EED])
        return bool(rng.random() < self.flip_prob)

    def _load(self, name: str, flip: bool) -> tuple[Image.Image, np.ndarray]:
        """The image and its keypoints in the dataset frame, mirrored if `flip`."""
        image = read_rgb(self.image_dir / name)  # fully decoded: damaged data is an InputError naming the file
        if name in self.mismatched:  # only with --resize_mismatched
            image = image.resize(self.image_size[::-1], Image.Resampling.BILINEAR)
        keypoints = self.keypoints[name]
        if flip:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            keypoints = flip_keypoints(keypoints, self.image_size[1])
        return image, keypoints

    def _image_tensor(self, image: Image.Image) -> torch.Tensor:
        return uint8_to_tensor(np.array(image_to_network(image, self.frame)))  # (3, Hn, Wn) in [-1, 1]

    def pose_maps(self, keypoints: np.ndarray, name: str) -> torch.Tensor:
        """(18, Hn, Wn) pose maps of image `name` from its keypoints; under pad256 built in the dataset frame,
        then padded (geometry.pad_maps). Modes that read stored maps override this."""
        padded = self.frame == "pad256"
        outside = self.opt.keypoints_outside == "draw"
        kps = keypoints if padded else keypoints_to_network(keypoints, self.image_size, self.frame, outside)
        height, width = self.image_size if padded else self.network_size
        if self.opt.pose_encoding == "tf_disc":
            maps, fill = disc_pose_maps(kps, height, width), -1.0
        elif self.opt.pose_encoding == "pixel":
            maps, fill = pixel_pose_maps(kps, height, width), 0.0
        else:
            maps, fill = gaussian_heatmaps(kps, height, width, self.opt.pose_sigma, outside), 0.0
        return pad_maps(maps, self.image_size, self.frame, fill) if padded else maps

    def _mask(self, keypoints: np.ndarray) -> torch.Tensor:
        """(1, Hn, Wn) float {0,1} body mask of one image (--mask_recipe); padded with 0 under pad256."""
        padded = self.frame == "pad256"
        kps = keypoints if padded else keypoints_to_network(keypoints, self.image_size, self.frame)
        height, width = self.image_size if padded else self.network_size
        recipe, radius = self.opt.mask_recipe, mask_radius(self.opt)
        mask = torch.from_numpy(body_mask(kps, height, width, recipe, radius)).to(torch.float32)[None]
        return pad_maps(mask, self.image_size, self.frame, 0.0) if padded else mask

    def __getitem__(self, item: int | tuple[int, int]) -> dict:
        """The pair `item` (an index, or (index, epoch)) as a dict of network-frame tensors and names."""
        index, epoch = item if isinstance(item, tuple) else (item, None)
        return self.item(index, self.flip_coin(index, epoch))

    def item(self, index: int, flip: bool) -> dict:
        """Pair `index`, mirrored if `flip`: what __getitem__ returns when the coin says `flip` (DPIG's stage-II
        cache encodes both mirror states of every image)."""
        source_name, target_name = self.pairs[index]
        source, source_kps = self._load(source_name, flip)
        target, target_kps = self._load(target_name, flip)
        return self.make_item(source, source_kps, target, target_kps, source_name, target_name)

    @classmethod
    def in_memory(cls, opt, image_size: tuple[int, int], frame: str) -> "PairDataset":
        """A PairDataset that reads no files: `make_item` and `to_dataset_frame` for images given in memory.

        `image_size` (H, W) is the dataset frame (Market 128x64, DeepFashion 256x176); used by
        scripts/transfer.py so that one's own photos go through exactly the items test.py feeds the model.
        """
        dataset = cls.__new__(cls)
        BaseDataset.__init__(dataset, opt)
        dataset.image_size = tuple(image_size)
        dataset.frame = frame
        dataset.network_size = network_size(dataset.image_size, frame)
        dataset.flip_prob, dataset._draws = 0.0, 0
        dataset.pairs, dataset.keypoints, dataset.mismatched = [], {}, set()
        return dataset

    def make_item(self, source: Image.Image, source_kps: np.ndarray, target: Image.Image, target_kps: np.ndarray,
                  source_name: str, target_name: str) -> dict:
        """One item from RGB images and int64 (18, 2) keypoints in the dataset frame (what __getitem__ returns)."""
        out = {
            "source_image": self._image_tensor(source),
            "target_image": self._image_tensor(target),
            "source_pose": self.pose_maps(source_kps, source_name),
            "target_pose": self.pose_maps(target_kps, target_name),
        }
        if self.opt.mask_recipe != "none":  # DPIG masks the source (its appearance input); PG2 the target
            out["target_mask"] = self._mask(target_kps)
            out["source_mask"] = self._mask(source_kps)
        out["source_keypoints"] = torch.from_numpy(keypoints_to_network(source_kps, self.image_size, self.frame))
        out["target_keypoints"] = torch.from_numpy(keypoints_to_network(target_kps, self.image_size, self.frame))
        out["source_name"], out["target_name"] = source_name, target_name
        return out

    def to_dataset_frame(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, Hn, Wn) network images -> (B, 3, H, W) in the frame of the files (for saving, metrics)."""
        return images_to_dataset_frame(images, self.image_size, self.frame)

    def output_to_uint8(self, images: torch.Tensor) -> np.ndarray:
        """(B, 3, Hn, Wn) network images in [-1, 1] -> uint8 (B, H, W, 3) in the frame of the files, as saved.

        'stretch256' converts to uint8 first and then resizes with OpenCV, as the official DPTN test does (so the
        released results are reproduced exactly), and 'double' converts first and then resizes with PIL bicubic
        (PN-GAN's --load_size 256 128); 'native' and 'pad256' map back in float, then convert.
        """
        images = images.float()  # outputs of --amp runs arrive in bf16/fp16
        if self.frame in ("stretch256", "double"):
            return uint8_to_dataset_frame(tensor_to_uint8(images), self.image_size, self.frame)
        return tensor_to_uint8(self.to_dataset_frame(images))
