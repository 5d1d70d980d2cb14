"""DPTN generator: a Siamese encoder shared by the source-to-source and source-to-target branches, a source-image
encoder for the attention values, the Pose Transformer Module, and a decoder shared by both branches.

Paper: Zhang et al., "Exploring Dual-task Correlation for Pose Guided Person Image Generation", CVPR 2022.
Official code: PangzeCheung/Dual-task-Pose-Transformer-Network `models/networks.py` (the generator, its
`SourceEncoder` and forward), with the blocks of `models/base_function.py` (EncoderBlockOptimized,
EncoderBlock, ResBlock, ResBlockDecoder, Output). Topology, forward and parameter counts: docs/models/dptn.md
("The model").

State_dict keys, their order and shapes equal the official ones (the listing in tests/data/dptn_G_state_dict.txt,
checked by tests/test_dptn.py::test_generator_state_dict_equals_listing): the blocks keep the official
Sequential indices, and ResBlock / Output register their convs twice (as attributes and inside
`model`/`shortcut`), so those tensors appear under two names, as in the official checkpoints.
Modules are built in the official order, so the same seed draws the same initial weights.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from models.networks.dptn_ptm import PTM

NormFactory = Callable[[int], nn.Module]


def norm_2d(kind: str) -> NormFactory:
    """--norm: 'instance' -> InstanceNorm2d(affine), 'batch' -> BatchNorm2d(affine, momentum 0.1)."""
    if kind == "instance":
        return lambda channels: nn.InstanceNorm2d(channels, affine=True)
    if kind == "batch":
        return lambda channels: nn.BatchNorm2d(channels, momentum=0.1, affine=True)
    raise ValueError(f"unknown norm {kind!r}; DPTN supports instance and batch")


class EncoderBlockOptimized(nn.Module):
    """First encoder level: model = [conv 4x4/2, norm, act, conv 3x3]; halves the resolution."""

    def __init__(self, in_channels: int, out_channels: int, norm: NormFactory, act: nn.Module) -> None:
        super().__init__()
        down = nn.Conv2d(in_channels, out_channels, 4, stride=2, padding=1)
        fine = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1)
        self.model = nn.Sequential(down, norm(out_channels), act, fine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class EncoderBlock(nn.Module):
    """Encoder level: model = [norm, act, conv 4x4/2, norm, act, conv 3x3]; halves the resolution."""

    def __init__(self, in_channels: int, out_channels: int, norm: NormFactory, act: nn.Module) -> None:
        super().__init__()
        down = nn.Conv2d(in_channels, out_channels, 4, stride=2, padding=1)
        fine = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1)
        self.model = nn.Sequential(norm(in_channels), act, down, norm(out_channels), act, fine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class ResBlock(nn.Module):
    """x -> model(x) + shortcut(x); model = [norm, act, conv1 3x3, norm, act, conv2 3x3], shortcut = [bypass 1x1].

    conv1, conv2 and bypass are registered before model/shortcut and are the same modules (aliases).
    """

    def __init__(self, channels: int, norm: NormFactory, act: nn.Module) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, stride=1, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding=1)
        self.bypass = nn.Conv2d(channels, channels, 1)
        self.model = nn.Sequential(norm(channels), act, self.conv1, norm(channels), act, self.conv2)
        self.shortcut = nn.Sequential(self.bypass)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) + self.shortcut(x)


class ResBlockDecoder(nn.Module):
    """Doubles the resolution: model = [norm, act, conv 3x3, norm, act, convT 3x3/2], shortcut = [convT 3x3/2]."""

    def __init__(self, in_channels: int, out_channels: int, norm: NormFactory, act: nn.Module) -> None:
        super().__init__()
        hidden = out_channels
        conv = nn.Conv2d(in_channels, hidden, 3, stride=1, padding=1)
        up = nn.ConvTranspose2d(hidden, out_channels, 3, stride=2, padding=1, output_padding=1)
        bypass = nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1)
        self.model = nn.Sequential(norm(in_channels), act, conv, norm(hidden), act, up)
        self.shortcut = nn.Sequential(bypass)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) + self.shortcut(x)


class Output(nn.Module):
    """model = [act, reflection pad 1, conv1 3x3, tanh]; conv1 is also registered on its own (alias)."""

    def __init__(self, in_channels: int, out_channels: int, act: nn.Module) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=0)
        self.model = nn.Sequential(act, nn.ReflectionPad2d(1), self.conv1, nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def encoder_widths(ngf: int, img_f: int, layers: int) -> list[int]:
    """Channels after block0 and each encoder level: ngf * min(2^i, img_f // ngf) -> 64, 128, 256."""
    return [ngf * min(2 ** i, img_f // ngf) for i in range(layers)]


class SourceEncoder(nn.Module):
    """En_s: the encoder levels of the generator applied to the 3-channel source image alone."""

    def __init__(self, image_nc: int, ngf: int, img_f: int, layers: int, norm: NormFactory) -> None:
        super().__init__()
        act = nn.LeakyReLU(0.1)
        widths = encoder_widths(ngf, img_f, layers)
        self.block0 = EncoderBlockOptimized(image_nc, widths[0], norm, act)
        self.levels = layers - 1
        for i in range(self.levels):
            setattr(self, f"encoder{i}", EncoderBlock(widths[i], widths[i + 1], norm, act))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        out = self.block0(image)
        for i in range(self.levels):
            out = getattr(self, f"encoder{i}")(out)
        return out


class DPTNGenerator(nn.Module):
    """G(source, source_pose, target_pose, is_train) -> (out_t, out_s); out_s is None when is_train is False.

    Args:
        image_nc, pose_nc: 3 and 18, so the Siamese encoder sees 3 + 18 + 18 = 39 channels.
        ngf, img_f: base width 64 and cap 512. layers: encoder levels (3). num_blocks: ResBlocks (3).
        norm: 'instance' (official) or 'batch'. nhead, num_CABs, num_TTBs: PTM (2, 2, 2); affine: PTM norms.

    `fast` (set with `set_fast`) runs the two Siamese branches as one batch of 2B through the shared encoder
    and decoder and lets the attention use PyTorch's fused kernel: the same maths, other rounding. Off, the
    forward is the official sequence of operations (bit-identical outputs). Batching needs per-sample norms,
    so it is never used with --norm batch.
    """

    def __init__(self, image_nc: int = 3, pose_nc: int = 18, ngf: int = 64, img_f: int = 512, layers: int = 3,
                 num_blocks: int = 3, norm: str = "instance", nhead: int = 2, num_CABs: int = 2,
                 num_TTBs: int = 2, affine: bool = True, output_nc: int = 3) -> None:
        super().__init__()
        norm_layer = norm_2d(norm)
        act = nn.LeakyReLU(0.1)  # one parameter-free instance shared by every block, as in the official code
        self.layers, self.num_blocks = layers, num_blocks
        self.per_sample_norm = norm == "instance"
        self.fast = False
        widths = encoder_widths(ngf, img_f, layers)
        # Siamese encoder En_c (shared by both branches)
        self.block0 = EncoderBlockOptimized(image_nc + 2 * pose_nc, widths[0], norm_layer, act)
        for i in range(layers - 1):
            setattr(self, f"encoder{i}", EncoderBlock(widths[i], widths[i + 1], norm_layer, act))
        for i in range(num_blocks):
            setattr(self, f"mblock{i}", ResBlock(widths[-1], norm_layer, act))
        self.PTM = PTM(d_model=widths[-1], nhead=nhead, num_CABs=num_CABs, num_TTBs=num_TTBs,
                       dim_feedforward=widths[-1], norm=norm, affine=affine)
        self.source_encoder = SourceEncoder(image_nc, ngf, img_f, layers, norm_layer)
        # decoder widths: ngf * min(2^(layers-i-2), img_f//ngf), the last level ngf (-> 128, 64, 64)
        width = widths[-1]
        for i in range(layers):
            out = ngf * min(2 ** (layers - i - 2), img_f // ngf) if i != layers - 1 else ngf
            setattr(self, f"decoder{i}", ResBlockDecoder(width, out, norm_layer, act))
            width = out
        self.outconv = Output(ngf, output_nc, act)

    def set_fast(self, fast: bool) -> "DPTNGenerator":
        """Batch the branches and use fused attention (True), or follow the official sequence (False)."""
        self.fast = fast
        self.PTM.set_exact(not fast)
        return self

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """En_c followed by the ResBlocks: (N, 39, H, W) -> (N, 256, H/8, W/8)."""
        x = self.block0(x)
        for i in range(self.layers - 1):
            x = getattr(self, f"encoder{i}")(x)
        for i in range(self.num_blocks):
            x = getattr(self, f"mblock{i}")(x)
        return x

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """The shared decoder and output layer: (N, 256, H/8, W/8) -> (N, 3, H, W) in [-1, 1]."""
        for i in range(self.layers):
            x = getattr(self, f"decoder{i}")(x)
        return self.outconv(x)

    def forward(self, source: torch.Tensor, source_pose: torch.Tensor, target_pose: torch.Tensor,
                is_train: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """source (B, 3, H, W) in [-1, 1]; poses (B, 18, H, W) in [0, 1] -> (out_t, out_s or None).

        The source-to-source branch decodes the raw F_ss (it bypasses the PTM); the PTM needs F_ss also at
        test time, so both encoder passes always run.
        """
        input_ss = torch.cat((source, source_pose, source_pose), 1)  # the self-reconstruction input
        input_st = torch.cat((source, source_pose, target_pose), 1)
        batched = self.fast and self.per_sample_norm
        if batched:
            f_ss, f_st = self.encode(torch.cat((input_ss, input_st))).chunk(2)
        else:
            f_ss, f_st = self.encode(input_ss), self.encode(input_st)
        f_s = self.source_encoder(source)
        f_st = self.PTM(f_ss, f_st, f_s)
        if not is_train:
            return self.decode(f_st), None
        if batched:
            out_s, out_t = self.decode(torch.cat((f_ss, f_st))).chunk(2)
            return out_t, out_s
        out_s = self.decode(f_ss)
        return self.decode(f_st), out_s
