"""Image listing, loading and padding for the evaluator, and DataLoaders over pairs and folders.

Images load as uint8 (H, W, 3) RGB with PIL, as imageio (DPTN) and pytorch-fid do, fully decoded and checked by
util.image.read_rgb (damaged data refused, 16-bit and float images scaled, alpha on white). A worker never raises:
a file that cannot be read comes back as an error string, and the main process stops with one InputError
naming it (an exception raised inside a worker would arrive wrapped in a worker traceback).
"""
from __future__ import annotations

import functools
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from data.keypoints import evaluation_mask
from metrics.pairing import Layout, Pair
from util.image import read_rgb as read_rgb_image
from util.io import InputError, raise_problems

CLEAN_SUFFIXES = (".jpg", ".jpeg", ".png")
FASHION_SIZE = (256, 176)  # (H, W) of the DeepFashion crops
PAD_SIZE = 256
PAD_LEFT = 40  # the crop's columns [40, 216) of the 256x256 in-shop frame


def list_images(folder: str | os.PathLike, order: str) -> list[Path]:
    """Images directly inside `folder`.

    order 'listing': `*.jpg` then `*.png`, each in directory order (the GFLA/DPTN FID glob), the extension
                     matched in any case (`*_vis.JPG` too, which a case-sensitive glob would silently drop);
    order 'sorted':  `.jpg`, `.jpeg`, `.png` of any case, sorted by name (reproducible everywhere).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"image folder {folder} not found")
    with os.scandir(folder) as entries:
        names = [e.name for e in entries if e.is_file()]
    if order == "listing":
        files = [folder / n for suffix in (".jpg", ".png") for n in names if n.lower().endswith(suffix)]
    elif order == "sorted":
        files = [folder / n for n in sorted(names) if n.lower().endswith(CLEAN_SUFFIXES)]
    else:
        raise ValueError(f"unknown order {order!r}")
    if not files:
        raise InputError(f"no images ({'*.jpg, *.png' if order == 'listing' else '.jpg, .jpeg, .png'}) in {folder}")
    return files


def read_rgb(path: Path) -> tuple[np.ndarray, str]:
    """(uint8 (H, W, 3), PIL mode before conversion). Raises InputError naming a damaged or unreadable file."""
    try:
        image = read_rgb_image(path)
    except InputError as exc:
        raise InputError(f"{path}: unreadable image: {str(exc).removeprefix(f'{path}: ')}") from None
    return np.array(image), image.info["source_mode"]  # a writable copy, as torch.from_numpy wants


def crop_tile(image: np.ndarray, tiles: int, index: int) -> np.ndarray:
    """Tile `index` of a panel of `tiles` equal tiles side by side."""
    width = image.shape[1]
    if width % tiles:
        raise ValueError(f"panel width {width} is not divisible by {tiles} tiles")
    w = width // tiles
    return image[:, index * w:(index + 1) * w]


def pad_white_256(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, 256, 176) uint8 -> (B, 3, 256, 256) on a white canvas at columns [40, 216) (pad_256, addBounding)."""
    height, width = images.shape[-2:]
    if (height, width) != FASHION_SIZE:
        raise InputError(f"DeepFashion white padding needs 256x176 images, got {height}x{width}; Market "
                         "images need --market (never padded), other sizes --no_pad_fashion_256")
    right = PAD_SIZE - PAD_LEFT - width
    return torch.nn.functional.pad(images, (PAD_LEFT, right), value=255)


def header_sizes(paths: list[Path]) -> tuple[dict[Path, tuple[int, int]], list[str]]:
    """(W, H) of each image from its header only (fast), and the files whose header cannot be read."""
    sizes, problems = {}, []
    for path in paths:
        try:
            with Image.open(path) as image:
                sizes[path] = image.size
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            problems.append(f"{path}: unreadable image ({type(exc).__name__}: {exc})")
    return sizes, problems


def check_pair_sizes(pairs: list[Pair], layout: Layout) -> tuple[int, int]:
    """Validate every pair before any computing: readable headers, one size for all. Returns (H, W)."""
    paths = list(dict.fromkeys([p.generated for p in pairs] + [p.target for p in pairs]))
    sizes, problems = header_sizes(paths)
    raise_problems(problems)
    tile_size = {}
    for pair in pairs:
        width, height = sizes[pair.generated]
        if layout.tiles > 1:
            if width % layout.tiles:
                problems.append(f"{pair.generated.name}: panel width {width} is not divisible by "
                                f"{layout.tiles} tiles (--layout {layout.name})")
                continue
            width //= layout.tiles
        elif sizes[pair.target] != sizes[pair.generated]:
            tw, th = sizes[pair.target]
            problems.append(f"{pair.generated.name} is {height}x{width} but its target {pair.target.name} is "
                            f"{th}x{tw}")
            continue
        tile_size[pair.generated.name] = (height, width)
    counts = Counter(tile_size.values())
    if len(counts) > 1:
        common = counts.most_common(1)[0][0]
        odd = [name for name, size in tile_size.items() if size != common][:5]
        shown = ", ".join(f"{h}x{w}: {n}" for (h, w), n in counts.items())
        problems.append(f"generated images differ in size ({shown}); not {common[0]}x{common[1]}: {', '.join(odd)}")
    raise_problems(problems)
    return next(iter(counts))


class PairDataset(Dataset):
    """Item i: {'index', 'generated', 'target' (uint8 (H, W, 3) tensors), 'mask' (optional), 'error'}.

    With `keypoints` (target name -> (18, 2) array) each item also carries the evaluation body mask of its
    target (data.keypoints.evaluation_mask, PATN's `produce_ma_mask`), bool (H, W), built in the worker.
    """

    def __init__(self, pairs: list[Pair], layout: Layout, keypoints: dict[str, np.ndarray] | None = None) -> None:
        self.pairs, self.layout, self.keypoints = pairs, layout, keypoints

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        pair = self.pairs[index]
        item = {"index": index, "error": "", "modes": "", "name": pair.generated.name}
        try:
            generated, mode = read_rgb(pair.generated)
            item["modes"] = mode
            if self.layout.tiles == 1:
                target, target_mode = read_rgb(pair.target)
                item["modes"] = f"{mode},{target_mode}"
            else:
                target = crop_tile(generated, self.layout.tiles, self.layout.target_tile)
                generated = crop_tile(generated, self.layout.tiles, self.layout.generated_tile)
        except InputError as exc:  # names the damaged file, generated or target
            item["error"] = str(exc)
            return item
        except (OSError, ValueError) as exc:
            item["error"] = f"{pair.generated.name}: unreadable image ({type(exc).__name__}: {exc})"
            return item
        if generated.shape != target.shape:
            item["error"] = (f"{pair.generated.name} is {generated.shape[0]}x{generated.shape[1]} but its target is "
                             f"{target.shape[0]}x{target.shape[1]}")
            return item
        item["generated"] = torch.from_numpy(np.ascontiguousarray(generated))
        item["target"] = torch.from_numpy(np.ascontiguousarray(target))
        if self.keypoints is not None:
            height, width = target.shape[:2]
            item["mask"] = torch.from_numpy(evaluation_mask(self.keypoints[pair.target_name], height, width))
        return item


class FileDataset(Dataset):
    """Item i: {'index', 'image' (uint8 (H, W, 3)), 'error'} for a list of image files."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        item = {"index": index, "error": "", "modes": "", "name": self.paths[index].name}
        try:
            image, item["modes"] = read_rgb(self.paths[index])
        except InputError as exc:
            item["error"] = str(exc)
            return item
        except (OSError, ValueError) as exc:
            item["error"] = f"{self.paths[index]}: unreadable image ({type(exc).__name__}: {exc})"
            return item
        item["image"] = torch.from_numpy(np.ascontiguousarray(image))
        return item


def collate(items: list[dict]) -> dict:
    """Stack a batch; a batch with an unreadable file or mixed sizes carries the error instead."""
    errors = [item["error"] for item in items if item["error"]]
    batch = {"index": torch.tensor([item["index"] for item in items]), "modes": [i["modes"] for i in items]}
    if errors:
        batch["error"] = errors[0]
        return batch
    for key in ("generated", "target", "mask", "image"):
        if key in items[0]:
            shapes = {tuple(item[key].shape[:2]): item["name"] for item in items}
            if len(shapes) > 1:
                found = ", ".join(f"{name} is {h}x{w}" for (h, w), name in shapes.items())
                batch["error"] = f"images of one set must share a size: {found}"
                return batch
            batch[key] = torch.stack([item[key] for item in items])
    return batch


def _collate_then(items: list[dict], then: Callable[[dict], dict]) -> dict:
    batch = collate(items)
    return batch if "error" in batch else then(batch)


def make_loader(dataset: Dataset, batch_size: int, num_workers: int, pin_memory: bool = False,
                then: Callable[[dict], dict] | None = None) -> DataLoader:
    """In-order batches (never shuffled, last partial batch kept) with multi-worker loading.

    `then(batch) -> batch` runs on each good batch inside the loader, i.e. in the worker processes.
    """
    collate_fn = collate if then is None else functools.partial(_collate_then, then=then)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, drop_last=False, num_workers=num_workers,
                      collate_fn=collate_fn, pin_memory=pin_memory, persistent_workers=False)


def batches(loader: DataLoader):
    """Iterate the loader, turning a batch's error into one InputError."""
    for batch in loader:
        if "error" in batch:
            raise InputError(batch["error"])
        yield batch
