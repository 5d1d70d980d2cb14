"""WGAN-GP losses of the latent GAN (Gulrajani et al., "Improved Training of Wasserstein GANs", NeurIPS 2017), as
kevinleewy/Human-Pose-Transfer branch RL-GAN-NET `implementations/LGAN/trainer.py` applies them (`adv_loss
wgan-gp`): a critic step on the Wasserstein terms, a separate critic step on the penalty, then a generator step.
"""
from __future__ import annotations

from typing import Callable

import torch

LOSS_NAMES = ("D_real", "D_fake", "D_gp", "G")

Critic = Callable[[torch.Tensor], torch.Tensor]  # (B, C, H, W) -> (B,)


def critic_terms(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> dict[str, torch.Tensor]:
    """D_real = -mean D(x), D_fake = mean D(G(z)); the critic step minimises their sum."""
    return {"D_real": -real_scores.float().mean(), "D_fake": fake_scores.float().mean()}


def gradient_penalty(critic: Critic, real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """mean over the batch of (||grad_x̂ D(x̂)||_2 - 1)^2, x̂ = alpha x + (1 - alpha) G(z), in float32.

    `alpha` (B, 1, 1, 1) is drawn per sample from U(0, 1) by the caller. The gradient keeps its graph
    (create_graph), so the penalty back-propagates into D's weights. Autocast is switched off: the inner
    gradient is computed in float32 whatever --amp says.
    """
    device_type = real.device.type
    with torch.autocast(device_type, enabled=False):
        mixed = (alpha * real.detach().float() + (1 - alpha) * fake.detach().float()).requires_grad_(True)
        scores = critic(mixed).float()
        (grad,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
        norms = torch.linalg.vector_norm(grad.flatten(1), dim=1)
        return ((norms - 1) ** 2).mean()


def generator_term(fake_scores: torch.Tensor) -> torch.Tensor:
    """G = -mean D(G(z')) with a fresh z'."""
    return -fake_scores.float().mean()
