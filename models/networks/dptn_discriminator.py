"""DPTN discriminator: a residual, spectral-normalised patch discriminator that sees the image alone.

Paper: Zhang et al., "Exploring Dual-task Correlation for Pose Guided Person Image Generation", CVPR 2022.
Official code: PangzeCheung/Dual-task-Pose-Transformer-Network `models/networks.py` (`ResDiscriminator`) with
the blocks of `models/base_function.py` (ResBlockEncoderOptimized, ResBlockEncoder); docs/models/dptn.md.
Every conv is wrapped in torch.nn.utils.spectral_norm (keys weight_orig, weight_u, weight_v; one power
iteration per forward in training mode); there is no normalisation layer. With `use_spect=False` (the official
--use_spect_d flag) only the final 1x1 conv keeps spectral norm. State_dict keys, order and shapes equal the
official listing in tests/data/dptn_D_state_dict.txt (3 levels Market, 4 DeepFashion), checked by
tests/test_dptn.py::test_discriminator_state_dict_equals_listing.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import spectral_norm


def maybe_spectral(conv: nn.Module, use_spect: bool) -> nn.Module:
    """`conv` wrapped in spectral norm (draws the random u, v right after the conv, as the official code)."""
    return spectral_norm(conv) if use_spect else conv


class ResBlockEncoder(nn.Module):
    """Level: model = [act, conv 3x3, act, conv 4x4/2], shortcut = [avgpool 2, conv 1x1].

    `first` builds the official ResBlockEncoderOptimized of the first level, whose model starts with the conv:
    [conv 3x3, act, conv 4x4/2] (so its Sequential indices, and state_dict keys, differ).
    """

    def __init__(self, in_channels: int, out_channels: int, hidden: int, act: nn.Module, use_spect: bool,
                 first: bool = False) -> None:
        super().__init__()
        conv1 = maybe_spectral(nn.Conv2d(in_channels, hidden, 3, stride=1, padding=1), use_spect)
        conv2 = maybe_spectral(nn.Conv2d(hidden, out_channels, 4, stride=2, padding=1), use_spect)
        bypass = maybe_spectral(nn.Conv2d(in_channels, out_channels, 1), use_spect)
        self.model = nn.Sequential(conv1, act, conv2) if first else nn.Sequential(act, conv1, act, conv2)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, stride=2), bypass)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) + self.shortcut(x)


class DPTNDiscriminator(nn.Module):
    """D(image (B, 3, H, W)) -> patch logits (B, 1, H / 2^layers, W / 2^layers); no pose input, no sigmoid.

    Args:
        layers: levels (3 Market -> 16x8 logits at 128x64; 4 DeepFashion -> 16x16 at 256x256).
        input_nc, ndf, img_f: 3, 32, 128; widths ndf * min(2^i, img_f // ndf) -> 32, 64, 128, 128.
        use_spect: spectral norm on every conv (official default); the final conv always has it.
    """

    def __init__(self, layers: int = 3, input_nc: int = 3, ndf: int = 32, img_f: int = 128,
                 use_spect: bool = True) -> None:
        super().__init__()
        self.layers = layers
        self.nonlinearity = nn.LeakyReLU(0.1)
        act = self.nonlinearity
        self.block0 = ResBlockEncoder(input_nc, ndf, ndf, act, use_spect, first=True)
        width = ndf
        for i in range(layers - 1):
            out = ndf * min(2 ** (i + 1), img_f // ndf)
            setattr(self, f"encoder{i}", ResBlockEncoder(width, out, width, act, use_spect))
            width = out
        self.conv = spectral_norm(nn.Conv2d(width, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block0(x)
        for i in range(self.layers - 1):
            out = getattr(self, f"encoder{i}")(out)
        return self.conv(self.nonlinearity(out))
