"""PN-GAN's discriminator (Qian et al., ECCV 2018; official code naiq/PN_GAN `script/GAN/network.py`
`Patch_Discriminator`): a 70x70 PatchGAN with InstanceNorm.

conv1 4x4/2 (no bias, no norm) -> conv2, conv3 4x4/2 + IN -> conv4 4x4/1 padding 0 + IN -> dis 4x4/1 padding 0,
no bias, raw scores; LeakyReLU(0.2) after every conv but the last. Unlike pix2pix's NLayerDiscriminator the last
two convs are unpadded, so a 128x64 image gives 1@10x2 scores and 256x128 gives 1@26x10; each score's
convolutional receptive field is 70x70. The output keeps its (B, 1, h, w) shape (the official `.squeeze()` would
drop the batch dimension at B = 1). 2,764,672 parameters (3 input channels), 2,767,744 with 6 (conditioned on
the source image, `--pngan_d_cond source`).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


def _layer(conv: nn.Conv2d, norm: bool, act: bool) -> nn.Sequential:
    layers: list[tuple[str, nn.Module]] = [("conv", conv)]
    if norm:
        layers.append(("bn", nn.InstanceNorm2d(conv.out_channels)))
    if act:
        layers.append(("relu", nn.LeakyReLU(0.2, inplace=True)))
    return nn.Sequential(OrderedDict(layers))


class PNGANDiscriminator(nn.Module):
    """D(x (B, input_nc, H, W)) -> patch scores (B, 1, H/8 - 6, W/8 - 6); H, W >= 56."""

    def __init__(self, input_nc: int = 3, ndf: int = 64) -> None:
        super().__init__()
        self.conv1 = _layer(nn.Conv2d(input_nc, ndf, 4, 2, 1, bias=False), norm=False, act=True)
        self.conv2 = _layer(nn.Conv2d(ndf, ndf * 2, 4, 2, 1), norm=True, act=True)
        self.conv3 = _layer(nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1), norm=True, act=True)
        self.conv4 = _layer(nn.Conv2d(ndf * 4, ndf * 8, 4, 1, 0), norm=True, act=True)
        self.dis = _layer(nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), norm=False, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dis(self.conv4(self.conv3(self.conv2(self.conv1(x)))))
