"""Weight initialisation schemes selected by --init_type."""
from __future__ import annotations

from torch import nn
from torch.nn import init


def init_weights(net: nn.Module, init_type: str = "normal", gain: float = 0.02, zero_bias: bool = True,
                 norm_std: float | None = None) -> nn.Module:
    """Initialise every Conv*/Linear weight of `net` (biases to 0) and BatchNorm weights ~ N(1, norm_std).

    init_type: normal | xavier | kaiming | orthogonal | torch (PyTorch's default init: nothing is changed);
    `gain` is the std (normal) or gain (xavier,
    orthogonal); `norm_std` defaults to `gain`. `zero_bias=False` keeps PyTorch's default biases, as the
    2017 pix2pix code (and PATN, which inherits it) does. Models whose paper uses another scheme
    (e.g. PG2's Xavier on G and uniform on D) apply their own instead.
    """
    schemes = {
        "normal": lambda w: init.normal_(w, 0.0, gain),
        "xavier": lambda w: init.xavier_normal_(w, gain=gain),
        "kaiming": lambda w: init.kaiming_normal_(w, a=0, mode="fan_in"),
        "orthogonal": lambda w: init.orthogonal_(w, gain=gain),
    }
    if init_type == "torch":
        return net
    if init_type not in schemes:
        raise ValueError(f"unknown init_type {init_type!r}; available: {', '.join(schemes)}")

    def apply(m: nn.Module) -> None:
        name = type(m).__name__
        weight = getattr(m, "weight", None)
        if weight is not None and ("Conv" in name or "Linear" in name):
            schemes[init_type](weight.data)
            if zero_bias and getattr(m, "bias", None) is not None:
                init.zeros_(m.bias.data)
        elif "BatchNorm2d" in name and weight is not None:
            init.normal_(m.weight.data, 1.0, gain if norm_std is None else norm_std)
            init.zeros_(m.bias.data)

    net.apply(apply)
    return net
