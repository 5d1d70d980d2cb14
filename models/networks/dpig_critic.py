"""DPIG's stage-II embedding critic D_k: a WGAN critic on one factor's embedding (real from the frozen stage-I
encoders, fake from the mapping Φ_k).

Paper: Ma et al., "Disentangled Person Image Generation", CVPR 2018. Official TF code:
charliememory/Disentangled-Person-Image-Generation `wgan_gp.py` (`FCDiscriminator`: tflib Linears
`Input`, `0`, `1`, `2`, `Out`). Layout: Linear(d -> 512) + LReLU(0.2), 3 x [Linear(512 -> 512) + LReLU(0.2)],
Linear(512 -> 1); no normalisation. Counts (tests/test_dpig_networks.py): fg/app 903,681, bg 854,529,
pose 805,377. The WGAN weight clipping (±0.01 after every critic step) is `clip_`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.networks.blocks import DPIG_LEAKY_SLOPE


class DPIGCritic(nn.Module):
    """D_k(e): e (B, dim) -> scores (B,), unbounded. Keys `inp`, `hidden.{0,1,2}`, `out`."""

    def __init__(self, dim: int, hidden: int = 512, num_hidden: int = 3) -> None:
        super().__init__()
        self.inp = nn.Linear(dim, hidden)
        self.hidden = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(num_hidden))
        self.out = nn.Linear(hidden, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """tflib's init: the LReLU layers 'he', U(±√(6/fan_in)); the output 'glorot', U(±√(6/(fan_in+1)));
        zero biases."""
        for layer in [self.inp, *self.hidden, self.out]:
            fan_in, fan_out = layer.in_features, layer.out_features
            bound = math.sqrt(6.0 / (fan_in + fan_out)) if layer is self.out else math.sqrt(6.0 / fan_in)
            nn.init.uniform_(layer.weight, -bound, bound)
            nn.init.zeros_(layer.bias)

    @torch.no_grad()
    def clip_(self, limit: float = 0.01) -> None:
        """WGAN weight clipping: every parameter clamped to [-limit, limit] in place."""
        for p in self.parameters():
            p.clamp_(-limit, limit)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        """e (B, dim) -> (B,)."""
        x = F.leaky_relu(self.inp(embedding), DPIG_LEAKY_SLOPE)
        for layer in self.hidden:
            x = F.leaky_relu(layer(x), DPIG_LEAKY_SLOPE)
        return self.out(x).squeeze(1)
