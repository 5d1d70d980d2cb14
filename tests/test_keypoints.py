"""Keypoint maths: heatmaps, disc maps, flips, body masks (with the reference recipes' pixel counts), shared CSVs."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from data.annotations import NUM_KEYPOINTS, read_annotations, read_pairs
from data.keypoints import (COCO_LIMBS, EVAL_LIMBS, FLIP_PAIRS, FLIP_PERMUTATION, KEYPOINT_NAMES, body_mask,
                            disc_pose_maps, evaluation_mask, flip_keypoints, gaussian_heatmaps, visible)

SHARED_ANNOTATIONS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "annotations"
H, W = 128, 64
needs_shared = pytest.mark.skipif(not SHARED_ANNOTATIONS.is_dir(), reason="../shared/data/annotations absent")


def random_pose(rng: np.random.Generator, height: int = H, width: int = W, missing: int = 3) -> np.ndarray:
    pose = np.stack([rng.integers(0, height, NUM_KEYPOINTS), rng.integers(0, width, NUM_KEYPOINTS)], 1)
    pose[rng.choice(NUM_KEYPOINTS, missing, replace=False)] = -1
    return pose.astype(np.int64)


def test_constants_follow_the_keypoint_table():
    assert len(KEYPOINT_NAMES) == NUM_KEYPOINTS and KEYPOINT_NAMES[2] == "r-shoulder"
    assert len(EVAL_LIMBS) == 23 and len(set(EVAL_LIMBS)) == 23 and len(COCO_LIMBS) == 19
    assert (1, 16) in EVAL_LIMBS and (2, 16) not in EVAL_LIMBS and (2, 16) in COCO_LIMBS
    perm = np.array(FLIP_PERMUTATION)
    assert (perm[perm] == np.arange(NUM_KEYPOINTS)).all()  # an involution
    for a, b in FLIP_PAIRS:
        assert KEYPOINT_NAMES[a].replace("r-", "") == KEYPOINT_NAMES[b].replace("l-", "")
        assert perm[a] == b and perm[b] == a
    assert [i for i in range(NUM_KEYPOINTS) if perm[i] == i] == [0, 1]


def test_visible_drops_missing_and_outside_points(standing_pose):
    pose = standing_pose("market")
    pose[0] = (H, 3)  # one row below the frame
    pose[3] = (5, -1)
    vis = visible(pose, H, W)
    assert not vis[0] and not vis[3] and not vis[16] and vis[1] and vis.sum() == 14


def test_gaussian_heatmaps_match_the_formula_and_peak_at_keypoints():
    rng = np.random.default_rng(0)
    pose = random_pose(rng)
    maps = gaussian_heatmaps(pose, H, W, sigma=6.0)
    assert maps.shape == (18, H, W) and maps.dtype == torch.float32
    rows, cols = np.mgrid[:H, :W]
    for k in range(NUM_KEYPOINTS):
        if pose[k, 0] < 0:
            assert maps[k].abs().sum() == 0  # missing -> empty channel
            continue
        y, x = pose[k]
        expected = np.exp(-((rows - y) ** 2 + (cols - x) ** 2) / (2 * 36.0))  # whole frame, no truncation
        np.testing.assert_allclose(maps[k].numpy(), expected, rtol=1e-6, atol=1e-30)
        assert maps[k, y, x] == 1.0
        assert divmod(int(maps[k].argmax()), W) == (y, x)


def test_heatmap_value_six_pixels_away():
    pose = np.full((18, 2), -1, dtype=np.int64)
    pose[4] = (60, 30)
    maps = gaussian_heatmaps(pose, H, W)
    for y, x in ((66, 30), (54, 30), (60, 36), (60, 24)):
        assert maps[4, y, x].item() == pytest.approx(math.exp(-0.5), rel=1e-6)
    assert maps[4, 60 + 12, 30].item() == pytest.approx(math.exp(-2.0), rel=1e-6)
    assert maps.sum(dim=(1, 2)).nonzero().flatten().tolist() == [4]


def test_no_visible_keypoint_gives_empty_maps_and_masks():
    pose = np.full((18, 2), -1, dtype=np.int64)
    assert gaussian_heatmaps(pose, H, W).abs().sum() == 0
    assert (disc_pose_maps(pose, H, W) == -1).all()
    for mask in (body_mask(pose, H, W, "pg2"), body_mask(pose, H, W, "hpt"), evaluation_mask(pose, H, W)):
        assert mask.shape == (H, W) and mask.dtype == bool and not mask.any()


def test_disc_pose_maps_are_radius_four_discs_in_plus_minus_one():
    pose = np.full((18, 2), -1, dtype=np.int64)
    pose[0] = (50, 30)  # interior: the full disc
    pose[1] = (0, 0)  # corner: clipped to a quarter disc plus its two edges
    maps = disc_pose_maps(pose, H, W)
    assert set(maps.unique().tolist()) == {-1.0, 1.0}
    assert int((maps[0] == 1).sum()) == 49  # integer points with i^2 + j^2 <= 16
    assert maps[0, 54, 30] == 1 and maps[0, 55, 30] == -1 and maps[0, 53, 33] == -1
    assert int((maps[1] == 1).sum()) == 17
    assert (maps[2:] == -1).all()


def test_flip_mirrors_x_and_swaps_left_and_right(standing_pose):
    pose = standing_pose("market")
    pose[17] = (10, 20)  # l-ear visible, r-ear (16) missing
    flipped = flip_keypoints(pose, W)
    assert tuple(flipped[2]) == (pose[5, 0], W - 1 - pose[5, 1])  # new r-shoulder = mirrored l-shoulder
    assert tuple(flipped[0]) == (pose[0, 0], W - 1 - pose[0, 1])  # the nose stays channel 0
    assert tuple(flipped[16]) == (10, W - 1 - 20) and tuple(flipped[17]) == (-1, -1)
    np.testing.assert_array_equal(flip_keypoints(flipped, W), pose)


def test_heatmaps_of_flipped_keypoints_are_mirrored_heatmaps_with_swapped_channels():
    pose = random_pose(np.random.default_rng(1))
    direct = gaussian_heatmaps(flip_keypoints(pose, W), H, W)
    mirrored = gaussian_heatmaps(pose, H, W).flip(-1)[list(FLIP_PERMUTATION)]
    assert torch.equal(direct, mirrored)
    assert not torch.equal(direct, gaussian_heatmaps(pose, H, W).flip(-1))  # the swap matters
    masks = body_mask(flip_keypoints(pose, W), H, W, "hpt"), body_mask(pose, H, W, "hpt")[:, ::-1]
    assert (masks[0] == masks[1]).all()


def test_zero_length_limb_is_skipped_by_the_evaluation_mask():
    pose = np.full((18, 2), -1, dtype=np.int64)
    pose[1] = pose[2] = (40, 30)  # neck and r-shoulder on the same pixel
    mask = evaluation_mask(pose, H, W)
    assert mask[40, 30] and 30 <= mask.sum() <= 60  # just the disc (37 px) after closing


def test_unknown_mask_recipe_is_rejected(standing_pose):
    with pytest.raises(ValueError, match="hpt"):
        body_mask(standing_pose("market"), H, W, "fat")


# --- pixel counts of the reference recipes (TF PG2 `_getPoseMask`, HPT `key_point_to_mask`, PATN
# `produce_ma_mask`; listed in docs/models/pg2.md and docs/evaluation.md) on the shared Market test annotations

@pytest.fixture(scope="module")
def market_test_annotations():
    if not SHARED_ANNOTATIONS.is_dir():
        pytest.skip("../shared/data/annotations absent")
    return read_annotations(SHARED_ANNOTATIONS / "market-annotation-test.csv")


@pytest.mark.parametrize("name,vis,pg2,hpt,evaluation", [
    ("-1_c5s3_086412_11.jpg", 7, 933, 1240, 935),
    ("0161_c3s3_033053_04.jpg", 17, 2762, 3403, 2759),
    ("-1_c4s2_006742_05.jpg", 0, 0, 0, 0),
])
def test_mask_acceptance_pixel_counts(market_test_annotations, name, vis, pg2, hpt, evaluation):
    pose = market_test_annotations[name]
    assert visible(pose, H, W).sum() == vis
    assert body_mask(pose, H, W, "pg2").sum() == pg2
    assert body_mask(pose, H, W, "hpt").sum() == hpt
    assert evaluation_mask(pose, H, W).sum() == evaluation


def test_mask_mean_coverage_matches_the_reference_figures(market_test_annotations):
    first = list(market_test_annotations.values())[:2000]
    assert np.mean([body_mask(k, H, W, "pg2").mean() for k in first]) == pytest.approx(0.2363, abs=5e-5)
    full = [k for k in first if visible(k, H, W).all()]
    assert len(full) == 114
    assert np.mean([body_mask(k, H, W, "pg2").mean() for k in full]) == pytest.approx(0.3249, abs=5e-5)
    assert np.mean([body_mask(k, H, W, "hpt").mean() for k in full]) == pytest.approx(0.4193, abs=5e-5)
    assert np.mean([evaluation_mask(k, H, W).mean() for k in full]) == pytest.approx(0.3182, abs=5e-5)


# --- the shared CSVs: every row parses -------------------------------------------------------------------

def data_rows(path) -> int:
    return sum(1 for line in path.read_text().splitlines()[1:] if line.strip())


@needs_shared
@pytest.mark.parametrize("path", sorted(SHARED_ANNOTATIONS.glob("*.csv")) if SHARED_ANNOTATIONS.is_dir() else [],
                         ids=lambda p: p.name)
def test_every_shared_csv_parses(path):
    expected = {"market-annotation-train.csv": 12936, "market-annotation-test.csv": 19732,
                "market-pairs-test.csv": 12000, "fasion-annotation-test.csv": 4061, "fasion-pairs-test.csv": 8670}
    if "-pairs-" in path.name:
        pairs = read_pairs(path)
        assert len(pairs) == data_rows(path)
        annotations = read_annotations(path.with_name(path.name.replace("-pairs-", "-annotation-")))
        assert all(a in annotations and b in annotations for a, b in pairs)
    else:
        rows = read_annotations(path)
        assert len(rows) == data_rows(path)
        assert all(k.shape == (18, 2) and k.dtype == np.int64 for k in rows.values())
    if path.name in expected:
        assert data_rows(path) == expected[path.name]
