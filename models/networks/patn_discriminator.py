"""PATN's discriminators D_PB and D_PP: pix2pix's ResNet discriminator with no final 1-channel conv.

Zhu et al., "Progressive Pose Attention Transfer for Person Image Generation", CVPR 2019; official code
tengteng95/Pose-Transfer, `models/networks.py` (ResnetDiscriminator, ResnetBlock). The output is the last
residual block's 256-channel map at H/4 x W/4; the GAN target is a map of ones or zeros of that shape. The
official Market D ends in a Sigmoid (no parameters) before a BCE loss; here D returns the logits and the loss
is BCE on logits, the same function, safe under autocast.
"""
from __future__ import annotations

import torch
from torch import nn

from models.networks.blocks import norm_layer, residual_conv_block


class ResnetBlock(nn.Module):
    """x + [pad, conv, norm, ReLU, dropout, pad, conv, norm](x)."""

    def __init__(self, dim: int, norm: str, dropout: bool, bias: bool, padding_type: str) -> None:
        super().__init__()
        self.conv_block = residual_conv_block(dim, dim, dim, norm, dropout, bias, padding_type)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class PATNDiscriminator(nn.Module):
    """ResnetDiscriminator(input_nc, ndf, norm, dropout, n_blocks, padding, downsampling) under `model.`.

    input_nc: 21 for D_PB (image + 18 target maps), 6 for D_PP (image + source image).
    """

    def __init__(self, input_nc: int, ndf: int = 64, norm: str = "batch", dropout: bool = True, blocks: int = 3,
                 padding_type: str = "reflect", downsampling: int = 2) -> None:
        super().__init__()
        if not 0 <= downsampling <= 3:
            raise ValueError(f"the discriminator downsamples 0 to 3 times, not {downsampling}")
        bias = norm == "instance"
        make_norm = norm_layer(norm)
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ndf, 7, padding=0, bias=bias),
                                   make_norm(ndf), nn.ReLU(True)]
        widths = [ndf * 2 ** i for i in range(min(downsampling, 2) + 1)]
        if downsampling == 3:  # the official third level keeps 4 ndf channels
            widths.append(ndf * 4)
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=bias), make_norm(cout), nn.ReLU(True)]
        layers += [ResnetBlock(widths[-1], norm, dropout, bias, padding_type) for _ in range(blocks)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, input_nc, H, W) -> (B, 4 ndf, H/4, W/4) logits (pre-sigmoid)."""
        return self.model(x)
