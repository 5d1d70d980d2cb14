"""SAGAN building blocks: self-attention (Zhang et al., "Self-Attention Generative Adversarial Networks", ICML
2019), as the latent GAN of RL-GAN-Net uses it (iSarmad/RL-GAN-Net `GAN/sagan_models.py`, kevinleewy/Human-Pose-
Transfer branch RL-GAN-NET `implementations/LGAN/sagan_models.py`, class `Self_Attn`), and the spectral norm both
latent-GAN networks wrap their convolutions in."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def spectral_normed(layer: nn.Module) -> nn.Module:
    """`layer` with PyTorch's spectral norm (1 power iteration per training forward) along weight dim 0.

    Dim 0 is what KLW's own `SpectralNorm` wrapper (`implementations/LGAN/spectral.py`) uses for every layer: the
    weight viewed as (shape[0], -1). For Conv2d that is out_channels, PyTorch's default too; for ConvTranspose2d
    it is in_channels, whereas PyTorch's default for transposed convolutions is dim 1, so dim=0 is passed
    explicitly. u and v are buffers (not trainable); the trainable weight is `parametrizations.weight.original`.
    """
    return spectral_norm(layer, n_power_iterations=1, dim=0)


class SelfAttention(nn.Module):
    """out = gamma * (v A^T) + x, A = softmax over keys of q^T k (unscaled); q, k: C -> C/8, v: C -> C (1x1 convs).

    gamma starts at 0, so the layer begins as the identity and learns how much attention to mix in. Parameters
    for C = 64: 5,201; C = 256: 82,241.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        if channels < 8:
            raise ValueError(f"self-attention needs at least 8 channels (q and k have C/8), got {channels}")
        self.query_conv = nn.Conv2d(channels, channels // 8, kernel_size=1)
        self.key_conv = nn.Conv2d(channels, channels // 8, kernel_size=1)
        self.value_conv = nn.Conv2d(channels, channels, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, N) attention map, N = H*W: row i is the softmax over keys j of q_i . k_j."""
        b, _, h, w = x.shape
        query = self.query_conv(x).reshape(b, -1, h * w).transpose(1, 2)  # (B, N, C/8)
        key = self.key_conv(x).reshape(b, -1, h * w)  # (B, C/8, N)
        return torch.softmax(torch.bmm(query, key), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        value = self.value_conv(x).reshape(b, c, h * w)  # (B, C, N)
        out = torch.bmm(value, self.attention(x).transpose(1, 2)).reshape(b, c, h, w)
        return self.gamma * out + x
