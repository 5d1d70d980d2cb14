"""Options for train.py."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from options.base_options import BaseOptions, Options, read_option_file
from util.distributed import print0
from util.io import InputError
from util.official_flags import RefusedFlag
from util.run_options import RUN_FILE, RunRecord, flag_of, run_shaping_actions
from util.tensorboard_writer import check_tensorboard_installed


# options that change how a run is driven or reported, not what it computes
RUN_CONTROL = frozenset({
    "continue_train", "which_epoch", "epoch_count", "gpu_ids", "num_threads", "verbose", "checkpoints_dir",
    "display_id", "display_server", "display_port", "display_env", "display_winsize", "display_freq",
    "print_freq", "save_latest_freq", "tensorboard", "max_snapshots", "save_epoch_freq", "save_by_iter", "nan_policy", "compile", "channels_last",
})


# --continue_train: options that name this invocation's run and machine, never taken from the run's train_opt.txt
PER_INVOCATION = frozenset({"name", "suffix", "checkpoints_dir", "continue_train", "which_epoch", "gpu_ids", "help"})
# --continue_train: options the training state fixes (besides the run-shaping ones, which shape its networks)
FIXED_ON_RESUME = {
    "model": "the training state holds that model's networks",
    "seed": "the random state continues from the training state",
    "lr_policy": "the saved scheduler state belongs to that policy",
    "epoch_count": "the epoch to continue from is in the training state",
    "stage": "it selects the networks the training state holds",
    "dpig_stage": "it selects the networks the training state holds",
}
SHAPES_THE_NETWORKS = "it shapes the saved networks"


class TrainOptions(BaseOptions):
    """Train a pose-transfer model."""

    is_train = True
    opt_file_name = "train_opt.txt"
    dataset_from_run = True  # --continue_train without --dataset_mode: the run's

    def reads_run_of(self, known: argparse.Namespace) -> bool:
        """--continue_train: the resumed run's train_opt.txt gives every option not typed (`run_default_actions`)."""
        return known.continue_train

    def run_default_actions(self, parser: argparse.ArgumentParser) -> list[argparse.Action]:
        """Resuming, every recorded option except those naming this invocation (and the refused official flags)."""
        return [a for a in parser._actions if a.dest not in PER_INVOCATION and not isinstance(a, RefusedFlag)
                and a.option_strings]

    def check_against_run(self, opt: Options, parser: argparse.ArgumentParser, run: RunRecord,
                          explicit: set[str]) -> None:
        """--continue_train: refuse typed values the training state fixes (networks, model, seed, schedule, epoch),
        with the reason; print one line naming the typed values that change the run (they take effect)."""
        shaping = {a.dest for a in run_shaping_actions(parser)}
        refused, changed = [], []
        for action in self.run_default_actions(parser):
            text = run.values.get(action.dest)
            if text is None or action.dest not in explicit:
                continue
            value = getattr(opt, action.dest)
            if self.same_value(action.dest, value, text):
                continue
            why = FIXED_ON_RESUME.get(action.dest) or (SHAPES_THE_NETWORKS if action.dest in shaping else None)
            if why:
                refused.append(f"{flag_of(action)} {text}, asked for {value} ({why})")
            else:
                changed.append(f"{flag_of(action)} {text} -> {value}")
        if refused:
            raise InputError(f"--continue_train: {run.folder} was trained with " + "; ".join(refused)
                             + "; drop the flag to resume, or train under another --name")
        print0(f"resuming {run.folder}: options not typed come from its {RUN_FILE}; "
               f"{'changed now: ' + ', '.join(changed) if changed else 'none changed'}")

    def initialize(self, parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser = super().initialize(parser)
        g = parser.add_argument_group("training schedule")
        g.add_argument("--niter", "--n_epochs", dest="niter", type=int, default=100,
                       help="epochs at the initial learning rate")
        g.add_argument("--niter_decay", "--n_epochs_decay", dest="niter_decay", type=int, default=100,
                       help="epochs of linear decay to zero after --niter")
        g.add_argument("--epoch_count", type=int, default=1,
                       help="number of the first epoch (set by --continue_train from the saved state)")
        g.add_argument("--max_steps", type=int, default=0,
                       help="stop after this many iterations in total (0 = run the epochs to the end)")
        g.add_argument("--lr", type=float, default=0.0002, help="initial learning rate for Adam")
        g.add_argument("--beta1", type=float, default=0.5, help="Adam beta1")
        g.add_argument("--lr_policy", type=str, default="linear",
                       choices=["linear", "lambda", "step", "plateau", "constant"],
                       help="learning-rate schedule: linear (=lambda, DPTN's name) keeps the rate for --niter "
                            "epochs then decays linearly over --niter_decay; step; plateau; constant")
        g.add_argument("--lr_decay_iters", type=int, default=50,
                       help="step policy: multiply by 0.1 every this many epochs")
        g.add_argument("--pairs_per_epoch", type=int, default=0,
                       help="0: an epoch is every training pair once, shuffled; N > 0: an epoch is N pairs drawn "
                            "at random with replacement (PATN: 4000)")
        g.add_argument("--last_batch", type=str, default="drop", choices=["drop", "keep"],
                       help="an epoch's last, smaller batch: drop it, or train on it too (PATN)")
        g.add_argument("--continue_train", action="store_true",
                       help="resume from <which_epoch>_train_state.pth in the run's folder")
        g.add_argument("--which_epoch", "--epoch", dest="which_epoch", type=str, default="latest",
                       help="checkpoint to resume from with --continue_train: latest or an epoch number")

        g = parser.add_argument_group("saving and display (frequencies count samples, as in pix2pix and DPTN)")
        g.add_argument("--display_freq", type=int, default=400, help="save visuals every this many samples")
        g.add_argument("--print_freq", type=int, default=100, help="print losses every this many samples")
        g.add_argument("--max_snapshots", type=int, default=50,
                       help="the training page keeps the newest this many rows of visuals (older PNGs are deleted)")
        g.add_argument("--tensorboard", action="store_true",
                       help="also write TensorBoard event files (losses, learning rates, images/s, visuals) to "
                            "<checkpoints_dir>/<name>/tensorboard/ (needs the tensorboard package)")
        g.add_argument("--save_latest_freq", type=int, default=5000,
                       help="save the 'latest' checkpoint every this many samples")
        g.add_argument("--save_epoch_freq", type=int, default=5,
                       help="save a numbered checkpoint every this many epochs")
        g.add_argument("--nan_policy", type=str, default="stop", choices=["stop", "skip"],
                       help="when a loss or gradient is NaN/inf: stop (before the update; the last checkpoint "
                            "is kept) or skip that update and count it")
        g.add_argument("--accum_steps", type=int, default=1,
                       help="split each batch of --batchSize into this many micro-batches and accumulate their "
                            "gradients: the same step as the whole batch with the memory of one micro-batch")
        g.add_argument("--sync_bn", action="store_true",
                       help="under torchrun: SyncBatchNorm in networks that have BatchNorm (statistics over the "
                            "global batch)")
        g.add_argument("--save_by_iter", action="store_true",
                       help="also keep a checkpoint named by the sample count at each --save_latest_freq")
        return parser

    def validate(self, opt: Options) -> None:
        super().validate(opt)
        if opt.tensorboard:
            check_tensorboard_installed()
        for flag in ("display_freq", "print_freq", "save_latest_freq", "save_epoch_freq", "max_snapshots"):
            if getattr(opt, flag) < 1:
                raise InputError(f"--{flag} must be >= 1, got {getattr(opt, flag)}")
        if opt.accum_steps < 1 or opt.batch_size % opt.accum_steps:
            raise InputError(f"--accum_steps must be >= 1 and divide --batchSize {opt.batch_size}, "
                             f"got {opt.accum_steps}")
        if opt.pairs_per_epoch < 0:
            raise InputError(f"--pairs_per_epoch must be >= 0, got {opt.pairs_per_epoch}")
        if opt.niter < 0 or opt.niter_decay < 0 or opt.niter + opt.niter_decay < 1:
            raise InputError("--niter and --niter_decay must be >= 0 and add up to at least one epoch")
        self.validate_schedule(opt)

    def derive(self, opt: Options) -> None:
        if opt.lr is not None and not (math.isfinite(opt.lr) and opt.lr > 0):  # before models derive rates from it
            raise InputError(f"--lr must be a number > 0, got {opt.lr}")
        super().derive(opt)

    @staticmethod
    def validate_schedule(opt: Options) -> None:
        """Learning rate, schedule and run length: refused before any work (a bad step period used to train a
        whole epoch and then die in a ZeroDivisionError)."""
        if opt.beta1 is not None and not 0 <= opt.beta1 < 1:
            raise InputError(f"--beta1 must be in [0, 1), got {opt.beta1}")
        if opt.lr_decay_iters is not None and opt.lr_decay_iters < 1:
            raise InputError(f"--lr_decay_iters must be >= 1 (epochs between the step policy's decays), got "
                             f"{opt.lr_decay_iters}")
        if opt.max_steps is not None and opt.max_steps < 0:
            raise InputError(f"--max_steps must be >= 0 (0 = no limit: run the epochs to the end), got {opt.max_steps}")
        last = opt.niter + opt.niter_decay
        if opt.epoch_count < 1 or (not opt.continue_train and opt.epoch_count > last):
            raise InputError(f"--epoch_count must be from 1 to the last epoch (--niter + --niter_decay = {last}), "
                             f"got {opt.epoch_count}")

    def check_run_folder(self, opt: Options, path: Path, text: str) -> None:
        """A fresh run may not reuse the folder of a run trained with other options (its checkpoints would
        be replaced): that needs --continue_train or another --name."""
        if opt.continue_train or not path.is_file() or not any(path.parent.glob("*_net_*.pth")):
            return
        old, new = read_option_file(path.read_text()), read_option_file(text)
        changed = sorted(k for k in old.keys() | new.keys() if k not in RUN_CONTROL and old.get(k) != new.get(k))
        if changed:
            shown = ", ".join(f"{k} {old.get(k, '(unset)')} -> {new.get(k, '(unset)')}" for k in changed[:4])
            more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
            raise InputError(f"{path.parent} holds checkpoints of a run with other options ({shown}{more}); "
                             "pass --continue_train to resume it, or choose another --name")
