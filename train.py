"""Train a pose-transfer model: `python train.py --model PG2 --dataset_mode market --dataroot ... --name ...`.

Works on CPU, one GPU (--gpu_ids 0) and under `torchrun --nproc_per_node=N train.py ...`.
"""
from __future__ import annotations

import errno
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from tqdm import tqdm

from data import create_dataloader, create_dataset
from models import allow_compile_fallback, create_model
from options.train_options import TrainOptions
from util.checkpoint import (load_training_state, newest_intact_state, save_training_state, seed_everything,
                              set_rng_state)
from util.cpu_memory import set_cpu_memory_policy
from util.distributed import (RunContext, barrier, build_context, is_peer_failure, max_over_ranks,
                              mean_over_ranks, print0, process_group_timeout)
from util.io import InputError, check_free_space, report_input_errors, tensor_bytes
from util.nan_guard import NanGuard, NonFiniteLossError
from util.progress import RunProgress, planned_iterations, slow_run_hint
from util.resources import is_out_of_memory, out_of_memory_message, set_torch_threads
from util.run_lock import RunLock, remove_stale_temp_files
from util.stop_signals import StopSignals, exit_status
from util.visualizer import Visualizer


class Trainer:
    """The epoch x batch loop: optimise, report, checkpoint, resume."""

    def __init__(self, opt, ctx: RunContext, stop: StopSignals | None = None) -> None:
        self.opt = opt
        self.ctx = ctx
        self.save_dir = Path(opt.checkpoints_dir) / opt.name
        self.stop = stop or StopSignals()  # not entered: no signal handled, never requested
        self.stopped_by = 0  # the signal that ended the run early (0: it ran to the end)
        self.latest_at: tuple | None = None  # progress() when 'latest' was last written
        self.saves = 0  # save() calls so far (the test hook counts them)
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
        matches weights at least as old as itself (resume reads the networks from the state). Free space is
        checked first; a full disk is one line, with the previous files intact.
        """
        self.saves += 1
        if self.ctx.is_main:
            state_dict = self.model.state_dict()
            needed = tensor_bytes(state_dict) + tensor_bytes(state_dict.get("networks", {}))
            check_free_space(self.save_dir, needed, f"checkpoint '{tag}'")
            state = self.save_dir / f"{tag}_train_state.pth"
            try:
                self.model.save_networks(tag)
                test_pause("save", self.saves, self.stop)
                save_training_state(state, state_dict, self.progress(), {k: v for k, v in self.opt.public_items()})
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
                raise InputError(f"disk full in {self.save_dir} while saving checkpoint '{tag}' ({exc.filename}); "
                                 f"its temp file is removed and {state.name} is the previous one (resume reads "
                                 "the networks from it): free some space, then resume with --continue_train"
                                 ) from None
            weights = ", ".join(self.model.weight_path(tag, name).name for name in self.model.model_names)
            self.say(f"saved checkpoint '{tag}' (iteration {self.total_iters}) in {self.save_dir}: {weights}, "
                     f"{state.name}")
        if tag == "latest":
            self.latest_at = tuple(self.progress().values())
        barrier()

    def epoch_tag_missing(self, epoch: int) -> bool:
        """True when a file of the numbered checkpoint `epoch` (weights or state) is absent."""
        names = [self.model.weight_path(str(epoch), n).name for n in self.model.model_names]
        return not all((self.save_dir / f).is_file() for f in names + [f"{epoch}_train_state.pth"])

    def repair_epoch_checkpoint(self) -> None:
        """A kill between the end-of-epoch 'latest' and the numbered save leaves epoch N's checkpoint missing
        while 'latest' stands at the start of epoch N+1, exactly where N's would have been written: write it.
        (All ranks decide alike: the files are on a shared disk, and so is the decision's input.)"""
        finished = self.epoch - 1
        if (not self.opt.continue_train or self.epoch_iter != 0 or finished < 1
                or finished % self.opt.save_epoch_freq or not max_over_ranks(int(self.epoch_tag_missing(finished)))):
            return
        print0(f"note: the checkpoint of epoch {finished} is missing (the run was stopped before it was saved); "
               "writing it now from the resumed state, which is where it would have been written")
        self.save(str(finished))

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

    def say(self, message: str) -> None:
        """A line on rank 0 that leaves the progress bar intact."""
        if self.ctx.is_main:
            tqdm.write(message)

    def run(self) -> None:
        opt = self.opt
        self.repair_epoch_checkpoint()  # first: nothing may draw random numbers before it saves
        last_epoch = opt.niter + opt.niter_decay
        samples = len(self.loader.sampler.rank_indices())
        steps_per_epoch = -(-samples // opt.batch_size) if opt.last_batch == "keep" else samples // opt.batch_size
        self.planned = planned_iterations(self.total_iters, self.epoch, self.epoch_iter // opt.batch_size,
                                          steps_per_epoch, last_epoch, opt.max_steps)
        hint = slow_run_hint(hasattr(opt, "ngf"), hasattr(opt, "load_size"))
        self.feedback = RunProgress(self.total_iters, self.planned, self.ctx.is_main,
                                    self.ctx.device.type == "cpu", hint, f"epoch {self.epoch}/{last_epoch}")
        self.model.start_of_training(steps_per_epoch, self.dataset)
        self.visualizer.restore_history(steps_per_epoch * opt.batch_size)  # the x of after_step's points
        try:
            while self.epoch <= last_epoch:
                self.run_epoch(steps_per_epoch, last_epoch)
                if self.done():
                    self.save("latest")
                    break
                if self.stopped_by:
                    break
                finished = self.epoch
                self.epoch, self.epoch_iter = finished + 1, 0
                self.model.end_of_epoch(finished)
                lr = self.model.update_learning_rate()
                self.visualizer.log_scalars(self.total_iters, {f"optimizer{i}": o.param_groups[0]["lr"]
                                                               for i, o in enumerate(self.model.optimizers)},
                                            group="lr")
                self.say(f"end of epoch {finished} / {last_epoch}; learning rate {lr:.7f}")
                self.save("latest")
                if finished % opt.save_epoch_freq == 0:
                    self.save(str(finished))
                if self.stop_requested():
                    break
        finally:
            self.feedback.close()  # also on errors, so that a message starts on its own line
        self.visualizer.close()
        if self.stopped_by:
            self.stop_here()
            return
        if self.guard.skipped_iterations:
            print0(f"--nan_policy skip: {len(self.guard.skipped_iterations)} iteration(s) had non-finite "
                   f"values; {self.guard.skipped_steps} optimizer update(s) were skipped")
        print0(f"training done: {self.total_iters} iterations; checkpoints in {self.save_dir}")

    def done(self) -> bool:
        return 0 < self.opt.max_steps <= self.total_iters

    def stop_requested(self) -> bool:
        """At a step boundary: has any rank received SIGTERM/SIGINT? Every rank asks at the same boundary,
        so all stop after the same step."""
        self.stopped_by = max_over_ranks(self.stop.signum) if self.ctx.distributed else self.stop.signum
        return self.stopped_by != 0

    def stop_here(self) -> None:
        """Save 'latest' (unless it was just written at this very point) and say how to resume."""
        if self.latest_at != tuple(self.progress().values()):
            self.save("latest")
        name = signal.Signals(self.stopped_by).name
        self.say(f"stopped by {name} at epoch {self.epoch}, iteration {self.total_iters}: resumable state in "
                 f"{self.save_dir / 'latest_train_state.pth'}; to resume, run the same command with "
                 f"--continue_train (exit status {exit_status(self.stopped_by)})")

    def after_step(self, before: int, losses: dict, t_comp: float, t_data: float, steps_per_epoch: int) -> None:
        """Print, plot, display and save when the sample counter passes the respective frequency; the first
        and the last iteration of a run always print and display (the same branch on every rank: the counters
        are the same everywhere)."""
        opt = self.opt
        edge = self.feedback.session_steps == 1 or self.total_iters >= self.planned
        if edge or self.crossed(before, opt.print_freq):
            losses = mean_over_ranks(losses)  # the global batch's losses (every rank reaches this line)
            ratio = self.epoch_iter / max(steps_per_epoch * opt.batch_size, 1)
            self.visualizer.print_current_losses(self.epoch, self.epoch_iter, losses, t_comp, t_data)
            self.visualizer.plot_current_losses(self.epoch, ratio, losses, step=self.total_iters)
            self.visualizer.log_scalars(self.total_iters, {"img_per_s": self.opt.batch_size * self.ctx.world_size
                                                           / max(t_comp + t_data, 1e-9)}, group="speed")
        if edge or self.crossed(before, opt.display_freq):
            self.visualizer.display_current_results(self.model.get_current_visuals(), self.epoch, self.total_iters)
        if self.crossed(before, opt.save_latest_freq):
            self.save("latest")
            if opt.save_by_iter:
                self.save(f"iter_{self.total_samples}")

    def batches(self) -> Iterator[dict]:
        """The loader's batches. When a stop signal also ended the loader workers (a scheduler's SIGTERM reaches
        the whole process group) while this process waited for data, the wait fails; that is then this step
        boundary's stop, not a crash."""
        batches = iter(self.loader)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except RuntimeError:
                if not self.stop.signum:
                    raise
                self.stopped_by = self.stop.signum
                return
            yield batch

    def run_epoch(self, steps_per_epoch: int, last_epoch: int) -> None:
        opt, ctx = self.opt, self.ctx
        self.loader.sampler.set_epoch(self.epoch, skip=self.epoch_iter)
        global_batch = opt.batch_size * ctx.world_size
        self.feedback.start_epoch(self.epoch, last_epoch)
        self.model.train()
        t_data_start = time.perf_counter()
        for batch in self.batches():
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
            self.feedback.step(self.total_iters, global_batch, t_comp + t_data)
            self.after_step(before, losses, t_comp, t_data, steps_per_epoch)
            if self.done():
                break
            test_pause("step", self.total_iters, self.stop)
            if self.stop_requested():
                break
            t_data_start = time.perf_counter()
        self.feedback.end_epoch(self.epoch, global_batch)


def test_pause(event: str, count: int, stop: StopSignals) -> None:
    """Test hook: HPT_TEST_PAUSE='<step|save>:<n>[:<signals>]' holds the n-th step boundary (or the n-th save,
    between weights and state) until that many stop signals (default 1) arrived or the file
    $HPT_TEST_PAUSE_FILE, created when the wait starts, is deleted: a test acts exactly there."""
    spec = os.environ.get("HPT_TEST_PAUSE", "").split(":")
    if len(spec) < 2 or spec[0] != event or spec[1] != str(count):
        return
    wanted = int(spec[2]) if len(spec) > 2 else 1
    marker = Path(os.environ["HPT_TEST_PAUSE_FILE"]) if os.environ.get("HPT_TEST_PAUSE_FILE") else None
    if marker is not None:
        marker.touch()
    deadline = time.monotonic() + 120
    while stop.count < wanted and time.monotonic() < deadline and (marker is None or marker.exists()):
        time.sleep(0.01)


def start_run(opt, ctx: RunContext) -> RunLock | None:
    """Rank 0 takes the run folder's lock before anything is written and removes the temp files of saves
    that were interrupted; every rank learns whether that worked (a refused start stops them all)."""
    lock, failure = None, None
    if ctx.is_main:
        try:
            lock = RunLock(Path(opt.checkpoints_dir) / opt.name).acquire()
        except (InputError, OSError) as exc:
            failure = exc
    if max_over_ranks(int(failure is not None)):
        if failure is not None:
            raise failure
        raise InputError(f"rank {ctx.rank}: rank 0 could not start (its message says why)")
    if lock is not None:
        removed = remove_stale_temp_files(lock.folder)
        if removed:
            size = sum(size for _, size in removed) / 2**20
            names = ", ".join(str(p.relative_to(lock.folder)) for p, _ in removed[:3])
            print(f"note: removed {len(removed)} temp file(s) of interrupted saves ({size:.1f} MiB) in "
                  f"{lock.folder}: {names}{' ...' if len(removed) > 3 else ''}")
    return lock


@report_input_errors
def main(argv: list[str] | None = None) -> int:
    """Parse, train, return the exit status: 0 done, 2 bad input (or a full disk), 3 a non-finite loss,
    128 + N when signal N (SIGTERM 143, SIGINT 130) stopped it with a resumable checkpoint."""
    main_rank = int(os.environ.get("RANK", "0")) == 0
    options = TrainOptions()
    opt = options.parse(argv, echo=main_rank)
    set_cpu_memory_policy(opt.cpu_memory)
    if opt.compile:
        allow_compile_fallback()
    set_torch_threads(opt.torch_threads)
    process_group_timeout()  # a bad $HPT_PG_TIMEOUT is refused before the group is joined
    ctx = build_context(opt.gpu_ids)
    lock = start_run(opt, ctx)
    try:
        with StopSignals(announce=ctx.is_main) as stop:
            trainer = Trainer(opt, ctx, stop)  # validates the data and builds the model before anything is written
            if ctx.is_main:
                options.save(opt)  # also prints the non-default options (parse echo): the run starts for real
            trainer.run()
        return exit_status(trainer.stopped_by) if trainer.stopped_by else 0
    except NonFiniteLossError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print(f"error: aborted by a second Ctrl-C without saving; the checkpoints in "
              f"{Path(opt.checkpoints_dir) / opt.name} are the last complete ones (resume with --continue_train)",
              file=sys.stderr)
        return 130
    except (RuntimeError, MemoryError) as exc:  # torch.OutOfMemoryError is a RuntimeError
        if is_peer_failure(exc):
            print(f"error: rank {ctx.rank}: another process of this run died or stopped answering ("
                  f"{str(exc).splitlines()[0][:200]}); exiting (peers wait at most $HPT_PG_TIMEOUT = "
                  f"{process_group_timeout():g} s)", file=sys.stderr)
            return 1
        if not is_out_of_memory(exc):
            raise
        raise InputError(out_of_memory_message(ctx.device, opt.batch_size, opt.accum_steps)) from None
    finally:
        if lock is not None:
            lock.release()


if __name__ == "__main__":
    sys.exit(main())
