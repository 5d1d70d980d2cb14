"""PG2 discriminator D: DCGAN-style, unconditional (sees single 3-channel images), one logit per image.

Paper: Ma et al., "Pose Guided Person Image Generation", NeurIPS 2017. Official TF code:
charliememory/Pose-Guided-Person-Image-Generation (`DCGANDiscriminator` of `wgan_gp_128x64.py`, used by
`trainer.py`). Layers and names follow budui/Human-Pose-Transfer `implementations/PG2/model.py`
(`Discriminator`), whose fc size is hard-coded and breaks on 256x176; here it comes from a dummy forward.
Parameter counts and init: docs/models/pg2.md ("The model"); tests/test_pg2.py checks them.
Default: convs without bias (HPT); `conv_bias=True` gives TF's biased convs.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from models.networks.blocks import conv2d, probe_output_shape


class PG2Discriminator(nn.Module):
    """D(image) -> logits (B, 1), no sigmoid; D(a, b, ...) -> a tuple, one separate pass per batch.

    Args:
        height, width: network frame (any size; the fc size comes from a dummy forward).
        num_convs: 5x5 stride-2 convs (4 Market, 5 DeepFashion); widths ndf*2^i, capped at 8*ndf.
        ndf: width of the first conv (64).
        image_channels: 3.
        conv_bias: give the convs biases (TF) instead of none (HPT, the default).

    Layout (Market): main = [conv 3->64, LReLU, (conv, BN, LReLU) x3], fc = Linear(512*8*4 -> 1).
    BatchNorm is meant to run in training mode always (D is never used at test time).
    """

    def __init__(self, height: int = 128, width: int = 64, num_convs: int = 4, ndf: int = 64,
                 image_channels: int = 3, conv_bias: bool = False) -> None:
        super().__init__()
        if num_convs < 1:
            raise ValueError(f"PG2 D needs at least one conv, got num_convs={num_convs}")
        widths = [min(ndf * 2 ** i, ndf * 8) for i in range(num_convs)]
        layers: list[nn.Module] = [conv2d(image_channels, widths[0], 5, stride=2, bias=conv_bias),
                                   nn.LeakyReLU(0.2, inplace=True)]
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [conv2d(c_in, c_out, 5, stride=2, bias=conv_bias),
                       nn.BatchNorm2d(c_out, eps=1e-5, momentum=0.1, affine=True),
                       nn.LeakyReLU(0.2, inplace=True)]
        self.main = nn.Sequential(*layers)
        features = math.prod(probe_output_shape([self.main], (1, image_channels, height, width))[1:])
        self.fc = nn.Linear(features, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """HPT's `tflib` init: conv/linear weights U(+-0.02*sqrt(3)), zero biases, BN weight N(1, 0.02)."""
        bound = 0.02 * math.sqrt(3.0)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.uniform_(m.weight, -bound, bound)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, *images: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """image (B, 3, H, W) -> logits (B, 1), no sigmoid.

        Several batches, D(a, b, c), run as separate passes (each with its own BN statistics) and give a
        tuple of logits; one call keeps a DistributedDataParallel wrapper to one forward per backward.
        """
        logits = tuple(self.fc(self.main(x).flatten(1)) for x in images)  # flattened in (C, H, W) order
        return logits[0] if len(logits) == 1 else logits
