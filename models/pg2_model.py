"""PG2: two-stage pose-guided person image generation.

Paper: Ma et al., "Pose Guided Person Image Generation", NeurIPS 2017. Official TF code:
charliememory/Pose-Guided-Person-Image-Generation (`trainer.py` Market, `trainer256.py` DeepFashion); PyTorch
re-implementation budui/Human-Pose-Transfer. Mobile PG2 (`--mobilenet`, depthwise-separable generators):
kevinleewy/Human-Pose-Transfer `implementations/PG2/mobile/`. Networks, losses, schedule, options and what is
tested: docs/models/pg2.md; the options: models/pg2_options.py.

- `--stage 1` trains G1 alone on the pose-mask L1: Ĝ1 = G1(I_A, P_B).
- `--stage 2` loads G1 from a stage-1 run (`--stage1_name`, `--stage1_epoch`), freezes it, and trains G2 and
  D: Ĝ2 = Ĝ1 + G2(I_A, Ĝ1); per iteration one G2 step, then one D step on the same batch. Stage 2 also
  saves G1, so test.py loads G1 and G2 from the same run.
- Length: `--niter_stage1` / `--niter_stage2` (iterations; paper defaults per dataset) set `--max_steps`
  unless it is given; `--niter` (epochs) is only a cap. A stage that trains a mobile network runs KLW's
  `--niter` epochs instead (6, then 5).
- `--g1_arch` / `--g2_arch` (both set by `--mobilenet`) pick each generator's convs; a checkpoint of the other
  kind is refused with one message naming the file and the flag.
- Initialisation (Xavier-uniform G1/G2 as TF slim's default, HPT's `tflib` uniform D; docs/models/pg2.md) is
  built into the networks; `--init_type torch` leaves G1 at PyTorch's default (HPT, KLW).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from models import pg2_options
from models.base_model import BaseModel, LossTerms, MicroBatch, unwrap
from models.networks import pg2_losses
from models.networks.pg2_discriminator import PG2Discriminator
from models.networks.pg2_generator_stage1 import PG2GeneratorStage1
from models.networks.pg2_generator_stage2 import PG2GeneratorStage2
from models.pg2_gfv import PG2GFVMixin
from models.pg2_options import PAPER_NGF, pg2_geometry
from util.checkpoint import load_weights, read_checkpoint, save_weights, strip_wrapper_prefixes
from util.distributed import print0
from util.io import InputError

INPUTS = ("source_image", "target_image", "target_pose", "target_mask")  # I_A, I_B, P_B, M_B
# the flag that picks each generator's architecture, and how a checkpoint shows it (its start conv's key)
ARCH_FLAGS = {"G1": "--g1_arch", "G2": "--g2_arch"}
ARCH_KEYS = {"start_conv.main.0.weight": "mobile", "start_conv.0.weight": "standard"}


def checkpoint_arch(state: dict) -> str | None:
    """'mobile' or 'standard' for a G1/G2 state_dict (by its start conv's key); None for neither (or for what
    is no dict at all: the loader names such a file)."""
    if not isinstance(state, dict):
        return None
    keys = strip_wrapper_prefixes(state)
    return next((arch for key, arch in ARCH_KEYS.items() if key in keys), None)


def check_arch(name: str, state: dict, expected: str, source: str) -> None:
    """InputError naming `source` and the flag when the state_dict `state` of G1/G2 is of the other kind."""
    found = checkpoint_arch(state)
    if found is None or found == expected:
        return
    flag = ARCH_FLAGS[name]
    give = f"--mobilenet or {flag} mobile" if found == "mobile" else f"{flag} standard (no --mobilenet)"
    raise InputError(f"{source} holds a {found} {name} ({'depthwise-separable' if found == 'mobile' else 'plain'} "
                     f"convs), but this run builds a {expected} {name} ({flag} {expected}); mobile and standard "
                     f"checkpoints are not interchangeable: give the flags it was trained with ({give}), or "
                     f"another checkpoint")


def load_generator(net: nn.Module, name: str, path: Path) -> None:
    """load_weights, with a mismatch of architecture (mobile vs standard) reported as such."""
    try:
        load_weights(net, path)
    except InputError:
        check_arch(name, read_checkpoint(path), unwrap(net).arch, f"checkpoint {path}")
        raise


class PG2Model(PG2GFVMixin, BaseModel):
    """PG2's G1 (stage 1) or frozen G1 + G2 + D (stage 2); see the module docstring."""

    test_mode_options = ("export_gfv", "decode_gfv_dir")

    modify_commandline_options = staticmethod(pg2_options.add_options)
    derive_options = staticmethod(pg2_options.derive_options)

    def __init__(self, opt, ctx) -> None:
        super().__init__(opt, ctx)
        self.stage: int = opt.stage
        self.geometry = geo = pg2_geometry(opt.data_format, opt.fashion_frame)
        if opt.ngf != PAPER_NGF:
            print0(f"note: --ngf {opt.ngf} builds a reduced PG2, not the paper's network (n = {PAPER_NGF})")
        self.source_image = self.target_image = self.target_pose = self.target_mask = None
        self.fake_g1 = self.fake_g2 = None
        g1_arch, g2_arch = opt.g1_arch, opt.g2_arch
        if "mobile" in (g1_arch, g2_arch):
            print0(f"Mobile PG2: G1 {g1_arch}" + (f", G2 {g2_arch}" if self.stage == 2 else "")
                   + " (mobile = depthwise-separable convs)")

        self.netG1 = self.build_g1(opt).to(self.device)
        if self.stage == 1:
            self.model_names = ["G1"]
            self.loss_names = ["G1_mask_l1"]  # L_G1 = L_mask(Ĝ1)
            self.visual_names = ["source_image", "target_image", "fake_g1"]
            self.netG1 = self.prepare(self.netG1, trained=self.is_train)
            if self.is_train:
                self.optimizer_G1 = self.adam(self.netG1)
                self.optimizers = [self.optimizer_G1]
            return

        # stage 2: G1 is frozen (no grad, in no optimiser), or stage 2 would also change it; G2 and D train
        self.set_requires_grad(self.netG1, False)
        self.netG2 = PG2GeneratorStage2(geo.height, geo.width, geo.g2_depth, opt.ngf, geo.g2_skips,
                                        arch=g2_arch).to(self.device)
        self.model_names = ["G1", "G2", "D"] if self.is_train else ["G1", "G2"]
        # L_G2 = lambda_gan * G2_gan + lambda_mask_l1 * G2_mask_l1;
        # L_D = 0.5 * D_real + 0.25 * D_fake + 0.25 * D_condition (each a BCE on logits)
        self.loss_names = ["G2_gan", "G2_mask_l1", "D_real", "D_fake", "D_condition"]
        self.visual_names = ["source_image", "target_image", "fake_g1", "fake_g2"]
        if self.is_train:
            self.load_stage1_generator()
            self.netD = PG2Discriminator(geo.height, geo.width, geo.d_convs, conv_bias=opt.d_conv_bias)
            self.netD = self.prepare(self.netD, trained=True)
        self.netG1 = self.prepare(self.netG1, trained=False)
        self.netG2 = self.prepare(self.netG2, trained=self.is_train)
        if self.is_train:
            self.optimizer_G2 = self.adam(self.netG2)
            self.optimizer_D = self.adam(self.netD, opt.lr_D)
            self.optimizers = [self.optimizer_G2, self.optimizer_D]

    # --- construction helpers --------------------------------------------------------------------------

    def adam(self, net: nn.Module, lr: float | None = None) -> torch.optim.Adam:
        """Adam(lr (default --lr), betas (beta1, 0.999), eps 1e-8) over the network's parameters (TF trainer.py,
        dcgan mode)."""
        return torch.optim.Adam(net.parameters(), lr=self.opt.lr if lr is None else lr,
                                betas=(self.opt.beta1, 0.999), eps=1e-8)

    @staticmethod
    def build_g1(opt) -> PG2GeneratorStage1:
        """G1 for the options' geometry, --ngf, --g1_arch and --init_type (torch: PyTorch's default init)."""
        geo = pg2_geometry(opt.data_format, opt.fashion_frame)
        init = "torch" if opt.init_type == "torch" else "xavier"
        return PG2GeneratorStage1(geo.height, geo.width, geo.g1_depth, opt.ngf,
                                  arch=opt.g1_arch, init=init)

    @staticmethod
    def stage1_weights_path(opt) -> Path:
        """<checkpoints_dir>/<stage1_name>/<stage1_epoch>_net_G1.pth, where stage 2 reads G1."""
        return Path(opt.checkpoints_dir) / opt.stage1_name / f"{opt.stage1_epoch}_net_G1.pth"

    @staticmethod
    def prepare_benchmark(opt) -> None:
        """Stage 2 starts from a saved stage-1 G1: write a freshly initialised one where it is read."""
        if opt.is_train and opt.stage == 2:
            save_weights(PG2Model.build_g1(opt), PG2Model.stage1_weights_path(opt))

    def load_stage1_generator(self) -> None:
        """Load G1 strictly from the stage-1 run; a missing file, or a G1 of the other architecture (--g1_arch),
        is an InputError naming it."""
        path = self.stage1_weights_path(self.opt)
        if not path.is_file():
            raise InputError(f"PG2 stage 2 needs the stage-1 generator {path}, which does not exist: train "
                             f"stage 1 first (--stage 1 --name {self.opt.stage1_name}) or point --stage1_name / "
                             "--stage1_epoch at the run that holds it")
        load_generator(self.netG1, "G1", path)
        print0(f"stage 2: G1 loaded from {path} (frozen)")

    def load_networks(self, tag: str | int, names: list[str] | None = None) -> None:
        """BaseModel's strict load, one network at a time, so that a G1/G2 of the other architecture is named."""
        for name in names or self.model_names:
            try:
                super().load_networks(tag, [name])
            except InputError:
                path = self.weight_path(str(tag), name)
                if name in ARCH_FLAGS and path.is_file():
                    check_arch(name, read_checkpoint(path), unwrap(getattr(self, "net" + name)).arch,
                               f"checkpoint {path}")
                raise

    def load_state_dict(self, state: dict) -> None:
        """--continue_train: refuse a training state whose G1/G2 are of the other architecture, naming it."""
        tag = getattr(self.opt, "which_epoch", "latest")
        source = f"training state {self.save_dir / f'{tag}_train_state.pth'}"
        for name in ARCH_FLAGS:
            if name in self.model_names and name in state.get("networks", {}):
                check_arch(name, state["networks"][name], unwrap(getattr(self, "net" + name)).arch, source)
        super().load_state_dict(state)

    # --- the loop's interface --------------------------------------------------------------------------

    def set_input(self, batch: dict) -> None:
        """Move I_A, I_B, P_B (and M_B) to the device and record the (source, target) names."""
        # I_A, I_B (B, 3, H, W), P_B (B, 18, H, W), M_B (B, 1, H, W)
        self.target_mask = None
        self.keep_batch(batch, INPUTS)
        if self.is_train and self.target_mask is None:
            raise InputError("PG2 training needs batch['target_mask'] (the dataset's --mask_recipe pg2 or hpt)")
        frame = tuple(self.source_image.shape[-2:])
        if frame != (self.geometry.height, self.geometry.width):
            raise InputError(f"PG2 was built for {self.geometry.height}x{self.geometry.width} frames "
                             f"({self.opt.data_format}), the batch has {frame[0]}x{frame[1]}")

    def forward(self) -> None:
        """Ĝ1 = G1(I_A, P_B); in stage 2 also Ĝ2 = Ĝ1 + G2(I_A, Ĝ1), with G1 under no_grad."""
        if self.stage == 1:
            self.fake_g1 = self.netG1(self.source_image, self.target_pose)  # (B, 3, H, W)
            return
        with torch.no_grad():
            self.fake_g1 = self.netG1(self.source_image, self.target_pose)
        self.fake_g2 = self.fake_g1 + self.netG2(self.source_image, self.fake_g1)  # (B, 3, H, W)

    def generated_images(self) -> torch.Tensor:
        """The final output: Ĝ1 in stage 1, Ĝ2 in stage 2; (B, 3, H, W), not clamped (the saver clamps)."""
        return self.fake_g1 if self.stage == 1 else self.fake_g2

    def training_iteration(self) -> None:
        """Stage 1: one G1 step on L_G1. Stage 2: one G2 step on L_G2, then one D step on L_D (on the fakes
        made before the G2 step). --accum_steps k accumulates k micro-batches into each step."""
        if self.stage == 1:
            self.train_step(self.optimizer_G1, self.stage1_terms)
        else:
            fakes = self.optimize_generator()
            self.optimize_discriminator(fakes)

    def stage1_terms(self, micro: MicroBatch) -> LossTerms:
        self.forward()
        return pg2_losses.stage1_terms(self.fake_g1, self.target_image, self.target_mask, self.opt.mask_ratio)

    # --- stage 2 -----------------------------------------------------------------------------------------

    def optimize_generator(self) -> list[torch.Tensor]:
        """G2 step: L_G2 = lambda_gan * BCE(D(Ĝ2), 1) + lambda_mask_l1 * L_mask(Ĝ2), with D frozen; returns
        the detached Ĝ2 of each part, which the D step then judges.

        D runs as the bare module here: it receives no gradient and needs no DDP sync.
        """
        net_d = unwrap(self.netD).train()  # D always uses batch statistics
        self.set_requires_grad(net_d, False)
        fakes = []

        def compute(micro: MicroBatch) -> LossTerms:
            self.forward()
            if self.opt.d_batching == "concat":
                batch = self.fake_g2.shape[0]
                logits = net_d(torch.cat([self.target_image, self.fake_g2, self.source_image]))  # (3B, 1)
                fake_logits = logits[batch:2 * batch]
            else:
                fake_logits = net_d(self.fake_g2)
            fakes.append(self.fake_g2.detach())
            return pg2_losses.stage2_generator_terms(fake_logits, self.fake_g2, self.target_image, self.target_mask,
                                                     self.opt.mask_ratio, self.opt.lambda_gan,
                                                     self.opt.lambda_mask_l1)

        self.train_step(self.optimizer_G2, compute)
        return fakes

    def optimize_discriminator(self, fakes: list[torch.Tensor]) -> None:
        """D step: L_D = 0.5 BCE(D(I_B), 1) + 0.25 BCE(D(Ĝ2), 0) + 0.25 BCE(D(I_A), 0) on the given Ĝ2."""
        self.set_requires_grad(self.netD, True)
        unwrap(self.netD).train()

        def compute(micro: MicroBatch) -> LossTerms:
            fake = fakes[micro.index]
            if self.opt.d_batching == "concat":
                logits = self.netD(torch.cat([self.target_image, fake, self.source_image]))  # (3B, 1)
                real_logits, fake_logits, condition_logits = logits.split(fake.shape[0])
            else:
                real_logits, fake_logits, condition_logits = self.netD(self.target_image, fake, self.source_image)
            return pg2_losses.discriminator_terms(real_logits, fake_logits, condition_logits)

        self.train_step(self.optimizer_D, compute)
