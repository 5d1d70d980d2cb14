"""FID: feature statistics, a numerically stable Fréchet distance, and a real-set statistics cache.

As in the GFLA/DPTN evaluators (PangzeCheung/Dual-task-Pose-Transformer-Network `metrics/metrics.py`).
Statistics are the float64 mean and `np.cov(rowvar=False)` of the pool3 features. The
distance is ‖μ1 - μ2‖² + tr Σ1 + tr Σ2 - 2 tr (Σ1 Σ2)^½, with the trace of the square root taken from the
eigenvalues of Σ1^½ Σ2 Σ1^½ (symmetric, positive semi-definite, similar to Σ1 Σ2): no complex parts, no
1e-6 fallback, and the same value as the scipy `sqrtm` reference wherever that one is accurate.

Real-set statistics are cached in a cache folder (never the image folder) under a key of every used file's
name, size and mtime plus all settings that change the features, so an edited set can never hit stale
statistics (the GFLA/DPTN `statistics.npz` inside the folder could).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.linalg
import torch

from util.io import InputError, atomic_write

CACHE_VERSION = 1
DEFAULT_CACHE_DIR = Path("~/.cache/pose_transfer_metrics")


def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(μ (D,), Σ (D, D)) in float64 of features (N, D), N >= 2."""
    if len(features) < 2:
        raise InputError(f"FID needs at least 2 images per set, got {len(features)}")
    features = np.asarray(features, dtype=np.float64)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between two Gaussians, via symmetric eigendecompositions (stable, always real).

    float64 on the CPU with torch.linalg (its LAPACK takes seconds for 2048 x 2048 where scipy's may take
    tens of seconds on a small machine).
    """
    s1, s2 = torch.from_numpy(np.asarray(sigma1, np.float64)), torch.from_numpy(np.asarray(sigma2, np.float64))
    eigenvalues, vectors = torch.linalg.eigh(s1)
    root1 = (vectors * eigenvalues.clamp(min=0).sqrt()) @ vectors.T
    middle = root1 @ s2 @ root1
    middle = (middle + middle.T) / 2  # exact symmetry against rounding
    trace_sqrt = torch.linalg.eigvalsh(middle).clamp(min=0).sqrt().sum().item()
    diff = np.asarray(mu1, np.float64) - np.asarray(mu2, np.float64)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt)


def frechet_distance_scipy(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                           eps: float = 1e-6) -> float:
    """The reference formula of GFLA, DPTN and pytorch-fid: `scipy.linalg.sqrtm(Σ1 Σ2)`, with eps·I added
    to both covariances when the root is not finite and an error when its diagonal is clearly complex."""
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(len(sigma1)) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"imaginary component {np.abs(covmean.imag).max()}")
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def legacy_subset(paths: list, unit: int, what: str) -> list:
    """The first floor(N/unit)·unit entries: GFLA/DPTN run whole batches only and drop the rest."""
    used = len(paths) // unit * unit
    if used == 0:
        raise InputError(f"legacy FID scores whole batches of {unit} images only, and {what} has {len(paths)}; "
                         "use --protocol clean (all images), or a smaller --fid_batch_size")
    return paths[:used]


def extract_features(batches, forward: Callable[[torch.Tensor], torch.Tensor], key: str, device: torch.device,
                     total: int, progress: Callable | None = None) -> np.ndarray:
    """float32 (N, 2048) features of uint8 images `batch[key]` (B, H, W, 3) in loader order."""
    chunks = []
    with torch.inference_mode():
        for batch in batches:
            images = batch[key].to(device, non_blocking=True).permute(0, 3, 1, 2)
            chunks.append(forward(images).float().cpu())
            if progress is not None:
                progress(len(images))
    features = torch.cat(chunks).numpy()
    if len(features) != total:
        raise RuntimeError(f"expected {total} feature rows, got {len(features)}")
    return features


class StatisticsCache:
    """μ, Σ of a real set, keyed by its files (name, size, mtime) and the settings; `folder=None` is off."""

    def __init__(self, folder: str | os.PathLike | None) -> None:
        self.folder = Path(folder).expanduser() if folder is not None else None

    @staticmethod
    def key(paths: list[Path], settings: dict) -> str:
        digest = hashlib.sha256(json.dumps({"version": CACHE_VERSION, **settings}, sort_keys=True).encode())
        for path in paths:  # order matters too: it decides which images a legacy run drops
            stat = path.stat()
            digest.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()

    def path(self, key: str) -> Path | None:
        return None if self.folder is None else self.folder / f"fid_stats_{key[:40]}.npz"

    def load(self, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        path = self.path(key)
        if path is None or not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["key"]) != key:
                    return None
                return data["mu"], data["sigma"]
        except (OSError, ValueError, KeyError):  # a damaged cache file is a miss, and is rewritten
            return None

    def save(self, key: str, mu: np.ndarray, sigma: np.ndarray, info: dict) -> Path | None:
        path = self.path(key)
        if path is None:
            return None
        buffer = io.BytesIO()
        np.savez(buffer, mu=mu, sigma=sigma, key=np.array(key), info=np.array(json.dumps(info, sort_keys=True)))
        atomic_write(path, lambda f: f.write(buffer.getvalue()))
        return path
