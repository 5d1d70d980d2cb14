"""Learning-rate schedules selected by --lr_policy (stepped once per epoch)."""
from __future__ import annotations

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
