"""The latent GAN's generator: z -> one GFV (RL-GAN-Net's l-GAN on PG2's GFVs).

kevinleewy/Human-Pose-Transfer branch RL-GAN-NET `implementations/LGAN/sagan_models.py` (`Generator`, `imsize 32`,
`g_conv_dim 64`), after iSarmad/RL-GAN-Net `GAN/sagan_models.py`; docs/models/lgan.md. The last layer is derived
from the GFV shape (KLW hard-codes Market's 384@32x16).
"""
from __future__ import annotations

import torch
from torch import nn

from models.networks.sagan_attention import SelfAttention, spectral_normed
from util.io import InputError

MAX_KERNEL = 9  # the widest last-layer kernel we build (DeepFashion native 512@32x22 needs 9 along W)
GRID = 16  # side of the square map the attention layer sees, before the last layer


def last_layer_geometry(size: int) -> tuple[int, int] | None:
    """(kernel, stride) of a padding-1 ConvTranspose taking GRID=16 to `size`: size = 15 s - 2 + k.

    Stride 2 for sizes 29..37 (Market's H 32: kernel 4), stride 1 for 14..22 (Market's W 16: kernel 3,
    DeepFashion's W 22: kernel 9); None for any other size."""
    for stride in (2, 1):
        kernel = size + 2 - (GRID - 1) * stride
        if 1 <= kernel <= MAX_KERNEL:
            return kernel, stride
    return None


def check_gfv_shape(shape: tuple[int, ...]) -> tuple[tuple[int, int], tuple[int, int]]:
    """(kernel, stride) pairs (as (kh, kw), (sh, sw)) of G's last layer for a (C, H, W) GFV, or InputError."""
    if len(shape) != 3:
        raise InputError(f"the latent GAN generates (C, H, W) GFVs; the store holds shape {tuple(shape)} (G1's "
                         "z has no spatial grid: export --gfv_source g2_enc)")
    channels, height, width = shape
    rows, cols = last_layer_geometry(height), last_layer_geometry(width)
    if channels < 1 or rows is None or cols is None:
        raise InputError(f"the latent GAN cannot build GFV shape {channels}@{height}x{width}: its last layer maps "
                         f"a 16x16 grid to H and W in 14..22 (stride 1) or 29..37 (stride 2), e.g. Market "
                         "384@32x16, DeepFashion 512@32x32 or 512@32x22")
    return (rows[0], cols[0]), (rows[1], cols[1])


def up_block(in_channels: int, out_channels: int, *conv_args: int) -> nn.Sequential:
    """SN(ConvTranspose2d), BatchNorm, ReLU: KLW's layer1..layer3."""
    conv = spectral_normed(nn.ConvTranspose2d(in_channels, out_channels, *conv_args))
    return nn.Sequential(conv, nn.BatchNorm2d(out_channels), nn.ReLU())


class LGANGenerator(nn.Module):
    """z (B, z_dim) -> GFV (B, C, H, W) in (-1, 1).

    z as 1x1 -> SN-ConvT 4x4 -> 256@4x4 -> SN-ConvT 4x4 s2 -> 128@8x8 -> SN-ConvT 4x4 s2 -> 64@16x16 ->
    self-attention -> ConvT (no SN) to C@HxW -> tanh. Market (z_dim 1, 384@32x16): 961,297 parameters. KLW also
    builds a ConvTranspose1d(144, 128, 1) that its forward never calls (18,560 parameters, 979,857 in all); it is
    left out here, so nothing trainable goes unused.
    """

    def __init__(self, gfv_shape: tuple[int, int, int], z_dim: int = 1, conv_dim: int = 64) -> None:
        super().__init__()
        (kh, kw), (sh, sw) = check_gfv_shape(tuple(gfv_shape))
        self.gfv_shape = tuple(gfv_shape)
        self.z_dim = z_dim
        width = conv_dim * 4  # KLW: conv_dim * 2 ** (log2(imsize 32) - 3)
        self.l1 = up_block(z_dim, width, 4)
        self.l2 = up_block(width, width // 2, 4, 2, 1)
        self.l3 = up_block(width // 2, width // 4, 4, 2, 1)
        self.attn1 = SelfAttention(width // 4)
        self.last = nn.Sequential(nn.ConvTranspose2d(width // 4, gfv_shape[0], (kh, kw), (sh, sw), 1), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.l1(z.reshape(z.shape[0], z.shape[1], 1, 1))  # (B, 256, 4, 4)
        out = self.l3(self.l2(out))  # (B, 64, 16, 16)
        return self.last(self.attn1(out))  # (B, C, H, W)
