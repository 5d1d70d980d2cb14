"""Inception-v3 pool3 features (2048-d) for FID and 1008-class predictions for IS (weights: util/weights.py).

Two networks (FID as in PangzeCheung/Dual-task-Pose-Transformer-Network `metrics/metrics.py`; IS as in
tengteng95/Pose-Transfer `tool/inception_score.py`; settings in docs/evaluation.md):
- legacy: torchvision's ImageNet Inception-v3 used block by block up to the final average pool, as the
  GFLA/DPTN `metrics/inception.py` does, including its input quirk: torchvision's `transform_input` formula
  applied to [0, 1] input (the network sees about [-0.19, 0.43], not [-1, 1]). Reproduced, not fixed.
- tf: pytorch-fid's port of the TF `inception-2015-12-05` graph (the FID network and the IS network),
  built with pytorch-fid's own block classes; its weights come through util/weights.py (hub cache, fetched
  once, hash-checked), never pytorch-fid's own downloader.
Input preprocessings (one name each, recorded in the report):
- 'legacy-fid': x/255, bilinear to 299 (align_corners=False), then x_c·(σ_c/0.5) + (μ_c - 0.5)/0.5;
- 'clean-fid':  x/255, bilinear to 299 (align_corners=False), then 2x - 1 (pytorch-fid);
- 'tf-is':      x in 0..255, TF1 legacy bilinear to 299 (no half-pixel centres), then (x - 128)/128, which
                is what the TF graph does after its `ExpandDims` input (the PATN/improved-GAN IS feed).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from metrics.weights import RANDOM_SWITCH, find_weights, seeded_build
from util.io import InputError
from util.weights import INCEPTION_LEGACY, INCEPTION_TF, file_sha256, load_state_dict_file, warn_random_weights

LEGACY_FILES = INCEPTION_LEGACY.names  # current, torchvision <= 0.8 (accepted when present)
TF_FILE = INCEPTION_TF.filename
SIZE = 299
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PREPROCESSINGS = ("legacy-fid", "clean-fid", "tf-is")
LAYERS = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
          "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
          "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "avgpool")


@dataclass(frozen=True)
class WeightsRecord:
    """Where a network's weights came from, for the report."""

    network: str
    file: str  # path, or 'random (--random_weights)'
    sha256: str


def tf1_resize_bilinear(x: torch.Tensor, size: int) -> torch.Tensor:
    """TF1 `resize_bilinear(align_corners=False)`: source = dst · (in/out), no half-pixel offset; (B,C,H,W)."""
    for dim in (-2, -1):
        n = x.shape[dim]
        scale = torch.tensor(n, dtype=torch.float32) / size
        source = torch.arange(size, dtype=torch.float32, device=x.device) * scale.to(x.device)
        low = source.floor().long()
        high = (low + 1).clamp(max=n - 1)
        frac = (source - low).to(x.dtype)
        frac = frac.reshape(-1, 1) if dim == -2 else frac
        a, b = x.index_select(dim, low), x.index_select(dim, high)
        x = a + (b - a) * frac
    return x


def preprocess(images: torch.Tensor, kind: str) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float32 (B, 3, 299, 299) network input for preprocessing `kind`."""
    x = images.float()
    if kind == "tf-is":
        return (tf1_resize_bilinear(x, SIZE) - 128.0) / 128.0
    x = F.interpolate(x / 255.0, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    if kind == "clean-fid":
        return 2.0 * x - 1.0
    if kind == "legacy-fid":
        mean = x.new_tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1)
        std = x.new_tensor(IMAGENET_STD).reshape(1, 3, 1, 1)
        return x * (std / 0.5) + (mean - 0.5) / 0.5
    raise ValueError(f"unknown preprocessing {kind!r}; available: {', '.join(PREPROCESSINGS)}")


class InceptionPool(nn.Module):
    """Inception-v3 trunk up to the final average pool: uint8 (B, 3, H, W) -> float32 (B, 2048)."""

    def __init__(self, trunk: nn.Module, kind: str, weights: WeightsRecord) -> None:
        super().__init__()
        self.layers = nn.Sequential(*[getattr(trunk, name) for name in LAYERS])
        self.fc = trunk.fc
        self.kind = kind
        self.weights = weights
        self.eval()
        self.requires_grad_(False)

    def forward(self, images: torch.Tensor, kind: str | None = None) -> torch.Tensor:
        return self.layers(preprocess(images, kind or self.kind)).flatten(1)

    def class_logits(self, pool: torch.Tensor) -> torch.Tensor:
        """(B, classes) = pool3 · fc.weightᵀ without the bias, as the IS code multiplies the TF graph's weights."""
        return pool @ self.fc.weight.t()


def _load(trunk: nn.Module, path: Path, network: str) -> None:
    state = load_state_dict_file(path)
    try:
        trunk.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise InputError(f"{path} does not hold the {network} weights ({first})") from None


def legacy_inception(weights_dir: str | os.PathLike | None = None, random_weights: bool = False,
                     download: bool = True) -> InceptionPool:
    """torchvision ImageNet Inception-v3 (IMAGENET1K_V1) with the GFLA/DPTN 'legacy-fid' input."""
    from torchvision.models import inception_v3

    network = "torchvision Inception-v3 (ImageNet)"
    if random_weights:
        warn_random_weights(network, RANDOM_SWITCH)
        trunk = seeded_build(lambda: inception_v3(weights=None, aux_logits=True, init_weights=False))
        return InceptionPool(trunk, "legacy-fid", WeightsRecord(network, f"random ({RANDOM_SWITCH})", ""))
    path = find_weights(INCEPTION_LEGACY, weights_dir, download)
    trunk = inception_v3(weights=None, aux_logits=True, init_weights=False)
    _load(trunk, path, network)
    return InceptionPool(trunk, "legacy-fid", WeightsRecord(network, str(path), file_sha256(path)))


def _tf_trunk(init_weights: bool) -> nn.Module:
    """torchvision's Inception3 with pytorch-fid's TF-compatible blocks in place (1008 classes, no aux)."""
    from pytorch_fid import inception as fid
    from torchvision.models import inception_v3

    trunk = inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=init_weights)
    trunk.Mixed_5b = fid.FIDInceptionA(192, pool_features=32)
    trunk.Mixed_5c = fid.FIDInceptionA(256, pool_features=64)
    trunk.Mixed_5d = fid.FIDInceptionA(288, pool_features=64)
    trunk.Mixed_6b = fid.FIDInceptionC(768, channels_7x7=128)
    trunk.Mixed_6c = fid.FIDInceptionC(768, channels_7x7=160)
    trunk.Mixed_6d = fid.FIDInceptionC(768, channels_7x7=160)
    trunk.Mixed_6e = fid.FIDInceptionC(768, channels_7x7=192)
    trunk.Mixed_7b = fid.FIDInceptionE_1(1280)
    trunk.Mixed_7c = fid.FIDInceptionE_2(2048)
    return trunk


def tf_inception(kind: str = "clean-fid", weights_dir: str | os.PathLike | None = None,
                 random_weights: bool = False, download: bool = True) -> InceptionPool:
    """pytorch-fid's port of the TF inception-2015-12-05 graph (clean FID, and IS with its 1008 classes)."""
    network = "TF Inception-v3 2015-12-05 (pytorch-fid port)"
    if random_weights:
        warn_random_weights(network, RANDOM_SWITCH)
        trunk = seeded_build(lambda: _tf_trunk(False))
        return InceptionPool(trunk, kind, WeightsRecord(network, f"random ({RANDOM_SWITCH})", ""))
    path = find_weights(INCEPTION_TF, weights_dir, download)
    trunk = _tf_trunk(False)
    _load(trunk, path, network)
    return InceptionPool(trunk, kind, WeightsRecord(network, str(path), file_sha256(path)))
