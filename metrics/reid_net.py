"""The fast-reid "bagtricks" (BoT) re-id network, ResNet-50 with IBN-a, and a strict fast-reid checkpoint loader.

Why a re-implementation: DPTN's README scores generated images with a fast-reid BoT(R50-ibn) model, but the
fast-reid package does not import under current Python/PyTorch and its own loader is not strict (it drops
tensors whose shape differs and only logs missing keys). Module names equal fast-reid's, so `state_dict()`
is fast-reid's `checkpoint['model']` key for key, in the same order (350 entries with IBN, 324 without).

- Luo et al., "Bag of Tricks and A Strong Baseline for Deep Person Re-identification", CVPRW 2019
  (BNNeck, last stride 1, the test feature is the BNNeck output).
- Pan et al., "Two at Once: Enhancing Learning and Generalization Capacities via IBN-Net", ECCV 2018
  (IBN-a: InstanceNorm on the first half of the channels of `bn1` in layer1-3), https://github.com/XingangPan/IBN-Net
- fast-reid, https://github.com/JDAI-CV/fast-reid (`configs/Market1501/bagtricks_R50-ibn.yml`,
  `fastreid/modeling/backbones/resnet.py`, `fastreid/modeling/heads/embedding_head.py`).

Input: float RGB images (N, 3, H, W) on the 0..255 scale (PIL bicubic resize to 256x128, no /255); the model
applies `(x - 255·mean) / (255·std)` itself, into a new tensor (fast-reid normalises the caller's tensor in
place, which makes its flip test normalise the flipped copy twice; `extract_features(flip=True)` does not).
"""
from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from util.io import InputError, atomic_torch_save

FEATURE_DIM = 2048
PIXEL_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)  # fast-reid MODEL.PIXEL_MEAN, RGB
PIXEL_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
STEM_POOLS = ("ceil", "pad1")
LAYERS = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 1))  # (width, blocks, first stride); last stride 1
IMAGENET_FILES = {  # with_ibn -> (file name, where to get it)
    True: ("resnet50_ibn_a-d9d0bb7b.pth",
           "https://github.com/XingangPan/IBN-Net/releases/download/v1.0/resnet50_ibn_a-d9d0bb7b.pth"),
    False: ("resnet50-19c8e357.pth", "https://download.pytorch.org/models/resnet50-19c8e357.pth"),
}


class IBN(nn.Module):
    """IBN-a: InstanceNorm (affine, no running stats) on channels [0, C/2), BatchNorm on the rest; IN first."""

    def __init__(self, planes: int) -> None:
        super().__init__()
        self.half = int(planes / 2)
        self.IN = nn.InstanceNorm2d(self.half, affine=True)
        self.BN = nn.BatchNorm2d(planes - self.half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = torch.split(x, [self.half, x.shape[1] - self.half], dim=1)
        return torch.cat((self.IN(first.contiguous()), self.BN(second.contiguous())), dim=1)


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck (stride on the 3x3 conv); `bn1` is IBN-a when `ibn`."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int, ibn: bool) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = IBN(width) if ibn else nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class ResNet50(nn.Module):
    """fast-reid's ResNet-50 backbone: IBN-a in layer1-3 when `with_ibn`, last stride 1, no fc."""

    def __init__(self, with_ibn: bool = True, stem_pool: str = "ceil") -> None:
        super().__init__()
        if stem_pool not in STEM_POOLS:
            raise InputError(f"stem_pool {stem_pool!r}: expected one of {', '.join(STEM_POOLS)}")
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        # fast-reid since 2020-08-14: padding 0 + ceil mode; IBN-Net, torchvision and fast-reid v0.1.x: padding 1
        self.maxpool = (nn.MaxPool2d(3, 2, 0, ceil_mode=True) if stem_pool == "ceil" else nn.MaxPool2d(3, 2, 1))
        cin = 64
        for index, (width, blocks, stride) in enumerate(LAYERS, start=1):
            ibn = with_ibn and width != 512  # layer4 has no IBN
            layer = [Bottleneck(cin, width, stride, ibn)]
            cin = width * Bottleneck.expansion
            layer += [Bottleneck(cin, width, 1, ibn) for _ in range(blocks - 1)]
            setattr(self, f"layer{index}", nn.Sequential(*layer))
        self.random_init()

    def random_init(self) -> None:
        """fast-reid `ResNet.random_init`: convs normal(0, sqrt(2 / (k·k·out))), BN weight 1 / bias 0."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                nn.init.normal_(module.weight, 0, math.sqrt(2.0 / fan_out))
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (N, 2048, H/16, W/16)


class EmbeddingHead(nn.Module):
    """Global average pool, BNNeck (bias frozen at 0), bias-free linear classifier `weight` (C, 2048)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        if num_classes > 0:  # registered first: fast-reid's state dict lists heads.weight before the BNNeck
            self.weight = nn.Parameter(torch.empty(num_classes, FEATURE_DIM))
            nn.init.normal_(self.weight, 0, 0.01)
        else:
            self.register_parameter("weight", None)
        self.pool_layer = nn.AdaptiveAvgPool2d(1)
        self.bottleneck = nn.Sequential(nn.BatchNorm2d(FEATURE_DIM))
        nn.init.constant_(self.bottleneck[0].weight, 1)
        nn.init.constant_(self.bottleneck[0].bias, 0)
        self.bottleneck[0].bias.requires_grad_(False)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        pool_feat = self.pool_layer(fmap)  # (N, 2048, 1, 1)
        neck_feat = self.bottleneck(pool_feat)[..., 0, 0]  # (N, 2048)
        if not self.training:
            return neck_feat
        out = {"features": pool_feat[..., 0, 0]}  # before the BNNeck: the triplet loss uses these
        if self.weight is not None:
            logits = F.linear(neck_feat, self.weight)  # CLS_LAYER Linear: scale 1, margin 0
            out["cls_outputs"] = logits
            out["pred_class_logits"] = logits
        return out


class BagtricksReID(nn.Module):
    """fast-reid `Baseline` with the bagtricks settings.

    eval: (N, 2048) BNNeck features, not L2-normalised. train: {"cls_outputs", "pred_class_logits": (N, C)
    logits, "features": (N, 2048) pre-BNNeck pooled features}; with num_classes 0 only "features".
    """

    def __init__(self, num_classes: int = 751, with_ibn: bool = True, stem_pool: str = "ceil") -> None:
        super().__init__()
        if num_classes < 0:
            raise InputError(f"num_classes {num_classes}: expected >= 0")
        self.num_classes = num_classes
        self.with_ibn = with_ibn
        self.stem_pool = stem_pool
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(1, -1, 1, 1), persistent=False)
        self.backbone = ResNet50(with_ibn, stem_pool)
        self.heads = EmbeddingHead(num_classes)

    def backbone_features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB 0..255 -> layer4 map (N, 2048, H/16, W/16); the input is left unchanged."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images (N, 3, H, W), got {tuple(images.shape)}")
        return self.backbone((images - self.pixel_mean) / self.pixel_std)

    def forward(self, images: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        return self.heads(self.backbone_features(images))


@torch.no_grad()
def extract_features(model: BagtricksReID, images: torch.Tensor, flip: bool = False) -> torch.Tensor:
    """Eval-mode features (N, 2048); with `flip`, the correct average (f(x) + f(x flipped left-right)) / 2."""
    if model.training:
        raise ValueError("extract_features needs the model in eval mode (call model.eval())")
    features = model(images)
    if flip:
        features = (features + model(images.flip(-1))) / 2
    return features
