"""PG2 stage-1 generator G1: a U-Net with a fully connected bottleneck.

Paper: Ma et al., "Pose Guided Person Image Generation", NeurIPS 2017 (the stage-I generator). Official TF
code: charliememory/Pose-Guided-Person-Image-Generation `models.py` (`GeneratorCNN_Pose_UAEAfterResidual`).
Module names follow budui/Human-Pose-Transfer `implementations/PG2/model.py` (`Generator1`), so the state_dict
keys are HPT's. Layer widths, parameter counts, Xavier init and geometry: docs/models/pg2.md ("The model",
"Geometry"); tests/test_pg2.py checks the counts and names.

The fc sizes come from a dummy forward of the encoder: HPT's int(H / 2^(N-1)) is right only for frames that
halve evenly, and depth N = 6 cannot fit DeepFashion's 176 columns (after upsampling, the 6-wide map no longer
matches the 11-wide skip). Input cat(I_A, P_B) = 21 channels; output Ĝ1, 3 channels, linear (no tanh).

`arch="mobile"` builds Mobile PG2's G1 (kevinleewy/Human-Pose-Transfer `implementations/PG2/mobile/model.py`,
`Generator1`): every conv a depthwise-separable DSConv (models/networks/blocks.py), the fc bottleneck unchanged,
KLW's keys (`start_conv.main.0`, `encoder.{i}.res.main.{0,1}.main.{0,2}`, ...); docs/models/pg2.md, "Mobile PG2".
"""
from __future__ import annotations

import torch
from torch import nn

from models.networks.blocks import ConvFactory, ResBlock, conv_factory, probe_output_shape, xavier_uniform_init
from util.io import InputError


class G1EncoderBlock(nn.Module):
    """Res(C) -> skip; then Down(C -> C_next) (conv3x3 stride 2 + ReLU) unless this is the last block."""

    def __init__(self, channels: int, next_channels: int | None, convs: ConvFactory) -> None:
        super().__init__()
        self.res = ResBlock(channels, convs)
        self.conv = convs.conv(channels, next_channels, 3, stride=2) if next_channels is not None else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skip = self.res(x)  # (B, C, h, w)
        return skip, (self.conv(skip) if self.conv is not None else skip)


class G1DecoderBlock(nn.Module):
    """cat(x, skip) -> Res(cat channels); then Up(cat channels -> C_out) unless this is the last block."""

    def __init__(self, channels: int, out_channels: int | None, convs: ConvFactory) -> None:
        super().__init__()
        self.res = ResBlock(channels, convs)
        self.conv = convs.up(channels, out_channels) if out_channels is not None else None

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.res(torch.cat([x, skip], dim=1))
        return self.conv(x) if self.conv is not None else x


class PG2GeneratorStage1(nn.Module):
    """G1(I_A, P_B) -> Ĝ1, built for one frame size.

    Args:
        height, width: network frame (Market 128x64; DeepFashion 256x256 pad256 or 256x176 native).
        depth: N, the number of encoder/decoder blocks (5 Market and native, 6 pad256).
        ngf: n, the base width (the paper's 128; smaller values are not the paper's network).
        z_dim: bottleneck size (64).
        image_channels, pose_channels: 3 and 18 (the input has their sum).
        arch: 'standard' (PG2's convs) or 'mobile' (DSConvs, Mobile PG2), or a conv factory from blocks.py.
        init: 'xavier' (Xavier-uniform weights, zero biases: TF slim's default) or 'torch' (PyTorch's default
            init, which HPT and KLW leave G1 at).

    The fc sizes come from a dummy forward of the encoder; a frame whose height or width is not divisible
    by 2^(N-1) raises InputError.
    """

    def __init__(self, height: int = 128, width: int = 64, depth: int = 5, ngf: int = 128, z_dim: int = 64,
                 image_channels: int = 3, pose_channels: int = 18, arch: str | ConvFactory = "standard",
                 init: str = "xavier") -> None:
        super().__init__()
        if init not in ("xavier", "torch"):
            raise ValueError(f"G1 init must be xavier or torch, got {init!r}")
        convs = conv_factory(arch)
        self.arch = convs.arch
        factor = 2 ** (depth - 1)
        if depth < 1 or height % factor or width % factor:
            raise InputError(
                f"PG2 G1 with depth N={depth} needs a frame whose height and width are divisible by "
                f"2^(N-1)={factor}, got {height}x{width} (docs/models/pg2.md, Geometry: DeepFashion 256x176 "
                "works with N=5 (--fashion_frame native) or padded to 256x256 with N=6 (pad256))")
        n = ngf
        self.height, self.width, self.depth, self.ngf = height, width, depth, ngf
        in_channels = image_channels + pose_channels

        self.start_conv = convs.conv(in_channels, n, 3)  # + ReLU
        # block i (1-based) works at n*i channels; all but the last end with Down(n*i -> n*(i+1))
        self.encoder = nn.ModuleList(
            G1EncoderBlock(n * i, n * (i + 1) if i < depth else None, convs) for i in range(1, depth + 1))

        layers = [self.start_conv] + [m for block in self.encoder for m in (block.res, block.conv) if m is not None]
        _, c, h, w = probe_output_shape(layers, (1, in_channels, height, width))  # (1, n*N, h, w)
        self.bottleneck_shape = (n, h, w)  # what up_fc reshapes to
        self.down_fc = nn.Linear(c * h * w, z_dim)  # no activation
        self.up_fc = nn.Linear(z_dim, n * h * w)  # no activation

        # decoder block j (1-based) concatenates x with skip s_{N+1-j} (n*(N+1-j) channels)
        decoder = []
        x_channels = n
        for j in range(1, depth + 1):
            cat_channels = x_channels + n * (depth + 1 - j)
            out_channels = n * (depth - j) if j < depth else None
            decoder.append(G1DecoderBlock(cat_channels, out_channels, convs))
            x_channels = out_channels if out_channels is not None else cat_channels
        self.decoder = nn.ModuleList(decoder)
        self.end_conv = convs.conv(x_channels, 3, 3, relu=False)  # 2n -> 3, linear output
        if init == "xavier":
            xavier_uniform_init(self)

    def encode(self, image: torch.Tensor, pose: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """image (B, 3, H, W) in [-1,1], pose (B, 18, H, W) -> (z (B, z_dim), the encoder skips s_1..s_N)."""
        x = self.start_conv(torch.cat([image, pose], dim=1))  # (B, n, H, W)
        skips = []
        for block in self.encoder:
            skip, x = block(x)
            skips.append(skip)
        return self.down_fc(x.flatten(1)), skips  # z flattened in (C, H, W) order

    def decode(self, z: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        """z (B, z_dim) and the skips of `encode` -> Ĝ1 (B, 3, H, W), not clamped."""
        x = self.up_fc(z).view(z.shape[0], *self.bottleneck_shape)  # (B, n, h, w)
        for block, skip in zip(self.decoder, reversed(skips)):
            x = block(x, skip)
        return self.end_conv(x)  # (B, 3, H, W)

    def forward(self, image: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """image (B, 3, H, W) in [-1,1], pose (B, 18, H, W) -> Ĝ1 (B, 3, H, W), not clamped."""
        z, skips = self.encode(image, pose)
        return self.decode(z, skips)
