"""LPIPS (AlexNet, v0.1) through the `lpips` package, with the AlexNet trunk from util/weights.py.

As in the DPTN evaluator (PangzeCheung/Dual-task-Pose-Transformer-Network `metrics/metrics.py`, through
PerceptualSimilarity's `net-lin` AlexNet, the same network as the pip package): `lpips.LPIPS(net='alex',
version='0.1')` on RGB in [-1, 1], one value per pair, no padding. The package would fetch torchvision's
AlexNet itself; instead it is built with `pnet_rand=True` (no download of its own) and the trunk is filled
from `alexnet-owt-7be5be79.pth` (--weights_dir, or the torch hub cache, fetched once and hash-checked).
The linear heads come from the package's own `weights/v0.1/alex.pth`, which the wheel ships (never fetched).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

from metrics.inception import WeightsRecord
from metrics.weights import RANDOM_SWITCH, find_weights, seeded_build
from util.io import InputError
from util.weights import ALEXNET, file_sha256, load_state_dict_file, warn_random_weights

ALEXNET_FILE = ALEXNET.filename
# lpips' AlexNet slices: features[0:2], [2:5], [5:8], [8:10], [10:12] (outputs after relu1..relu5)
SLICES = ((1, range(2)), (2, range(2, 5)), (3, range(5, 8)), (4, range(8, 10)), (5, range(10, 12)))


def heads_file() -> Path:
    """The package's v0.1 AlexNet linear-head weights, as LPIPS itself locates them."""
    import lpips

    return Path(lpips.__file__).resolve().parent / "weights" / "v0.1" / "alex.pth"


def trunk_state_dict(alexnet_state: dict) -> dict:
    """torchvision AlexNet keys (`features.3.weight`) -> lpips trunk keys (`net.slice2.3.weight`)."""
    mapped = {}
    for number, indices in SLICES:
        for index in indices:
            for kind in ("weight", "bias"):
                key = f"features.{index}.{kind}"
                if key in alexnet_state:
                    mapped[f"net.slice{number}.{index}.{kind}"] = alexnet_state[key]
    return mapped


class LPIPSMetric(nn.Module):
    """uint8 (B, 3, H, W) pairs -> (B,) LPIPS distances; `weights` records both files."""

    def __init__(self, weights_dir: str | os.PathLike | None = None, random_weights: bool = False,
                 download: bool = True) -> None:
        super().__init__()
        import lpips

        with warnings.catch_warnings():  # torchvision's deprecated `pretrained=` inside the package
            warnings.simplefilter("ignore")
            self.model = seeded_build(lambda: lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False))
        heads = heads_file()
        network = "LPIPS AlexNet v0.1"
        if random_weights:
            warn_random_weights("the LPIPS AlexNet trunk", RANDOM_SWITCH)
            trunk = WeightsRecord(network, f"random ({RANDOM_SWITCH})", "")
        else:
            path = find_weights(ALEXNET, weights_dir, download)
            state = trunk_state_dict(load_state_dict_file(path))
            if len(state) != 10:
                raise InputError(f"{path} does not hold torchvision's AlexNet features (found {len(state)} of the "
                                 "10 conv tensors)")
            unexpected = self.model.load_state_dict(state, strict=False).unexpected_keys
            if unexpected:  # the package renamed its trunk: fail rather than score with a random one
                raise RuntimeError(f"lpips trunk keys changed: {unexpected[:3]}")
            trunk = WeightsRecord(network, str(path), file_sha256(path))
        self.weights = {"trunk": trunk, "heads": WeightsRecord(network, str(heads), file_sha256(heads))}
        self.eval()
        self.requires_grad_(False)

    def forward(self, generated: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """LPIPS of uint8 images mapped by x/127.5 - 1; `mask` (B, 1, H, W) multiplies both (mask-LPIPS)."""
        gen = generated.float() / 127.5 - 1.0
        ref = target.float() / 127.5 - 1.0
        if mask is not None:
            gen, ref = gen * mask, ref * mask
        return self.model(gen, ref).flatten()
