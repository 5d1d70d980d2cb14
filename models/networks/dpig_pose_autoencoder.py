"""DPIG's pose auto-encoder: 18 keypoints (r, c, v) <-> a 32-number pose embedding, fully connected.

Paper: Ma et al., "Disentangled Person Image Generation", CVPR 2018. Official TF code:
charliememory/Disentangled-Person-Image-Generation `models.py` (`PoseEncoderFCRes`, `PoseDecoderFCRes`,
`binaryRound`), built with z = 32, h = 512, 4 residual pairs and LeakyReLU(0.2) by `trainer.py`.

The pose vector k is keypoint-major, (r̂, ĉ, v) per keypoint: r̂ = 2r/H - 1, ĉ = 2c/W - 1, v in {0, 1}, and
(-1, -1, 0) for a missing keypoint. The decoder returns the same layout, so the stage-I-b loss is
20 · mse(decoder(encoder(k)), k). Its coordinates are unbounded (TF's tanh-like head is commented out); its
visibility is sigmoid then round, whose gradient passes straight through (`round_ste`). Init: Xavier-uniform
weights, zero biases (TF slim's default). Counts: encoder 2,145,824, decoder 2,145,846 (tests/test_dpig_networks.py).
"""
from __future__ import annotations

import torch
from torch import nn

from models.networks.blocks import FCRes, xavier_uniform_init

NUM_KEYPOINTS = 18


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """round(x) forward (half to even, as tf.round), identity gradient (TF `binaryRound`'s override).

    Exact for x in [0, 1]: round(x) - x is exact there (x >= 0.5: Sterbenz; x < 0.5: -x), so the sum gives
    exactly 0 or 1.
    """
    return x + (torch.round(x) - x).detach()


class DPIGPoseEncoder(FCRes):
    """k (B, 3·K) -> pose embedding (B, z_dim): FCRes(54, 512, 32) with an activated first layer.

    Keys `inp`, `blocks.{b}.{0,1}`, `out`.
    """

    def __init__(self, num_keypoints: int = NUM_KEYPOINTS, hidden: int = 512, z_dim: int = 32,
                 num_blocks: int = 4) -> None:
        super().__init__(3 * num_keypoints, hidden, z_dim, first_act=True, num_blocks=num_blocks)
        self.num_keypoints, self.z_dim = num_keypoints, z_dim
        xavier_uniform_init(self)


class DPIGPoseDecoder(FCRes):
    """pose embedding (B, z_dim) -> k̂ (B, 3·K), keypoint-major (r̂, ĉ, v̂); v̂ exactly 0 or 1.

    Trunk: Linear(32 -> 512) without activation, then the 4 residual pairs; heads `coord` Linear(512 -> 2K)
    (linear, read as (K, 2) = (r̂, ĉ)) and `vis` Linear(512 -> K) -> sigmoid -> round_ste.
    Keys `inp`, `blocks.{b}.{0,1}`, `coord`, `vis`.
    """

    def __init__(self, num_keypoints: int = NUM_KEYPOINTS, hidden: int = 512, z_dim: int = 32,
                 num_blocks: int = 4) -> None:
        super().__init__(z_dim, hidden, None, first_act=False, num_blocks=num_blocks)
        self.num_keypoints, self.z_dim = num_keypoints, z_dim
        self.coord = nn.Linear(hidden, 2 * num_keypoints)
        self.vis = nn.Linear(hidden, num_keypoints)
        xavier_uniform_init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, z_dim) -> k̂ (B, 3·K); `.view(B, K, 3)` gives (r̂, ĉ, v̂) per keypoint."""
        x = self.trunk(z)  # (B, h)
        coord = self.coord(x).view(-1, self.num_keypoints, 2)  # (B, K, (r̂, ĉ))
        vis = round_ste(torch.sigmoid(self.vis(x)))  # (B, K) in {0, 1}
        return torch.cat([coord, vis[:, :, None]], dim=2).flatten(1)
