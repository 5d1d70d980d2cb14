"""fast-reid's bagtricks learning-rate schedule: per-iteration linear warm-up, then MultiStep per epoch.

fast-reid (https://github.com/JDAI-CV/fast-reid, `fastreid/solver/lr_scheduler.py::WarmupLR`,
`fastreid/engine/hooks.py::LRScheduler`, `configs/Base-bagtricks.yml`) drives two schedulers on one optimizer:
- the warm-up scheduler steps after each iteration while (iteration + 1) <= WARMUP_ITERS (2,000); its factor
  after s steps is 0.1·(1 - s/2000) + s/2000, and 1 from s = 2000 on. Under fp16 AMP a step is skipped when the
  grad scaler changed its scale in that iteration, so the warm-up then ends slightly short of the base rate and
  the rate stays there (the MultiStep scheduler multiplies the optimizer's current rate);
- MultiStepLR([40, 90], 0.1) steps once per epoch, after the epoch, only when (iterations done + 1) > 2,000.
  Its counter therefore starts late: with 202 iterations per epoch (Market-1501, batch 64) the first step
  comes after 0-based epoch 9 and the drops at the starts of epochs 49 and 99, not 40 and 90. For other epoch
  lengths the drops come at 40 + d and 90 + d with d = ceil(2000 / iterations_per_epoch) - 1.
"""
from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass

TABLE_ENDS = 12  # rows kept at each end of a long table


@dataclass
class BagtricksSchedule:
    """The schedule's state; `lr()` is the rate for the next iteration. Save `state_dict()` for a resume."""

    base_lr: float = 3.5e-4
    warmup_iters: int = 2000
    warmup_factor: float = 0.1
    milestones: tuple[int, ...] = (40, 90)
    gamma: float = 0.1
    iteration: int = 0  # iterations done
    warmup_steps: int = 0  # warm-up scheduler steps taken
    decay_steps: int = 0  # MultiStepLR steps taken (its "epoch" counter)

    def warmup(self) -> float:
        """Warm-up multiplier after `warmup_steps` steps (linear from `warmup_factor` to 1)."""
        if self.warmup_steps >= self.warmup_iters:
            return 1.0
        alpha = self.warmup_steps / self.warmup_iters
        return self.warmup_factor * (1.0 - alpha) + alpha

    def lr(self) -> float:
        """The learning rate of the next iteration."""
        drops = bisect.bisect_right(sorted(self.milestones), self.decay_steps)
        return self.base_lr * self.warmup() * self.gamma ** drops

    def after_iteration(self, scale_changed: bool = False) -> None:
        """After an optimiser step; `scale_changed`: fp16's grad scaler changed its scale in this iteration."""
        if self.iteration + 1 <= self.warmup_iters and not scale_changed:
            self.warmup_steps += 1
        self.iteration += 1

    def after_epoch(self) -> None:
        """At the end of an epoch: the MultiStep counter advances once warm-up is over."""
        if self.iteration + 1 > self.warmup_iters:
            self.decay_steps += 1

    def state_dict(self) -> dict:
        return {key: value for key, value in asdict(self).items()}

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, tuple(value) if key == "milestones" else value)


def epoch_start_rates(schedule: BagtricksSchedule, iters_per_epoch: int, epochs: int) -> list[float]:
    """The rate at the first iteration of each 0-based epoch, driving a copy of `schedule` without images."""
    if iters_per_epoch < 1:
        raise ValueError(f"iters_per_epoch must be >= 1, got {iters_per_epoch}")
    sim = BagtricksSchedule(**schedule.state_dict())
    rates = []
    for _ in range(epochs):
        rates.append(sim.lr())
        for _ in range(iters_per_epoch):
            sim.after_iteration()
        sim.after_epoch()
    return rates


def iteration_rate(schedule: BagtricksSchedule, iteration: int, iters_per_epoch: int) -> float:
    """The rate at 0-based `iteration` of a fresh run (no fp16 scale changes), epochs of `iters_per_epoch`."""
    sim = BagtricksSchedule(**{**schedule.state_dict(), "iteration": 0, "warmup_steps": 0, "decay_steps": 0})
    for _ in range(iteration):
        sim.after_iteration()
        if sim.iteration % iters_per_epoch == 0:
            sim.after_epoch()
    return sim.lr()


def format_lr_table(schedule: BagtricksSchedule, iters_per_epoch: int, epochs: int) -> str:
    """The epochs (1-based, as train.py counts them) at whose start the rate changes, with that rate."""
    rates = epoch_start_rates(schedule, iters_per_epoch, epochs)
    lines = [f"learning-rate schedule: {iters_per_epoch} iterations/epoch, {epochs} epochs, warm-up "
             f"{schedule.warmup_iters} iterations from x{schedule.warmup_factor}, MultiStep "
             f"{list(schedule.milestones)} x{schedule.gamma} per epoch after warm-up (fast-reid)",
             f"{'epoch':>7} {'iterations':>17} {'lr at start':>12}"]
    rows = []
    for epoch, rate in enumerate(rates):
        if epoch == 0 or epoch == len(rates) - 1 or abs(rate - rates[epoch - 1]) > 1e-15:
            first = epoch * iters_per_epoch
            rows.append(f"{epoch + 1:>7} {first:>8}-{first + iters_per_epoch - 1:<8} {rate:>12.4e}")
    if len(rows) > 2 * TABLE_ENDS:  # short epochs: the warm-up changes the rate every epoch
        rows = rows[:TABLE_ENDS] + [f"{'...':>7}"] + rows[-TABLE_ENDS:]
    return "\n".join(lines + rows)
