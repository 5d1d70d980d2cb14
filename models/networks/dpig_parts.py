"""DPIG's keypoint-derived inputs, batched on the batch's device: 7 part boxes, the pose vector, disc maps.

Ma et al., "Disentangled Person Image Generation", CVPR 2018; official TF code
charliememory/Disentangled-Person-Image-Generation: boxes from `datasets/convert_market.py`
(`get_part_bbox37`, first 7 parts) and `datasets/convert_DF.py` (`get_part_bbox`), the pose vector of
`trainer.py` (PoseAE input), the disc maps of `utils.py` (`tf_poseInflate`, `py_poseInflate`).

Keypoints are int64 (B, 18, 2) of (row, column) in the network frame (after flip and frame shift, as the
datasets' `source_keypoints` / `target_keypoints`); -1 marks a missing point, and a point outside the
H x W frame counts as missing. Computing everything here from keypoints (never flipping precomputed maps)
keeps left and right right under flips.
"""
from __future__ import annotations

import torch

NUM_KEYPOINTS = 18
MISSING = -1
DATA_FORMATS = ("market", "fashion")

# the first 7 of TF's 37 body regions (the only ones DPIG uses), 0-based COCO-18 joints
PART_NAMES = ("head", "upper body", "lower body", "left arm", "right arm", "left leg", "right leg")
PART_JOINTS = (
    (0, 1, 2, 5, 14, 15, 16, 17),
    (2, 3, 4, 5, 6, 7, 8, 11),
    (8, 9, 10, 11, 12, 13),
    (5, 6, 7),
    (2, 3, 4),
    (11, 12, 13),
    (8, 9, 10),
)
NUM_PARTS = len(PART_JOINTS)
EMPTY_BOX = (0, 0, 1, 1)  # TF's box for a part without a visible joint (its embedding is zeroed by vis)

MARKET_MARGIN = 6  # TF `get_part_bbox37(..., radius=6)`; the `--part_margin` default
MARKET_SINGLE_MARGIN = 10  # a part with exactly one visible joint
# DeepFashion: (margin, single-joint margin, nose lift), whole body vs not
FASHION_WHOLE_BODY = (10, 20, 10)
FASHION_PARTIAL = (20, 40, 25)
NOSE, R_KNEE, R_ANKLE, L_KNEE, L_ANKLE = 0, 9, 10, 12, 13


def _check_keypoints(keypoints: torch.Tensor) -> None:
    if keypoints.dim() != 3 or keypoints.shape[1:] != (NUM_KEYPOINTS, 2):
        raise ValueError(f"keypoints must have shape (B, {NUM_KEYPOINTS}, 2), got {tuple(keypoints.shape)}")
    if keypoints.dtype.is_floating_point or keypoints.dtype == torch.bool:
        raise ValueError(f"keypoints must be integer pixels, got {keypoints.dtype}")


def keypoint_visibility(keypoints: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """bool (B, 18): the point is annotated and inside the height x width frame."""
    _check_keypoints(keypoints)
    y, x = keypoints[..., 0], keypoints[..., 1]
    return (y >= 0) & (x >= 0) & (y < height) & (x < width)


def _part_membership(device: torch.device) -> torch.Tensor:
    member = torch.zeros(NUM_PARTS, NUM_KEYPOINTS, dtype=torch.bool, device=device)
    for part, joints in enumerate(PART_JOINTS):
        member[part, list(joints)] = True
    return member


def _margins(vis: torch.Tensor, data_format: str, margin: int | None) -> tuple[torch.Tensor, torch.Tensor,
                                                                                  torch.Tensor]:
    """Per sample (B,): the margin for >= 2 visible joints, for exactly 1, and the nose lift."""
    batch = vis.shape[0]
    if data_format == "market":
        margin = MARKET_MARGIN if margin is None else int(margin)
        if margin < 0:
            raise ValueError(f"the part margin must be >= 0, got {margin}")
        return (vis.new_full((batch,), margin, dtype=torch.int64),
                vis.new_full((batch,), MARKET_SINGLE_MARGIN, dtype=torch.int64),
                vis.new_zeros((batch,), dtype=torch.int64))
    if margin is not None:
        raise ValueError("a part margin applies to Market only; DeepFashion's margins follow its whole-body rule")
    # TF: whole body = one of l-knee/l-ankle and one of r-knee/r-ankle visible (its parts 14 and 16)
    whole = (vis[:, L_KNEE] | vis[:, L_ANKLE]) & (vis[:, R_KNEE] | vis[:, R_ANKLE])
    rules = [torch.where(whole, w, p) for w, p in zip(FASHION_WHOLE_BODY, FASHION_PARTIAL)]
    return rules[0], rules[1], rules[2]


def part_boxes(keypoints: torch.Tensor, height: int, width: int, data_format: str,
               margin: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The 7 body-region boxes of DPIG: int64 (B, 7, 4) [y1, x1, y2, x2] and float32 vis (B, 7) in {0, 1}.

    Box = [min y - m, min x - m, max y + m, max x + m] over the part's visible joints, clamped to
    [0, H-1] x [0, W-1]; m is the margin for >= 2 visible joints, the single-joint margin for exactly one.
    Market: m = `margin` (default 6, TF's converter; `--part_margin`), single 10. DeepFashion ('fashion';
    `margin` must be None): 10 / 20 for a whole body (a left and a right knee or ankle visible), else 20 / 40,
    and the nose row is first lifted by 10 / 25, floored at 0. Under pad256 the keypoints are already shifted
    +40 and the frame is 256x256 (TF's DeepFashion frame); under native it is 256x176, so x clamps to 175.
    A part without a visible joint gets [0, 0, 1, 1] and vis 0; a pose with no visible joint is valid input.
    """
    if data_format not in DATA_FORMATS:
        raise ValueError(f"unknown data format {data_format!r}; available: {', '.join(DATA_FORMATS)}")
    vis = keypoint_visibility(keypoints, height, width)  # (B, 18)
    multi, single, lift = _margins(vis, data_format, margin)
    y, x = keypoints[..., 0].long(), keypoints[..., 1].long()
    y = y.clone()
    y[:, NOSE] = torch.where(vis[:, NOSE], (y[:, NOSE] - lift).clamp(min=0), y[:, NOSE])
    selected = _part_membership(keypoints.device)[None] & vis[:, None, :]  # (B, 7, 18)
    count = selected.sum(-1)  # (B, 7)
    big = max(height, width) + 1

    def extreme(values: torch.Tensor, largest: bool) -> torch.Tensor:
        fill = torch.full_like(values, -1 if largest else big)[:, None, :].expand_as(selected)
        picked = torch.where(selected, values[:, None, :].expand_as(selected), fill)
        return picked.amax(-1) if largest else picked.amin(-1)

    m = torch.where(count >= 2, multi[:, None], single[:, None])  # (B, 7)
    boxes = torch.stack([(extreme(y, False) - m).clamp(min=0), (extreme(x, False) - m).clamp(min=0),
                         (extreme(y, True) + m).clamp(max=height - 1), (extreme(x, True) + m).clamp(max=width - 1)],
                        dim=-1)
    present = count > 0
    empty = torch.tensor(EMPTY_BOX, dtype=boxes.dtype, device=boxes.device)
    boxes = torch.where(present[..., None], boxes, empty)
    return boxes, present.to(torch.float32)


def pose_vector(keypoints: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """float32 (B, 54): the pose auto-encoder's input, keypoint-major (r̂, ĉ, v).

    r̂ = r / H * 2 - 1 and ĉ = c / W * 2 - 1 (division by H and W, not H-1; TF's float32 order of operations),
    v = 1 for a visible point; a missing one is (-1, -1, 0), TF's zeros normalised.
    """
    vis = keypoint_visibility(keypoints, height, width)
    kps = torch.where(vis[..., None], keypoints, torch.zeros_like(keypoints)).to(torch.float32)
    rows = kps[..., 0] / float(height) * 2.0 - 1.0
    cols = kps[..., 1] / float(width) * 2.0 - 1.0
    return torch.stack([rows, cols, vis.to(torch.float32)], dim=-1).reshape(keypoints.shape[0], -1)


def disc_pose_map(keypoints: torch.Tensor, height: int, width: int, radius: int = 4) -> torch.Tensor:
    """float32 (B, 18, H, W): +1 on every in-frame pixel (r+i, c+j) with i^2 + j^2 <= radius^2, -1 elsewhere.

    The generator's pose input (TF `tf_poseInflate`, whose 49 shifts are the radius-4 disc); a missing point
    gives an all -1 channel. The same maps as the datasets' `--pose_encoding tf_disc`.
    """
    vis = keypoint_visibility(keypoints, height, width)
    rows = torch.arange(height, device=keypoints.device)
    cols = torch.arange(width, device=keypoints.device)
    dy2 = (rows[None, None, :] - keypoints[..., 0:1]) ** 2  # (B, 18, H)
    dx2 = (cols[None, None, :] - keypoints[..., 1:2]) ** 2  # (B, 18, W)
    inside = (dy2[..., :, None] + dx2[..., None, :]) <= radius * radius
    inside &= vis[..., None, None]
    return inside.to(torch.float32) * 2.0 - 1.0


def decoded_pose_to_keypoints(decoded: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """int64 (B, 18, 2) network-frame keypoints from decoded (B, 18, 3) (r̂, ĉ, v̂) of the pose decoder.

    r = clip((r̂ + 1) / 2 * H, 0, H-1), truncated to int, likewise c (TF `py_poseInflate`, in float32); a point
    is kept only where v̂ == 1 (the decoder's straight-through-rounded visibility), else it is -1.
    Feed the result to `disc_pose_map` for the generator.
    """
    if decoded.dim() != 3 or decoded.shape[1:] != (NUM_KEYPOINTS, 3):
        raise ValueError(f"decoded poses must have shape (B, {NUM_KEYPOINTS}, 3), got {tuple(decoded.shape)}")
    values = decoded.detach().to(torch.float32)
    rows = ((values[..., 0] + 1.0) / 2.0 * height).clamp(0, height - 1)
    cols = ((values[..., 1] + 1.0) / 2.0 * width).clamp(0, width - 1)
    kps = torch.stack([rows, cols], dim=-1).to(torch.int64)  # truncation; the values are >= 0
    return torch.where((values[..., 2] == 1.0)[..., None], kps, torch.full_like(kps, MISSING))
