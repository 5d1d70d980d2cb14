"""The latent GAN's critic: one GFV -> a score (RL-GAN-Net's l-GAN on PG2's GFVs).

kevinleewy/Human-Pose-Transfer branch RL-GAN-NET `implementations/LGAN/sagan_models.py` (`Discriminator`,
`d_conv_dim 64`), after iSarmad/RL-GAN-Net `GAN/sagan_models.py`; docs/models/lgan.md. The last kernel is derived
from the GFV shape (KLW hard-codes Market's (4, 2)).
"""
from __future__ import annotations

import torch
from torch import nn

from models.networks.sagan_attention import SelfAttention, spectral_normed
from util.io import InputError


def down_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """SN(Conv 4x4 s2 p1), LeakyReLU(0.1): KLW's layer1..layer3 (floor(n / 2) per side)."""
    return nn.Sequential(spectral_normed(nn.Conv2d(in_channels, out_channels, 4, 2, 1)), nn.LeakyReLU(0.1))


class LGANDiscriminator(nn.Module):
    """GFV (B, C, H, W) -> critic score (B,), no activation (WGAN).

    Three SN-conv halvings to 256@(H/8)x(W/8), self-attention, then a conv (no SN) whose kernel is that whole grid.
    Market 384@32x16: last kernel (4, 2), 1,133,314 parameters.
    """

    def __init__(self, gfv_shape: tuple[int, int, int], conv_dim: int = 64) -> None:
        super().__init__()
        if len(gfv_shape) != 3:
            raise InputError(f"the latent GAN's critic reads (C, H, W) GFVs, got shape {tuple(gfv_shape)}")
        channels, height, width = gfv_shape
        grid = (height // 8, width // 8)  # three floor halvings (for sides >= 2)
        if min(grid) < 1:
            raise InputError(f"the latent GAN's critic cannot read GFV shape {channels}@{height}x{width}: three "
                             "stride-2 convolutions need H and W >= 8")
        self.l1 = down_block(channels, conv_dim)
        self.l2 = down_block(conv_dim, conv_dim * 2)
        self.l3 = down_block(conv_dim * 2, conv_dim * 4)
        self.attn1 = SelfAttention(conv_dim * 4)
        self.last = nn.Sequential(nn.Conv2d(conv_dim * 4, 1, kernel_size=grid))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.attn1(self.l3(self.l2(self.l1(x))))  # (B, 256, H/8, W/8)
        return self.last(out).reshape(x.shape[0])
