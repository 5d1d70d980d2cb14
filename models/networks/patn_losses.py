"""PATN's losses (Zhu et al., "Progressive Pose Attention Transfer for Person Image Generation", CVPR 2019;
official code tengteng95/Pose-Transfer, `models/PATN.py` and `losses/L1_plus_perceptualLoss.py`).

With fake = G(P1, cat(BP1, BP2)):
  L1         = lambda_A * mean|fake - P2|
  perceptual = lambda_B * mean|phi(n(fake)) - phi(n(P2))|  (mean squared with --percep_is_l1 0)
               phi = vgg19().features[0..perceptual_layers] (default relu1_2), n = ImageNet normalisation of
               (x + 1) / 2
  G          = L1 + perceptual + lambda_GAN * [GAN(D_PB(fake, BP2), real) + GAN(D_PP(fake, P1), real)] / 2
  D_PP       = 0.5 * lambda_GAN * [GAN(D_PP(P2, P1), real) + GAN(D_PP(pool(fake, P1)), fake)]; D_PB alike.
GAN is BCE on D's logits (vanilla, `--no_lsgan`; with --official_ops the official Sigmoid + BCELoss, bit for
bit) or least squares, over every element of D's 256-channel map.
The /2 applies only when both discriminators are on. `--L1_type origin` replaces L1 + perceptual by L1 alone.
Logged names are the official ones: pair_L1loss (L1 + perceptual), origin_L1, perceptual, pair_GANloss, D_PP,
D_PB. Each computation keeps the official order of operations (and so of the dropout draws in D).
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from models.networks.losses import bce_gan_loss, lsgan_loss
from models.networks.vgg19 import VGG19Features

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Terms = tuple[torch.Tensor, dict[str, torch.Tensor]]


def loss_names(l1_type: str, with_d_pb: bool, with_d_pp: bool) -> list[str]:
    """The logged terms, in the official log's order, for these switches."""
    names = ["pair_L1loss"]
    names += ["D_PP"] if with_d_pp else []
    names += ["D_PB"] if with_d_pb else []
    names += ["pair_GANloss"] if with_d_pb or with_d_pp else []
    names += ["origin_L1", "perceptual"] if l1_type == "l1_plus_perL1" else []
    return names


class PATNLosses(nn.Module):
    """The weighted PATN terms; `vgg` is the frozen feature extractor of the perceptual loss (or None for
    --L1_type origin). `opt` supplies lambda_A, lambda_B, lambda_GAN, no_lsgan, L1_type, percep_is_l1."""

    def __init__(self, opt, vgg: VGG19Features | None) -> None:
        super().__init__()
        self.vgg = vgg
        self.l1_type = opt.L1_type
        self.lambda_a, self.lambda_b, self.lambda_gan = opt.lambda_A, opt.lambda_B, opt.lambda_GAN
        self.vanilla = bool(opt.no_lsgan)
        self.perceptual_l1 = opt.percep_is_l1 == 1
        self.official_ops = opt.official_ops
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def gan(self, prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        """GAN(D's logits, real/fake) averaged over every element; float32 under --amp."""
        if not self.vanilla:
            return lsgan_loss(prediction, target_is_real)
        if not self.official_ops:
            return bce_gan_loss(prediction.float(), target_is_real)
        with torch.autocast(prediction.device.type, enabled=False):  # the official Sigmoid + BCELoss
            probability = torch.sigmoid(prediction.float())
            target = torch.ones_like(probability) if target_is_real else torch.zeros_like(probability)
            return F.binary_cross_entropy(probability, target)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """phi(n(x)) for images in [-1, 1]: to [0, 1], ImageNet-normalised, through the VGG19 cut."""
        normalised = ((images + 1) / 2 - self.mean) / self.std
        return next(iter(self.vgg(normalised).values()))

    def reconstruction(self, fake: torch.Tensor, target: torch.Tensor) -> Terms:
        """pair_L1loss = lambda_A L1 (+ lambda_B perceptual under l1_plus_perL1), with its parts."""
        l1 = F.l1_loss(fake, target) * self.lambda_a
        if self.l1_type != "l1_plus_perL1":
            return l1, {}
        fake_features = self.features(fake)
        with torch.no_grad():
            target_features = self.features(target)
        distance = F.l1_loss if self.perceptual_l1 else F.mse_loss
        perceptual = distance(fake_features, target_features) * self.lambda_b
        return l1 + perceptual, {"origin_L1": l1, "perceptual": perceptual}

    def generator(self, fake: torch.Tensor, target: torch.Tensor, source: torch.Tensor, target_pose: torch.Tensor,
                  net_pb: nn.Module | None, net_pp: nn.Module | None) -> Terms:
        """The official backward_G: D_PB's then D_PP's verdict on the fake, then L1 (+ perceptual)."""
        gan_pb = self.gan(net_pb(torch.cat((fake, target_pose), 1)), True) if net_pb is not None else None
        gan_pp = self.gan(net_pp(torch.cat((fake, source), 1)), True) if net_pp is not None else None
        reconstruction, parts = self.reconstruction(fake, target)
        terms = {"pair_L1loss": reconstruction, **parts}
        if gan_pb is None and gan_pp is None:
            return reconstruction, terms
        if gan_pb is not None and gan_pp is not None:
            adversarial = (gan_pb * self.lambda_gan + gan_pp * self.lambda_gan) / 2
        else:
            adversarial = (gan_pb if gan_pb is not None else gan_pp) * self.lambda_gan
        terms["pair_GANloss"] = adversarial
        return reconstruction + adversarial, terms

    def discriminator(self, net_d: nn.Module, real: torch.Tensor, fake: torch.Tensor, name: str) -> Terms:
        """The official backward_D_basic: 0.5 * lambda_GAN * [GAN(D(real), real) + GAN(D(fake), fake)]."""
        real_loss = self.gan(net_d(real), True) * self.lambda_gan
        fake_loss = self.gan(net_d(fake.detach()), False) * self.lambda_gan
        loss = (real_loss + fake_loss) * 0.5
        return loss, {name: loss}
