"""Learning-rate schedules selected by --lr_policy (stepped once per epoch), and the per-iteration halving of
TF's `--lr_update_step` (DPIG), which a model steps after every iteration."""
from __future__ import annotations

import warnings

from torch import optim
from torch.optim import lr_scheduler


def linear_decay_factor(epoch_index: int, epoch_count: int, niter: int, niter_decay: int, offset: int = 0) -> float:
    """Multiplier of the base rate after `epoch_index` scheduler steps.

    Constant for the first `niter` epochs, then linear decay over `niter_decay` epochs: pix2pix's rule
    1 - max(0, epoch + offset + epoch_count - niter) / (niter_decay + 1). The 2017 pix2pix code that PATN
    inherits adds 1 (offset 1), so its rate first drops one epoch earlier and reaches 0 in the last epoch.
    """
    return 1.0 - max(0, epoch_index + offset + epoch_count - niter) / float(niter_decay + 1)


def get_scheduler(optimizer: optim.Optimizer, opt, decay_offset: int = 0) -> lr_scheduler.LRScheduler:
    """The scheduler named by opt.lr_policy: linear/lambda (with the model's `decay_offset`), step, plateau or
    constant."""
    policy = opt.lr_policy
    if policy in ("linear", "lambda"):
        return lr_scheduler.LambdaLR(optimizer, lambda e: linear_decay_factor(
            e, opt.epoch_count, opt.niter, opt.niter_decay, decay_offset))
    if policy == "step":
        return lr_scheduler.StepLR(optimizer, step_size=opt.lr_decay_iters, gamma=0.1)
    if policy == "plateau":
        return lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.2, threshold=0.01, patience=5)
    if policy == "constant":
        return lr_scheduler.LambdaLR(optimizer, lambda e: 1.0)
    raise ValueError(f"unknown lr_policy {policy!r}")


def halving_factor(step: int, period: int) -> float:
    """Multiplier of the base rate at 0-based iteration `step` under TF's `--lr_update_step period`.

    The official DPIG loops (charliememory/Disentangled-Person-Image-Generation `trainer.py`) run
    `g_lr <- g_lr * 0.5; d_lr <- d_lr * 0.5` at the end of every step with step % period == period - 1, so
    the rate of step s is base * 0.5 ** (s // period): with period 50,000, steps 0-49,999 at the base rate,
    50,000-99,999 at half, from 100,000 at a quarter. Halving is exact in binary, so repeated halving (TF)
    and one power agree bit for bit.
    """
    if period < 1:
        raise ValueError(f"the halving period must be >= 1, got {period}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return 0.5 ** (step // period)


def iteration_halving_scheduler(optimizer: optim.Optimizer, period: int) -> lr_scheduler.LambdaLR:
    """A LambdaLR whose counter is the iteration: call `step_iteration_schedulers` after every iteration, never
    per epoch. Its state (counter, base rates) is a plain scheduler state_dict, so a model that keeps it in
    `self.schedulers` resumes exactly through BaseModel.state_dict."""
    if period < 1:
        raise ValueError(f"the halving period must be >= 1, got {period}")
    return lr_scheduler.LambdaLR(optimizer, lambda step: halving_factor(step, period))


def step_iteration_schedulers(schedulers: list[lr_scheduler.LRScheduler]) -> None:
    """Advance per-iteration schedulers once, after the iteration's optimiser steps.

    TF's rate variables advance even for an optimiser that sat out the iteration (DPIG's generator skips step 0),
    so PyTorch's warning about a scheduler step before the optimiser's first step is silenced here.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before")
        for scheduler in schedulers:
            scheduler.step()
