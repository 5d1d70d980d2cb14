"""fast-reid's bagtricks losses: label-smoothed cross-entropy and the batch-hard triplet loss.

Luo et al., "Bag of Tricks and A Strong Baseline for Deep Person Re-identification", CVPRW 2019; the formulas
follow fast-reid (https://github.com/JDAI-CV/fast-reid, `fastreid/modeling/losses/cross_entroy_loss.py`,
`triplet_loss.py`), which differ in details from textbook versions:
- the smoothing puts eps/(C-1) on every wrong class (PyTorch's `label_smoothing` puts eps/C on every class),
  and the summed per-sample losses are divided by the number of non-zero ones;
- the triplet distance is sqrt(clamp(d², 1e-12)) and the mining includes the anchor itself as a positive.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def smoothed_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, eps: float = 0.1) -> torch.Tensor:
    """fast-reid's label-smoothed CE: target 1 - eps on the label, eps/(C-1) elsewhere.

    logits (N, C), labels (N,) int64. The per-sample sums are divided by the count of non-zero ones (at
    least 1), not by N.
    """
    classes = logits.shape[1]
    log_probs = F.log_softmax(logits.float(), dim=1)
    with torch.no_grad():
        targets = torch.full_like(log_probs, eps / (classes - 1) if classes > 1 else 0.0)
        targets.scatter_(1, labels.view(-1, 1), 1.0 - eps)
    per_sample = (-targets * log_probs).sum(dim=1)
    nonzero = max(int(torch.count_nonzero(per_sample.detach())), 1)
    return per_sample.sum() / nonzero


def euclidean_distances(x: torch.Tensor) -> torch.Tensor:
    """(N, D) -> (N, N) Euclidean distances as fast-reid computes them: sqrt(clamp(|a|² + |b|² - 2ab, 1e-12))."""
    squared = (x * x).sum(dim=1, keepdim=True)
    d2 = squared + squared.t() - 2.0 * (x @ x.t())
    return d2.clamp(min=1e-12).sqrt()


def hard_triplet_loss(features: torch.Tensor, labels: torch.Tensor, margin: float = 0.3) -> torch.Tensor:
    """Batch-hard triplet loss on (N, D) features (bagtricks: the pre-BNNeck pooled features).

    For each anchor: the farthest same-label sample (the anchor itself counts, at distance 1e-6) and the
    nearest other-label sample; loss = mean(max(0, d_ap - d_an + margin)) (`margin_ranking_loss`).
    """
    if margin <= 0:
        raise ValueError(f"margin must be > 0 (the soft-margin variant is not implemented), got {margin}")
    dist = euclidean_distances(features.float())
    same = labels.view(-1, 1).eq(labels.view(1, -1)).to(dist.dtype)
    hardest_positive = (dist * same).max(dim=1).values
    hardest_negative = (dist * (1.0 - same) + same * 1e9).min(dim=1).values
    ones = torch.ones_like(hardest_negative)
    return F.margin_ranking_loss(hardest_negative, hardest_positive, ones, margin=margin)
