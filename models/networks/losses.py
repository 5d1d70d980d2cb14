"""Loss functions shared by the models (one place; other models add theirs here).

PG2 (Ma et al., "Pose Guided Person Image Generation", NeurIPS 2017), specs/pg2.md Sec. 4:
- `pose_mask_l1`: mean|G - I_B| + r * mean(|G - I_B| * M_B), means over all B*3*H*W elements;
- `bce_gan_loss`: BCE-with-logits against an all-real or all-fake target;
- `pg2_discriminator_loss`: 0.5 * BCE(D(I_B), 1) + 0.25 * BCE(D(Ĝ2), 0) + 0.25 * BCE(D(I_A), 0).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def pose_mask_l1(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                 mask_ratio: float = 1.0) -> torch.Tensor:
    """PG2's pose-mask L1: mean(|output - target|) + mask_ratio * mean(|output - target| * mask).

    output, target: (B, 3, H, W); mask: (B, 1, H, W) in {0,1}, the *target's* body mask, broadcast to the
    image channels, so both means are over B*3*H*W elements (pitfall 10). Equals the paper's
    ||(G - I_B) * (1 + M_B)||_1 / (B*3*H*W) for mask_ratio 1. An all-zero mask leaves plain L1.
    """
    if mask.dim() != output.dim() or mask.shape[1] not in (1, output.shape[1]):
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to images {tuple(output.shape)}")
    diff = (output - target).abs()  # (B, 3, H, W)
    return diff.mean() + mask_ratio * (diff * mask.to(diff.dtype)).mean()


def bce_gan_loss(logits: torch.Tensor, target_is_real: bool) -> torch.Tensor:
    """Binary cross-entropy on logits against 1 (real) or 0 (fake), averaged over the batch."""
    target = torch.ones_like(logits) if target_is_real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


PG2_D_WEIGHTS = (0.5, 0.25, 0.25)  # real I_B, fake Ĝ2, condition I_A (specs/pg2.md Sec. 4)


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
