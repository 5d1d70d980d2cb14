"""PN-GAN's losses (Qian et al., ECCV 2018; official code naiq/PN_GAN `script/GAN/train.py`).

With Ĝ = G(I_A, P_B) and R the real image D is shown (I_A by default, `--pngan_d_real`):
  L_G = GAN(D(Ĝ), real) + lambda_L1 * mean|Ĝ - I_B|
  L_D = d_loss_scale * [GAN(D(Ĝ.detach()), fake) + GAN(D(R), real)]   (official: the sum, scale 1)
GAN is least squares on D's raw patch scores (`--gan_mode lsgan`, the official nn.MSELoss against all-ones /
all-zeros) or BCE on them as logits (`vanilla`). Under `--pngan_d_cond source` D judges cat(x, I_A). The
primitives are models/networks/losses.py's.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.networks.losses import bce_gan_loss, lsgan_loss

Terms = tuple[torch.Tensor, dict[str, torch.Tensor]]
LOSS_NAMES = ["G_GAN", "G_L1", "D_real", "D_fake"]  # the logged terms


class PNGANLosses:
    """The weighted PN-GAN terms. `opt` supplies gan_mode, lambda_L1, d_loss_scale, pngan_d_cond."""

    def __init__(self, opt) -> None:
        self.gan_mode = opt.gan_mode
        self.lambda_l1 = opt.lambda_L1
        self.d_scale = opt.d_loss_scale
        self.conditioned = opt.pngan_d_cond == "source"

    def gan(self, scores: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        """The GAN criterion on D's (B, 1, h, w) scores, averaged over every score; float32 under --amp."""
        if self.gan_mode == "lsgan":
            return lsgan_loss(scores, target_is_real)
        return bce_gan_loss(scores.float(), target_is_real)

    def judge(self, net_d: nn.Module, image: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """D's scores for `image` (with the source image as condition under --pngan_d_cond source)."""
        return net_d(torch.cat((image, source), 1) if self.conditioned else image)

    def generator(self, net_d: nn.Module, fake: torch.Tensor, target: torch.Tensor, source: torch.Tensor) -> Terms:
        """L_G = GAN(D(Ĝ), real) + lambda_L1 * L1(Ĝ, I_B), the official order: D's verdict first."""
        adversarial = self.gan(self.judge(net_d, fake, source), True)
        l1 = F.l1_loss(fake, target) * self.lambda_l1
        return adversarial + l1, {"G_GAN": adversarial, "G_L1": l1}

    def discriminator(self, net_d: nn.Module, fake: torch.Tensor, real: torch.Tensor, source: torch.Tensor) -> Terms:
        """L_D = scale * [GAN(D(Ĝ.detach()), fake) + GAN(D(R), real)], fake judged first as officially."""
        fake_loss = self.gan(self.judge(net_d, fake.detach(), source), False)
        real_loss = self.gan(self.judge(net_d, real, source), True)
        loss = (fake_loss + real_loss) * self.d_scale if self.d_scale != 1.0 else fake_loss + real_loss
        return loss, {"D_real": real_loss * self.d_scale, "D_fake": fake_loss * self.d_scale}
