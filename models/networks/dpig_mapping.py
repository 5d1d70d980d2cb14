"""DPIG's stage-II mapping networks Φ: Gaussian noise -> one factor's embedding (fg, bg, app or pose).

Paper: Ma et al., "Disentangled Person Image Generation", CVPR 2018. Official TF code:
charliememory/Disentangled-Person-Image-Generation `models.py` (`GaussianFCRes`, 4 residual pairs,
LeakyReLU(0.2) as the trainers pass it). Φ_k = FCRes(d, h, d) with an activated first layer; z ~ N(0, 0.2²·I)
of the embedding's own size. Init: Xavier-uniform weights, zero biases (TF slim's default).
Counts (tests/test_dpig_networks.py): fg/app 2,331,360, bg 592,256, pose 2,134,560.
"""
from __future__ import annotations

import torch

from models.networks.blocks import FCRes, xavier_uniform_init

NOISE_STD = 0.2  # TF `tf.random_normal(..., stddev=0.2)`
# factor -> (embedding size d, hidden width h); Market has fg + bg, DeepFashion app; pose on both
FACTORS: dict[str, tuple[int, int]] = {"fg": (224, 512), "bg": (128, 256), "app": (224, 512), "pose": (32, 512)}


class DPIGMapping(FCRes):
    """Φ(z): z (B, dim) -> a fake embedding (B, dim). Keys `inp`, `blocks.{b}.{0,1}`, `out`."""

    def __init__(self, dim: int, hidden: int = 512, num_blocks: int = 4) -> None:
        super().__init__(dim, hidden, dim, first_act=True, num_blocks=num_blocks)
        self.dim = dim
        xavier_uniform_init(self)

    @classmethod
    def for_factor(cls, factor: str) -> "DPIGMapping":
        """The paper's Φ of a factor: 'fg', 'bg' (hidden 256), 'app' or 'pose'."""
        if factor not in FACTORS:
            raise ValueError(f"unknown DPIG factor {factor!r}; available: {', '.join(FACTORS)}")
        dim, hidden = FACTORS[factor]
        return cls(dim, hidden)

    def sample_noise(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """z ~ N(0, 0.2²·I), (batch_size, dim), on the network's device and dtype."""
        weight = self.inp.weight
        return torch.randn(batch_size, self.dim, generator=generator, device=weight.device,
                           dtype=weight.dtype) * NOISE_STD

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Φ(z) for fresh noise: (batch_size, dim)."""
        return self(self.sample_noise(batch_size, generator))
