"""Multiply-accumulates (MACs) of forward passes, for scripts/bench_train.py and the network-size figures.

Convention (the usual one of MobileNet-style size tables): one MAC per use of a weight. A
convolution costs output elements x Ci/groups x kh x kw, a linear layer in x out per row; bias adds,
activations, sums, concatenations and nearest upsampling cost nothing. torch.utils.flop_counter counts exactly
2 FLOPs per such MAC (convolutions and matmuls, bias ignored), so MACs = FLOPs / 2 there. `network_macs`, which
the benchmark uses, reads that counter, so it also sees matmuls that are not layers (attention);
`layer_macs` counts the same convention with forward hooks and says which layer costs what.

`flop_counter()` is FlopCounterMode with one fix: torch's formula for a convolution's backward ignores groups,
so it counts the weight gradient of a depthwise conv C times over (a mobile network's training step came out
at 4x its real FLOPs); here each gradient a backward computes costs what the forward did.
(pytorch/pytorch PR #183405 divides by the groups; torch 2.14 does not yet.)

PG2's G1 runs the 1x1 conv of each Up before the nearest upsampling, on 4x fewer pixels (blocks.Up, DSUp);
the official code runs it after, so its G1 costs 3x those convs' MACs more (tests/test_bench_macs.py).
"""
from __future__ import annotations

import contextlib
import math
from typing import Callable, Iterator, Mapping

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _module_macs(module: nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    """MACs of one call of a conv / transposed conv / linear layer, from its input and output shapes."""
    if isinstance(module, _CONVS):  # every output element sums Ci/groups x k x k products
        return output.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)
    if isinstance(module, _TRANSPOSED):  # every input element is spread over Co/groups x k x k outputs
        return inputs[0].numel() * (module.out_channels // module.groups) * math.prod(module.kernel_size)
    return inputs[0].numel() * module.out_features  # nn.Linear: rows x in x out


def layer_macs(net: nn.Module, *inputs: torch.Tensor) -> dict[str, int]:
    """Qualified name -> MACs of each conv / linear layer of `net` over one `net(*inputs)` (no grad), summed
    over repeated calls. Works on the meta device (shapes only)."""
    counts: dict[str, int] = {}
    handles = []
    for name, module in net.named_modules():
        if isinstance(module, _CONVS + _TRANSPOSED + (nn.Linear,)):
            def hook(module: nn.Module, args: tuple, output: torch.Tensor, name: str = name) -> None:
                counts[name] = counts.get(name, 0) + _module_macs(module, args, output)
            handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            net(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return counts


def _conv_backward_flops(grad_out_shape: list[int], x_shape: list[int], w_shape: list[int], _bias: object,
                         _stride: object, _padding: object, _dilation: object, transposed: bool,
                         _output_padding: object, _groups: int, output_mask: list[bool], **_: object) -> int:
    """FLOPs of aten.convolution_backward: 2 x the forward MACs for each of grad_input and grad_weight that it
    computes (the weight's shape, (Co, Ci/groups, k...) or transposed (Ci, Co/groups, k...), holds the groups)."""
    per_weight = math.prod(w_shape[1:])
    forward_macs = math.prod(x_shape if transposed else grad_out_shape) * per_weight
    return 2 * forward_macs * (int(output_mask[0]) + int(output_mask[1]))


def flop_counter() -> FlopCounterMode:
    """torch's FlopCounterMode (no display) with grouped convolutions' backward counted right (module doc)."""
    return FlopCounterMode(display=False,
                           custom_mapping={torch.ops.aten.convolution_backward: _conv_backward_flops})


def counted_macs(run: Callable[[], object]) -> int:
    """MACs of everything `run()` computes: FLOPs / 2 of `flop_counter()`."""
    counter = flop_counter()
    with counter:
        run()
    return counter.get_total_flops() // 2


@contextlib.contextmanager
def network_macs(networks: Mapping[str, nn.Module]) -> Iterator[dict[str, int]]:
    """Inside the block, count the MACs (`flop_counter()` FLOPs / 2) that each network's forward calls perform;
    the yielded dict maps the name of every network that ran to its total once the block ends. Each call's
    share is the counter's growth between the entry and the exit of that network's forward, so the networks
    must not call one another."""
    counter = flop_counter()
    totals: dict[str, int] = {}
    started: dict[str, list[int]] = {}
    handles = []
    for name, net in networks.items():
        def enter(module: nn.Module, args: tuple, name: str = name) -> None:
            started.setdefault(name, []).append(counter.get_total_flops())

        def leave(module: nn.Module, args: tuple, output: object, name: str = name) -> None:
            totals[name] = totals.get(name, 0) + counter.get_total_flops() - started[name].pop()
        handles += [net.register_forward_pre_hook(enter), net.register_forward_hook(leave)]
    result: dict[str, int] = {}
    try:
        with counter:
            yield result
    finally:
        for handle in handles:
            handle.remove()
    result.update({name: flops // 2 for name, flops in totals.items()})
