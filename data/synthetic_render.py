"""The renderer of the synthetic datasets: people drawn as shapes (limbs, torso, head) on real skeletons.

Every identity keeps its clothes (colours, stripes, sleeves, bag) across its images; the head shows a face
only from the front and a chest badge marks the front, and the cross-body bag hangs from one fixed shoulder,
so the target pose really decides the target image. data/synthetic_build.py lays out the dataset.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from data.pose_bank import FRAMES

SUPERSAMPLE = 2  # draw at 2x and box-filter down: smooth edges without blur
FLIP_PAIRS = ((2, 5), (3, 6), (4, 7), (8, 11), (9, 12), (10, 13), (14, 15), (16, 17))
SKIN = ((255, 224, 196), (241, 194, 150), (224, 172, 105), (198, 134, 66), (141, 85, 36), (92, 58, 35))
HAIR = ((25, 20, 15), (60, 40, 25), (110, 75, 40), (205, 170, 95), (150, 150, 150), (150, 65, 30))


def hsv_colour(h: float, s: float, v: float) -> tuple[int, int, int]:
    """HSV in [0, 1] (hue wrapped) -> an RGB triple of 0..255 ints."""
    return tuple(int(round(c * 255)) for c in colorsys.hsv_to_rgb(h % 1.0, s, v))


def jitter_colour(rng: np.random.Generator, colour: tuple[int, ...], amount: int = 10) -> tuple[int, int, int]:
    """`colour` with each channel moved by up to +-`amount`, clipped to 0..255."""
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)


@dataclass(frozen=True)
class Look:
    """One identity's appearance, fixed across all of its images."""
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    long_hair: bool
    shirt: tuple[int, int, int]
    stripes: str  # "none", "across" (perpendicular to the spine) or "along"
    stripe: tuple[int, int, int]
    stripe_period: float  # in torso lengths
    long_sleeves: bool
    lower: str  # "trousers", "shorts", "skirt" or "dress"
    trousers: tuple[int, int, int]
    shoes: tuple[int, int, int]
    badge: tuple[int, int, int]
    bag: tuple[int, int, int] | None
    bag_shoulder: int  # 2 (right) or 5 (left): the strap's shoulder, a left/right cue


def random_look(rng: np.random.Generator, category: str = "") -> Look:
    """Draw an identity's clothes; a DeepFashion category nudges the lower garment."""
    shirt_hue = rng.random()
    shirt = hsv_colour(shirt_hue, rng.uniform(0.35, 0.9), rng.uniform(0.35, 0.95))
    lower = str(rng.choice(["trousers", "trousers", "shorts"]))
    if category in ("Dresses", "Skirts", "Shorts"):
        lower = {"Dresses": "dress", "Skirts": "skirt", "Shorts": "shorts"}[category]
    return Look(
        skin=jitter_colour(rng, SKIN[rng.integers(len(SKIN))], 8),
        hair=jitter_colour(rng, HAIR[rng.integers(len(HAIR))], 8),
        long_hair=bool(rng.random() < 0.4),
        shirt=shirt,
        stripes=str(rng.choice(["none", "none", "across", "along"])),
        stripe=hsv_colour(shirt_hue + rng.uniform(0.3, 0.7), rng.uniform(0.2, 0.8), rng.uniform(0.2, 1.0)),
        stripe_period=float(rng.uniform(0.12, 0.25)),
        long_sleeves=bool(rng.random() < 0.5),
        lower=lower,
        trousers=hsv_colour(rng.random(), rng.uniform(0.1, 0.7), rng.uniform(0.15, 0.65)),
        shoes=hsv_colour(rng.random(), rng.uniform(0.0, 0.5), float(rng.choice([0.12, 0.25, 0.9]))),
        badge=hsv_colour(rng.random(), rng.uniform(0.6, 1.0), rng.uniform(0.7, 1.0)),
        bag=hsv_colour(rng.random(), rng.uniform(0.3, 0.9), rng.uniform(0.2, 0.8)) if rng.random() < 0.75 else None,
        bag_shoulder=int(rng.choice([2, 5])),
    )


def background(rng: np.random.Generator, fmt: str, base: tuple[int, int, int]) -> np.ndarray:
    """(H, W, 3) float: a smooth gradient plus a faint low-frequency texture around `base`."""
    h, w = FRAMES[fmt]
    amp = 6.0 if fmt == "fashion" else 10.0
    top, bottom = (np.asarray(base, float) + rng.uniform(-amp, amp, 3) for _ in range(2))
    ramp = np.linspace(0.0, 1.0, h)[:, None, None]
    coarse = rng.normal(0.0, amp / 3, (4, 3, 3)).astype(np.float32)
    texture = np.stack([np.asarray(Image.fromarray(coarse[..., c]).resize((w, h), Image.BILINEAR))
                        for c in range(3)], axis=-1)
    return np.clip(top * (1 - ramp) + bottom * ramp + texture, 0, 255)


def flip_pose(keypoints: np.ndarray, width: int) -> np.ndarray:
    """Mirror (18, 2) (y, x) keypoints: x -> W-1-x and left/right entries swapped; -1 stays -1."""
    out = np.array(keypoints, copy=True)
    vis = (out >= 0).all(axis=1)
    out[vis, 1] = width - 1 - out[vis, 1]
    for a, b in FLIP_PAIRS:
        out[[a, b]] = out[[b, a]]
    return out


def place_pose(bank_pose: np.ndarray, rng: np.random.Generator, fmt: str) -> np.ndarray:
    """Flip/scale/shift a bank pose; float (18, 2) with NaN for missing, integral where visible.

    The neck, shoulders and hips must stay inside the frame (so every image can be paired);
    other points may leave it and are then drawn but annotated as missing.
    """
    h, w = FRAMES[fmt]
    pose = np.asarray(bank_pose, float)
    if rng.random() < 0.5:
        pose = flip_pose(pose, w)
    pose[(pose < 0).any(axis=1)] = np.nan
    vis = ~np.isnan(pose[:, 0])
    centre = pose[vis].mean(axis=0)
    for attempt in range(10):
        scale = rng.uniform(0.92, 1.08) if attempt < 9 else 1.0
        shift = rng.uniform(-0.04, 0.04, 2) * (h, w) if attempt < 9 else np.zeros(2)
        placed = np.round(centre + scale * (pose - centre) + shift)
        body = placed[[1, 2, 5, 8, 11]]
        if (body >= 0).all() and (body[:, 0] < h).all() and (body[:, 1] < w).all():
            break
    return placed


def annotate(placed: np.ndarray, fmt: str) -> np.ndarray:
    """The drawn keypoints as int64 (18, 2); missing or outside the frame -> -1."""
    h, w = FRAMES[fmt]
    ok = ~np.isnan(placed[:, 0])
    ok[ok] = (placed[ok, 0] >= 0) & (placed[ok, 0] < h) & (placed[ok, 1] >= 0) & (placed[ok, 1] < w)
    out = np.full((18, 2), -1, dtype=np.int64)
    out[ok] = placed[ok].astype(np.int64)
    return out


class _Painter:
    """Draws on the supersampled canvas; takes keypoint (y, x) pixel indices of the final image."""

    def __init__(self, canvas: Image.Image, pose: np.ndarray, torso: float):
        self.canvas, self.pose, self.unit = canvas, pose, torso * SUPERSAMPLE
        self.draw = ImageDraw.Draw(canvas)

    def xy(self, p: np.ndarray) -> tuple[float, float]:
        return (p[1] * SUPERSAMPLE + (SUPERSAMPLE - 1) / 2, p[0] * SUPERSAMPLE + (SUPERSAMPLE - 1) / 2)

    def has(self, *idx: int) -> bool:
        return not np.isnan(self.pose[list(idx), 0]).any()

    def limb(self, a: np.ndarray, b: np.ndarray, width: float, colour, draw=None) -> None:
        """A thick segment with round ends (width in torso lengths)."""
        draw = draw or self.draw
        r = width * self.unit / 2
        draw.line([self.xy(a), self.xy(b)], fill=colour, width=max(1, int(round(2 * r))))
        for p in (a, b):
            x, y = self.xy(p)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)

    def disc(self, p: np.ndarray, rx: float, colour, ry: float | None = None, draw=None) -> None:
        x, y = self.xy(p)
        rx, ry = rx * self.unit, (ry or rx) * self.unit
        (draw or self.draw).ellipse([x - rx, y - ry, x + rx, y + ry], fill=colour)

    def textured(self, mask: Image.Image, look: Look, top: np.ndarray, down: np.ndarray, shade: float = 1.0) -> None:
        """Paste the shirt fabric (body-aligned stripes) through `mask`; `shade` < 1 darkens sleeves."""
        fabric = np.empty((self.canvas.height, self.canvas.width, 3), np.float32)
        fabric[:] = look.shirt
        if look.stripes != "none":
            ys, xs = np.mgrid[0:self.canvas.height, 0:self.canvas.width]
            ty, tx = self.xy(top)[1], self.xy(top)[0]
            axis = down if look.stripes == "across" else np.array([-down[1], down[0]])
            t = ((ys - ty) * axis[0] + (xs - tx) * axis[1]) / (self.unit * look.stripe_period)
            fabric[np.floor(t).astype(np.int64) % 2 == 1] = look.stripe
        self.canvas.paste(Image.fromarray((fabric * shade).astype(np.uint8)), (0, 0), mask)


def render_person(canvas: Image.Image, pose: np.ndarray, look: Look) -> None:
    """Draw one person on a supersampled canvas; `pose` is float (18, 2) (y, x), NaN = not drawn."""
    p = pose
    neck, rs, ls, rh, lh = p[1], p[2], p[5], p[8], p[11]
    mid_sh, mid_hip = (rs + ls) / 2, (rh + lh) / 2
    torso = max(float(np.linalg.norm(mid_hip - neck)), 4.0)
    down = (mid_hip - neck) / torso
    facing = (ls[1] - rs[1]) / torso  # > 0: the right shoulder is on the image's left, i.e. seen from the front
    pt = _Painter(canvas, p, torso)
    head = _head_centre(pt, down)
    face = pt.has(0) and facing > -0.15  # seen from the front or the side
    leg = look.trousers if look.lower == "trousers" else look.skin
    for hip, knee, ankle in ((8, 9, 10), (11, 12, 13)):  # legs
        if pt.has(hip, knee):
            pt.limb(p[hip], p[knee], 0.27, leg)
        if pt.has(knee, ankle):
            pt.limb(p[knee], p[ankle], 0.21, leg)
        if pt.has(hip, knee) and look.lower == "shorts":
            pt.limb(p[hip], p[hip] + 0.55 * (p[knee] - p[hip]), 0.29, look.trousers)
        if pt.has(ankle):
            pt.disc(p[ankle] + 0.06 * torso * down, 0.16, look.shoes, 0.09)
    mask = Image.new("L", canvas.size, 0)
    mdraw = ImageDraw.Draw(mask)
    if look.lower in ("skirt", "dress"):  # a trapezoid from the hips towards the knees
        knees = [p[k] if pt.has(k) else p[h] + 0.55 * torso * down for h, k in ((8, 9), (11, 12))]
        hem = [p[h] + 0.85 * (kn - p[h]) for h, kn in zip((8, 11), knees)]
        flare = (hem[1] - hem[0]) * 0.25
        shape = [pt.xy(rh - 0.1 * (lh - rh)), pt.xy(lh + 0.1 * (lh - rh)), pt.xy(hem[1] + flare), pt.xy(hem[0] - flare)]
        if look.lower == "dress":
            mdraw.polygon(shape, fill=255)
        else:
            pt.draw.polygon(shape, fill=look.trousers)
    if look.long_hair and face:  # behind the body when the face shows
        pt.disc(head + 0.35 * torso * down, 0.25, look.hair, 0.32)
    pt.limb(neck, head, 0.2, look.skin)  # under the collar and, from the back, under long hair
    mdraw.polygon([pt.xy(rs), pt.xy(neck), pt.xy(ls), pt.xy(lh), pt.xy(rh)], fill=255)
    pt.limb(mid_sh, mid_hip, 0.5, 255, mdraw)  # body depth when seen from the side
    for a, b in ((rs, rh), (ls, lh), (rs, ls)):
        pt.limb(a, b, 0.2, 255, mdraw)
    pt.textured(mask, look, neck, down)
    if look.long_hair and not face:  # over the back
        pt.disc(head + 0.35 * torso * down, 0.25, look.hair, 0.32)
    if facing > 0.15:  # chest badge: only the front shows it
        pt.disc(neck + 0.35 * (mid_hip - neck), 0.1, look.badge)
    if look.bag is not None:  # cross-body strap from a fixed shoulder to the opposite hip
        strap_from = p[look.bag_shoulder]
        strap_to = p[11] if look.bag_shoulder == 2 else p[8]
        pt.limb(strap_from, strap_to, 0.07, look.bag)
        pt.disc(strap_to + 0.05 * torso * down, 0.17, look.bag, 0.14)
    arm_mask = Image.new("L", canvas.size, 0)
    adraw = ImageDraw.Draw(arm_mask)
    for sh, el, wr in ((2, 3, 4), (5, 6, 7)):
        if pt.has(sh, el):
            pt.limb(p[sh], p[el], 0.19, 255, adraw)
        if pt.has(el, wr) and look.long_sleeves:
            pt.limb(p[el], p[wr], 0.15, 255, adraw)
    pt.textured(arm_mask, look, neck, down, shade=0.8)
    for sh, el, wr in ((2, 3, 4), (5, 6, 7)):
        if pt.has(el, wr) and not look.long_sleeves:
            pt.limb(p[el], p[wr], 0.14, look.skin)
        if pt.has(wr):
            pt.disc(p[wr], 0.09, look.skin)
    _draw_head(pt, look, head, down, face)


def _head_centre(pt: _Painter, down: np.ndarray) -> np.ndarray:
    """Mean of the visible face points (nose, eyes, ears), else above the neck along the spine."""
    p, neck = pt.pose, pt.pose[1]
    torso = pt.unit / SUPERSAMPLE
    head_pts = [p[i] for i in (0, 14, 15, 16, 17) if pt.has(i)]
    centre = np.mean(head_pts, axis=0) if head_pts else neck - 0.45 * torso * down
    if np.linalg.norm(centre - neck) > 0.8 * torso:  # a stray head point: keep the head on the neck
        centre = neck - 0.45 * torso * down
    return centre


def _draw_head(pt: _Painter, look: Look, centre: np.ndarray, down: np.ndarray, face: bool) -> None:
    """The head: a face with eyes from the front or side, only hair from the back."""
    p, torso = pt.pose, pt.unit / SUPERSAMPLE
    r = 0.24
    pt.disc(centre, r * 1.05, look.hair, r * 1.2)
    if face:
        pt.disc(centre + 0.06 * torso * down, r * 0.88, look.skin, r * 1.0)
        for eye in (14, 15):
            if pt.has(eye):
                pt.disc(p[eye], 0.035, (30, 25, 25))


def render_image(rng: np.random.Generator, fmt: str, bank_pose: np.ndarray, look: Look,
                 base: tuple[int, int, int]) -> tuple[Image.Image, np.ndarray]:
    """One (H, W) RGB image and its int64 (18, 2) annotation."""
    h, w = FRAMES[fmt]
    placed = place_pose(bank_pose, rng, fmt)
    bg = background(rng, fmt, base).astype(np.uint8)
    canvas = Image.fromarray(bg).resize((w * SUPERSAMPLE, h * SUPERSAMPLE), Image.NEAREST)
    render_person(canvas, placed, look)
    return canvas.resize((w, h), Image.BOX), annotate(placed, fmt)

