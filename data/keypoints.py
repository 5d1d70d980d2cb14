"""Keypoint maths on OpenPose COCO-18 (y, x) arrays: visibility, pose maps, flips and body masks.

Sources: the OpenPose COCO-18 order of the annotation CSVs of tengteng95/Pose-Transfer (the limb table of
its `tool/pose_utils.py` fits it); the evaluation mask is that file's `produce_ma_mask`; the training masks
are TF PG2's `_getPoseMask` (charliememory/Pose-Guided-Person-Image-Generation `datasets/convert_market.py`)
and HPT's `key_point_to_mask` (budui/Human-Pose-Transfer `tool/generate_pose_map_add_mask.py`); DPIG's
foreground mask is the TF PG2 recipe at radius 7 (charliememory/Disentangled-Person-Image-Generation
`datasets/convert_market.py`).
Keypoints are int64 arrays (18, 2) of (row, column); -1 marks a missing point.
Everything is vectorised over pixels; loops run only over limbs and stamped points.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
from scipy import ndimage
from skimage.draw import disk, polygon

from data.annotations import MISSING, NUM_KEYPOINTS

KEYPOINT_NAMES = (
    "nose", "neck", "r-shoulder", "r-elbow", "r-wrist", "l-shoulder", "l-elbow", "l-wrist", "r-hip",
    "r-knee", "r-ankle", "l-hip", "l-knee", "l-ankle", "r-eye", "l-eye", "r-ear", "l-ear",
)

# left/right partners of the COCO-18 order; a horizontal flip swaps them
FLIP_PAIRS = ((2, 5), (3, 6), (4, 7), (8, 11), (9, 12), (10, 13), (14, 15), (16, 17))


def _flip_permutation() -> tuple[int, ...]:
    perm = list(range(NUM_KEYPOINTS))
    for a, b in FLIP_PAIRS:
        perm[a], perm[b] = b, a
    return tuple(perm)


# flipped[i] = mirrored[FLIP_PERMUTATION[i]]; the permutation is its own inverse
FLIP_PERMUTATION = _flip_permutation()

# the 23 limbs of the evaluation mask (Pose-Transfer `produce_ma_mask`) and of the PG2 training mask (TF
# `_getPoseMask`), 0-based: COCO-18 limbs with the ears joined to the neck, plus hip-hip, hip-shoulder (x2)
# and ear-ear fillers
EVAL_LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13),
    (1, 0), (0, 14), (14, 16), (0, 15), (15, 17), (1, 16), (1, 17), (8, 11), (11, 5), (8, 2), (16, 17),
)

# the 19 standard COCO-18 limbs (HPT's mask recipe, its `LIMB_SEQ`)
COCO_LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13),
    (1, 0), (0, 14), (14, 16), (0, 15), (15, 17), (2, 16), (5, 17),
)

MASK_RECIPES = ("pg2", "hpt", "dpig")
DPIG_MASK_RADIUS = 7  # TF DPIG `convert_market.py` stores `_getPoseMask(..., radius=7)` as its foreground mask


def _as_array(keypoints) -> np.ndarray:
    array = keypoints.numpy() if isinstance(keypoints, torch.Tensor) else np.asarray(keypoints)
    if array.shape != (NUM_KEYPOINTS, 2):
        raise ValueError(f"keypoints must have shape ({NUM_KEYPOINTS}, 2), got {array.shape}")
    return array.astype(np.int64, copy=False)


def annotated(keypoints) -> np.ndarray:
    """bool (18,): the point has coordinates (neither is -1), inside the frame or not."""
    kps = _as_array(keypoints)
    return (kps[:, 0] != MISSING) & (kps[:, 1] != MISSING)


def visible(keypoints, height: int, width: int) -> np.ndarray:
    """bool (18,): the point is annotated (not -1) and lies inside the height x width frame."""
    kps = _as_array(keypoints)
    y, x = kps[:, 0], kps[:, 1]
    return (y >= 0) & (x >= 0) & (y < height) & (x < width)


def drop_outside(keypoints, height: int, width: int) -> np.ndarray:
    """A copy with every point outside the frame set to -1 (treated as missing: docs/evaluation.md)."""
    kps = _as_array(keypoints).copy()
    kps[~visible(kps, height, width)] = MISSING
    return kps


@functools.lru_cache(maxsize=8)
def _gaussian_table(sigma: float, size: int) -> np.ndarray:
    """float32 exp(-n / (2 sigma^2)) for the integer squared distances n = 0 .. size-1, computed in float64."""
    return np.exp(-np.arange(size) / (2 * sigma ** 2)).astype(np.float32)


def gaussian_heatmaps(keypoints, height: int, width: int, sigma: float = 6.0,
                      keep_outside: bool = False) -> torch.Tensor:
    """float32 (18, H, W): exp(-d^2 / (2 sigma^2)) around each point, zero channel if missing.

    Evaluated on the integer pixel grid, neither normalised nor truncated, bit-identical to the `cords_to_map`
    of PATN's and DPTN's official scripts: the exponent of the integer d^2 is taken in float64, then rounded
    to float32. d^2 is an integer, so the values come from a cached table indexed by d^2. A point outside
    the frame gives a zero channel, unless `keep_outside`: then, as those scripts do, the tail of its
    Gaussian that reaches into the frame is drawn (only -1 coordinates mean missing).
    """
    kps = _as_array(keypoints)
    drawn = annotated(kps) if keep_outside else visible(kps, height, width)
    kps = np.where(drawn[:, None], kps, 0)  # missing channels are zeroed below; keep their indices in the table
    dy2 = (np.arange(height)[None, :] - kps[:, 0:1]) ** 2  # (18, H)
    dx2 = (np.arange(width)[None, :] - kps[:, 1:2]) ** 2  # (18, W)
    size = int(dy2.max(initial=0)) + int(dx2.max(initial=0)) + 1
    table = _gaussian_table(float(sigma), max(size, (height - 1) ** 2 + (width - 1) ** 2 + 1))
    maps = table[dy2[:, :, None] + dx2[:, None, :]]  # (18, H, W)
    maps[~drawn] = 0.0
    return torch.from_numpy(maps)


def pixel_pose_maps(keypoints, height: int, width: int) -> torch.Tensor:
    """float32 (18, H, W): 1 at each visible keypoint's pixel, 0 elsewhere (`--pose_encoding pixel`).

    What PATN's `generate_pose_map_fashion.py` stores: its Gaussian written into a uint8 array truncates to
    a single 1 at the keypoint (a point outside the frame leaves nothing).
    """
    kps = _as_array(keypoints)
    vis = visible(kps, height, width)
    maps = torch.zeros(NUM_KEYPOINTS, height, width)
    channels = torch.from_numpy(np.flatnonzero(vis))
    maps[channels, torch.from_numpy(kps[vis, 0]), torch.from_numpy(kps[vis, 1])] = 1.0
    return maps


def disc_pose_maps(keypoints, height: int, width: int, radius: int = 4) -> torch.Tensor:
    """float32 (18, H, W): TF PG2's `--pose_encoding tf_disc`, +1 on a disc i^2+j^2 <= r^2, else -1.

    Missing points give an all -1 channel: TF draws discs of 1 on a zero map (`_getSparsePose` in
    `datasets/convert_market.py`), then maps it with 2p - 1.
    """
    kps = _as_array(keypoints)
    vis = torch.from_numpy(visible(kps, height, width))
    centre = torch.from_numpy(kps)
    dy2 = (torch.arange(height)[None, :] - centre[:, 0:1]) ** 2  # (18, H)
    dx2 = (torch.arange(width)[None, :] - centre[:, 1:2]) ** 2  # (18, W)
    inside = (dy2[:, :, None] + dx2[:, None, :]) <= radius * radius
    inside &= vis[:, None, None]
    return inside.to(torch.float32) * 2.0 - 1.0


def flip_keypoints(keypoints, width: int) -> np.ndarray:
    """Mirror keypoints for a horizontally flipped image of `width` columns, swapping left and right.

    x' = W - 1 - x for every annotated point (y unchanged, -1 stays -1); then entries are permuted by
    FLIP_PERMUTATION so that channel 2 is still the right shoulder of the flipped person.
    """
    kps = _as_array(keypoints).copy()
    present = (kps != MISSING).all(axis=1)
    kps[present, 1] = width - 1 - kps[present, 1]
    kps[present & ((kps[:, 1] < 0) | (kps[:, 1] >= width))] = MISSING  # was outside the frame
    return kps[list(FLIP_PERMUTATION)]


def _close(mask: np.ndarray, size: int) -> np.ndarray:
    """Binary closing with a size x size square (np.ones((size, size), bool)).

    Pixels beyond the border neither add (dilation pads with 0) nor remove (erosion pads with 1), as
    skimage's dilation/erosion do with a square footprint. A square is separable, so the running max/min
    filters give the same result far faster than a 2-D structuring element.
    """
    square = np.ones((size, size), dtype=bool)
    grown = ndimage.maximum_filter(mask.astype(np.uint8), footprint=square, mode="constant", cval=0)
    return ndimage.minimum_filter(grown, footprint=square, mode="constant", cval=1).astype(bool)


def _drawable_limbs(vis: np.ndarray, limbs) -> list[tuple[int, int]]:
    return [(a, b) for a, b in limbs if vis[a] and vis[b]]


@functools.lru_cache(maxsize=8)
def _disc_offsets(radius: int) -> np.ndarray:
    """int (n, 2) offsets (i, j) with i^2 + j^2 <= radius^2 (49 for radius 4, 149 for radius 7)."""
    steps = np.arange(-radius, radius + 1)
    return np.argwhere(steps[:, None] ** 2 + steps[None, :] ** 2 <= radius * radius) - radius


def _pg2_mask(kps: np.ndarray, vis: np.ndarray, height: int, width: int, radius: int = 4) -> np.ndarray:
    """TF PG2 `pose_mask_r4` (radius 4; DPIG's foreground mask at radius 7): integer discs of `radius` at
    both ends of every drawable limb and at its n-1 inner points, n = int(length / radius), then a 5x5 closing."""
    centres = []
    for a, b in _drawable_limbs(vis, EVAL_LIMBS):
        (r0, c0), (r1, c1) = kps[a].tolist(), kps[b].tolist()
        centres += [(r0, c0), (r1, c1)]
        steps = int(np.hypot(r1 - r0, c1 - c0) / radius)
        # floor division: PG2's TF code ran on Python 2 integers; DPIG's true division then int() gives the
        # same pixels, since every inner point lies between two in-frame points (>= 0, so truncation = floor)
        centres += [(r0 + (r1 - r0) * i // steps, c0 + (c1 - c0) * i // steps) for i in range(1, steps)]
    mask = np.zeros((height, width), dtype=bool)
    if not centres:
        return mask
    # every pixel (r + i, c + j) with i^2 + j^2 <= radius^2 around every centre, clipped to the frame
    rows, cols = (np.asarray(centres)[:, None, :] + _disc_offsets(radius)[None]).reshape(-1, 2).T
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    mask[rows[inside], cols[inside]] = True
    return _close(mask, 5)


def _hpt_mask(kps: np.ndarray, vis: np.ndarray, height: int, width: int) -> np.ndarray:
    """HPT: radius-6 skimage discs at every visible point and every 6 px along limbs, then 9x9 closing."""
    points = [tuple(p) for p in kps[vis].astype(np.float64)]
    for a, b in _drawable_limbs(vis, COCO_LIMBS):
        start, end = kps[a].astype(np.float64), kps[b].astype(np.float64)
        steps = int(np.linalg.norm(end - start) / 6)
        points += [tuple(start + (i / steps) * (end - start)) for i in range(1, steps)]
    mask = np.zeros((height, width), dtype=bool)
    for centre in points:
        rr, cc = disk(centre, 6, shape=(height, width))
        mask[rr, cc] = True
    return _close(mask, 9)


def body_mask(keypoints, height: int, width: int, recipe: str = "pg2", radius: int | None = None) -> np.ndarray:
    """bool (H, W) body mask: M_B of Ma et al. 2017, recipe 'pg2' (TF, default) or 'hpt'; or 'dpig', the
    foreground mask M of Ma et al. 2018 (DPIG): the 'pg2' recipe with discs of `radius` (default 7).

    `radius` belongs to 'dpig' only ('pg2' is radius 4 by definition); points outside the frame count as
    missing; no visible limb or point gives an empty mask.
    """
    kps = _as_array(keypoints)
    vis = visible(kps, height, width)
    if recipe not in MASK_RECIPES:
        raise ValueError(f"unknown mask recipe {recipe!r}; available: {', '.join(MASK_RECIPES)}")
    if radius is not None and recipe != "dpig":
        raise ValueError(f"a mask radius applies to recipe 'dpig' only, not {recipe!r}")
    if recipe == "pg2":
        return _pg2_mask(kps, vis, height, width)
    if recipe == "hpt":
        return _hpt_mask(kps, vis, height, width)
    radius = DPIG_MASK_RADIUS if radius is None else int(radius)
    if radius < 1:
        raise ValueError(f"the 'dpig' mask radius must be >= 1, got {radius}")
    return _pg2_mask(kps, vis, height, width, radius)


def evaluation_mask(keypoints, height: int, width: int, radius: int = 4) -> np.ndarray:
    """bool (H, W) mask of mask-SSIM / mask-IS (Pose-Transfer `tool/pose_utils.py` `produce_ma_mask`).

    Width-8 quadrilaterals along the 23 limbs, discs of radius 4 at every visible point, 5x5 closing.
    """
    kps = _as_array(keypoints)
    vis = visible(kps, height, width)
    mask = np.zeros((height, width), dtype=bool)
    for a, b in _drawable_limbs(vis, EVAL_LIMBS):
        start, end = kps[a].astype(np.float64), kps[b].astype(np.float64)
        dy, dx = start - end
        length = np.hypot(dy, dx)
        if length == 0:  # the reference divides by zero here and its NaN polygon draws nothing
            continue
        normal = np.array([-dx, dy]) * (radius / length)
        corners = np.stack([start + normal, start - normal, end - normal, end + normal])
        rr, cc = polygon(corners[:, 0], corners[:, 1], shape=(height, width))
        mask[rr, cc] = True
    for centre in kps[vis]:
        rr, cc = disk((float(centre[0]), float(centre[1])), radius, shape=(height, width))
        mask[rr, cc] = True
    return _close(mask, 5)
