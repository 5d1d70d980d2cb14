"""Stop or skip a training step whose gradients are not finite, before the optimizer applies them."""
from __future__ import annotations

import math
from typing import Callable

import torch


class NonFiniteLossError(RuntimeError):
    """A loss or gradient became NaN or infinite; training stops without overwriting the last good checkpoint."""


class NanGuard:
    """Installs a step pre-hook on every optimizer.

    policy 'stop': the first non-finite gradient raises NonFiniteLossError before the update, so the weights
    (and every checkpoint on disk) stay as they were. policy 'skip': that optimizer's update is dropped
    (its gradients are cleared, so Adam leaves weights and moments alone) and the step is counted.
    `describe()` returns where it happened (epoch, iteration, current losses) for the message.
    """

    def __init__(self, optimizers: list[torch.optim.Optimizer], policy: str, describe: Callable[[], str]) -> None:
        if policy not in ("stop", "skip"):
            raise ValueError(f"unknown nan policy {policy!r}")
        self.policy = policy
        self.describe = describe
        self.skipped_steps = 0  # optimizer updates dropped
        self.skipped_iterations: set[int] = set()
        self.iteration = 0
        self.handles = [o.register_step_pre_hook(self._check) for o in optimizers]

    def _check(self, optimizer: torch.optim.Optimizer, args, kwargs) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not grads or all(bool(torch.isfinite(g).all()) for g in grads):
            return
        if self.policy == "stop":
            raise NonFiniteLossError(f"gradients are not finite at {self.describe()}; the update was not "
                                     "applied and the last saved checkpoint is kept")
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad = None
        self.skipped_steps += 1
        self.skipped_iterations.add(self.iteration)

    def check_losses(self, losses: dict[str, float]) -> bool:
        """After the step: True if every loss is finite; under 'stop' a non-finite one raises."""
        if all(math.isfinite(v) for v in losses.values()):
            return True
        if self.policy == "stop":
            bad = ", ".join(k for k, v in losses.items() if not math.isfinite(v))
            raise NonFiniteLossError(f"loss {bad} is not finite at {self.describe()}; the last saved checkpoint "
                                     "is kept")
        self.skipped_iterations.add(self.iteration)
        return False

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
