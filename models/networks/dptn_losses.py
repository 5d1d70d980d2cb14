"""DPTN's losses (Zhang et al., "Exploring Dual-task Correlation for Pose Guided Person Image Generation",
CVPR 2022; official code PangzeCheung/Dual-task-Pose-Transformer-Network, `models/DPTN_model.py`).

L_D = 0.5 [GAN(D(X_t), real) + GAN(D(fake_t), fake)]
L_G = r (l_rec L1_t + l_style Style_t + l_content Content_t) + (1 - r) (the same terms of fake_s vs X_s)
      + l_g GAN(D(fake_t), real),    r = --t_s_ratio
Content: sum over relu1_1..relu5_1 of mean |phi(fake) - phi(real)|; style: sum over relu2_2, relu3_4, relu4_4,
relu5_2 of mean |Gram(phi(fake)) - Gram(phi(real))|, VGG19 fed the [-1, 1] images as they are. Logged terms
carry their lambda but not r (as the official log).

`generator_official` keeps the official sequence of operations (bit-identical gradients, see --official_ops);
`generator_batched` computes the same terms with fewer passes.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from models.networks.losses import gram_matrix, hinge_loss, lsgan_loss
from models.networks.vgg19 import VGG19Features

DPTN_CONTENT_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")  # each weighted 1.0
DPTN_STYLE_LAYERS = ("relu2_2", "relu3_4", "relu4_4", "relu5_2")
LOSS_NAMES = ("app_gen_s", "content_gen_s", "style_gen_s", "app_gen_t", "ad_gen_t", "dis_img_gen_t",
              "content_gen_t", "style_gen_t")

Terms = tuple[torch.Tensor, dict[str, torch.Tensor]]


def content_loss(fake: dict[str, torch.Tensor], real: dict[str, torch.Tensor],
                 layers: tuple[str, ...] = DPTN_CONTENT_LAYERS) -> torch.Tensor:
    """Sum over `layers` of mean |phi(fake) - phi(real)| (VGG19 taps as returned by VGG19Features)."""
    return sum(F.l1_loss(fake[name], real[name]) for name in layers)


def style_loss(fake: dict[str, torch.Tensor], real_grams: dict[str, torch.Tensor],
               layers: tuple[str, ...] = DPTN_STYLE_LAYERS) -> torch.Tensor:
    """Sum over `layers` of mean |Gram(phi(fake)) - Gram(phi(real))|; `real_grams` holds the real Grams."""
    return sum(F.l1_loss(gram_matrix(fake[name]), real_grams[name]) for name in layers)


class DPTNLosses(nn.Module):
    """The weighted DPTN terms around a frozen VGG19 (`vgg`); `opt` supplies the lambdas, r and --gan_mode."""

    def __init__(self, vgg: VGG19Features, opt, memory_format: torch.memory_format) -> None:
        super().__init__()
        self.vgg = vgg
        self.memory_format = memory_format
        self.gan_mode = opt.gan_mode
        self.lambda_rec, self.lambda_g = opt.lambda_rec, opt.lambda_g
        self.lambda_style, self.lambda_content = opt.lambda_style, opt.lambda_content
        self.ratio = opt.t_s_ratio

    def gan(self, prediction: torch.Tensor, target_is_real: bool, for_discriminator: bool) -> torch.Tensor:
        if self.gan_mode == "hinge":
            return hinge_loss(prediction, target_is_real, for_discriminator)
        return lsgan_loss(prediction, target_is_real)

    def discriminator(self, net_d: nn.Module, real_image: torch.Tensor, fake_image: torch.Tensor) -> Terms:
        """L_D = 0.5 [GAN(D(X_t), real) + GAN(D(fake_t.detach()), fake)], logged as dis_img_gen_t; the two D
        calls in the official order (each runs one spectral-norm power iteration)."""
        real = self.gan(net_d(real_image), True, True)
        fake = self.gan(net_d(fake_image.detach()), False, True)
        loss = (real + fake) * 0.5
        return loss, {"dis_img_gen_t": loss}

    def combine(self, target_terms: tuple, source_terms: tuple) -> Terms:
        """L_G from the weighted (L1, GAN, style, content) of each branch (the source branch has no GAN)."""
        app_t, adversarial, style_t, content_t = target_terms
        app_s, _, style_s, content_s = source_terms
        r = self.ratio
        loss = r * (app_t + style_t + content_t) + (1 - r) * (app_s + style_s + content_s) + adversarial
        return loss, {"app_gen_s": app_s, "content_gen_s": content_s, "style_gen_s": style_s, "app_gen_t": app_t,
                      "ad_gen_t": adversarial, "content_gen_t": content_t, "style_gen_t": style_t}

    def official_branch(self, fake: torch.Tensor, real: torch.Tensor, net_d: nn.Module | None) -> tuple:
        """The official backward_G_basic, op for op: weighted (L1, GAN or None, style, content).

        The order of operations fixes the order in which autograd sums gradients, and Adam's first steps
        amplify the last bits of gradients near its eps, so this keeps even the 0.0 start and the 1.0 layer
        weights of the official sums.
        """
        app = F.l1_loss(fake, real) * self.lambda_rec
        adversarial = None if net_d is None else self.gan(net_d(fake), True, False) * self.lambda_g
        fake_f, real_f = self.vgg(fake), self.vgg(real)
        content = 0.0
        for name in DPTN_CONTENT_LAYERS:
            content += 1.0 * F.l1_loss(fake_f[name], real_f[name])
        style = 0.0
        for name in DPTN_STYLE_LAYERS:
            style += F.l1_loss(gram_matrix(fake_f[name]), gram_matrix(real_f[name]))
        return app, adversarial, style * self.lambda_style, content * self.lambda_content

    def generator_official(self, fake_t: torch.Tensor, real_t: torch.Tensor, fake_s: torch.Tensor,
                           real_s: torch.Tensor, net_d: nn.Module) -> Terms:
        """L_G as the official code computes it: the target branch (with D), then the source branch."""
        return self.combine(self.official_branch(fake_t, real_t, net_d), self.official_branch(fake_s, real_s, None))

    def generator_batched(self, fake_t: torch.Tensor, real_t: torch.Tensor, fake_s: torch.Tensor,
                          real_s: torch.Tensor, net_d: nn.Module) -> Terms:
        """The same L_G with every term computed once: the real images' VGG features and Grams from one pass
        without grad (shared by the content and the style loss); fake_t and fake_s through VGG19 as one batch."""
        adversarial = self.gan(net_d(fake_t), True, False) * self.lambda_g
        with torch.no_grad():
            real_f = self.vgg(torch.cat((real_t, real_s)).contiguous(memory_format=self.memory_format))
            real_grams = {name: gram_matrix(real_f[name]) for name in DPTN_STYLE_LAYERS}
        fake_f = self.vgg(torch.cat((fake_t, fake_s)).contiguous(memory_format=self.memory_format))
        batch = fake_t.shape[0]
        branches = []
        for fake, real, half, adv in ((fake_t, real_t, slice(0, batch), adversarial),
                                      (fake_s, real_s, slice(batch, 2 * batch), None)):
            fake_h = {k: v[half] for k, v in fake_f.items()}
            content = content_loss(fake_h, {k: v[half] for k, v in real_f.items()})
            style = style_loss(fake_h, {k: v[half] for k, v in real_grams.items()})
            branches.append((F.l1_loss(fake, real) * self.lambda_rec, adv, style * self.lambda_style,
                             content * self.lambda_content))
        return self.combine(*branches)
