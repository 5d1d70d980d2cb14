"""PN-GAN's generator (Qian et al., "Pose-Normalized Image Generation for Person Re-identification", ECCV 2018,
arXiv 1712.02225; official code naiq/PN_GAN `script/GAN/network.py` `Res_Generator`).

G(I_A, P) = out7(u3(u3(Res^9(d3(d3(c7(cat(I_A, P)))))))): a ResNet generator with InstanceNorm (no affine, no
running statistics), zero-padded residual blocks with the ReLU AFTER the sum (unlike pix2pix's ResnetBlock), and
a bias-free 7x7 output conv + tanh. Module names are the official ones (`conv1.conv.weight`, `res3.conv2.conv.bias`,
`deconv3.deconv.weight`, `deconv1.conv.weight`), so an official checkpoint loads with strict=True; the
InstanceNorm layers (`bn` there) hold no state and make no keys. With 18 heatmap channels G has 11,434,624
parameters, with the official 3-channel skeleton image 11,387,584 (docs/models/pngan.md).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


def _stage(conv: nn.Module, name: str = "conv", norm: int | None = None, act: nn.Module | None = None,
           pad: int = 0, act_name: str = "relu") -> nn.Sequential:
    """[pad: ReflectionPad], `name`: conv, [bn: InstanceNorm(norm)], [`act_name`: act], the official names."""
    layers: list[tuple[str, nn.Module]] = []
    if pad:
        layers.append(("pad", nn.ReflectionPad2d(pad)))
    layers.append((name, conv))
    if norm is not None:
        layers.append(("bn", nn.InstanceNorm2d(norm)))
    if act is not None:
        layers.append((act_name, act))
    return nn.Sequential(OrderedDict(layers))


class PNGANResBlock(nn.Module):
    """Res(C): y = ReLU(x + IN(conv3x3(ReLU(IN(conv3x3(x)))))), zero padding 1, biases on."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = _stage(nn.Conv2d(channels, channels, 3, 1, 1), norm=channels, act=nn.ReLU(inplace=True))
        self.conv2 = _stage(nn.Conv2d(channels, channels, 3, 1, 1), norm=channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H, W)
        return self.relu(x + self.conv2(self.conv1(x)))


class PNGANGenerator(nn.Module):
    """G(image (B, 3, H, W), pose (B, pose_nc, H, W)) -> (B, 3, H, W) in (-1, 1); H and W divisible by 4."""

    def __init__(self, pose_nc: int = 18, ngf: int = 64, blocks: int = 9, image_nc: int = 3) -> None:
        super().__init__()
        self.input_nc = image_nc + pose_nc
        self.blocks = blocks
        self.conv1 = _stage(nn.Conv2d(self.input_nc, ngf, 7, 1, 0), norm=ngf, act=nn.ReLU(inplace=True), pad=3)
        self.conv2 = _stage(nn.Conv2d(ngf, ngf * 2, 3, 2, 1), norm=ngf * 2, act=nn.ReLU(inplace=True))
        self.conv3 = _stage(nn.Conv2d(ngf * 2, ngf * 4, 3, 2, 1), norm=ngf * 4, act=nn.ReLU(inplace=True))
        for i in range(1, blocks + 1):
            setattr(self, f"res{i}", PNGANResBlock(ngf * 4))
        self.deconv3 = _stage(nn.ConvTranspose2d(ngf * 4, ngf * 2, 3, 2, 1, output_padding=1), "deconv",
                              norm=ngf * 2, act=nn.ReLU(inplace=True))
        self.deconv2 = _stage(nn.ConvTranspose2d(ngf * 2, ngf, 3, 2, 1, output_padding=1), "deconv", norm=ngf,
                              act=nn.ReLU(inplace=True))
        self.deconv1 = _stage(nn.Conv2d(ngf, 3, 7, 1, 0, bias=False), act=nn.Tanh(), pad=3, act_name="tanh")

    def forward(self, image: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        if height % 4 or width % 4:
            raise ValueError(f"PN-GAN's generator needs H and W divisible by 4, got {height}x{width}")
        x = torch.cat((image, pose), 1)  # image first, as the official forward
        if x.shape[1] != self.input_nc:
            raise ValueError(f"PN-GAN's generator was built for {self.input_nc} input channels (image + pose), "
                             f"got {x.shape[1]}")
        x = self.conv3(self.conv2(self.conv1(x)))  # (B, 4 ngf, H/4, W/4)
        for i in range(1, self.blocks + 1):
            x = getattr(self, f"res{i}")(x)
        return self.deconv1(self.deconv2(self.deconv3(x)))
