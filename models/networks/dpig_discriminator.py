"""DPIG's stage-I image discriminator: PG2's D with TF's biased convs, BN on batch statistics always, and
TF's DeepFashion head (8 logits per 256x256 image).

Paper: Ma et al., "Disentangled Person Image Generation", CVPR 2018. Official TF code:
charliememory/Disentangled-Person-Image-Generation `wgan_gp.py` (`DCGANDiscriminator`, 4 convs, `dim` = 64, as
`trainer.py` and `trainer_256.py` call it). The conv layers are models/networks/pg2_discriminator.py's
(`PG2Discriminator`, keys `main.*`, `fc`); this subclass changes three things:
- the head: TF reshapes the conv output to rows of 8·4·8·dim = 16,384 numbers (Market's 512@8x4) before its
  one Linear. On 128x64 that is one row per image; on DeepFashion's 256x256 (512@16x16) it is 8 rows, one per
  64 consecutive channels, through the same shared Linear(16384 -> 1) (`tf_reshape=True`). The default is a
  per-image Linear over all features (Market; DeepFashion 256x176: Linear(90112 -> 1), no TF counterpart);
- BN (tflib, fused, `is_training=None`) always normalises with the batch statistics: `train(False)` /
  `eval()` leave the BN layers in training mode (their running averages are kept but never used);
- init: tflib's with `set_weights_stdev(0.02)`, conv/linear U(±0.02·√3), zero biases, BN γ = 1, β = 0 (PG2's
  D draws γ ~ N(1, 0.02), HPT's).
Counts (tests/test_dpig_networks.py): 4,324,737 (Market, pad256), 4,398,465 (native).
"""
from __future__ import annotations

import torch
from torch import nn

from models.networks.pg2_discriminator import PG2Discriminator
from util.io import InputError


class DPIGDiscriminator(PG2Discriminator):
    """D(image) -> logits (B, L), no sigmoid: L = 1, or 8 under `tf_reshape` on 256x256 (image-major: their
    flatten is TF's (B·L,) output). D(a, b, ...) -> a tuple, one separate pass (own BN batch) per argument.

    Args:
        height, width: network frame (128x64; 256x256 with `tf_reshape`; 256x176).
        tf_reshape: TF's head, rows of 8·4·8·ndf features through one shared Linear (DeepFashion pad256).
        ndf: width of the first conv (64).
    """

    def __init__(self, height: int = 128, width: int = 64, tf_reshape: bool = False, ndf: int = 64) -> None:
        super().__init__(height, width, num_convs=4, ndf=ndf, conv_bias=True)
        features = self.fc.in_features
        if tf_reshape:
            row = 8 * 4 * 8 * ndf  # TF `tf.reshape(output, [-1, 8*4*8*dim])`
            if features % row:
                raise InputError(f"DPIG D's TF head needs a conv output that splits into rows of {row} numbers; "
                                 f"a {height}x{width} frame gives {features}")
            self.fc = nn.Linear(row, 1)
            self.reset_parameters()
        self.logits_per_image = features // self.fc.in_features

    def reset_parameters(self) -> None:
        """tflib's init: conv/linear weights U(±0.02·√3), zero biases, BN γ = 1, β = 0."""
        super().reset_parameters()
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)

    def train(self, mode: bool = True) -> "DPIGDiscriminator":
        """Sets the mode as usual, but BN stays in training mode: TF's D always uses batch statistics."""
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.train(True)
        return self

    def forward(self, *images: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """image (B, 3, H, W) -> logits (B, L); several images -> a tuple of logits, one pass each."""
        rows = self.fc.in_features
        logits = tuple(self.fc(self.main(x).reshape(-1, rows)).view(x.shape[0], -1) for x in images)
        return logits[0] if len(logits) == 1 else logits
