"""TensorFlow 1.x `tf.train.RMSPropOptimizer` as a torch.optim.Optimizer, for DPIG's stage II (Ma et al.,
"Disentangled Person Image Generation", CVPR 2018; charliememory/Disentangled-Person-Image-Generation
`trainer.py::_getOptimizer` builds `RMSPropOptimizer(learning_rate=g_lr)` with TF's defaults).

TF 1.x (`python/training/rmsprop.py`, kernel `ApplyRMSProp` in `core/kernels/training_ops.cc`):
- defaults decay rho = 0.9, momentum 0, epsilon 1e-10; the mean-square slot `rms` starts at **1**
  (`ones_initializer`), the momentum slot at 0;
- per step: ms += (g^2 - ms) * (1 - rho); mom = mom * momentum + (g * lr) / sqrt(ms + epsilon); var -= mom.

torch.optim.RMSprop differs on all counts that matter early in training: its square average starts at 0, its
epsilon (1e-8) sits outside the square root and its alpha defaults to 0.99, so its first update is about
10 * lr * sign(g) (3.2 * lr * sign(g) at alpha 0.9), while TF's is about lr * g / 0.95: tiny for small gradients.
The arithmetic here follows the kernel's order of operations, and 1 - rho is formed in the parameter's dtype,
as TF does (in float32 it is 0.100000024, not 0.1).
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch

RMSPROP_KINDS = ("tf", "torch")  # DPIG's --rmsprop


class TFRMSprop(torch.optim.Optimizer):
    """TF 1.x RMSProp (not centered): slot `rms` initialised to 1, epsilon inside the square root.

    State per parameter: `rms` (the mean square), `momentum` (only when momentum > 0; with momentum 0 TF's
    slot holds exactly the last update and never feeds back), `step` (steps taken, for inspection).
    """

    def __init__(self, params: Iterable, lr: float, decay: float = 0.9, momentum: float = 0.0,
                 epsilon: float = 1e-10) -> None:
        if lr < 0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {decay}")
        if momentum < 0:
            raise ValueError(f"momentum must be >= 0, got {momentum}")
        if epsilon < 0:
            raise ValueError(f"epsilon must be >= 0, got {epsilon}")
        super().__init__(params, dict(lr=lr, decay=decay, momentum=momentum, epsilon=epsilon))

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """One update of every parameter that has a gradient (parameters without one are left alone, as TF
        leaves variables outside the loss's graph)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, decay, momentum, epsilon = group["lr"], group["decay"], group["momentum"], group["epsilon"]
            one_minus_decay: dict[torch.dtype, float] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if grad.is_sparse:
                    raise RuntimeError("TFRMSprop does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["rms"] = torch.ones_like(p, memory_format=torch.preserve_format)
                    if momentum > 0:
                        state["momentum"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                ms = state["rms"]
                if ms.dtype not in one_minus_decay:  # TF casts rho to the variable's dtype and subtracts there
                    one_minus_decay[ms.dtype] = (torch.ones((), dtype=ms.dtype)
                                                 - torch.tensor(decay, dtype=ms.dtype)).item()
                ms.add_(grad.square().sub_(ms).mul_(one_minus_decay[ms.dtype]))  # ms += (g^2 - ms) * (1 - rho)
                update = grad.mul(lr).div_(ms.add(epsilon).sqrt_())  # (g * lr) / sqrt(ms + eps)
                if momentum > 0:
                    if "momentum" not in state:  # momentum switched on after the first step
                        state["momentum"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    update = state["momentum"].mul_(momentum).add_(update)
                p.sub_(update)
        return loss


def make_rmsprop(params: Iterable, lr: float, kind: str = "tf") -> torch.optim.Optimizer:
    """DPIG's stage-II optimiser for `--rmsprop kind`: 'tf' = TFRMSprop with TF 1.x's defaults (the official
    code's optimiser); 'torch' = torch.optim.RMSprop(lr) with PyTorch's defaults (alpha 0.99, eps 1e-8 outside
    the root, square average from 0), what a plain port writes."""
    if kind == "tf":
        return TFRMSprop(params, lr=lr)
    if kind == "torch":
        return torch.optim.RMSprop(params, lr=lr)
    raise ValueError(f"unknown RMSProp kind {kind!r}; available: {', '.join(RMSPROP_KINDS)}")
