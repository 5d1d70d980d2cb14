"""DPIG's keypoint-derived inputs (models/networks/dpig_parts.py, the 'dpig' mask recipe, source_mask):
acceptance values computed with the official TF recipes on real annotation rows (tests/data)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data import find_dataset_class
from data.annotations import read_annotations
from data.base_dataset import PairDataset
from data.keypoints import FLIP_PERMUTATION, body_mask, disc_pose_maps, flip_keypoints
from models.networks.dpig_parts import (EMPTY_BOX, NUM_PARTS, PART_JOINTS, decoded_pose_to_keypoints,
                                        disc_pose_map, keypoint_visibility, part_boxes, pose_vector)
from util.io import InputError

ROWS = read_annotations(Path(__file__).parent / "data" / "dpig_annotation_rows.csv")
FULL, CLIPPED, EMPTY = "0161_c3s3_033053_04.jpg", "-1_c5s3_086412_11.jpg", "-1_c4s2_006742_05.jpg"
FASHION_ROW = "fasionWOMENDressesid0000553705_4full.jpg"  # first row of fasion-annotation-test.csv (256x256 x)
H, W = 128, 64


def batch(*names: str) -> torch.Tensor:
    return torch.from_numpy(np.stack([ROWS[n] for n in names]))


def random_poses(count: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    kps = np.stack([rng.integers(-3, height + 3, (count, 18)), rng.integers(-3, width + 3, (count, 18))], -1)
    kps[rng.random((count, 18)) < 0.25] = -1
    return torch.from_numpy(kps.astype(np.int64))


# --- disc maps -------------------------------------------------------------------------------------------

def test_disc_map_pixel_totals_and_equality_with_the_dataset_builder():
    names = (FULL, CLIPPED, EMPTY)
    maps = disc_pose_map(batch(*names), H, W)
    assert maps.shape == (3, 18, H, W) and maps.dtype == torch.float32
    assert set(maps.unique().tolist()) == {-1.0, 1.0}
    assert (maps == 1).sum(dim=(1, 2, 3)).tolist() == [813, 323, 0]
    for i, name in enumerate(names):
        assert torch.equal(maps[i], disc_pose_maps(ROWS[name], H, W))
    poses = random_poses(6, 256, 176, seed=1)  # points outside the frame and -1 both give all -1 channels
    maps = disc_pose_map(poses, 256, 176)
    for i in range(6):
        assert torch.equal(maps[i], disc_pose_maps(poses[i].numpy(), 256, 176))


# --- foreground mask (the 'dpig' recipe) -------------------------------------------------------------------

@pytest.mark.parametrize("name,radius7,radius4", [(CLIPPED, 1406, 933), (FULL, 3695, 2762), (EMPTY, 0, 0)])
def test_foreground_mask_pixel_counts(name, radius7, radius4):
    kps = ROWS[name]
    assert body_mask(kps, H, W, "dpig").sum() == radius7
    assert body_mask(kps, H, W, "dpig", radius=7).sum() == radius7
    assert np.array_equal(body_mask(kps, H, W, "dpig", radius=4), body_mask(kps, H, W, "pg2"))
    assert body_mask(kps, H, W, "pg2").sum() == radius4


def test_mask_radius_belongs_to_the_dpig_recipe():
    with pytest.raises(ValueError, match="dpig"):
        body_mask(ROWS[FULL], H, W, "pg2", radius=7)
    with pytest.raises(ValueError, match=">= 1"):
        body_mask(ROWS[FULL], H, W, "dpig", radius=0)


# --- part boxes ------------------------------------------------------------------------------------------

def test_market_boxes():
    boxes, vis = part_boxes(batch(FULL, CLIPPED, EMPTY), H, W, "market")
    assert boxes.shape == (3, NUM_PARTS, 4) and boxes.dtype == torch.int64 and vis.dtype == torch.float32
    assert boxes[0].tolist() == [[4, 14, 31, 52], [18, 8, 67, 63], [54, 8, 118, 49], [18, 40, 62, 63],
                                 [19, 8, 67, 26], [54, 8, 107, 49], [55, 23, 118, 40]]
    assert vis[0].tolist() == [1.0] * 7
    assert vis[1].tolist() == [1, 1, 1, 1, 0, 1, 0]
    assert boxes[1, 4].tolist() == boxes[1, 6].tolist() == list(EMPTY_BOX)
    assert (boxes[2] == torch.tensor(EMPTY_BOX)).all() and vis[2].sum() == 0  # no visible joint: valid input


def test_market_margins():
    kps = torch.full((1, 18, 2), -1, dtype=torch.int64)
    kps[0, 3] = torch.tensor([60, 30])  # right elbow alone: the single-joint margin 10
    boxes, vis = part_boxes(kps, H, W, "market")
    assert boxes[0, 4].tolist() == [50, 20, 70, 40] and boxes[0, 1].tolist() == [50, 20, 70, 40]
    assert vis[0].tolist() == [0, 1, 0, 0, 1, 0, 0]
    kps[0, 4] = torch.tensor([126, 62])  # two joints: margin 6 (--part_margin), clamped to 127 / 63
    assert part_boxes(kps, H, W, "market")[0][0, 4].tolist() == [54, 24, 127, 63]
    assert part_boxes(kps, H, W, "market", margin=2)[0][0, 4].tolist() == [58, 28, 127, 63]
    with pytest.raises(ValueError, match=">= 0"):
        part_boxes(kps, H, W, "market", margin=-1)


def test_deepfashion_boxes_through_the_pad256_frame(dataset_opt):
    """The shared DeepFashion row is in 256x256 coordinates: x_176 = x_256 - 40 gives the 256x176 image's
    keypoints, the pad256 dataset shifts them back by +40, and the boxes follow in the 256x256 frame."""
    kps_176 = ROWS[FASHION_ROW].copy()
    kps_176[kps_176[:, 1] >= 0, 1] -= 40
    dataset = PairDataset.in_memory(dataset_opt("fashion", fashion_frame="pad256"), (256, 176), "pad256")
    image = Image.new("RGB", (176, 256), (128, 128, 128))
    item = dataset.make_item(image, kps_176, image, kps_176, "a.jpg", "b.jpg")
    keypoints = item["source_keypoints"][None]
    assert keypoints[0].tolist() == ROWS[FASHION_ROW].tolist()
    boxes, vis = part_boxes(keypoints, 256, 256, "fashion")  # whole body: margins 10 / 20, nose lifted 10
    assert boxes[0].tolist() == [[4, 93, 59, 151], [39, 73, 127, 165], [104, 102, 226, 144], [39, 131, 127, 165],
                                 [39, 73, 126, 113], [104, 112, 224, 144], [104, 102, 226, 135]]
    assert vis[0].tolist() == [1.0] * 7
    with pytest.raises(ValueError, match="Market only"):
        part_boxes(keypoints, 256, 256, "fashion", margin=6)


def test_deepfashion_partial_body_rules_and_native_clamp():
    kps = torch.from_numpy(ROWS[FASHION_ROW].copy())[None]
    kps[0, [9, 10]] = -1  # no right knee or ankle: not a whole body, margins 20 / 40, nose lifted 25
    boxes, vis = part_boxes(kps, 256, 256, "fashion")
    assert boxes[0, 0].tolist() == [0, 83, 69, 161]  # nose y 24 - 25 -> 0 (floored), then - 20 -> 0
    assert boxes[0, 6].tolist() == [74, 72, 154, 152] and vis[0, 6] == 1  # r-hip alone: margin 40
    native = kps.clone()
    native[..., 1] = torch.where(native[..., 1] >= 0, native[..., 1] - 40, native[..., 1])
    boxes_native = part_boxes(native, 256, 176, "fashion")[0]
    assert boxes_native[0, 1].tolist() == [29, 23, 137, 135]  # x: 83 - 40 - 20 and 155 - 40 + 20
    native[0, 7, 1] = 170  # l-wrist near the right edge: x2 clamps to W-1 = 175
    assert part_boxes(native, 256, 176, "fashion")[0][0, 3, 3] == 175


@pytest.mark.parametrize("data_format,size", [("market", (128, 64)), ("fashion", (256, 176)), ("fashion", (256, 256))])
def test_flipped_swapped_keypoints_give_mirrored_swapped_boxes(data_format, size):
    height, width = size
    poses = random_poses(16, height, width, seed=2)
    flipped = torch.from_numpy(np.stack([flip_keypoints(p.numpy(), width) for p in poses]))
    boxes, vis = part_boxes(poses, height, width, data_format)
    fboxes, fvis = part_boxes(flipped, height, width, data_format)
    swap = [0, 1, 2, 4, 3, 6, 5]  # left arm <-> right arm, left leg <-> right leg
    mirrored = boxes[:, swap].clone()
    mirrored[..., 1], mirrored[..., 3] = width - 1 - boxes[:, swap, 3], width - 1 - boxes[:, swap, 1]
    shown = vis[:, swap].bool()
    assert torch.equal(fvis, vis[:, swap])
    assert torch.equal(fboxes[shown], mirrored[shown])
    assert (fboxes[~shown] == torch.tensor(EMPTY_BOX)).all()


def test_part_joints_follow_the_tf_table():
    assert PART_JOINTS[3] == (5, 6, 7) and PART_JOINTS[4] == (2, 3, 4)  # TF's comment for part 4 says 3, 6, 7
    assert sorted(set(sum(PART_JOINTS, ()))) == list(range(18))


# --- pose vector and decoded poses -------------------------------------------------------------------------

def test_pose_vector():
    vec = pose_vector(batch(FULL, EMPTY), H, W)
    assert vec.shape == (2, 54) and vec.dtype == torch.float32
    assert vec[0, :6].tolist() == pytest.approx([-0.7812, 0.1875, 1, -0.625, 0.0312, 1], abs=1e-4)
    assert vec[0, :6].tolist() == [-0.78125, 0.1875, 1.0, -0.625, 0.03125, 1.0]
    assert vec[0, 51:].tolist() == [-1.0, -1.0, 0.0]  # l-ear missing
    assert vec[1].view(18, 3).tolist() == [[-1.0, -1.0, 0.0]] * 18


@pytest.mark.parametrize("height,width", [(128, 64), (256, 256)])
def test_decoded_pose_round_trip(height, width):
    poses = random_poses(32, height, width, seed=3)
    vis = keypoint_visibility(poses, height, width)
    expected = torch.where(vis[..., None], poses, torch.full_like(poses, -1))
    back = decoded_pose_to_keypoints(pose_vector(poses, height, width).view(-1, 18, 3), height, width)
    assert back.dtype == torch.int64 and torch.equal(back, expected)
    assert torch.equal(disc_pose_map(back, height, width), disc_pose_map(poses, height, width))


def test_decoded_pose_clips_truncates_and_needs_v_equal_to_one():
    decoded = torch.zeros(1, 18, 3)
    decoded[0, :, 2] = 1.0
    decoded[0, 0] = torch.tensor([-1.5, 2.0, 1.0])  # outside: clipped to row 0, column W-1
    decoded[0, 1] = torch.tensor([0.0099, -0.0099, 1.0])  # (1.0099 / 2 * 128 = 64.6, 0.9901 / 2 * 64 = 31.7)
    decoded[0, 2, 2] = 0.0
    decoded[0, 3, 2] = 0.9  # not rounded: not drawn
    kps = decoded_pose_to_keypoints(decoded, H, W)
    assert kps[0, 0].tolist() == [0, 63] and kps[0, 1].tolist() == [64, 31]
    assert kps[0, 2].tolist() == kps[0, 3].tolist() == [-1, -1] and kps[0, 4].tolist() == [64, 32]
    with pytest.raises(ValueError, match=r"\(B, 18, 3\)"):
        decoded_pose_to_keypoints(torch.zeros(1, 54), H, W)


def test_bad_keypoint_tensors_are_rejected():
    with pytest.raises(ValueError, match=r"\(B, 18, 2\)"):
        part_boxes(torch.zeros(18, 2, dtype=torch.int64), H, W, "market")
    with pytest.raises(ValueError, match="integer"):
        pose_vector(torch.zeros(1, 18, 2), H, W)
    with pytest.raises(ValueError, match="data format"):
        part_boxes(batch(FULL), H, W, "deepfashion")


# --- the dataset: source_mask and --fg_mask_radius ----------------------------------------------------------

def test_items_carry_the_source_mask(tiny_market_root, dataset_opt):
    dataset = find_dataset_class("market")(dataset_opt("market", dataroot=str(tiny_market_root), mask_recipe="dpig"))
    item = dataset[4]
    for side in ("source", "target"):
        kps = item[f"{side}_keypoints"].numpy()
        mask = item[f"{side}_mask"]
        assert mask.shape == (1, H, W) and mask.dtype == torch.float32
        assert torch.equal(mask[0].bool(), torch.from_numpy(body_mask(kps, H, W, "dpig", radius=7)))
    smaller = find_dataset_class("market")(dataset_opt("market", dataroot=str(tiny_market_root), mask_recipe="dpig",
                                                       fg_mask_radius=4))[4]
    assert torch.equal(smaller["source_mask"][0].bool(),
                       torch.from_numpy(body_mask(item["source_keypoints"].numpy(), H, W, "pg2")))


def test_source_mask_under_pad256_is_padded_with_zeros(dataset_opt):
    kps_176 = ROWS[FASHION_ROW].copy()
    kps_176[kps_176[:, 1] >= 0, 1] -= 40
    dataset = PairDataset.in_memory(dataset_opt("fashion", fashion_frame="pad256", mask_recipe="dpig"),
                                    (256, 176), "pad256")
    image = Image.new("RGB", (176, 256))
    item = dataset.make_item(image, kps_176, image, ROWS[EMPTY], "a.jpg", "b.jpg")
    assert item["source_mask"].shape == (1, 256, 256) and item["target_mask"].sum() == 0
    assert torch.equal(item["source_mask"][0, :, 40:216].bool(), torch.from_numpy(body_mask(kps_176, 256, 176, "dpig")))
    assert item["source_mask"][..., :40].sum() == 0 and item["source_mask"][..., 216:].sum() == 0


@pytest.mark.parametrize("recipe,radius,message", [("pg2", 7, "dpig only"), ("none", 7, "dpig only"),
                                                   ("dpig", 0, ">= 1")])
def test_bad_fg_mask_radius(tiny_market_root, dataset_opt, recipe, radius, message):
    opt = dataset_opt("market", dataroot=str(tiny_market_root), mask_recipe=recipe, fg_mask_radius=radius)
    with pytest.raises(InputError, match=f"--fg_mask_radius.*{message}"):
        find_dataset_class("market")(opt)


def test_flipped_dataset_items_give_mirrored_boxes(tiny_market_root, dataset_opt):
    """Boxes come from the batch's (flipped, swapped) keypoints, never from mirrored maps (TF pitfall)."""
    plain = find_dataset_class("market")(dataset_opt("market", dataroot=str(tiny_market_root)))[2]
    opt = dataset_opt("market", is_train=True, phase="test", dataroot=str(tiny_market_root), flip_prob=1.0)
    flipped = find_dataset_class("market")(opt)[2]
    expected = flip_keypoints(plain["source_keypoints"].numpy(), W)
    assert flipped["source_keypoints"].tolist() == expected.tolist()
    boxes, vis = part_boxes(plain["source_keypoints"][None], H, W, "market")
    fboxes, fvis = part_boxes(flipped["source_keypoints"][None], H, W, "market")
    swap = [0, 1, 2, 4, 3, 6, 5]
    assert torch.equal(fvis, vis[:, swap])
    assert torch.equal(fboxes[..., 0], boxes[:, swap, 0]) and torch.equal(fboxes[..., 1], W - 1 - boxes[:, swap, 3])
    assert list(FLIP_PERMUTATION[:2]) == [0, 1]  # nose and neck keep their channels
