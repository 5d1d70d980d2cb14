"""Feedback during training: one progress bar (ETA) over the whole run, per-epoch speed lines, and one warning
when a CPU run is predicted to take more than a day."""
from __future__ import annotations

import time

from tqdm import tqdm

SLOW_RUN_S = 24 * 3600.0  # a CPU run predicted to take longer than this gets one warning
WARMUP_ITERATIONS = 1  # not timed: the first iteration allocates and warms caches
TIMED_ITERATIONS = 3  # the prediction is made from this many iterations after the warm-up (and one more)


def planned_iterations(done: int, epoch: int, steps_into_epoch: int, steps_per_epoch: int, last_epoch: int,
                       max_steps: int) -> int:
    """The iteration count at which the run ends: the end of the last epoch, or --max_steps when that is
    reached first (`done` iterations already taken, `steps_into_epoch` of them in the current epoch)."""
    remaining = max(steps_per_epoch - steps_into_epoch, 0) + steps_per_epoch * max(last_epoch - epoch, 0)
    end = done + remaining
    return min(end, max_steps) if max_steps > 0 else end


def slow_run_hint(has_ngf: bool, has_load_size: bool) -> str:
    """What shortens a CPU run, naming only flags the model has."""
    hints = ["a GPU (--gpu_ids 0)", "a shorter run (--max_steps N)"]
    if has_load_size:
        hints.append("smaller images (--load_size H W)")
    if has_ngf:
        hints.append("narrower networks (--ngf)")
    return ", ".join(hints[:-1]) + " or " + hints[-1]


class RunProgress:
    """The whole-run bar (total = the planned iterations, so the ETA is the run's, also on resume) with the
    epoch in its description; per-epoch s/iteration lines; the slow-CPU warning. Prints on rank 0 only, always
    through tqdm.write so that the bar stays intact."""

    def __init__(self, done: int, total: int, enabled: bool, on_cpu: bool, hint: str, desc: str = "training",
                 slow_run_s: float | None = None) -> None:
        self.enabled = enabled
        self.on_cpu = on_cpu
        self.hint = hint
        self.slow_run_s = SLOW_RUN_S if slow_run_s is None else slow_run_s
        self.total = total
        self.bar = tqdm(total=total, initial=min(done, total), disable=not enabled, unit="it",
                        dynamic_ncols=True, desc=desc)
        self.session_steps = 0  # iterations taken by this process (a resumed run starts again from 0)
        self._timed_from: float | None = None
        self._warned = False
        self._epoch_steps = 0
        self._epoch_timer: float | None = None

    def write(self, message: str) -> None:
        if self.enabled:
            tqdm.write(message)

    def start_epoch(self, epoch: int, last_epoch: int) -> None:
        self.bar.set_description(f"epoch {epoch}/{last_epoch}")
        self._epoch_steps = 0
        self._epoch_timer = None

    def step(self, done: int, images: int, seconds: float) -> None:
        """One iteration finished (`done` iterations in all; `images` in `seconds` for the speed postfix)."""
        self.session_steps += 1
        self._epoch_steps += 1
        now = time.perf_counter()
        if self._epoch_steps == 1:
            self._epoch_timer = now  # the epoch's speed is measured after its first (warm-up) iteration
        self.bar.update(1)
        self.bar.set_postfix(img_per_s=f"{images / max(seconds, 1e-9):.1f}", refresh=False)
        self._check_speed(done, now)

    def _check_speed(self, done: int, now: float) -> None:
        if self._warned or not self.on_cpu:
            return
        start = WARMUP_ITERATIONS + 1  # the clock starts when the first timed iteration ends: the warm-up and
        if self.session_steps == start:  # the page and loss line written after it stay out of the figures
            self._timed_from = now
        elif self.session_steps == start + TIMED_ITERATIONS and self._timed_from is not None:
            self._warned = True
            per_iteration = (now - self._timed_from) / TIMED_ITERATIONS
            left = max(self.total - done, 0)
            predicted = per_iteration * left
            if predicted > self.slow_run_s:
                self.write(f"warning: this CPU run is predicted to take {predicted / 3600:.1f} hours more "
                           f"({per_iteration:.2f} s/iteration x {left} iterations left); for a try, use "
                           f"{self.hint}")

    def end_epoch(self, epoch: int, images_per_step: int) -> None:
        """The epoch's speed after its first iteration (when it had more than one)."""
        if self._epoch_steps > 1 and self._epoch_timer is not None:
            elapsed = max(time.perf_counter() - self._epoch_timer, 1e-9)
            steps = self._epoch_steps - 1
            self.write(f"epoch {epoch}: {self._epoch_steps} iterations, {elapsed / steps:.3f} s/iteration, "
                       f"{steps * images_per_step / elapsed:.1f} images/s (after the first iteration)")

    def close(self) -> None:
        self.bar.close()
