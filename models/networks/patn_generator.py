"""PATN's generator: two encoders, a chain of Pose-Attentional Transfer Blocks (PATBs), an image decoder.

Zhu et al., "Progressive Pose Attention Transfer for Person Image Generation", CVPR 2019; official code
tengteng95/Pose-Transfer, `models/model_variants.py` (PATNetwork, PATNModel, PATBlock). Modules are created
and registered in the official order, so the same seed gives the same initial weights, and the state_dict
keys are the official ones (`model.stream1_down.1.weight`, ..., `model.att.8.conv_block_stream2.6.weight`).
"""
from __future__ import annotations

import torch
from torch import nn

from models.networks.blocks import norm_layer, residual_conv_block


class PATBlock(nn.Module):
    """One PATB: the pose code gates a residual update of the image code and is fed back with it.

    a = f2(p) (pre-sigmoid); x' = x + f1(x) * sigmoid(a); p' = cat(a, x'). The first block's pose code has
    `dim` channels, later ones 2 * `dim` (cat of a and x').
    """

    def __init__(self, dim: int, norm: str, dropout: bool, bias: bool, padding_type: str,
                 concatenated_pose: bool) -> None:
        super().__init__()
        pose = 2 * dim if concatenated_pose else dim
        self.conv_block_stream1 = residual_conv_block(dim, dim, dim, norm, dropout, bias, padding_type)
        self.conv_block_stream2 = residual_conv_block(pose, pose, dim, norm, dropout, bias, padding_type,
                                                      last_norm=False)

    def forward(self, image_code: torch.Tensor, pose_code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        update = self.conv_block_stream1(image_code)  # f1(x), image path first (its dropout draws first)
        logits = self.conv_block_stream2(pose_code)  # a = f2(p)
        image_code = image_code + update * torch.sigmoid(logits)
        return image_code, torch.cat((logits, image_code), 1)


def _stem(in_channels: int, ngf: int, norm: str, bias: bool) -> list[nn.Module]:
    """An encoder's first layers: [reflection pad 3, conv 7x7 in->ngf, norm, ReLU]."""
    return [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7, padding=0, bias=bias), norm_layer(norm)(ngf),
            nn.ReLU(True)]


def _down(width: int, norm: str, bias: bool) -> list[nn.Module]:
    """One downsampling level: [conv 3x3 stride 2 width->2 width, norm, ReLU]."""
    return [nn.Conv2d(width, width * 2, 3, stride=2, padding=1, bias=bias), norm_layer(norm)(width * 2),
            nn.ReLU(True)]


class PATNBody(nn.Module):
    """The official PATNModel: stream1_down (image), stream2_down (both poses), att (PATBs), stream1_up."""

    def __init__(self, image_nc: int = 3, pose_nc: int = 36, output_nc: int = 3, ngf: int = 64, norm: str = "batch",
                 dropout: bool = True, blocks: int = 9, padding_type: str = "reflect", downsampling: int = 2) -> None:
        super().__init__()
        bias = norm == "instance"  # pix2pix: convs before an affine-free norm get biases
        # the official code builds the two encoders level by level, alternating: that order fixes the draws of
        # PyTorch's default initialisation (the conv biases keep those values)
        image_layers, pose_layers = _stem(image_nc, ngf, norm, bias), _stem(pose_nc, ngf, norm, bias)
        for i in range(downsampling):
            image_layers += _down(ngf * 2 ** i, norm, bias)
            pose_layers += _down(ngf * 2 ** i, norm, bias)
        dim = ngf * 2 ** downsampling
        att = nn.ModuleList(PATBlock(dim, norm, dropout, bias, padding_type, concatenated_pose=i > 0)
                            for i in range(blocks))
        up: list[nn.Module] = []
        for i in range(downsampling):
            width = ngf * 2 ** (downsampling - i)
            up += [nn.ConvTranspose2d(width, width // 2, 3, stride=2, padding=1, output_padding=1, bias=bias),
                   norm_layer(norm)(width // 2), nn.ReLU(True)]
        up += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7, padding=0), nn.Tanh()]  # bias always
        self.stream1_down = nn.Sequential(*image_layers)
        self.stream2_down = nn.Sequential(*pose_layers)
        self.att = att
        self.stream1_up = nn.Sequential(*up)

    def forward(self, image: torch.Tensor, poses: torch.Tensor) -> torch.Tensor:
        """image (B, 3, H, W) in [-1, 1], poses (B, 36, H, W) = cat(source maps, target maps) -> (B, 3, H, W)."""
        image_code = self.stream1_down(image)
        pose_code = self.stream2_down(poses)
        for block in self.att:
            image_code, pose_code = block(image_code, pose_code)
        return self.stream1_up(image_code)


class PATNGenerator(nn.Module):
    """The official PATNetwork wrapper: every key starts with `model.`; G(P1, cat(BP1, BP2))."""

    def __init__(self, **kwargs) -> None:
        super().__init__()
        self.model = PATNBody(**kwargs)

    def forward(self, image: torch.Tensor, poses: torch.Tensor) -> torch.Tensor:
        return self.model(image, poses)
