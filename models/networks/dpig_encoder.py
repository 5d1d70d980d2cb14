"""DPIG appearance encoders: Market's foreground/background encoder and DeepFashion's appearance encoder.

Paper: Ma et al., "Disentangled Person Image Generation", CVPR 2018. Official TF code:
charliememory/Disentangled-Person-Image-Generation `models.py`: `GeneratorCNN_ID_Encoder_BodyROIVis_FgBgFeaTwoBranch`
(Market, `split_background=True`) and `GeneratorCNN_ID_Encoder_BodyROIVis` (DeepFashion, no split).

One class builds both. A shared stem (`conv0`, `res0`) maps the image to F (ngf@HxW). Market splits F with the
foreground mask M into F·M and F·(1-M); DeepFashion crops F itself. Seven body-region boxes are cropped from the
(masked) F and resized (`crop_and_resize`, TF's `tf.image.crop_and_resize`). One shared stack (`roi_stack`) and
`roi_fc` give 32 numbers per part, and each part is multiplied by its visibility flag after the bias. Market also
encodes F·(1-M) with its own stack (`bg_stack`, `bg_fc`) into 128 numbers. e = [part1 … part7 (, bg)]: 352
numbers (Market) or 224 (DeepFashion). Counts and shapes: tests/test_dpig_networks.py.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.networks.blocks import PlainConvs, ResBlock, probe_output_shape, xavier_uniform_init

NUM_PARTS = 7  # TF computes 37 boxes and uses the first 7 (head, upper body, lower body, arms, legs)


def crop_and_resize(features: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """TF's `tf.image.crop_and_resize` (bilinear) of pixel boxes normalised as DPIG does, by H and W (not H-1).

    features (B, C, H, W); boxes (B, K, 4) as [y1, x1, y2, x2] in pixels (any dtype) -> crops (B, K, C, S, S),
    S = `size`. Sample i of a box lies at row (y1/H + i·(y2-y1)/(H·(S-1)))·(H-1), columns likewise, so a box
    ending on the last row H-1 reaches row (H-1)²/H = H-2+1/H at most. Samples outside the map are 0, as TF's
    extrapolation value (grid_sample's zero padding alone would blend the border into samples just outside).
    The grid is built and sampled in float32 (a bf16 grid would misplace samples by a fraction of a pixel).
    """
    if size < 2:
        raise ValueError(f"crop_and_resize needs size >= 2, got {size}")
    b, c, h, w = features.shape
    if boxes.dim() != 3 or boxes.shape[0] != b or boxes.shape[2] != 4:
        raise ValueError(f"boxes must be (B={b}, K, 4) [y1, x1, y2, x2], got {tuple(boxes.shape)}")
    k = boxes.shape[1]
    y1, x1, y2, x2 = boxes.to(device=features.device, dtype=torch.float32).unbind(-1)  # each (B, K)
    y1, y2, x1, x2 = y1 / h, y2 / h, x1 / w, x2 / w  # TF `models.py`: bbox / img_H, bbox / img_W
    t = torch.linspace(0.0, 1.0, size, device=features.device)  # i / (S-1)
    ny = y1[..., None] + t * (y2 - y1)[..., None]  # (B, K, S), the fraction of H-1 that TF samples at
    nx = x1[..., None] + t * (x2 - x1)[..., None]
    grid = torch.stack([(2 * nx - 1)[:, :, None, :].expand(b, k, size, size),
                        (2 * ny - 1)[:, :, :, None].expand(b, k, size, size)], dim=-1)  # (B, K, S, S, (x, y))
    crops = F.grid_sample(features.float(), grid.view(b, k * size, size, 2), mode="bilinear",
                          padding_mode="zeros", align_corners=True)  # (B, C, K*S, S)
    inside = (((ny >= 0) & (ny <= 1))[:, :, :, None] & ((nx >= 0) & (nx <= 1))[:, :, None, :])  # (B, K, S, S)
    crops = crops.view(b, c, k, size, size) * inside[:, None]
    return crops.to(features.dtype).transpose(1, 2)  # (B, K, C, S, S)


def tile_embedding(embedding: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """e (B, D) -> constant maps (B, D, H, W), the generator's embedding input (TF `tf.tile` + reshape)."""
    return embedding[:, :, None, None].expand(-1, -1, height, width)


class DPIGStack(nn.Module):
    """Stack(n, R): for i = 1..R, Res(n·i), then (if i < R) conv3x3 stride 2 + ReLU to n·(i+1).

    PG2 G1's encoder without the skips (TF's encoder loop). Keys `res.{i}.main.{0,2}` and `down.{i}.0`.
    """

    def __init__(self, ngf: int, num_blocks: int) -> None:
        super().__init__()
        self.res = nn.ModuleList(ResBlock(ngf * i) for i in range(1, num_blocks + 1))
        self.down = nn.ModuleList(PlainConvs.conv(ngf * i, ngf * (i + 1), 3, stride=2) for i in range(1, num_blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, n, h, w) -> (N, n·R, h / 2^(R-1), w / 2^(R-1)), sizes rounded up at each halving."""
        for i, res in enumerate(self.res):
            x = res(x)
            if i < len(self.down):
                x = self.down[i](x)
        return x


class DPIGEncoder(nn.Module):
    """e(image, boxes, vis[, mask]) -> the appearance embedding (B, num_parts·part_dim [+ bg_dim]).

    Args:
        height, width: network frame (Market 128x64; DeepFashion 256x256 pad256 or 256x176 native). Only the
            background branch's fc size depends on it; the frame of every input is checked against it.
        split_background: Market's fg/bg encoder (needs the foreground mask) instead of DeepFashion's.
        roi_size: S of the S x S part crops (Market 48, DeepFashion 64).
        roi_blocks: R of the shared part stack (Market 5: 640@3x3; DeepFashion 7: 896@1x1).
        bg_blocks: R of the background stack (5: 640@8x4 on Market).
        ngf: stem width n (128; smaller values are not the paper's network).
        part_dim, bg_dim: 32 and 128 numbers.
        num_parts: 7.

    Init: Xavier-uniform weights, zero biases (TF slim's default). Use `DPIGEncoder.market()` or
    `DPIGEncoder.fashion(height, width)` for the paper's settings.
    """

    def __init__(self, height: int = 128, width: int = 64, split_background: bool = True, roi_size: int = 48,
                 roi_blocks: int = 5, bg_blocks: int = 5, ngf: int = 128, part_dim: int = 32, bg_dim: int = 128,
                 num_parts: int = NUM_PARTS) -> None:
        super().__init__()
        self.height, self.width, self.split_background = height, width, split_background
        self.roi_size, self.num_parts, self.part_dim = roi_size, num_parts, part_dim
        self.bg_dim = bg_dim if split_background else 0
        self.conv0 = PlainConvs.conv(3, ngf, 3)  # + ReLU
        self.res0 = ResBlock(ngf)
        self.roi_stack = DPIGStack(ngf, roi_blocks)  # one stack for all parts: shared weights
        roi_features = math.prod(probe_output_shape([self.roi_stack], (1, ngf, roi_size, roi_size))[1:])
        self.roi_fc = nn.Linear(roi_features, part_dim)  # no activation
        if split_background:
            self.bg_stack = DPIGStack(ngf, bg_blocks)
            bg_features = math.prod(probe_output_shape([self.bg_stack], (1, ngf, height, width))[1:])
            self.bg_fc = nn.Linear(bg_features, bg_dim)  # no activation
        xavier_uniform_init(self)

    @classmethod
    def market(cls, height: int = 128, width: int = 64, ngf: int = 128) -> "DPIGEncoder":
        """Market's fg/bg encoder: 48x48 crops of F·M, 5-block stacks; e = 7x32 + 128 = 352."""
        return cls(height, width, split_background=True, roi_size=48, roi_blocks=5, bg_blocks=5, ngf=ngf)

    @classmethod
    def fashion(cls, height: int = 256, width: int = 256, ngf: int = 128) -> "DPIGEncoder":
        """DeepFashion's appearance encoder: 64x64 crops of F (no mask), a 7-block stack; e = 7x32 = 224."""
        return cls(height, width, split_background=False, roi_size=64, roi_blocks=7, ngf=ngf)

    @property
    def fg_dim(self) -> int:
        """Numbers of the foreground (appearance) part of e: num_parts·part_dim = 224."""
        return self.num_parts * self.part_dim

    @property
    def embedding_dim(self) -> int:
        """len(e): 352 (Market) or 224 (DeepFashion); the generator's embedding channels."""
        return self.fg_dim + self.bg_dim

    def split(self, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """e (B, D) -> (foreground (B, 224), background (B, 128) or None without a background branch)."""
        fg = embedding[:, :self.fg_dim]
        return fg, (embedding[:, self.fg_dim:] if self.split_background else None)

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """The shared stem: image (B, 3, H, W) -> F (B, ngf, H, W) = Res(ReLU(conv3(image)))."""
        return self.res0(self.conv0(image))

    def encode_parts(self, features: torch.Tensor, boxes: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        """(masked) F (B, n, H, W), boxes (B, K, 4) pixels, vis (B, K) in {0, 1} -> parts (B, K·part_dim).

        The K crops of each image run through the shared stack stacked part-major along the batch (TF's
        concat); each part's numbers are multiplied by its vis after the fc bias, so a missing part is 0.
        """
        crops = crop_and_resize(features, boxes, self.roi_size)  # (B, K, n, S, S)
        b, k = crops.shape[:2]
        x = crops.transpose(0, 1).reshape(k * b, *crops.shape[2:])  # (K·B, n, S, S), part-major
        x = self.roi_fc(self.roi_stack(x).flatten(1)).view(k, b, self.part_dim)  # flattened in (C, H, W) order
        x = x * vis.t().to(x.dtype)[:, :, None]
        return x.transpose(0, 1).reshape(b, k * self.part_dim)  # [part1, ..., partK]

    def encode_background(self, background: torch.Tensor) -> torch.Tensor:
        """F·(1-M) (B, n, H, W) -> background code (B, bg_dim)."""
        return self.bg_fc(self.bg_stack(background).flatten(1))

    def forward(self, image: torch.Tensor, boxes: torch.Tensor, vis: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """image (B, 3, H, W) in [-1, 1]; boxes (B, 7, 4) [y1, x1, y2, x2] integer pixels; vis (B, 7) in {0, 1};
        mask (B, 1, H, W) in {0, 1}, the foreground mask of `image` (Market only) -> e (B, embedding_dim)."""
        b = image.shape[0]
        if image.shape[1:] != (3, self.height, self.width):
            raise ValueError(f"DPIG encoder built for 3@{self.height}x{self.width} images, got "
                             f"{tuple(image.shape[1:])}")
        if boxes.shape != (b, self.num_parts, 4) or vis.shape != (b, self.num_parts):
            raise ValueError(f"DPIG encoder needs boxes ({b}, {self.num_parts}, 4) and vis ({b}, {self.num_parts}), "
                             f"got {tuple(boxes.shape)} and {tuple(vis.shape)}")
        if self.split_background and (mask is None or mask.shape != (b, 1, self.height, self.width)):
            got = None if mask is None else tuple(mask.shape)
            raise ValueError(f"the fg/bg encoder needs a foreground mask ({b}, 1, {self.height}, {self.width}), "
                             f"got {got}")
        if not self.split_background and mask is not None:
            raise ValueError("the DeepFashion appearance encoder has no foreground/background split: pass no mask")
        features = self.features(image)  # (B, n, H, W)
        if not self.split_background:
            return self.encode_parts(features, boxes, vis)  # (B, 224)
        mask = mask.to(features.dtype)
        parts = self.encode_parts(features * mask, boxes, vis)
        return torch.cat([parts, self.encode_background(features * (1 - mask))], dim=1)  # (B, 352)
