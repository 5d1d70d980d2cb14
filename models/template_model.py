"""A template model: the smallest complete model, to copy when adding one (see docs/adding_a_model.md).

It is a working baseline, `--model template`: a small PATN-style generator G(source image, target pose maps)
trained with L1 against the target. To add your model `mymodel`, copy this file to
models/mymodel_model.py, rename the class MymodelModel, and fill in:
1. `modify_commandline_options`: your paper's flags and defaults (an official command line's flags and the
   official flags you refuse go in models/mymodel_options.py, see models/patn_options.py);
2. `__init__`: build the networks (one per file in models/networks/) and name them in `model_names`; list
   every logged loss term in `loss_names`; create the optimizers;
3. `set_input` / `forward` / `generated_images`: what the batch holds and what the generator makes;
4. `training_iteration`: one `self.train_step(optimizer, compute)` per optimizer, in your paper's order;
   `compute` returns (loss, {name: term}); the formulas live in models/networks/mymodel_losses.py.
Nothing outside your files needs editing: the registry finds the class by its file name.
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from models.base_model import BaseModel, LossTerms, MicroBatch
from models.networks.init import init_weights
from models.networks.patn_generator import PATNGenerator
from util.io import InputError
from util.run_options import mark_run_shaping

INPUTS = ("source_image", "target_image", "target_pose")  # the keys of the dataset's items this model reads


class TemplateModel(BaseModel):
    """G(source, target pose) -> target, trained on L1 alone (a baseline, not a paper's model)."""

    @staticmethod
    def modify_commandline_options(parser: argparse.ArgumentParser, is_train: bool) -> argparse.ArgumentParser:
        g = parser.add_argument_group("template model", "a small baseline; copy models/template_model.py")
        g.add_argument("--template_ngf", type=int, default=16, help="generator width")
        g.add_argument("--template_blocks", type=int, default=2, help="attention blocks of the generator")
        mark_run_shaping(g, "template_ngf", "template_blocks")  # shape G: test.py takes them from the run
        if is_train:
            g.add_argument("--lambda_L1", type=float, default=1.0, help="weight of the L1 loss")
        return parser

    @staticmethod
    def derive_options(opt) -> None:
        """Check what the flags cannot (this model takes any data format)."""
        if opt.template_ngf < 1 or opt.template_blocks < 1:
            raise InputError("--template_ngf and --template_blocks must be >= 1")

    def __init__(self, opt, ctx) -> None:
        super().__init__(opt, ctx)
        self.source_image = self.target_image = self.target_pose = self.fake_image = None
        generator = PATNGenerator(pose_nc=18, ngf=opt.template_ngf, blocks=opt.template_blocks, norm="instance",
                                  dropout=False)
        self.netG = self.prepare(init_weights(generator, opt.init_type, opt.init_gain), trained=self.is_train)
        self.model_names = ["G"]  # saved as <tag>_net_G.pth
        self.loss_names = ["G_L1"]  # every name train_step may log
        self.visual_names = ["source_image", "target_image", "fake_image"]
        if self.is_train:
            self.optimizer_G = torch.optim.Adam(self.netG.parameters(), lr=opt.lr, betas=(opt.beta1, 0.999))
            self.optimizers = [self.optimizer_G]

    def set_input(self, batch: dict) -> None:
        """Images (B, 3, H, W) in [-1, 1] and the target's pose maps (B, 18, H, W) onto the device."""
        self.keep_batch(batch, INPUTS)

    def forward(self) -> None:
        """The generated target (B, 3, H, W) in [-1, 1]."""
        self.fake_image = self.netG(self.source_image, self.target_pose)

    def generated_images(self) -> torch.Tensor:
        return self.fake_image.float()

    def training_iteration(self) -> None:
        self.train_step(self.optimizer_G, self.generator_terms)

    def generator_terms(self, micro: MicroBatch) -> LossTerms:
        """One micro-batch: forward, then (loss to back-propagate, {logged name: term})."""
        self.forward()
        l1 = F.l1_loss(self.fake_image, self.target_image) * self.opt.lambda_L1
        return l1, {"G_L1": l1}
