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


# --- DPTN (Zhang et al., "Exploring Dual-task Correlation for Pose Guided Person Image Generation", CVPR 2022),
# specs/dptn.md Sec. 5: LSGAN, and VGG19 content and style losses on images in [-1, 1] ----------------------------

DPTN_CONTENT_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")  # each weighted 1.0
DPTN_STYLE_LAYERS = ("relu2_2", "relu3_4", "relu4_4", "relu5_2")


def lsgan_loss(prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
    """Least-squares GAN loss: mean((D(x) - t)^2) with t = 1 (real) or 0 (fake) over every patch logit."""
    target = 1.0 if target_is_real else 0.0
    prediction = prediction.float()  # squares of logits: float32 under --amp
    return F.mse_loss(prediction, torch.full_like(prediction, target))


def hinge_loss(prediction: torch.Tensor, target_is_real: bool, for_discriminator: bool) -> torch.Tensor:
    """Hinge GAN loss (--gan_mode hinge): D: mean(relu(1 - D(x))) real, mean(relu(1 + D(x))) fake; G: -mean(D(x))."""
    prediction = prediction.float()
    if not for_discriminator:
        return -prediction.mean()
    return F.relu(1.0 - prediction).mean() if target_is_real else F.relu(1.0 + prediction).mean()


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, C) = f f^T / (C H W), with f the features as (B, C, H*W).

    Works on either memory format without copying (channels_last features are read as (B, H*W, C)). Always
    float32, autocast or not: sums of H*W products overflow fp16 and lose bf16's few mantissa bits.
    """
    if torch.is_autocast_enabled(features.device.type):
        with torch.autocast(features.device.type, enabled=False):
            return gram_matrix(features.float())
    b, c, h, w = features.shape
    if features.is_contiguous():
        f = features.view(b, c, h * w)
        return torch.bmm(f, f.transpose(1, 2)) / (h * w * c)
    f = features.permute(0, 2, 3, 1).reshape(b, h * w, c)  # a view for channels_last tensors
    return torch.bmm(f.transpose(1, 2), f) / (h * w * c)


def content_loss(fake: dict[str, torch.Tensor], real: dict[str, torch.Tensor],
                 layers: tuple[str, ...] = DPTN_CONTENT_LAYERS) -> torch.Tensor:
    """Sum over `layers` of mean |phi(fake) - phi(real)| (VGG19 taps as returned by VGG19Features)."""
    return sum(F.l1_loss(fake[name], real[name]) for name in layers)


def style_loss(fake: dict[str, torch.Tensor], real_grams: dict[str, torch.Tensor],
               layers: tuple[str, ...] = DPTN_STYLE_LAYERS) -> torch.Tensor:
    """Sum over `layers` of mean |Gram(phi(fake)) - Gram(phi(real))|; `real_grams` holds the real Grams."""
    return sum(F.l1_loss(gram_matrix(fake[name]), real_grams[name]) for name in layers)
