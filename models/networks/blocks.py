"""Layers shared by the generators and discriminators (defined once here, imported by every network file).

The PG2 blocks (Ma et al., "Pose Guided Person Image Generation", NeurIPS 2017; official TF code
charliememory/Pose-Guided-Person-Image-Generation `models.py`, which builds them with slim convs and ReLU):
`conv2d` pads k//2 and has a bias, `ResBlock` puts the ReLU before the sum, `Down` is a stride-2 3x3 conv +
ReLU, `Up` is nearest x2 upsampling (optionally with a 1x1 conv + ReLU). Submodule names (`main`, Sequential
indices) are those of budui/Human-Pose-Transfer `implementations/PG2/model.py`, so that state dicts match
HPT's layout (docs/models/pg2.md; tests/test_pg2.py::test_state_dict_names_and_shapes_market).

Mobile PG2 (kevinleewy/Human-Pose-Transfer `implementations/PG2/mobile/model.py`) swaps every conv of G1 and G2
for `DSConv`, a depthwise-separable conv. The generators take a conv factory, `PlainConvs` or `SeparableConvs`
(`conv_factory("standard" | "mobile")`), so that one file builds both variants with each one's state_dict keys.
"""
from __future__ import annotations

import functools
import itertools
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call


def conv2d(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
           bias: bool = True) -> nn.Conv2d:
    """Conv2d with zero padding kernel_size // 2 (so stride 1 keeps the size and stride 2 halves it)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=bias)


def conv_relu_pair(in_channels: int, out_channels: int) -> nn.Sequential:
    """[conv3x3 in->out, ReLU, conv3x3 out->out, ReLU]; convs at indices 0 and 2."""
    return nn.Sequential(
        conv2d(in_channels, out_channels, 3),
        nn.ReLU(inplace=True),
        conv2d(out_channels, out_channels, 3),
        nn.ReLU(inplace=True),
    )


class ResBlock(nn.Module):
    """Res(C): x -> x + [conv3x3, ReLU, conv3x3, ReLU](x); no projection, nothing after the sum.

    With `convs=SeparableConvs` the two convs are DSConvs with ReLU (four ReLUs, the last still before the sum).
    """

    def __init__(self, channels: int, convs: "ConvFactory | None" = None) -> None:
        super().__init__()
        self.main = (convs or PlainConvs).pair(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H, W)
        return x + self.main(x)


class Down(nn.Sequential):
    """Down(Ci->Co): conv3x3 stride 2 padding 1, then ReLU; (B, Ci, H, W) -> (B, Co, ceil(H/2), ceil(W/2))."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(conv2d(in_channels, out_channels, 3, stride=2), nn.ReLU(inplace=True))


class Up(nn.Sequential):
    """Up: nearest x2 upsampling; with channels given, also a 1x1 conv Ci->Co and a ReLU (PG2's G1 Up).

    TF and HPT order it upsample -> conv1x1 -> ReLU. A 1x1 conv and a ReLU act on each pixel alone, so they
    commute exactly with nearest upsampling; they run first here, on 4x fewer pixels, and the 1x1 conv keeps
    index 0 (the HPT key `conv.0.weight`). (B, Ci, H, W) -> (B, Co, 2H, 2W).
    """

    def __init__(self, in_channels: int | None = None, out_channels: int | None = None) -> None:
        layers: list[nn.Module] = []
        if (in_channels is None) != (out_channels is None):
            raise ValueError("Up needs both in_channels and out_channels, or neither")
        if in_channels is not None:
            layers += [conv2d(in_channels, out_channels, 1), nn.ReLU(inplace=True)]
        layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
        super().__init__(*layers)


class DSConv(nn.Module):
    """Depthwise-separable conv (KLW's `DepthwiseSeparableConv`): a depthwise k x k conv (groups = Ci, stride s,
    padding k//2, bias), [ReLU], a pointwise 1x1 conv Ci -> Co (bias), [ReLU]. Without `relu` there is no
    activation at all, not even between the two convs, and the pointwise conv sits at index 1 (`main.1`).
    Params: Ci*k*k + Ci + Ci*Co + Co. No normalisation, as in PG2.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 relu: bool = True) -> None:
        super().__init__()
        depthwise = nn.Conv2d(in_channels, in_channels, kernel_size, stride=stride, padding=kernel_size // 2,
                              groups=in_channels)
        pointwise = nn.Conv2d(in_channels, out_channels, 1)
        layers = [depthwise, nn.ReLU(inplace=True), pointwise, nn.ReLU(inplace=True)] if relu else \
            [depthwise, pointwise]
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, Ci, H, W) -> (B, Co, H/s, W/s)
        return self.main(x)


class DSUp(DSConv):
    """Mobile G1's Up: nearest x2 upsampling, then DSConv(k1, ReLU) (KLW). A depthwise 1x1 conv is a per-channel
    scale and bias, so every layer acts on each pixel alone and commutes exactly with nearest upsampling: as in
    `Up`, the convs run first, on 4x fewer pixels. (B, Ci, H, W) -> (B, Co, 2H, 2W)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(super().forward(x), scale_factor=2, mode="nearest")


class PlainConvs:
    """PG2's convolutions (TF, HPT): Conv2d with bias, [ReLU]; HPT's module layout."""

    arch = "standard"

    @staticmethod
    def conv(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
             relu: bool = True) -> nn.Module:
        """With ReLU: Sequential(conv, ReLU) (keys `.0.`); without: the bare conv (keys `.weight`)."""
        conv = conv2d(in_channels, out_channels, kernel_size, stride)
        return nn.Sequential(conv, nn.ReLU(inplace=True)) if relu else conv

    @staticmethod
    def pair(in_channels: int, out_channels: int) -> nn.Sequential:
        """[conv3x3 + ReLU] twice; convs at indices 0 and 2."""
        return conv_relu_pair(in_channels, out_channels)

    @staticmethod
    def up(in_channels: int, out_channels: int) -> nn.Module:
        """G1's Up: conv1x1 + ReLU and nearest x2."""
        return Up(in_channels, out_channels)


class SeparableConvs:
    """Mobile PG2's convolutions: every conv a DSConv with the same k and stride (KLW's module layout)."""

    arch = "mobile"

    @staticmethod
    def conv(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
             relu: bool = True) -> nn.Module:
        """DSConv (keys `.main.{0,2}.` with ReLU, `.main.{0,1}.` without)."""
        return DSConv(in_channels, out_channels, kernel_size, stride, relu)

    @staticmethod
    def pair(in_channels: int, out_channels: int) -> nn.Sequential:
        """[DSConv3x3 + ReLU] twice; at indices 0 and 1."""
        return nn.Sequential(DSConv(in_channels, out_channels), DSConv(out_channels, out_channels))

    @staticmethod
    def up(in_channels: int, out_channels: int) -> nn.Module:
        """G1's Up: DSConv(k1) + ReLU and nearest x2."""
        return DSUp(in_channels, out_channels)


ConvFactory = type[PlainConvs] | type[SeparableConvs]
CONV_FACTORIES: dict[str, ConvFactory] = {"standard": PlainConvs, "mobile": SeparableConvs}


def conv_factory(arch: "str | ConvFactory") -> ConvFactory:
    """The conv factory of a generator architecture name ('standard' | 'mobile'); a factory passes through."""
    if not isinstance(arch, str):
        return arch
    if arch not in CONV_FACTORIES:
        raise ValueError(f"unknown generator architecture {arch!r}; available: {', '.join(CONV_FACTORIES)}")
    return CONV_FACTORIES[arch]


def probe_output_shape(layers: Iterable[nn.Module], input_shape: tuple[int, ...]) -> torch.Size:
    """Shape of the output of `layers` applied in order to an input of `input_shape` (a dummy forward).

    Runs on the meta device with meta copies of the parameters and buffers: no arithmetic, no memory, and
    the real weights and BatchNorm statistics are left untouched.
    """
    x = torch.empty(input_shape, device="meta")
    for layer in layers:
        tensors = itertools.chain(layer.named_parameters(), layer.named_buffers())
        meta = {name: torch.empty_like(t, device="meta") for name, t in tensors}
        x = functional_call(layer, meta, (x,))
    return x.shape


def xavier_uniform_init(net: nn.Module) -> nn.Module:
    """Xavier-uniform (gain 1) on every Conv2d/Linear weight and zero biases (TF slim's default)."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return net


# --- pix2pix-style blocks (PATN's generator and discriminator; tengteng95/Pose-Transfer models/networks.py) ----

PADDINGS = ("reflect", "replicate", "zero")


def norm_layer(norm: str) -> type[nn.Module] | functools.partial:
    """pix2pix's `get_norm_layer`: 'batch' = affine BatchNorm2d, 'instance' = InstanceNorm2d without affine
    parameters or running statistics (so its convolutions carry biases instead)."""
    if norm == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True)
    if norm == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False)
    raise ValueError(f"unknown norm {norm!r}; available: batch, instance")


def padded_conv3x3(in_channels: int, out_channels: int, padding_type: str, bias: bool) -> list[nn.Module]:
    """[pad 1, conv 3x3] with the padding as a module (reflect, replicate) or inside the conv (zero, no module,
    so the Sequential indices after it shift as they do in the official code)."""
    if padding_type not in PADDINGS:
        raise ValueError(f"unknown padding {padding_type!r}; available: {', '.join(PADDINGS)}")
    if padding_type == "zero":
        return [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias)]
    pad = nn.ReflectionPad2d(1) if padding_type == "reflect" else nn.ReplicationPad2d(1)
    return [pad, nn.Conv2d(in_channels, out_channels, 3, padding=0, bias=bias)]


def residual_conv_block(in_channels: int, hidden: int, out_channels: int, norm: str, dropout: bool, bias: bool,
                        padding_type: str = "reflect", last_norm: bool = True) -> nn.Sequential:
    """pix2pix's ResnetBlock body: [pad, conv in->hidden, norm, ReLU, dropout, pad, conv hidden->out, (norm)].

    Without dropout an nn.Identity holds its place, so that the indices (state_dict keys) stay those of the
    trained official networks, which all use dropout. `last_norm=False` ends at the second conv (PATN's pose
    path, whose output becomes the attention logits).
    """
    make_norm = norm_layer(norm)
    layers = padded_conv3x3(in_channels, hidden, padding_type, bias)
    layers += [make_norm(hidden), nn.ReLU(True), nn.Dropout(0.5) if dropout else nn.Identity()]
    layers += padded_conv3x3(hidden, out_channels, padding_type, bias)
    if last_norm:
        layers.append(make_norm(out_channels))
    return nn.Sequential(*layers)


# --- DPIG's fully connected residual nets (Ma et al., "Disentangled Person Image Generation", CVPR 2018; official
# TF code charliememory/Disentangled-Person-Image-Generation `models.py`: GaussianFCRes, PoseEncoderFCRes,
# PoseDecoderFCRes) ---------------------------------------------------------------------------------------------

DPIG_LEAKY_SLOPE = 0.2  # `wgan_gp.LeakyReLU`, the activation DPIG's trainers pass (models.LeakyReLU's 0.3 is unused)


class FCResBlock(nn.ModuleList):
    """x -> x + LReLU(fc(LReLU(fc(x)))), width h -> h; the two Linears are entries 0 and 1 (keys `.0.`, `.1.`)."""

    def __init__(self, width: int, slope: float = DPIG_LEAKY_SLOPE) -> None:
        super().__init__([nn.Linear(width, width), nn.Linear(width, width)])
        self.slope = slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, h) -> (B, h)
        hidden = F.leaky_relu(self[0](x), self.slope)
        return x + F.leaky_relu(self[1](hidden), self.slope)


class FCRes(nn.Module):
    """FCRes(d_in, h, d_out, first_act): `inp` Linear(d_in -> h) [+ LReLU], `blocks` = num_blocks FCResBlocks,
    `out` Linear(h -> d_out), linear output.

    `out_features=None` leaves out `out` (forward then returns the h-wide trunk), for nets with their own heads
    (DPIG's pose decoder). PyTorch's default init; the networks built on it apply their paper's init.
    """

    def __init__(self, in_features: int, hidden: int, out_features: int | None, first_act: bool = True,
                 num_blocks: int = 4, slope: float = DPIG_LEAKY_SLOPE) -> None:
        super().__init__()
        self.first_act, self.slope = first_act, slope
        self.inp = nn.Linear(in_features, hidden)
        self.blocks = nn.Sequential(*(FCResBlock(hidden, slope) for _ in range(num_blocks)))
        self.out = nn.Linear(hidden, out_features) if out_features is not None else None

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """(B, d_in) -> the last residual block's output (B, h)."""
        x = self.inp(x)
        if self.first_act:
            x = F.leaky_relu(x, self.slope)
        return self.blocks(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, d_in) -> (B, d_out), or (B, h) without an output layer."""
        x = self.trunk(x)
        return self.out(x) if self.out is not None else x
