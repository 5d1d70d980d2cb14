"""VGG19 feature taps for perceptual (content) and style losses, with torchvision's ImageNet weights.

The layers are torchvision's `vgg19().features` (same indices, so `features.<i>.*` of torchvision's
`vgg19-dcbb9e9d.pth` load into them strictly); the classifier is never built. Weights come from --vgg_path or
the torch hub cache, downloaded there on first use as the official DPTN gets them through torchvision
(util/weights.py: hash-checked; --no_download turns it off); `random_init=True` is for tests and offline
demos and announces itself. Taps are named reluX_Y and taken after their ReLU, as in DPTN's VGG19
(PangzeCheung/Dual-task-Pose-Transformer-Network `models/external_function.py`; docs/models/dptn.md, "Losses
and training"); the network stops at the deepest tap asked for.
"""
from __future__ import annotations

import os

import torch
from torch import nn

from util.io import InputError
from util.weights import VGG19, load_state_dict_file, local_weights, warn_random_weights

VGG19_FILE = VGG19.filename  # torchvision's IMAGENET1K_V1 weights
# torchvision's configuration "E": channels of each 3x3 conv, "M" = 2x2 max pooling
VGG19_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
                512, 512, 512, 512, "M")


def _relu_names() -> dict[str, int]:
    """reluX_Y -> index (in `features`) of that ReLU: relu1_1 -> 1, relu2_2 -> 8, relu5_4 -> 35."""
    names, index, block, conv = {}, 0, 1, 0
    for item in VGG19_CONFIG:
        if item == "M":
            block, conv = block + 1, 0
            index += 1
            continue
        conv += 1
        names[f"relu{block}_{conv}"] = index + 1
        index += 2
    return names


RELU_INDEX = _relu_names()
FEATURES_DEPTH = 2 * sum(item != "M" for item in VGG19_CONFIG) + VGG19_CONFIG.count("M")  # 37 modules


def vgg19_layers(depth: int) -> nn.Sequential:
    """The first `depth` modules of torchvision's vgg19().features (convs 3x3 pad 1, in-place ReLUs, pools)."""
    layers: list[nn.Module] = []
    channels = 3
    for item in VGG19_CONFIG:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, item, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = item
    return nn.Sequential(*layers[:depth])


class VGG19Features(nn.Module):
    """Frozen VGG19 returning {tap name: features} for the requested taps (inputs used as given, no
    ImageNet normalisation, as DPTN feeds its [-1, 1] images).

    Args:
        taps: names like 'relu2_2', or indices into `features` (the output of that module); the network is
            cut after the deepest one.
        weights: a path to torchvision's vgg19 file, or a folder holding it; None = the torch hub cache.
        random_init: skip loading (tests and offline demos only; warns loudly).
        download: fetch the file into the hub cache when it is missing there (not with an explicit path).
    """

    def __init__(self, taps: tuple[str | int, ...], weights: str | os.PathLike | None = None,
                 random_init: bool = False, download: bool = True) -> None:
        super().__init__()
        unknown = [t for t in taps if not (t in RELU_INDEX if isinstance(t, str) else 0 <= t < FEATURES_DEPTH)]
        if unknown:
            raise ValueError(f"unknown VGG19 taps {unknown}; available: {', '.join(RELU_INDEX)} or an index "
                             f"0..{FEATURES_DEPTH - 1} of vgg19().features")
        self.taps = tuple(taps)
        self.tap_index = {RELU_INDEX[t] if isinstance(t, str) else t: t for t in taps}
        self.features = vgg19_layers(max(self.tap_index) + 1)
        if random_init:
            warn_random_weights("the VGG19 of the perceptual and style losses", "--vgg_random_init")
            self.source = "random"
        else:
            path = local_weights(VGG19, weights, download)
            self.load_torchvision(path)
            self.source = str(path)
        self.requires_grad_(False)
        self.eval()

    def load_torchvision(self, path: os.PathLike) -> None:
        """Load `features.<i>.*` of torchvision's vgg19 state_dict (other keys are ignored)."""
        state = load_state_dict_file(path)
        wanted = {k: v for k, v in state.items() if k.startswith("features.")}
        mine = self.features.state_dict()
        missing = [k for k in mine if f"features.{k}" not in wanted]
        if missing:
            raise InputError(f"{path} is not torchvision's VGG19 ({VGG19_FILE}): it lacks "
                             + ", ".join(f"features.{k}" for k in missing[:4]))
        try:
            self.features.load_state_dict({k: wanted[f"features.{k}"] for k in mine}, strict=True)
        except RuntimeError as exc:
            raise InputError(f"{path} does not fit VGG19: {exc}") from None

    def train(self, mode: bool = True) -> "VGG19Features":
        return super().train(False)  # a fixed feature extractor: always in eval mode

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.tap_index:
                out[self.tap_index[index]] = x
        return out
