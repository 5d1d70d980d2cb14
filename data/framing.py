"""Put a person from any photo into a dataset frame (Market 128x64, DeepFashion 256x176) the way the datasets do.

A `Framing` is a crop box of the photo with the frame's aspect ratio (it may extend past the photo, which is
then padded) and one uniform scale; the image and its keypoints go through the same map, so keypoints stay
on the same body points. Coordinates are pixel indices whose centres sit at index + 0.5 in continuous
coordinates, so that out = (in + 0.5 - corner) * scale - 0.5 for keypoints matches PIL's resampling.

Person boxes come from a detector (tight around the body) or from the keypoints' extent. The constants below
place a full-body skeleton as the datasets do: in the pose bank (real Market-1501 and DeepFashion rows with
nose and ankles visible) the keypoints span 0.07-0.09 H to 0.89-0.90 H of the frame, i.e. about 0.82 H.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from data.annotations import MISSING, NUM_KEYPOINTS
from util.image import to_rgb
from util.io import InputError

# room around the keypoint extent, as fractions of its height: above the eyes/nose for the head's top,
# below the ankles for the feet, and at each side for the hands (wrists are the outermost keypoints)
HEAD_ROOM = 0.095
FOOT_ROOM = 0.13
SIDE_ROOM = 0.06
BOX_MARGIN = 0.04  # around a detector's tight box, as a fraction of its height (each side)

Box = tuple[float, float, float, float]  # (top, left, bottom, right), continuous pixel coordinates


@dataclass(frozen=True)
class Framing:
    """The map from a photo to a height x width frame: photo point p -> (p - (top, left)) * scale."""

    top: float
    left: float
    scale: float
    height: int
    width: int

    @property
    def box(self) -> Box:
        """The photo region that fills the frame (continuous coordinates; may extend past the photo)."""
        return (self.top, self.left, self.top + self.height / self.scale, self.left + self.width / self.scale)

    def keypoints_to_frame(self, keypoints: np.ndarray) -> np.ndarray:
        """float (18, 2) (y, x) photo keypoints (-1 = missing) -> int64 (18, 2) in the frame; outside -> -1."""
        kps = np.asarray(keypoints, dtype=np.float64)
        present = (kps >= 0).all(axis=1)
        mapped = (kps + 0.5 - np.array([self.top, self.left])) * self.scale - 0.5
        out = np.rint(mapped).astype(np.int64)
        inside = present & (out[:, 0] >= 0) & (out[:, 0] < self.height) & (out[:, 1] >= 0) & (out[:, 1] < self.width)
        out[~inside] = MISSING
        return out

    def keypoints_from_frame(self, keypoints: np.ndarray) -> np.ndarray:
        """The inverse map: int (18, 2) frame keypoints -> float64 photo coordinates (-1 stays -1)."""
        kps = np.asarray(keypoints, dtype=np.float64)
        present = (kps >= 0).all(axis=1)
        out = (kps + 0.5) / self.scale - 0.5 + np.array([self.top, self.left])
        out[~present] = MISSING
        return out

    def crop(self, image: Image.Image, fill: str | tuple[int, int, int] = "edge") -> Image.Image:
        """The frame's view of an RGB photo: crop, pad where the box leaves the photo, resize (antialiased).

        fill: 'edge' repeats the border pixels (street backgrounds, Market) or an RGB colour (white for
        DeepFashion's studio backgrounds).
        """
        top, left, bottom, right = self.box
        y0, x0, y1, x1 = math.floor(top), math.floor(left), math.ceil(bottom), math.ceil(right)
        photo = np.asarray(to_rgb(image))
        h, w = photo.shape[:2]
        # the photo's pixels inside the integer box, then padding up to the box
        iy0, ix0, iy1, ix1 = max(y0, 0), max(x0, 0), min(y1, h), min(x1, w)
        if iy1 > iy0 and ix1 > ix0:
            inner = photo[iy0:iy1, ix0:ix1]
            pads = ((iy0 - y0, y1 - iy1), (ix0 - x0, x1 - ix1), (0, 0))
            if fill == "edge":
                region = np.pad(inner, pads, mode="edge")
            else:
                region = np.stack([np.pad(inner[..., c], pads[:2], constant_values=fill[c]) for c in range(3)], -1)
        else:  # the box misses the photo entirely
            colour = (128, 128, 128) if fill == "edge" else fill
            region = np.empty((y1 - y0, x1 - x0, 3), dtype=np.uint8)
            region[:] = colour
        source = (left - x0, top - y0, right - x0, bottom - y0)
        return Image.fromarray(region).resize((self.width, self.height), Image.Resampling.BICUBIC, box=source)


def fit_box(box: Box, height: int, width: int, margin: float = 0.0) -> Framing:
    """The framing that shows `box` (plus `margin` x its height on every side) whole and centred in the frame.

    The box is widened or heightened to the frame's aspect ratio around its centre, never squeezed.
    """
    top, left, bottom, right = (float(v) for v in box)
    box_h, box_w = bottom - top, right - left
    if not (math.isfinite(box_h) and math.isfinite(box_w)) or box_h < 0 or box_w < 0:
        raise ValueError(f"invalid person box {box}")
    pad = margin * box_h
    need_h, need_w = max(box_h + 2 * pad, 1.0), max(box_w + 2 * pad, 1.0)
    view_h = max(need_h, need_w * height / width)  # keep the frame's aspect ratio
    centre_y, centre_x = (top + bottom) / 2.0, (left + right) / 2.0
    scale = height / view_h
    return Framing(top=centre_y - view_h / 2.0, left=centre_x - width / scale / 2.0, scale=scale,
                   height=height, width=width)


def keypoint_box(keypoints: np.ndarray, origin: str = "pose") -> Box:
    """The person box implied by the keypoints' extent (room for head, feet and hands added).

    Needs at least two visible keypoints; InputError naming `origin` otherwise.
    """
    kps = np.asarray(keypoints, dtype=np.float64)
    if kps.shape != (NUM_KEYPOINTS, 2):
        raise ValueError(f"keypoints must have shape ({NUM_KEYPOINTS}, 2), got {kps.shape}")
    present = kps[(kps >= 0).all(axis=1)] + 0.5  # pixel centres
    if len(present) < 2:
        raise InputError(f"{origin}: {len(present)} visible keypoint(s); at least 2 are needed to place the "
                         "person (use another pose, or --framing full for an already cropped photo)")
    y0, x0 = present.min(axis=0)
    y1, x1 = present.max(axis=0)
    size = max(y1 - y0, x1 - x0, 1.0)  # a lying or crouching body: its longer side sets the room
    return (y0 - HEAD_ROOM * size, x0 - SIDE_ROOM * size, y1 + FOOT_ROOM * size, x1 + SIDE_ROOM * size)


def union_box(boxes: list[Box]) -> Box:
    """The smallest box holding every box (one framing for a whole pose sequence)."""
    array = np.asarray(boxes, dtype=np.float64)
    return (float(array[:, 0].min()), float(array[:, 1].min()), float(array[:, 2].max()), float(array[:, 3].max()))


def whole_image_framing(image_size: tuple[int, int], height: int, width: int) -> Framing:
    """The framing that shows the whole image, letterboxed to the frame's aspect ratio."""
    h, w = image_size
    return fit_box((0.0, 0.0, float(h), float(w)), height, width)


def identity_framing(height: int, width: int) -> Framing:
    """Keypoints already in the frame (annotation CSV rows): the identity map."""
    return Framing(top=0.0, left=0.0, scale=1.0, height=height, width=width)
