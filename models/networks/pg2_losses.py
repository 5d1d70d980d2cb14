"""PG2's losses (Ma et al., "Pose Guided Person Image Generation", NeurIPS 2017, Sec. 3.1-3.3).

- `pose_mask_l1`: mean|G - I_B| + r * mean(|G - I_B| * M_B), means over all B*3*H*W elements;
- `stage1_terms`: L_G1 = pose-mask L1 of Ĝ1;
- `stage2_generator_terms`: L_G2 = lambda_gan * BCE(D(Ĝ2), 1) + lambda_mask_l1 * pose-mask L1 of Ĝ2;
- `discriminator_terms`: 0.5 * BCE(D(I_B), 1) + 0.25 * BCE(D(Ĝ2), 0) + 0.25 * BCE(D(I_A), 0).
Each `*_terms` function returns (loss, {logged name: term}).
"""
from __future__ import annotations

import torch

from models.networks.losses import bce_gan_loss

PG2_D_WEIGHTS = (0.5, 0.25, 0.25)  # real I_B, fake Ĝ2, condition I_A


def pose_mask_l1(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                 mask_ratio: float = 1.0) -> torch.Tensor:
    """PG2's pose-mask L1: mean(|output - target|) + mask_ratio * mean(|output - target| * mask).

    output, target: (B, 3, H, W); mask: (B, 1, H, W) in {0,1}, the *target's* body mask, broadcast to the
    image channels, so both means are over B*3*H*W elements. Equals the paper's
    ||(G - I_B) * (1 + M_B)||_1 / (B*3*H*W) for mask_ratio 1. An all-zero mask leaves plain L1.
    """
    if mask.dim() != output.dim() or mask.shape[1] not in (1, output.shape[1]):
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to images {tuple(output.shape)}")
    diff = (output - target).abs()  # (B, 3, H, W)
    return diff.mean() + mask_ratio * (diff * mask.to(diff.dtype)).mean()


def pg2_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, condition_logits: torch.Tensor
                           ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """L_D = 0.5 * BCE(D(I_B), 1) + 0.25 * BCE(D(Ĝ2), 0) + 0.25 * BCE(D(I_A), 0), and its three BCE terms.

    Returns (L_D, (BCE real, BCE fake, BCE condition)). The weighting equals HPT's mean of
    [BCE(I_B,1) + BCE(Ĝ2,0)]/2 and [BCE(I_B,1) + BCE(I_A,0)]/2.
    """
    terms = (bce_gan_loss(real_logits, True), bce_gan_loss(fake_logits, False),
             bce_gan_loss(condition_logits, False))
    total = sum(w * t for w, t in zip(PG2_D_WEIGHTS, terms))
    return total, terms


def stage1_terms(fake_g1: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, mask_ratio: float
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L_G1 = L_mask(Ĝ1) (logged as G1_mask_l1)."""
    loss = pose_mask_l1(fake_g1, target, mask, mask_ratio)
    return loss, {"G1_mask_l1": loss}


def stage2_generator_terms(fake_logits: torch.Tensor, fake_g2: torch.Tensor, target: torch.Tensor,
                           mask: torch.Tensor, mask_ratio: float, lambda_gan: float, lambda_mask_l1: float
                           ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L_G2 = lambda_gan * BCE(D(Ĝ2), 1) + lambda_mask_l1 * L_mask(Ĝ2); logs the unweighted terms."""
    gan = bce_gan_loss(fake_logits, True)
    l1 = pose_mask_l1(fake_g2, target, mask, mask_ratio)
    return lambda_gan * gan + lambda_mask_l1 * l1, {"G2_gan": gan, "G2_mask_l1": l1}


def discriminator_terms(real_logits: torch.Tensor, fake_logits: torch.Tensor, condition_logits: torch.Tensor
                        ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L_D with its three BCE terms logged as D_real, D_fake, D_condition."""
    loss, (real, fake, condition) = pg2_discriminator_loss(real_logits, fake_logits, condition_logits)
    return loss, {"D_real": real, "D_fake": fake, "D_condition": condition}
