"""The skeleton tiles of PATN's result panels, drawn as its official test draws them.

tengteng95/Pose-Transfer `util/util.py`: each pose map channel's first maximum above 0.1 (in row-major order)
is the keypoint (`map_to_cord`); limbs are anti-aliased grey lines (skimage `line_aa`, value x 255, on black)
and joints discs of radius 2 in 18 fixed colours, drawn after the limbs (`draw_pose_from_cords`). A keypoint
outside the frame thus appears where its Gaussian's tail peaks, on the border, as in the official panels.
"""
from __future__ import annotations

import numpy as np
from skimage.draw import disk, line_aa

MISSING = -1
LIMBS = ((1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13),
         (1, 0), (0, 14), (14, 16), (0, 15), (15, 17), (2, 16), (5, 17))
COLORS = ((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
          (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
          (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85))


def keypoints_from_maps(maps: np.ndarray, threshold: float = 0.1) -> np.ndarray:
    """(C, H, W) pose maps -> int64 (C, 2) (y, x): each channel's first maximum above `threshold`, else -1."""
    maps = np.asarray(maps)
    channels = maps.shape[0]
    flat = maps.reshape(channels, -1)
    peak = flat.argmax(axis=1)  # the first maximum in row-major order, as np.where's first hit
    found = flat[np.arange(channels), peak] > threshold
    out = np.stack(np.unravel_index(peak, maps.shape[1:]), axis=1).astype(np.int64)
    out[~found] = MISSING
    return out


def draw_patn_skeleton(keypoints: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 (H, W, 3): the official skeleton tile for (18, 2) (y, x) keypoints (-1 = missing)."""
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    kps = np.asarray(keypoints, dtype=np.int64)
    present = (kps != MISSING).all(axis=1)
    for a, b in LIMBS:
        if present[a] and present[b]:
            rows, cols, value = line_aa(int(kps[a, 0]), int(kps[a, 1]), int(kps[b, 0]), int(kps[b, 1]))
            canvas[rows, cols] = (value[:, None] * 255).astype(np.uint8)  # uint8 assignment truncates
    for k in np.flatnonzero(present):
        rows, cols = disk((int(kps[k, 0]), int(kps[k, 1])), 2, shape=(height, width))
        canvas[rows, cols] = COLORS[k]
    return canvas


def skeleton_tile(maps: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) skeleton tile of (18, H, W) pose maps, as PATN's `draw_pose_from_map`."""
    return draw_patn_skeleton(keypoints_from_maps(maps[:18]), *maps.shape[1:])
