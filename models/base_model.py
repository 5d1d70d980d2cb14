"""BaseModel: the small interface train.py and test.py drive; subclasses define nets, losses, optimizers."""
from __future__ import annotations

import argparse
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from models.networks.schedulers import get_scheduler
from util.checkpoint import checkpoint_tags, load_weights, save_weights
from util.io import InputError


class BaseModel:
    """Subclasses fill `model_names` (net<X> attributes, saved as <tag>_net_<X>.pth), `loss_names`
    (loss_<X> attributes), `visual_names` (tensor attributes) and `optimizers`, and implement
    `set_input`, `forward` and `optimize_parameters`."""

    def __init__(self, opt, ctx) -> None:
        self.opt = opt
        self.ctx = ctx
        self.device: torch.device = ctx.device
        self.is_train: bool = opt.is_train
        self.save_dir = Path(opt.checkpoints_dir) / opt.name
        self.model_names: list[str] = []
        self.loss_names: list[str] = []
        self.visual_names: list[str] = []
        self.optimizers: list[torch.optim.Optimizer] = []
        self.schedulers: list = []
        self.image_paths: list[tuple[str, str]] = []

    @staticmethod
    def modify_commandline_options(parser: argparse.ArgumentParser, is_train: bool) -> argparse.ArgumentParser:
        """Add model-specific flags and set the paper's defaults."""
        return parser

    @staticmethod
    def derive_options(opt) -> None:
        """Fill values that depend on other options (e.g. a loss weight that differs per data format).

        Called once inside parse(), after the dataset's derive_options (so opt.data_format is known).
        """

    # --- the loop's interface --------------------------------------------------------------------------

    def set_input(self, batch: dict) -> None:
        """Unpack a batch from the data loader onto the device."""
        raise NotImplementedError

    def forward(self) -> None:
        """Run the generator(s) on the current input."""
        raise NotImplementedError

    def optimize_parameters(self) -> None:
        """One training iteration: forward, losses, backward, optimizer steps."""
        raise NotImplementedError

    def test(self) -> None:
        """Forward without gradients (used by test.py and for visuals)."""
        with torch.no_grad():
            self.forward()

    def generated_images(self) -> torch.Tensor:
        """The final generated images (B,3,H,W) in [-1,1], in the network frame."""
        raise NotImplementedError

    # --- setup, modes, schedules -----------------------------------------------------------------------

    def networks(self) -> "OrderedDict[str, nn.Module]":
        """name -> network module, in `model_names` order."""
        return OrderedDict((name, getattr(self, "net" + name)) for name in self.model_names)

    def setup(self) -> None:
        """Create schedulers when training; load weights (`--which_epoch`) when testing."""
        if self.is_train:
            self.schedulers = [get_scheduler(optimizer, self.opt) for optimizer in self.optimizers]
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

    # --- reporting -------------------------------------------------------------------------------------

    def get_current_losses(self) -> "OrderedDict[str, float]":
        """name -> float value of every loss in `loss_names` computed so far."""
        losses = OrderedDict()
        for name in self.loss_names:
            value = getattr(self, "loss_" + name, None)
            if value is not None:
                losses[name] = float(value)
        return losses

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
        return self.save_dir / f"{tag}_net_{name}.pth"

    def save_networks(self, tag: str | int) -> None:
        """Write <tag>_net_<X>.pth for every network: plain state_dicts, no wrapper prefixes."""
        for name, net in self.networks().items():
            save_weights(net, self.weight_path(str(tag), name))

    def load_networks(self, tag: str | int, names: list[str] | None = None) -> None:
        """Load <tag>_net_<X>.pth strictly into each network (wrapper prefixes are stripped)."""
        for name in names or self.model_names:
            path = self.weight_path(str(tag), name)
            if not path.is_file():
                tags = checkpoint_tags(self.save_dir, f"_net_{name}.pth")
                known = f"available: {', '.join(tags)}" if tags else f"no net_{name} checkpoint in {self.save_dir}"
                raise InputError(f"checkpoint {path} not found (--which_epoch {tag}); {known}")
            load_weights(getattr(self, "net" + name), path)

    def state_dict(self) -> dict:
        """Networks, optimizers and schedulers: everything the model holds for an exact resume."""
        return {
            "networks": {name: unwrap(net).state_dict() for name, net in self.networks().items()},
            "optimizers": [o.state_dict() for o in self.optimizers],
            "schedulers": [s.state_dict() for s in self.schedulers],
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` returned."""
        for name, net in self.networks().items():
            unwrap(net).load_state_dict(state["networks"][name], strict=True)
        for optimizer, saved in zip(self.optimizers, state["optimizers"], strict=True):
            optimizer.load_state_dict(saved)
        for scheduler, saved in zip(self.schedulers, state["schedulers"], strict=True):
            scheduler.load_state_dict(saved)

    @staticmethod
    def set_requires_grad(nets: nn.Module | list[nn.Module], requires_grad: bool) -> None:
        """Freeze or unfreeze networks (e.g. D during the generator step)."""
        for net in nets if isinstance(nets, (list, tuple)) else [nets]:
            for p in net.parameters():
                p.requires_grad_(requires_grad)


def unwrap(net: nn.Module) -> nn.Module:
    """The bare network inside DistributedDataParallel/DataParallel and torch.compile wrappers."""
    while True:
        if isinstance(net, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            net = net.module
        elif hasattr(net, "_orig_mod"):
            net = net._orig_mod
        else:
            return net
