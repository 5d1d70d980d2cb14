"""Train a pose-transfer model: `python train.py --model PG2 --dataset_mode market --dataroot ... --name ...`.

Works on CPU, one GPU (--gpu_ids 0) and under `torchrun --nproc_per_node=N train.py ...`.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from data import create_dataloader, create_dataset
from models import allow_compile_fallback, create_model
from options.train_options import TrainOptions
from util.checkpoint import (load_training_state, newest_intact_state, save_training_state, seed_everything,
                              set_rng_state)
from util.cpu_memory import set_cpu_memory_policy
from util.distributed import RunContext, barrier, build_context, mean_over_ranks, print0
from util.io import InputError, report_input_errors
from util.nan_guard import NanGuard, NonFiniteLossError
from util.visualizer import Visualizer


class Trainer:
    """The epoch x batch loop: optimise, report, checkpoint, resume."""

    def __init__(self, opt, ctx: RunContext) -> None:
        self.opt = opt
        self.ctx = ctx
        self.save_dir = Path(opt.checkpoints_dir) / opt.name
        seed_everything(opt.seed)  # the same seed on every rank: DDP syncs only the networks it wraps (not, e.g., a
        self.dataset = create_dataset(opt)  # randomly initialised loss network), so all must start alike
        self.loader = create_dataloader(opt, ctx, self.dataset)
        if len(self.loader) == 0 and not opt.continue_train:
            raise InputError(f"{len(self.dataset)} training pairs are fewer than --batchSize {opt.batch_size} "
                             f"x {ctx.world_size} process(es): no full batch to train on")
        self.model = create_model(opt, ctx)
        self.model.setup()
        if ctx.world_size > 1:
            seed_everything(opt.seed + ctx.rank)  # from here on, each rank draws its own random numbers
        self.epoch = opt.epoch_count
        self.epoch_iter = 0  # samples of this rank already consumed in the current epoch
        self.total_iters = 0  # optimisation steps taken
        self.total_samples = 0  # samples seen by all ranks together (frequencies count these)
        if opt.continue_train:
            self.resume(opt.which_epoch)
        self.guard = NanGuard(self.model.optimizers, opt.nan_policy, self.describe_step)
        self.visualizer = Visualizer(opt, ctx)  # last: it starts writing the log and the HTML page

    # --- checkpoints -----------------------------------------------------------------------------------

    def progress(self) -> dict:
        return {"epoch": self.epoch, "epoch_iter": self.epoch_iter, "total_iters": self.total_iters,
                "total_samples": self.total_samples}

    def save(self, tag: str) -> None:
        """Weights (<tag>_net_<X>.pth) and the full training state (<tag>_train_state.pth), rank 0 only.

        The state is written last: a crash between the two leaves the previous state file, which still
        matches weights at least as old as itself.
        """
        if self.ctx.is_main:
            self.model.save_networks(tag)
            save_training_state(self.save_dir / f"{tag}_train_state.pth", self.model.state_dict(),
                                self.progress(), {k: v for k, v in self.opt.public_items()})
        barrier()

    def resume(self, tag: str) -> None:
        path = self.save_dir / f"{tag}_train_state.pth"
        try:
            state = load_training_state(path)
        except InputError as exc:
            fallback = newest_intact_state(self.save_dir, path)
            hint = (f"; the newest intact state is {fallback}_train_state.pth: resume with --which_epoch {fallback}"
                    if fallback else f"; no other intact training state in {self.save_dir}")
            raise InputError(f"cannot resume: {exc}{hint}") from None
        self.model.load_state_dict(state["model"])
        progress = state["progress"]
        self.epoch, self.epoch_iter = progress["epoch"], progress["epoch_iter"]
        self.total_iters, self.total_samples = progress["total_iters"], progress["total_samples"]
        set_rng_state(state["rng"])
        print0(f"resumed from {path}: epoch {self.epoch}, {self.epoch_iter} samples into it, "
               f"{self.total_iters} iterations done")

    # --- the loop --------------------------------------------------------------------------------------

    def crossed(self, before: int, freq: int) -> bool:
        """True when the sample counter passed a multiple of `freq` during the last step."""
        return self.total_samples // freq > before // freq

    def describe_step(self) -> str:
        losses = ", ".join(f"{k} {v:.4g}" for k, v in self.model.get_current_losses().items())
        return f"epoch {self.epoch}, iteration {self.total_iters + 1} ({losses or 'no losses yet'})"

    def run(self) -> None:
        opt = self.opt
        last_epoch = opt.niter + opt.niter_decay
        samples = len(self.loader.sampler.rank_indices())
        steps_per_epoch = -(-samples // opt.batch_size) if opt.last_batch == "keep" else samples // opt.batch_size
        self.model.start_of_training(steps_per_epoch)
        while self.epoch <= last_epoch:
            self.run_epoch(steps_per_epoch)
            if self.done():
                self.save("latest")
                break
            finished = self.epoch
            self.epoch, self.epoch_iter = finished + 1, 0
            self.model.end_of_epoch(finished)
            lr = self.model.update_learning_rate()
            print0(f"end of epoch {finished} / {last_epoch}; learning rate {lr:.7f}")
            self.save("latest")
            if finished % opt.save_epoch_freq == 0:
                self.save(str(finished))
        self.visualizer.close()
        if self.guard.skipped_iterations:
            print0(f"--nan_policy skip: {len(self.guard.skipped_iterations)} iteration(s) had non-finite "
                   f"values; {self.guard.skipped_steps} optimizer update(s) were skipped")
        print0(f"training done: {self.total_iters} iterations; checkpoints in {self.save_dir}")

    def done(self) -> bool:
        return 0 < self.opt.max_steps <= self.total_iters

    def after_step(self, before: int, losses: dict, t_comp: float, t_data: float, steps_per_epoch: int) -> None:
        """Print, plot, display and save when the sample counter passes the respective frequency."""
        opt = self.opt
        if self.crossed(before, opt.print_freq):
            losses = mean_over_ranks(losses)  # the global batch's losses (every rank reaches this line)
            ratio = self.epoch_iter / max(steps_per_epoch * opt.batch_size, 1)
            self.visualizer.print_current_losses(self.epoch, self.epoch_iter, losses, t_comp, t_data)
            self.visualizer.plot_current_losses(self.epoch, ratio, losses)
        if self.crossed(before, opt.display_freq):
            self.visualizer.display_current_results(self.model.get_current_visuals(), self.epoch, self.total_iters)
        if self.crossed(before, opt.save_latest_freq):
            self.save("latest")
            if opt.save_by_iter:
                self.save(f"iter_{self.total_samples}")

    def run_epoch(self, steps_per_epoch: int) -> None:
        opt, ctx = self.opt, self.ctx
        self.loader.sampler.set_epoch(self.epoch, skip=self.epoch_iter)
        global_batch = opt.batch_size * ctx.world_size
        bar = tqdm(total=steps_per_epoch, initial=self.epoch_iter // opt.batch_size, disable=not ctx.is_main,
                   desc=f"epoch {self.epoch}", unit="it", dynamic_ncols=True, leave=False)
        self.model.train()
        steps = 0
        t_data_start = time.perf_counter()
        try:
            for batch in self.loader:
                t_data = time.perf_counter() - t_data_start
                t_start = time.perf_counter()
                self.guard.iteration = self.total_iters + 1
                self.model.set_input(batch)
                self.model.optimize_parameters()
                losses = self.model.get_current_losses()
                self.guard.check_losses(losses)
                if ctx.device.type == "cuda":
                    torch.cuda.synchronize(ctx.device)
                t_comp = time.perf_counter() - t_start
                before = self.total_samples
                self.total_iters += 1
                self.epoch_iter += opt.batch_size
                self.total_samples += global_batch
                steps += 1
                if steps == 1:
                    t_epoch = time.perf_counter()  # throughput is measured after the first (warm-up) iteration
                bar.update(1)
                bar.set_postfix(img_per_s=f"{global_batch / max(t_comp + t_data, 1e-9):.1f}")
                self.after_step(before, losses, t_comp, t_data, steps_per_epoch)
                if self.done():
                    break
                t_data_start = time.perf_counter()
        finally:
            bar.close()  # also on errors, so that a message starts on its own line
        if steps > 1:
            elapsed = time.perf_counter() - t_epoch
            print0(f"epoch {self.epoch}: {steps} iterations, {elapsed / (steps - 1):.3f} s/iteration, "
                   f"{(steps - 1) * global_batch / elapsed:.1f} images/s (after the first iteration)")


@report_input_errors
def main(argv: list[str] | None = None) -> int:
    """Parse, train, return the exit status (2 for bad input, 3 for a non-finite loss)."""
    main_rank = int(os.environ.get("RANK", "0")) == 0
    options = TrainOptions()
    opt = options.parse(argv, echo=main_rank)
    set_cpu_memory_policy(opt.cpu_memory)
    if opt.compile:
        allow_compile_fallback()
    ctx = build_context(opt.gpu_ids)
    try:
        trainer = Trainer(opt, ctx)  # validates the data and builds the model before anything is written
        if ctx.is_main:
            options.save(opt)
        trainer.run()
    except NonFiniteLossError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
