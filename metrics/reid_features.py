"""Re-id features of image files, distances, and PN-GAN's fusion of the 8 canonical-pose features.

Input as fast-reid's test transform builds it (JDAI-CV/fast-reid `fastreid/data/transforms/build.py`): the
image read with PIL and converted to RGB (fast-reid keeps the file's mode, so an RGBA PNG would fail), resized
with PIL bicubic on the uint8 image to (H, W), then a float 0..255 CHW tensor; the network normalises it.
Distances are fast-reid's `fastreid/utils/compute_dist.py`: cosine = 1 - cos, euclidean = *squared* L2.
PN-GAN fusion (Qian et al., ECCV 2018; naiq/PN_GAN `script/viper_feature.py`): each pose feature is
L2-normalised, then averaged, maxed element-wise, or concatenated pose-major; no re-normalisation after.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from metrics.reid_net import extract_features
from util.image import read_rgb
from util.io import InputError

METRICS = ("cosine", "euclidean")
FUSIONS = ("avg", "max", "concat")
COMBINES = ("pn_only", "orig_only", "concat")


def load_image(path: Path, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (3, H, W) RGB, PIL bicubic to `size` = (H, W); InputError naming an unreadable file."""
    rgb = read_rgb(path)  # InputError naming a damaged file; 16-bit and float images scaled
    height, width = size
    if rgb.size != (width, height):
        rgb = rgb.resize((width, height), Image.BICUBIC)
    return torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1)


class _Files(Dataset):
    def __init__(self, paths: list[Path], size: tuple[int, int]) -> None:
        self.paths, self.size = paths, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return load_image(self.paths[index], self.size)


@torch.no_grad()
def compute_features(model: torch.nn.Module, paths: list[Path], size: tuple[int, int] = (256, 128),
                     batch_size: int = 128, device: torch.device | str | None = None, flip: bool = False,
                     num_workers: int = 0) -> torch.Tensor:
    """(N, D) float32 CPU features of `paths`, in order, from `model` in eval mode (its mode is restored).

    With `flip`, the correct average (f(x) + f(x flipped left-right)) / 2 (fast-reid's flip test normalises
    the flipped copy twice).
    """
    if not paths:
        return torch.zeros(0, 0)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    loader = DataLoader(_Files(paths, size), batch_size=batch_size, shuffle=False, num_workers=num_workers)
    out = []
    try:
        for batch in loader:
            images = batch.to(device=device, dtype=torch.float32)
            out.append(extract_features(model, images, flip=flip).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out)


def timed_features(model, paths, **kwargs) -> tuple[torch.Tensor, float]:
    """`compute_features` and the seconds it took."""
    start = time.perf_counter()
    features = compute_features(model, paths, **kwargs)
    return features, time.perf_counter() - start


@torch.no_grad()
def distance_matrix(q: torch.Tensor, g: torch.Tensor, metric: str = "cosine") -> np.ndarray:
    """(Q, G) float32: 1 - cos(q, g) (cosine) or |q - g|^2 (euclidean, squared, as fast-reid)."""
    if metric not in METRICS:
        raise InputError(f"unknown --metric {metric!r}; available: {', '.join(METRICS)}")
    q, g = q.float(), g.float()
    if metric == "cosine":
        return (1.0 - F.normalize(q, dim=1) @ F.normalize(g, dim=1).T).cpu().numpy()
    squares = (q * q).sum(1, keepdim=True) + (g * g).sum(1)[None, :]
    return torch.addmm(squares, q, g.T, beta=1, alpha=-2).cpu().numpy()


def fuse_poses(features: torch.Tensor, fusion: str) -> torch.Tensor:
    """(N, K, D) per-pose features -> (N, D) avg / max, or (N, K·D) concat, of the L2-normalised poses."""
    if fusion not in FUSIONS:
        raise InputError(f"unknown --pn_fusion {fusion!r}; available: {', '.join(FUSIONS)}")
    unit = F.normalize(features, dim=2)
    if fusion == "avg":
        return unit.mean(dim=1)
    if fusion == "max":
        return unit.max(dim=1).values
    return unit.reshape(len(unit), -1)


def combine(original: torch.Tensor, fused: torch.Tensor, how: str) -> torch.Tensor:
    """PN-GAN's final feature: the fused poses, the original, or both L2-normalised and concatenated."""
    if how not in COMBINES:
        raise InputError(f"unknown --pn_combine {how!r}; available: {', '.join(COMBINES)}")
    if how == "pn_only":
        return fused
    if how == "orig_only":
        return original
    return torch.cat([F.normalize(original, dim=1), F.normalize(fused, dim=1)], dim=1)
