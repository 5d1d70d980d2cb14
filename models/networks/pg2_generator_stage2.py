"""PG2 stage-2 generator G2: a U-Net (no fc, no residuals, no normalisation) predicting a difference map.

Paper: Ma et al., "Pose Guided Person Image Generation", NeurIPS 2017 (the stage-II generator). Official TF
code: charliememory/Pose-Guided-Person-Image-Generation `models.py`, `UAE_noFC_After2Noise` (Market: the
full-resolution skip dropped) and `UAE_noFC_AfterNoise` (DeepFashion: all skips), built without noise
(`noise_dim=0` in its `trainer.py`). Module names follow budui/Human-Pose-Transfer `implementations/PG2/model.py`
(`Generator2`, Market with `num_skip_out_connect=1`). Parameter counts, Xavier init and skip rules:
docs/models/pg2.md ("The model"); tests/test_pg2.py checks them.
Input cat(I_A, Ĝ1) = 6 channels (TF concatenates the reverse order, which matters only when porting TF
weights); output the difference map; the model forms Ĝ2 = Ĝ1 + G2(I_A, Ĝ1).

`arch="mobile"` builds Mobile PG2's G2 (kevinleewy/Human-Pose-Transfer `implementations/PG2/mobile/model.py`,
`Generator2`): every conv a depthwise-separable DSConv (models/networks/blocks.py), KLW's keys
(`start_conv.main.0`, `encoder.{i}.main.{0,1}.main.{0,2}`, `encoder.{i}.conv.main.{0,2}`, ...); the same
encode/decode interface as the standard G2 (docs/models/pg2.md, "Mobile PG2").
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from models.networks.blocks import ConvFactory, Up, conv_factory, xavier_uniform_init
from util.io import InputError


class G2EncoderBlock(nn.Module):
    """[conv3x3 Ci->C, ReLU, conv3x3 C->C, ReLU] -> e_i; then Down(C -> C) unless this is the last block."""

    def __init__(self, in_channels: int, channels: int, down: bool, convs: ConvFactory) -> None:
        super().__init__()
        self.main = convs.pair(in_channels, channels)
        self.conv = convs.conv(channels, channels, 3, stride=2) if down else None  # Down: + ReLU

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.main(x)  # (B, C, h, w)
        return e, (self.conv(e) if self.conv is not None else e)


class G2DecoderBlock(nn.Module):
    """[cat(x, skip) if kept], [conv3x3 -> n, ReLU, conv3x3 n -> n, ReLU], then nearest x2 unless last."""

    def __init__(self, in_channels: int, channels: int, up: bool, convs: ConvFactory) -> None:
        super().__init__()
        self.main = convs.pair(in_channels, channels)
        self.up = Up() if up else None

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        x = self.main(x)
        return self.up(x) if self.up is not None else x


class PG2GeneratorStage2(nn.Module):
    """G2(I_A, Ĝ1) -> difference map, built for one frame size.

    Args:
        height, width: network frame; both must be divisible by 2^(R-1).
        depth: R, the number of encoder/decoder blocks (3 Market, 4 DeepFashion).
        ngf: n, the base width (the paper's 128; smaller values are not the paper's network).
        skips: 1-based encoder levels i whose output e_i the decoder concatenates; None keeps all.
            Market drops the full-resolution skip: skips=(2, 3) with R=3.
        image_channels: 3 (the input is the condition image and Ĝ1, 2 * 3 channels).
        arch: 'standard' (PG2's convs) or 'mobile' (DSConvs, Mobile PG2), or a conv factory from blocks.py.

    Both variants get Xavier-uniform conv weights and zero biases (TF; HPT and KLW `weight_init_way="xavier"`);
    on a depthwise (C, 1, 3, 3) weight that is the bound sqrt(6 / (9 + 9C)).
    """

    def __init__(self, height: int = 128, width: int = 64, depth: int = 3, ngf: int = 128,
                 skips: Iterable[int] | None = None, image_channels: int = 3,
                 arch: str | ConvFactory = "standard") -> None:
        super().__init__()
        convs = conv_factory(arch)
        self.arch = convs.arch
        factor = 2 ** (depth - 1)
        if depth < 1 or height % factor or width % factor:
            raise InputError(f"PG2 G2 with depth R={depth} needs a frame whose height and width are divisible "
                             f"by 2^(R-1)={factor}, got {height}x{width}")
        self.skips = tuple(sorted(set(range(1, depth + 1) if skips is None else skips)))
        if any(not 1 <= i <= depth for i in self.skips):
            raise ValueError(f"G2 skips must be levels in 1..{depth}, got {self.skips}")
        n = ngf
        self.height, self.width, self.depth, self.ngf = height, width, depth, ngf

        self.start_conv = convs.conv(2 * image_channels, n, 3)  # + ReLU
        # block i (1-based): (n or n*(i-1)) -> n*i; the stride-2 conv keeps the channel count
        self.encoder = nn.ModuleList(
            G2EncoderBlock(n if i == 1 else n * (i - 1), n * i, i < depth, convs) for i in range(1, depth + 1))
        # decoder block j (1-based) reads x (e_R for j = 1, else n channels) and maybe skip e_{R+1-j}
        decoder = []
        for j in range(1, depth + 1):
            level = depth + 1 - j
            x_channels = n * depth if j == 1 else n
            in_channels = x_channels + (n * level if level in self.skips else 0)
            decoder.append(G2DecoderBlock(in_channels, n, j < depth, convs))
        self.decoder = nn.ModuleList(decoder)
        self.end_conv = convs.conv(n, 3, 3, relu=False)  # linear output
        xavier_uniform_init(self)

    def encode(self, image: torch.Tensor, coarse: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """image I_A, coarse Ĝ1 (B, 3, H, W) -> (e_R, [e_1..e_R]): e_R (B, n*R, H/2^(R-1), W/2^(R-1)) is the
        deepest encoder output, the "global feature vector" (GFV) of the RL-GAN-Net fork of PG2."""
        x = self.start_conv(torch.cat([image, coarse], dim=1))  # (B, n, H, W)
        features = []
        for block in self.encoder:
            e, x = block(x)
            features.append(e)
        return features[-1], features

    def decode(self, gfv: torch.Tensor, features: list[torch.Tensor], skip_mode: str = "keep") -> torch.Tensor:
        """The difference map from a GFV and the encoder outputs of `encode`.

        skip_mode "keep": the GFV replaces only Dec1's input, the skips stay the encoder's (the RL-GAN-Net fork);
        "replace": the GFV also replaces e_R where the decoder concatenates it as a skip.
        """
        if skip_mode not in ("keep", "replace"):
            raise ValueError(f"skip_mode must be keep or replace, got {skip_mode!r}")
        if gfv.shape != features[-1].shape:
            raise InputError(f"GFV shape {tuple(gfv.shape[1:])} does not match this G2's encoder output "
                             f"{tuple(features[-1].shape[1:])}")
        if skip_mode == "replace":
            features = features[:-1] + [gfv]
        x = gfv
        for j, block in enumerate(self.decoder, start=1):
            level = self.depth + 1 - j
            x = block(x, features[level - 1] if level in self.skips else None)
        return self.end_conv(x)

    def forward(self, image: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """image I_A (B, 3, H, W), coarse Ĝ1 (B, 3, H, W) -> difference map (B, 3, H, W)."""
        gfv, features = self.encode(image, coarse)
        return self.decode(gfv, features)
