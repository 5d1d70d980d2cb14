"""Inception Score over 1008-class predictions (the improved-GAN code PATN uses: tengteng95/Pose-Transfer
`tool/inception_score.py`).

IS = exp(mean over x of KL(p(y|x) || p(y))) per split, p(y) the split's mean prediction, natural log; the
score is the mean (and std) over splits. Split i holds rows [i·N//s, (i+1)·N//s). The reference listed files
unsorted, so its splits depend on the machine; this evaluator sorts by name and says so.
"""
from __future__ import annotations

import numpy as np
import torch

from util.io import InputError

SPLITS = 10


def softmax_probabilities(logits: torch.Tensor) -> np.ndarray:
    """float64 (N, classes) softmax of logits (N, classes)."""
    return torch.softmax(logits.double(), dim=1).cpu().numpy()


def inception_score(probabilities: np.ndarray, splits: int = SPLITS) -> tuple[float, float, list[float]]:
    """(mean, std, per-split scores) of the Inception Score of `probabilities` (N, classes), rows summing to 1."""
    n = len(probabilities)
    if n < splits:
        raise InputError(f"the Inception Score needs at least {splits} images ({splits} splits), got {n}")
    scores = []
    for i in range(splits):
        part = probabilities[i * n // splits:(i + 1) * n // splits]
        marginal = part.mean(axis=0, keepdims=True)
        # 0 · log 0 = 0: a class that a float64 softmax rounds to 0 adds nothing (the reference gave NaN)
        ratio = np.divide(part, marginal, out=np.ones_like(part), where=part > 0)
        kl = part * np.log(ratio)
        scores.append(float(np.exp(kl.sum(axis=1).mean())))
    return float(np.mean(scores)), float(np.std(scores)), scores
