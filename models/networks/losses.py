"""Loss primitives shared by the models: GAN objectives and Gram matrices.

Each model's own formulas (which terms, weights and layers) live in `models/networks/<model>_losses.py` and
are built from these.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def bce_gan_loss(logits: torch.Tensor, target_is_real: bool) -> torch.Tensor:
    """Binary cross-entropy on logits against 1 (real) or 0 (fake), averaged over every element.

    The vanilla GAN loss; on logits it equals BCE on sigmoid outputs and is safe under autocast.
    """
    target = torch.ones_like(logits) if target_is_real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


def lsgan_loss(prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
    """Least-squares GAN loss: mean((D(x) - t)^2) with t = 1 (real) or 0 (fake) over every patch logit."""
    target = 1.0 if target_is_real else 0.0
    prediction = prediction.float()  # squares of logits: float32 under --amp
    return F.mse_loss(prediction, torch.full_like(prediction, target))


def hinge_loss(prediction: torch.Tensor, target_is_real: bool, for_discriminator: bool) -> torch.Tensor:
    """Hinge GAN loss: D: mean(relu(1 - D(x))) real, mean(relu(1 + D(x))) fake; G: -mean(D(x))."""
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
