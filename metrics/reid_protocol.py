"""Re-id ranking: CMC, AP, INP (fast-reid's ReidEvaluator rule) and the Market-1501 trapezoid AP.

The matching rule is that of fast-reid (JDAI-CV/fast-reid `fastreid/evaluation/rank.py::eval_market1501`,
itself from torchreid) and of the official Market-1501 MATLAB code (Zheng et al., ICCV 2015): for a query
with pid p and camera c, gallery items with pid p *and* camera c are junk and leave the ranked list; a
query whose remaining list holds no match is skipped. INP is Ye et al.'s inverse negative penalty
(TPAMI 2021). Three defects of fast-reid's code are fixed here, never copied:
- the ranking uses a stable argsort, so ties keep gallery order (NumPy's default quicksort does not);
- each query's CMC is 1 from its first hit to `max_rank`, also past the end of a short kept list (the
  Python path fails on a ragged array there, the Cython path returns a stale buffer value);
- "every query skipped" is an InputError, not an assertion.
Re-ranking is k-reciprocal encoding (Zhong et al., CVPR 2017) in the form fast-reid's evaluator uses
(`fastreid/utils/compute_dist.py::compute_jaccard_distance`), with exact kNN in torch instead of faiss on a
GPU (fast-reid's evaluator path needs CUDA) and a stable sort.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from util.io import InputError

ROW_CHUNK = 256  # queries ranked at once (a (256, 15913) int64 order is 33 MB)


@dataclass
class RankResult:
    """Per-query results of `rank_eval`; AP/INP/first-hit arrays hold the valid queries only."""

    cmc: np.ndarray  # (max_rank,) fraction of valid queries with a hit within rank k
    ap: np.ndarray  # (valid,) fast-reid AP: mean precision at each hit
    inp: np.ndarray  # (valid,) hits / rank of the last hit
    first_hit: np.ndarray  # (valid,) 1-based rank of the first hit in the kept list
    valid: np.ndarray  # (Q,) bool: the query had at least one match
    junk: int  # gallery items removed from the ranked lists, summed over valid queries
    ap_official: np.ndarray  # (valid,) Market-1501 compute_AP.m AP (trapezoid), see market_official_ap

    @property
    def num_valid(self) -> int:
        return int(self.valid.sum())

    @property
    def num_skipped(self) -> int:
        return int((~self.valid).sum())

    def summary(self, ap: np.ndarray | None = None) -> dict[str, float]:
        """Rank-1/5/10, mAP, mINP and `metric` = (mAP + Rank-1)/2, in percent (fast-reid's report).

        `ap` replaces the per-query AP (e.g. `market_official_ap`) for mAP and `metric`.
        """
        ap = self.ap if ap is None else ap
        ranks = {f"rank{k}": 100.0 * float(self.cmc[k - 1]) for k in (1, 5, 10) if k <= len(self.cmc)}
        mean_ap = 100.0 * float(np.mean(ap))
        return {**ranks, "mAP": mean_ap, "mINP": 100.0 * float(np.mean(self.inp)),
                "metric": (mean_ap + ranks["rank1"]) / 2}


def _check_shapes(dist: np.ndarray, q_pids, g_pids, q_cams, g_cams, junk_mask) -> None:
    if dist.ndim != 2:
        raise InputError(f"distance matrix must be 2-D (queries, gallery), got shape {dist.shape}")
    q, g = dist.shape
    for name, array, size in (("q_pids", q_pids, q), ("q_cams", q_cams, q), ("g_pids", g_pids, g),
                              ("g_cams", g_cams, g)):
        if array.shape != (size,):
            raise InputError(f"{name} has shape {array.shape}, expected ({size},) for a {q}x{g} distance matrix")
    if junk_mask is not None and junk_mask.shape != dist.shape:
        raise InputError(f"junk_mask has shape {junk_mask.shape}, expected {dist.shape}")
    if g == 0 or q == 0:
        raise InputError(f"empty query or gallery set ({q} queries, {g} gallery images)")


def _kept_hits(dist, q_pids, g_pids, q_cams, g_cams, junk_mask, float32):
    """Yield (rows, kept (B, G) bool, hit (B, G) bool) in ranked order, a chunk of queries at a time."""
    for start in range(0, dist.shape[0], ROW_CHUNK):
        rows = np.arange(start, min(start + ROW_CHUNK, dist.shape[0]))
        block = dist[rows].astype(np.float32 if float32 else np.float64)  # the Cython path casts to float32
        order = np.argsort(block, axis=1, kind="stable")
        same_pid = g_pids[order] == q_pids[rows, None]
        junk = same_pid & (g_cams[order] == q_cams[rows, None])
        if junk_mask is not None:
            junk |= np.take_along_axis(junk_mask[rows], order, axis=1)
        kept = ~junk
        yield rows, kept, same_pid & kept


def rank_eval(dist, q_pids, g_pids, q_cams, g_cams, junk_mask=None, max_rank: int = 50,
              float32: bool = False) -> RankResult:
    """Rank the gallery for every query; CMC to `max_rank`, per-query AP and INP (fast-reid's definitions).

    dist (Q, G) distances (smaller = more similar); pids/cams integer arrays; junk_mask (Q, G) bool marks
    extra items to drop per query (e.g. the source of a generated query). `float32` casts the distances as
    fast-reid's Cython path does before sorting. Raises InputError when every query is skipped.
    """
    dist = np.asarray(dist)
    q_pids, g_pids, q_cams, g_cams = (np.asarray(a).astype(np.int64) for a in (q_pids, g_pids, q_cams, g_cams))
    junk_mask = None if junk_mask is None else np.asarray(junk_mask, dtype=bool)
    _check_shapes(dist, q_pids, g_pids, q_cams, g_cams, junk_mask)
    if max_rank < 1:
        raise InputError(f"max_rank must be >= 1, got {max_rank}")
    valid = np.zeros(dist.shape[0], dtype=bool)
    aps, officials, inps, firsts, junk_total = [], [], [], [], 0
    for rows, kept, hit in _kept_hits(dist, q_pids, g_pids, q_cams, g_cams, junk_mask, float32):
        position = np.cumsum(kept, axis=1)  # 1-based rank within the kept list (valid where kept)
        hits = np.cumsum(hit, axis=1)  # j: hits so far
        n = hits[:, -1]
        ok = n > 0
        valid[rows] = ok
        junk_total += int((~kept[ok]).sum())
        r = np.maximum(position, 1).astype(np.float64)
        precision = np.where(hit, hits / r, 0.0)
        aps.append(precision[ok].sum(axis=1) / n[ok])
        # compute_AP.m: the trapezoid between the precision one kept item earlier (1 before the first) and here
        previous = np.where(r > 1, (hits - 1) / np.maximum(r - 1, 1), 1.0)
        officials.append(np.where(hit, (previous + precision) / 2, 0.0)[ok].sum(axis=1) / n[ok])
        last = np.where(hit, position, 0).max(axis=1)
        inps.append(n[ok] / last[ok])
        first = np.where(hit, position, np.iinfo(np.int64).max).min(axis=1)
        firsts.append(first[ok])
    if not valid.any():
        raise InputError(f"no query has a match in the gallery: all {dist.shape[0]} queries were skipped "
                         "(wrong pids, or every match is junk under the camera rule)")
    first_hit = np.concatenate(firsts)
    # CMC_i(k) = 1 from the first hit on: this also pads a kept list shorter than max_rank with 1
    cmc = (first_hit[:, None] <= np.arange(1, max_rank + 1)[None, :]).mean(axis=0)
    return RankResult(cmc, np.concatenate(aps), np.concatenate(inps), first_hit, valid, junk_total,
                      np.concatenate(officials))


def market_official_ap(dist, q_pids, g_pids, q_cams, g_cams, junk_mask=None, float32: bool = False) -> np.ndarray:
    """Per valid query, the AP of Liang Zheng's Market-1501 `compute_AP.m` (trapezoid over recall).

    Same good/junk rule as `rank_eval`; at the j-th of n hits, at kept rank r_j, the area added is
    (1/n)·(p(r_j - 1) + j/r_j)/2, where p(r) is the precision after r kept items and p(0) = 1.
    """
    return rank_eval(dist, q_pids, g_pids, q_cams, g_cams, junk_mask, 1, float32).ap_official


# ---------------------------------------------------------------- re-ranking (k-reciprocal encoding)

KNN_CHUNK = 512  # rows of the (N, N) squared-distance matrix sorted at once
JACCARD_CHUNK = 128  # rows of the Jaccard distance computed at once


def nearest_neighbours(features, k: int) -> np.ndarray:
    """(N, k) int64: each row's k nearest rows by squared L2, itself included, ties in index order.

    Exact (float64, every pair), on the features' device; fast-reid asks faiss for the same list.
    """
    import torch

    f = torch.as_tensor(features).double()
    squares = (f * f).sum(dim=1)
    out = []
    for start in range(0, f.shape[0], KNN_CHUNK):
        block = f[start:start + KNN_CHUNK]
        d = squares[start:start + KNN_CHUNK, None] + squares[None, :] - 2.0 * block @ f.T
        out.append(torch.argsort(d, dim=1, stable=True)[:, :k].cpu().numpy())
    return np.concatenate(out).astype(np.int64)


def _reciprocal(rank: np.ndarray, k: int) -> list[np.ndarray]:
    """R(i, k): the entries of rank[i, :k+1] whose own rank[., :k+1] lists i."""
    forward = rank[:, :k + 1]  # (N, m); m = k+1, or fewer when the list is shorter
    backward = forward[forward]  # (N, m, m)
    mutual = (backward == np.arange(len(rank))[:, None, None]).any(axis=2)
    return [forward[i][mutual[i]] for i in range(len(rank))]


def _encoding(features: np.ndarray, rank: np.ndarray, k1: int):
    """Sparse V (CSR, float64): V[i, S_i] = softmax(-|f_i - f_s|^2) over the expanded reciprocal set S_i."""
    from scipy import sparse

    n = len(rank)
    near, near_half = _reciprocal(rank, k1), _reciprocal(rank, int(np.around(k1 / 2)))
    half_sets = [set(h.tolist()) for h in near_half]
    rows, cols, vals = [], [], []
    for i in range(n):
        members = set(near[i].tolist())
        expanded = set(members)
        for candidate in near[i].tolist():
            half = half_sets[candidate]
            if len(half & members) > 2 / 3 * len(half):
                expanded |= half
        index = np.array(sorted(expanded), dtype=np.int64)
        d = ((features[index] - features[i]) ** 2).sum(axis=1)
        weights = np.exp(-(d - d.min()))
        rows.append(np.full(len(index), i))
        cols.append(index)
        vals.append(weights / weights.sum())
    return sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))


def _min_overlap(v_rows, v_csc, n: int) -> np.ndarray:
    """(B, N): sum_k min(V[b, k], V[j, k]) for the rows `v_rows` (CSR) against every row j of V."""
    sub = v_rows.tocoo()
    starts = v_csc.indptr[sub.col]
    lengths = v_csc.indptr[sub.col + 1] - starts
    offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
    other, value = v_csc.indices[offsets], v_csc.data[offsets]
    row, mine = np.repeat(sub.row, lengths), np.repeat(sub.data, lengths)
    size = v_rows.shape[0]
    total = np.bincount(row * n + other, weights=np.minimum(mine, value), minlength=size * n)
    return total.reshape(size, n)


def jaccard_distance(features, k1: int = 20, k2: int = 6, rows=None, columns=None) -> np.ndarray:
    """k-reciprocal Jaccard distance (Zhong et al. 2017, fast-reid's `compute_jaccard_distance`).

    features (N, D); returns float64 (len(rows), len(columns)) of the full (N, N) matrix (default: all).
    The neighbour lists hold k1 entries (self first), as fast-reid's faiss search returns them; k2 > 1
    averages V over each item's k2 nearest neighbours (local query expansion).
    """
    import torch

    feats = torch.as_tensor(features).double()  # the kNN runs on the features' device (a GPU when given)
    n = feats.shape[0]
    if not 1 <= k2 <= k1:
        raise InputError(f"re-ranking needs 1 <= k2 <= k1, got k1 {k1}, k2 {k2}")
    if n < 2:
        raise InputError(f"re-ranking needs at least 2 images, got {n}")
    rank = nearest_neighbours(feats, min(k1, n))
    v = _encoding(feats.cpu().numpy(), rank, k1)
    if k2 != 1:
        from scipy import sparse

        qe = sparse.csr_matrix((np.full(n * k2, 1.0 / k2), (np.repeat(np.arange(n), k2), rank[:, :k2].ravel())),
                               shape=(n, n))
        v = (qe @ v).tocsr()
    v_csc = v.tocsc()
    rows = np.arange(n) if rows is None else np.asarray(rows)
    columns = np.arange(n) if columns is None else np.asarray(columns)
    out = np.empty((len(rows), len(columns)))
    for start in range(0, len(rows), JACCARD_CHUNK):
        part = rows[start:start + JACCARD_CHUNK]
        m = _min_overlap(v[part], v_csc, n)[:, columns]
        out[start:start + len(part)] = np.maximum(1.0 - m / (2.0 - m), 0.0)
    return out


def jaccard_rerank(q_feat, g_feat, k1: int = 20, k2: int = 6) -> np.ndarray:
    """(Q, G) Jaccard distance between queries and gallery, computed on the joint set [q; g]."""
    import torch

    q, g = torch.as_tensor(q_feat), torch.as_tensor(g_feat)
    joint = torch.cat([q, g.to(q.dtype)], dim=0)
    return jaccard_distance(joint, k1, k2, rows=np.arange(len(q)), columns=np.arange(len(q), len(joint)))


def rerank_distance(q_feat, g_feat, dist, k1: int = 20, k2: int = 6, lam: float = 0.3,
                    normalize: bool = True) -> np.ndarray:
    """fast-reid's re-ranked distance: J·(1 - λ) + dist·λ, with `dist` the original metric distance.

    `normalize` L2-normalises the features first, as fast-reid does under the cosine metric.
    """
    import torch
    import torch.nn.functional as F

    q, g = torch.as_tensor(q_feat).double(), torch.as_tensor(g_feat).double()
    if normalize:
        q, g = F.normalize(q, dim=1), F.normalize(g, dim=1)
    if not 0.0 <= lam <= 1.0:
        raise InputError(f"--lambda must be in [0, 1], got {lam}")
    return jaccard_rerank(q, g, k1, k2) * (1.0 - lam) + np.asarray(dist, dtype=np.float64) * lam
