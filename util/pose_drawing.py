"""Draw COCO-18 poses as coloured skeletons and heatmap stacks as colour images.

Pure numpy/PIL functions (no files, no torch needed) so that the visualizer, test.py and a
`python -m scripts.draw_pose` command can share them. Keypoints are (y, x) rows as in the
annotation CSVs; -1 marks a missing keypoint.
"""
from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw

NUM_KEYPOINTS = 18
MISSING = -1  # the annotation files' marker for a keypoint that was not detected

# COCO-18 order: 0 nose, 1 neck, 2 r-shoulder, 3 r-elbow, 4 r-wrist, 5 l-shoulder, 6 l-elbow, 7 l-wrist,
# 8 r-hip, 9 r-knee, 10 r-ankle, 11 l-hip, 12 l-knee, 13 l-ankle, 14 r-eye, 15 l-eye, 16 r-ear, 17 l-ear
LIMBS: tuple[tuple[int, int], ...] = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11),
    (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17), (2, 16), (5, 17),
)


def _hue_wheel(n: int) -> np.ndarray:
    """n fully saturated colours evenly spaced in hue from red, as uint8 (n, 3): OpenPose's look."""
    rgb = [colorsys.hsv_to_rgb(i / n, 1.0, 1.0) for i in range(n)]
    return np.rint(np.asarray(rgb) * 255.0).astype(np.uint8)


KEYPOINT_COLORS: np.ndarray = _hue_wheel(NUM_KEYPOINTS)  # (18, 3); joint k and heatmap channel k
LIMB_COLORS: np.ndarray = _hue_wheel(len(LIMBS))  # (19, 3); one distinct colour per limb


def _as_keypoints(keypoints) -> np.ndarray:
    kp = np.asarray(keypoints.detach().cpu() if hasattr(keypoints, "detach") else keypoints)
    if kp.shape != (NUM_KEYPOINTS, 2):
        raise ValueError(f"keypoints must have shape ({NUM_KEYPOINTS}, 2) as (y, x) rows, got {kp.shape}")
    return np.rint(kp).astype(np.int64)


def draw_skeleton(keypoints, height: int, width: int, background: np.ndarray | None = None,
                  limb_width: int | None = None, joint_radius: int | None = None) -> np.ndarray:
    """Draw limbs (both endpoints visible only), then joints, onto black or a copy of `background`.

    keypoints: (18, 2) int (y, x), -1 = missing; background: uint8 (height, width, 3).
    Widths default to about 1/64 of the shorter side (4 px at 256x176). Returns uint8 (height, width, 3).
    """
    kp = _as_keypoints(keypoints)
    if background is None:
        canvas = Image.new("RGB", (width, height))
    else:
        background = np.asarray(background)
        if background.shape != (height, width, 3) or background.dtype != np.uint8:
            raise ValueError(f"background must be uint8 ({height}, {width}, 3), "
                             f"got {background.dtype} {background.shape}")
        canvas = Image.fromarray(background.copy())
    size = max(1, round(min(height, width) / 64))
    limb_width = size if limb_width is None else limb_width
    joint_radius = size if joint_radius is None else joint_radius
    visible = ~(kp == MISSING).any(axis=1)
    draw = ImageDraw.Draw(canvas)
    for (a, b), colour in zip(LIMBS, LIMB_COLORS):
        if visible[a] and visible[b]:
            (ya, xa), (yb, xb) = kp[a], kp[b]
            draw.line([(int(xa), int(ya)), (int(xb), int(yb))], fill=tuple(int(c) for c in colour),
                      width=limb_width)
    for k in np.flatnonzero(visible):
        y, x = (int(v) for v in kp[k])
        r = joint_radius
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(c) for c in KEYPOINT_COLORS[k]))
    return np.asarray(canvas, dtype=np.uint8).copy()


def heatmaps_to_image(heatmaps) -> np.ndarray:
    """Colour channel k of (C, H, W) maps in [0, 1] with keypoint colour k; max-composite on black.

    Max (not sum) keeps overlapping joints from saturating to white. Accepts a tensor or an array;
    channels beyond 18 reuse the palette. Returns uint8 (H, W, 3).
    """
    maps = np.asarray(heatmaps.detach().float().cpu() if hasattr(heatmaps, "detach") else heatmaps,
                      dtype=np.float32)
    if maps.ndim != 3:
        raise ValueError(f"heatmaps must have shape (C, H, W), got {maps.shape}")
    maps = np.clip(np.nan_to_num(maps), 0.0, 1.0)
    out = np.zeros(maps.shape[1:] + (3,), dtype=np.float32)
    colours = KEYPOINT_COLORS.astype(np.float32)
    for k, m in enumerate(maps):  # one channel at a time: memory stays O(H*W)
        np.maximum(out, m[..., None] * colours[k % len(colours)], out=out)
    return np.rint(out).astype(np.uint8)
