"""Re-id ranking (CMC, AP, INP, Market trapezoid AP) on the hand-computed case, and k-reciprocal re-ranking."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from metrics.reid_features import distance_matrix, fuse_poses
from metrics.reid_protocol import (jaccard_distance, jaccard_rerank, market_official_ap, nearest_neighbours,
                                   rank_eval, rerank_distance)
from util.io import InputError

GOLDEN = Path(__file__).parent / "data" / "reid_rerank_golden.json"

# the hand case: gallery g0..g5, queries q0..q3 (q3's pid 4 is not in the gallery)
G_PIDS = np.array([1, 2, 1, 3, 1, 2])
G_CAMS = np.array([0, 1, 1, 0, 2, 0])
Q_PIDS = np.array([1, 2, 3, 4])
Q_CAMS = np.array([0, 1, 1, 0])
DIST = np.array([[.1, .2, .3, .4, .5, .6],
                 [.9, .05, .2, .8, .7, .3],
                 [.5, .6, .7, .1, .8, .9],
                 [.3, .2, .5, .1, .6, .4]])


@pytest.mark.parametrize("float32", [False, True])
def test_hand_case_gives_exactly_its_table(float32):
    result = rank_eval(DIST, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, max_rank=5, float32=float32)
    assert result.num_valid == 3 and result.num_skipped == 1 and result.valid.tolist() == [True, True, True, False]
    np.testing.assert_allclose(result.ap, [0.5, 0.5, 1.0])
    np.testing.assert_allclose(result.inp, [0.5, 0.5, 1.0])
    assert result.first_hit.tolist() == [2, 2, 1]
    np.testing.assert_allclose(result.cmc, [1 / 3, 1, 1, 1, 1])
    summary = result.summary()
    assert summary["rank1"] == pytest.approx(33.3333333) and summary["rank5"] == pytest.approx(100)
    assert summary["mAP"] == pytest.approx(66.6666667) and summary["mINP"] == pytest.approx(66.6666667)
    assert summary["metric"] == pytest.approx(50.0)
    assert result.junk == 2  # g0 for q0 and g1 for q1 (same pid, same camera); q2 has none


def test_cmc_is_padded_with_one_past_a_short_gallery():
    result = rank_eval(DIST, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, max_rank=50)
    assert result.cmc.shape == (50,)
    np.testing.assert_allclose(result.cmc[5:], 1.0)  # ranks 6..50 (fast-reid's Cython path gives 1/3 at rank 6)
    np.testing.assert_allclose(result.cmc[1:5], 1.0)
    assert result.cmc[0] == pytest.approx(1 / 3)


def test_market_official_ap_is_the_trapezoid_of_compute_ap_m():
    official = market_official_ap(DIST, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS)
    np.testing.assert_allclose(official, [1 / 3, 1 / 4, 1.0])
    summary = rank_eval(DIST, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS).summary(ap=official)
    assert summary["mAP"] == pytest.approx(100 * np.mean([1 / 3, 1 / 4, 1]))  # 52.78
    assert summary["metric"] == pytest.approx((summary["mAP"] + 100 / 3) / 2)


def test_ties_keep_gallery_order_on_every_run():
    rng = np.random.default_rng(0)
    dist = rng.integers(0, 3, size=(30, 40)).astype(np.float64)  # many ties
    q_pids, g_pids = rng.integers(0, 5, 30), rng.integers(0, 5, 40)
    q_cams, g_cams = rng.integers(0, 3, 30), rng.integers(0, 3, 40)
    runs = [rank_eval(dist.copy(), q_pids, g_pids, q_cams, g_cams) for _ in range(3)]
    for other in runs[1:]:
        assert np.array_equal(other.ap, runs[0].ap) and np.array_equal(other.cmc, runs[0].cmc)
    # all-equal distances: the ranked list is the gallery order, so the first hit is the first kept match
    flat = rank_eval(np.zeros((1, 4)), np.array([7]), np.array([1, 7, 2, 7]), np.array([0]), np.array([1] * 4))
    assert flat.first_hit.tolist() == [2] and flat.ap[0] == pytest.approx((1 / 2 + 2 / 4) / 2)


def test_every_query_skipped_is_an_input_error():
    with pytest.raises(InputError, match="all 2 queries were skipped"):
        rank_eval(DIST[:2], np.array([8, 9]), G_PIDS, Q_CAMS[:2], G_CAMS)
    # a match only in the query's own camera is junk: skipped as well
    with pytest.raises(InputError, match="skipped"):
        rank_eval(np.zeros((1, 2)), np.array([1]), np.array([1, 2]), np.array([0]), np.array([0, 0]))


def test_junk_mask_drops_extra_items():
    junk = np.zeros(DIST.shape, dtype=bool)
    junk[0, 2] = True  # q0's first true match g2 becomes junk: its kept list is g1 x, g3 x, g4 v, g5 x
    result = rank_eval(DIST, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, junk_mask=junk)
    assert result.first_hit[0] == 3 and result.ap[0] == pytest.approx(1 / 3) and result.junk == 3


def test_bad_shapes_are_input_errors():
    with pytest.raises(InputError, match="g_pids has shape"):
        rank_eval(DIST, Q_PIDS, G_PIDS[:5], Q_CAMS, G_CAMS)
    with pytest.raises(InputError, match="junk_mask has shape"):
        rank_eval(DIST, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, junk_mask=np.zeros((2, 2), bool))


def test_distances_are_fast_reids():
    q, g = torch.randn(3, 8), torch.randn(5, 8)
    np.testing.assert_allclose(distance_matrix(q, g, "euclidean"), torch.cdist(q, g).pow(2).numpy(), atol=1e-4)
    np.testing.assert_allclose(distance_matrix(q, g, "cosine"),
                               1 - F.cosine_similarity(q[:, None], g[None], dim=2).numpy(), atol=1e-6)


def test_pose_fusion_normalises_each_pose_first():
    poses = torch.tensor([[[3.0, 4.0], [0.0, 2.0]]])  # one image, 2 poses
    np.testing.assert_allclose(fuse_poses(poses, "avg"), [[0.3, 0.9]])
    np.testing.assert_allclose(fuse_poses(poses, "max"), [[0.6, 1.0]])
    np.testing.assert_allclose(fuse_poses(poses, "concat"), [[0.6, 0.8, 0.0, 1.0]])


# ---------------------------------------------------------------- re-ranking


def clustered(n_clusters=5, per=10, dim=12, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, dim))
    return (np.repeat(centres, per, axis=0) + 0.4 * rng.standard_normal((n_clusters * per, dim))).astype(np.float32)


def test_jaccard_range_zero_diagonal_and_symmetry():
    features = clustered()
    for k1, k2 in ((20, 6), (8, 1)):
        jaccard = jaccard_distance(features, k1, k2)
        assert jaccard.shape == (50, 50) and jaccard.min() >= 0 and jaccard.max() <= 1
        np.testing.assert_allclose(np.diag(jaccard), 0, atol=1e-12)
        np.testing.assert_allclose(jaccard, jaccard.T, atol=1e-12)
        labels = np.repeat(np.arange(5), 10)
        same = labels[:, None] == labels[None, :]
        assert jaccard[same & ~np.eye(50, dtype=bool)].mean() < jaccard[~same].mean()


def test_nearest_neighbours_are_exact_with_self_first_and_stable_ties():
    features = np.array([[0.0], [1.0], [1.0], [3.0]])
    assert nearest_neighbours(features, 3).tolist() == [[0, 1, 2], [1, 2, 0], [1, 2, 0], [3, 1, 2]]


def test_rerank_blocks_and_lambda():
    features = torch.tensor(clustered())
    q, g = features[:10], features[10:]
    block = jaccard_rerank(q, g, 20, 6)
    np.testing.assert_allclose(block, jaccard_distance(features, 20, 6)[:10, 10:])
    dist = distance_matrix(q, g, "cosine")
    np.testing.assert_allclose(rerank_distance(q, g, dist, lam=1.0), dist, atol=1e-7)
    with pytest.raises(InputError, match="k2"):
        jaccard_distance(features, 5, 6)


def test_rerank_matches_stored_fast_reid_values():
    """Stored values: fast-reid 1.4.0 (PyPI) `compute_jaccard_distance(search_option=3)` with faiss-cpu 1.15.1
    (exact IndexFlatL2 kNN), computed once on the features stored in the same file; the file names its source."""
    golden = json.loads(GOLDEN.read_text())
    assert golden["source"].startswith("fastreid") and "search_option=3" in golden["source"]
    features = np.array(golden["features"], dtype=np.float32)
    np.testing.assert_allclose(jaccard_distance(features, 20, 6), golden["jaccard_k1_20_k2_6"], atol=1e-6)
    np.testing.assert_allclose(jaccard_distance(features, 8, 1), golden["jaccard_k1_8_k2_1"], atol=1e-6)
    n = golden["num_query"]
    q, g = torch.tensor(features[:n]), torch.tensor(features[n:])
    reranked = rerank_distance(q, g, distance_matrix(q, g, "cosine"), 20, 6, 0.3, normalize=True)
    np.testing.assert_allclose(reranked, golden["rerank_cosine_k1_20_k2_6_lambda_0.3"], atol=1e-6)
