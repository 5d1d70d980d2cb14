"""BaseModel: the small interface train.py and test.py drive; subclasses define nets, losses, optimizers."""
from __future__ import annotations

import argparse
import contextlib
from collections import OrderedDict
from pathlib import Path
from typing import Callable, NamedTuple

import torch
from torch import nn

from models.networks.schedulers import get_scheduler
from util.checkpoint import checkpoint_tags, load_weights, mismatch_message, save_weights, unwrap
from util.distributed import print0
from util.io import InputError
from util.run_options import flag_of, run_shaping_actions

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class MicroBatch(NamedTuple):
    """Which part of the batch a `train_step` computation sees: part `index` of `count`."""

    index: int
    count: int


LossTerms = tuple[torch.Tensor, dict[str, torch.Tensor]]  # (loss to back-propagate, {logged name: term})


class UndeclaredLossError(KeyError):
    """A model logged a loss term that its `loss_names` do not list (a typo would silently drop it)."""


class BaseModel:
    """The interface train.py and test.py drive; a model is a subclass that composes networks and losses.

    Subclasses fill `model_names` (net<X> attributes, saved as <tag>_net_<X>.pth, or with
    `weight_file_format`.format(X) in place of <X>), `loss_names` (every term `train_step` may log),
    `visual_names` (tensor attributes) and `optimizers`, and implement `set_input`, `forward`,
    `generated_images` and `training_iteration` (one `train_step` per optimizer group, in the paper's order).

    Shared here: `train_step` (zero, micro-batches, autocast, backward through the fp16 scaler, step, log),
    `prepare` (device, --channels_last, --sync_bn, DDP, --compile), `keep_batch`/`use_part` (inputs and
    their micro-batches), weights and the full training state.
    """

    weight_file_format = "{}"  # <tag>_net_<format(X)>.pth; PATN's official files are <tag>_net_net<X>.pth
    lr_decay_offset = 0  # --lr_policy lambda: epochs by which the linear decay starts earlier (schedulers.py)
    test_mode_options: tuple[str, ...] = ()  # dests of test.py modes that write no images (PG2: export_gfv)
    benchmark_variants: tuple[str, ...] = ()  # flags scripts/bench_train.py also times (e.g. --official_ops)

    def __init__(self, opt, ctx) -> None:
        self.opt = opt
        self.ctx = ctx
        self.device: torch.device = ctx.device
        self.is_train: bool = opt.is_train
        self.amp_dtype: torch.dtype | None = AMP_DTYPES.get(getattr(opt, "amp", "none"))
        self.memory_format = torch.channels_last if getattr(opt, "channels_last", False) else torch.contiguous_format
        self.accum_steps: int = getattr(opt, "accum_steps", 1)
        # fp16 needs loss scaling; bf16 has float32's range and does not
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.is_train and self.amp_dtype == torch.float16)
        self.save_dir = Path(opt.checkpoints_dir) / opt.name
        self.model_names: list[str] = []
        self.loss_names: list[str] = []
        self.losses: dict[str, torch.Tensor] = {}
        self.visual_names: list[str] = []
        self.optimizers: list[torch.optim.Optimizer] = []
        self.schedulers: list = []
        self.image_paths: list[tuple[str, str]] = []

    @staticmethod
    def modify_commandline_options(parser: argparse.ArgumentParser, is_train: bool) -> argparse.ArgumentParser:
        """Add model-specific flags and set the paper's defaults."""
        return parser

    @staticmethod
    def benchmark_argv(dataset_mode: str, is_train: bool) -> list[str]:
        """Flags scripts/bench_train.py passes: the official README command's model flags for the dataset,
        and the switches that give loss networks random weights (no download needed to time a step)."""
        return []

    @staticmethod
    def prepare_benchmark(opt) -> None:
        """Write what building the model needs on disk (e.g. PG2 stage 2: a stage-1 G1) before a benchmark."""

    @staticmethod
    def derive_options(opt) -> None:
        """Fill values that depend on other options (e.g. a loss weight that differs per data format).

        Called once inside parse(), after the dataset's derive_options (so opt.data_format is known).
        """

    # --- speed: device placement, wrappers, mixed precision, accumulation --------------------------------

    def prepare(self, net: nn.Module, trained: bool, compilable: bool = True) -> nn.Module:
        """Move `net` to the device and memory format; for a trained network under torchrun, SyncBatchNorm
        (--sync_bn) and DistributedDataParallel; then torch.compile (--compile) unless not `compilable`.
        `unwrap` undoes the wrappers."""
        net = net.to(self.device, memory_format=self.memory_format)
        if trained and self.ctx.distributed:
            if getattr(self.opt, "sync_bn", False):
                if self.device.type == "cpu":
                    raise InputError("--sync_bn needs GPUs: PyTorch's SyncBatchNorm has no CPU implementation "
                                     "(drop --sync_bn for gloo runs on CPU)")
                net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            net = nn.parallel.DistributedDataParallel(net, device_ids=device_ids)
        if getattr(self.opt, "compile", False) and compilable:
            net = compile_network(net)
        return net

    def to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        """A batch tensor on the device, in the networks' memory format when it is an image batch."""
        tensor = tensor.to(self.device, non_blocking=True)
        return tensor.contiguous(memory_format=self.memory_format) if tensor.dim() == 4 else tensor

    def keep_batch(self, batch: dict, keys: tuple[str, ...]) -> None:
        """Move the tensors `keys` of a loader batch to the device and point the attributes of the same names
        at them (keys the batch lacks are skipped); `use_part` later points them at a micro-batch. The pair
        names become `image_paths`."""
        self.batch = {key: self.to_device(batch[key]) for key in keys if batch.get(key) is not None}
        self.use_part(slice(None))
        self.image_paths = list(zip(batch["source_name"], batch["target_name"]))

    def use_part(self, part: slice) -> None:
        """Point the input attributes at a micro-batch of the kept batch (slice(None): all of it)."""
        for key, tensor in self.batch.items():
            setattr(self, key, tensor[part])

    def autocast(self) -> contextlib.AbstractContextManager:
        """torch.autocast with the --amp dtype (bf16 or fp16); a no-op context without --amp."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def micro_batches(self, batch_size: int) -> list[slice]:
        """--accum_steps k: the batch as k consecutive slices, as equal as possible (one slice when k is 1).

        Equal slices when k divides the batch (train options check that it divides --batchSize); a shorter
        last batch (`--last_batch keep`) is split as evenly as it goes, and each part's loss is weighted by its
        share of the batch, so the accumulated gradient is always the whole batch's.
        """
        if batch_size < self.accum_steps:
            raise InputError(f"a batch of {batch_size} cannot be split into --accum_steps {self.accum_steps} "
                             "micro-batches")
        base, extra = divmod(batch_size, self.accum_steps)
        edges = [0]
        for index in range(self.accum_steps):
            edges.append(edges[-1] + base + (index < extra))
        return [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]

    @staticmethod
    def buffers_of(net: nn.Module) -> dict[str, torch.Tensor]:
        """A copy of the network's buffers (e.g. spectral norm's power-iteration vectors u, v)."""
        return {name: buffer.detach().clone() for name, buffer in unwrap(net).named_buffers()}

    @staticmethod
    def restore_buffers(net: nn.Module, saved: dict[str, torch.Tensor]) -> None:
        """Put back buffers saved by `buffers_of`, so that every micro-batch sees what the whole batch saw."""
        with torch.no_grad():
            for name, buffer in unwrap(net).named_buffers():
                buffer.copy_(saved[name])

    def train_step(self, optimizers: torch.optim.Optimizer | list[torch.optim.Optimizer],
                   compute: Callable[[MicroBatch], LossTerms], keep_buffers: tuple[nn.Module, ...] = ()
                   ) -> dict[str, torch.Tensor]:
        """One optimizer step of every model: the loop that no model writes itself.

        Zeroes the gradients of `optimizers`; splits the kept batch into --accum_steps micro-batches; for each
        one points the input attributes at it (`use_part`), runs `compute(micro)` under --amp's autocast and
        back-propagates its loss (weighted by the part's share of the batch, scaled for fp16); then steps
        every optimizer once on the accumulated gradients. `compute` returns (loss, {name: term}); the terms,
        averaged over the parts, are recorded by name for the log (a name missing from `loss_names` raises
        UndeclaredLossError) and returned. The buffers of `keep_buffers` (e.g. spectral norm's u, v) are put
        back before every part after the first, so that each part sees what the whole batch would.
        """
        optimizers = list(optimizers) if isinstance(optimizers, (list, tuple)) else [optimizers]
        batch_size = next(iter(self.batch.values())).shape[0]
        parts = self.micro_batches(batch_size)
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        saved = [self.buffers_of(net) for net in keep_buffers]
        logged: dict[str, torch.Tensor] = {}
        for index, part in enumerate(parts):
            self.use_part(part)
            if index:
                for net, buffers in zip(keep_buffers, saved):
                    self.restore_buffers(net, buffers)
            share = (part.stop - part.start) / batch_size
            with self.autocast():
                loss, terms = compute(MicroBatch(index, len(parts)))
            self.check_loss_names(terms)  # before anything is back-propagated or stepped
            self.scaler.scale(loss if share == 1.0 else loss * share).backward()
            for name, value in terms.items():
                value = value.detach() if share == 1.0 else value.detach() * share
                logged[name] = logged[name] + value if name in logged else value
        for optimizer in optimizers:
            self.scaler.step(optimizer)  # skipped by the scaler if fp16 overflowed
        self.losses.update(logged)
        return logged

    def check_loss_names(self, terms: dict[str, torch.Tensor]) -> None:
        """Every logged term must be declared in `loss_names` (else UndeclaredLossError naming it)."""
        unknown = [name for name in terms if name not in self.loss_names]
        if unknown:
            raise UndeclaredLossError(f"{type(self).__name__} logs loss term(s) {', '.join(map(repr, unknown))} "
                                      f"that its loss_names ({', '.join(self.loss_names)}) do not declare")

    def optimize_parameters(self) -> None:
        """One training iteration: the model's `training_iteration`, then the fp16 loss-scale update."""
        self.training_iteration()
        self.scaler.update()  # once per iteration, after every optimizer of the iteration has stepped

    # --- the loop's interface --------------------------------------------------------------------------

    def set_input(self, batch: dict) -> None:
        """Unpack a batch from the data loader onto the device."""
        raise NotImplementedError

    def forward(self) -> None:
        """Run the generator(s) on the current input."""
        raise NotImplementedError

    def training_iteration(self) -> None:
        """One training iteration: the model's `train_step` calls, in its paper's order."""
        raise NotImplementedError

    def test(self) -> None:
        """Forward without gradients (used by test.py and for visuals), under --amp's autocast."""
        with torch.no_grad(), self.autocast():
            self.forward()

    def generated_images(self) -> torch.Tensor:
        """The final generated images (B,3,H,W) in [-1,1], in the network frame."""
        raise NotImplementedError

    def test_writer(self, dataset):
        """None, or the object test.py hands every tested batch to instead of its image writer: a model's own
        output mode (PG2's --export_gfv). It has `count` (items written), `write(batch, model)` and `close()`,
        which returns the line test.py prints, and it guards its own output folder."""
        return None

    # --- setup, modes, schedules -----------------------------------------------------------------------

    def networks(self) -> "OrderedDict[str, nn.Module]":
        """name -> network module, in `model_names` order."""
        return OrderedDict((name, getattr(self, "net" + name)) for name in self.model_names)

    def setup(self) -> None:
        """Create schedulers when training; load weights (`--which_epoch`) when testing."""
        if self.is_train:
            self.schedulers = [get_scheduler(optimizer, self.opt, self.lr_decay_offset)
                               for optimizer in self.optimizers]
            # the rates the options give, before any schedule step (ReduceLROnPlateau records no initial_lr)
            self.base_lrs = [[g.get("initial_lr", g["lr"]) for g in o.param_groups] for o in self.optimizers]
        else:
            self.load_networks(self.opt.which_epoch)
            self.eval()
        if self.opt.verbose:
            self.print_networks()

    def eval(self) -> None:
        for net in self.networks().values():
            net.eval()

    def train(self) -> None:
        for net in self.networks().values():
            net.train()

    def update_learning_rate(self, metric: float | None = None) -> float:
        """Step every scheduler once (per epoch); returns the first optimizer's new rate."""
        for scheduler in self.schedulers:
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(metric if metric is not None else 0.0)
            else:
                scheduler.step()
        return self.optimizers[0].param_groups[0]["lr"] if self.optimizers else 0.0

    def start_of_training(self, iterations_per_epoch: int, dataset) -> None:
        """Called by train.py once before the first epoch it runs (also after a resume), with the epoch's
        length in iterations and the training dataset; e.g. to print a per-iteration learning-rate table (re-id)
        or to draw extra batches outside the loader (DPIG's critics). Default: nothing."""

    def end_of_epoch(self, epoch: int) -> None:
        """Called by train.py after each completed epoch (1-based number), before `update_learning_rate` and
        the epoch's checkpoint; e.g. a periodic evaluation. Not called when --max_steps stops the run."""

    # --- reporting -------------------------------------------------------------------------------------

    def get_current_losses(self) -> "OrderedDict[str, float]":
        """name -> float value of every loss in `loss_names` computed so far, in `loss_names` order."""
        return OrderedDict((name, float(self.losses[name])) for name in self.loss_names if name in self.losses)

    def get_current_visuals(self) -> "OrderedDict[str, torch.Tensor]":
        """name -> tensor (B,C,H,W) of every visual in `visual_names` computed so far."""
        return OrderedDict((name, getattr(self, name)) for name in self.visual_names
                           if getattr(self, name, None) is not None)

    def get_image_paths(self) -> list[tuple[str, str]]:
        """(source name, target name) of each pair in the current batch."""
        return self.image_paths

    def parameter_counts(self) -> dict[str, int]:
        """name -> number of parameters of each network."""
        return {name: sum(p.numel() for p in net.parameters()) for name, net in self.networks().items()}

    def print_networks(self) -> None:
        for name, net in self.networks().items():
            print(net)
            print(f"[net{name}] {self.parameter_counts()[name] / 1e6:.3f} M parameters")

    # --- weights and full training state ---------------------------------------------------------------

    def weight_path(self, tag: str, name: str) -> Path:
        """<save_dir>/<tag>_net_<X>.pth, X = `weight_file_format`.format(name)."""
        return self.save_dir / f"{tag}_net_{self.weight_file_format.format(name)}.pth"

    def save_networks(self, tag: str | int) -> None:
        """Write <tag>_net_<X>.pth for every network: plain state_dicts, no wrapper prefixes."""
        for name, net in self.networks().items():
            save_weights(net, self.weight_path(str(tag), name))

    def load_networks(self, tag: str | int, names: list[str] | None = None) -> None:
        """Load <tag>_net_<X>.pth strictly into each network (wrapper prefixes are stripped)."""
        for name in names or self.model_names:
            path = self.weight_path(str(tag), name)
            if not path.is_file():
                suffix = path.name[len(str(tag)):]
                tags = checkpoint_tags(self.save_dir, suffix)
                known = f"available: {', '.join(tags)}" if tags else f"no *{suffix} checkpoint in {self.save_dir}"
                raise InputError(f"checkpoint {path} not found (--which_epoch {tag}); {known}")
            load_weights(getattr(self, "net" + name), path, self.shaping_options())

    def shaping_options(self) -> dict[str, object]:
        """flag -> value of the options this model marks as shaping its networks (mismatch messages name them)."""
        try:
            parser = self.modify_commandline_options(argparse.ArgumentParser(add_help=False), self.is_train)
        except Exception:  # a hook that needs the shared flags: no names to offer
            return {}
        return {flag_of(a): getattr(self.opt, a.dest) for a in run_shaping_actions(parser) if hasattr(self.opt, a.dest)}

    def state_dict(self) -> dict:
        """Networks, optimizers and schedulers: everything the model holds for an exact resume."""
        return {
            "networks": {name: unwrap(net).state_dict() for name, net in self.networks().items()},
            "optimizers": [o.state_dict() for o in self.optimizers],
            "schedulers": [s.state_dict() for s in self.schedulers],
            "amp": getattr(self.opt, "amp", "none"),
            "scaler": self.scaler.state_dict(),
            "base_lrs": getattr(self, "base_lrs", None),
            "extra": self.extra_state(),
        }

    def extra_state(self) -> dict:
        """What else an exact resume needs besides networks, optimizers and schedulers (e.g. image pools)."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        """Restore what `extra_state` returned."""

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` returned; then the optimizer settings the options give now (a --lr or
        --beta1 typed on resume) replace the saved ones, the schedule's progress kept (`apply_option_rates`).

        A state of other networks (names, shapes, optimizer count) is one InputError naming the file."""
        self.check_state_layout(state)
        fresh = [[{k: v for k, v in g.items() if k != "params"} for g in o.param_groups] for o in self.optimizers]
        fresh_bases = getattr(self, "base_lrs", None)
        for name, net in self.networks().items():
            saved = state["networks"][name]
            problem = mismatch_message(f"{self.state_source()} (net{name})", saved, unwrap(net).state_dict(),
                                       self.shaping_options())
            if problem:
                raise InputError(problem)
            unwrap(net).load_state_dict(saved, strict=True)
        for optimizer, saved in zip(self.optimizers, state["optimizers"], strict=True):
            optimizer.load_state_dict(saved)
        for scheduler, saved in zip(self.schedulers, state["schedulers"], strict=True):
            scheduler.load_state_dict(saved)
        self.apply_option_rates(fresh, fresh_bases, state.get("base_lrs"))
        saved_amp, amp = state.get("amp", "none"), getattr(self.opt, "amp", "none")
        if saved_amp != amp:
            print0(f"note: the state was trained with --amp {saved_amp}; continuing with --amp {amp}")
        if self.scaler.is_enabled() and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.load_extra_state(state.get("extra", {}))

    def state_source(self) -> Path:
        """The training state file --continue_train reads (for messages)."""
        return self.save_dir / f"{getattr(self.opt, 'which_epoch', 'latest')}_train_state.pth"

    def check_state_layout(self, state: dict) -> None:
        """Refuse a training state whose networks, optimizers or schedulers are not the ones this run builds."""
        source = self.state_source()
        kinds = (("networks", dict), ("optimizers", list), ("schedulers", list))
        if not isinstance(state, dict) or not all(isinstance(state.get(k), t) for k, t in kinds):
            raise InputError(f"{source} holds no model state of this project (networks, optimizers, schedulers)")
        saved, built = sorted(state["networks"]), sorted(self.model_names)
        if saved != built:
            raise InputError(f"{source} holds the networks {', '.join(saved) or 'none'}, this run builds "
                             f"{', '.join(built)}: an option that selects the networks (e.g. --stage) differs from "
                             "the run's; give the run's value or start a new --name")
        for label, mine in (("optimizers", self.optimizers), ("schedulers", self.schedulers)):
            if len(state[label]) != len(mine):
                raise InputError(f"{source} holds {len(state[label])} {label}, this run builds {len(mine)}: an "
                                 "option that selects the networks or the schedule differs from the run's")

    def apply_option_rates(self, fresh: list[list[dict]], fresh_bases: list[list[float]] | None,
                           saved_bases: list[list[float]] | None) -> None:
        """After loading optimizer and scheduler states: put back the hyper-parameters the current options gave the
        optimizers at construction (`fresh`), so a changed --lr (or --beta1, --lr_D, ...) takes effect. A new base
        rate keeps the schedule's progress: lr = new base * (saved lr / saved base). One note lists the changes."""
        changes = []
        for i, (optimizer, groups) in enumerate(zip(self.optimizers, fresh)):
            scheduler = self.schedulers[i] if i < len(self.schedulers) else None
            for j, (group, new) in enumerate(zip(optimizer.param_groups, groups)):
                old_base = group.get("initial_lr", _nested(saved_bases, i, j))
                new_base = new.get("initial_lr", _nested(fresh_bases, i, j, new["lr"]))
                if old_base is not None and _differs(old_base, new_base):
                    changes.append(f"optimizer {i}: lr {old_base:g} -> {new_base:g}")
                    group["lr"] = new_base * (group["lr"] / old_base if old_base else 1.0)
                    if "initial_lr" in group:
                        group["initial_lr"] = new_base
                    if scheduler is not None and hasattr(scheduler, "base_lrs"):
                        scheduler.base_lrs[j] = new_base
                for key, value in new.items():
                    if key not in ("lr", "initial_lr") and key in group and _differs(group[key], value):
                        changes.append(f"optimizer {i}: {key} {group[key]} -> {value}")
                        group[key] = value
            if scheduler is not None and hasattr(scheduler, "_last_lr"):
                scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]
        if self.schedulers and getattr(self.opt, "lr_policy", None) == "step":
            for scheduler in self.schedulers:  # StepLR's state carries its period: the option's value wins
                if isinstance(scheduler, torch.optim.lr_scheduler.StepLR):
                    scheduler.step_size = self.opt.lr_decay_iters
        if fresh_bases is not None:
            self.base_lrs = [[g.get("initial_lr", b) for g, b in zip(o.param_groups, bases)]
                             for o, bases in zip(self.optimizers, fresh_bases)]
        if changes:
            print0(f"note: resumed with the optimizer settings of the options given now: {'; '.join(changes)}")

    @staticmethod
    def set_requires_grad(nets: nn.Module | list[nn.Module], requires_grad: bool) -> None:
        """Freeze or unfreeze networks (e.g. D during the generator step)."""
        for net in nets if isinstance(nets, (list, tuple)) else [nets]:
            for p in net.parameters():
                p.requires_grad_(requires_grad)

    @classmethod
    @contextlib.contextmanager
    def frozen(cls, net: nn.Module):
        """Freeze `net` for the block (a critic during the generator step) and unfreeze it after, also on error."""
        cls.set_requires_grad(net, False)
        try:
            yield
        finally:
            cls.set_requires_grad(net, True)


def _nested(table, i: int, j: int, default=None):
    """table[i][j], or `default` when the table (e.g. an older state's base rates) lacks it."""
    try:
        return table[i][j]
    except (TypeError, IndexError):
        return default


def _differs(a, b) -> bool:
    """Whether two optimizer hyper-parameters differ (betas may come back as a list or a tuple)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) != list(b)
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return False  # tensor rates (capturable optimizers): left as loaded
    return a != b


def compile_network(net: nn.Module) -> nn.Module:
    """torch.compile(net), or `net` itself with one note when compiling is not available here.

    Whether errors of the compiler backend at the first call fall back to eager execution is the entry
    point's choice (`models.allow_compile_fallback`).
    """
    try:
        import torch._dynamo as dynamo

        if not dynamo.is_dynamo_supported():
            raise RuntimeError("TorchDynamo does not support this Python/platform")
        return torch.compile(net)
    except Exception as exc:  # any failure means: run eagerly, and say so once
        print0(f"note: --compile is not available here ({exc}); running without torch.compile")
        return net
