"""PG2: two-stage pose-guided person image generation.

Paper: Ma et al., "Pose Guided Person Image Generation", NeurIPS 2017. Official TF code:
charliememory/Pose-Guided-Person-Image-Generation (`trainer.py` Market, `trainer256.py` DeepFashion); PyTorch
re-implementation budui/Human-Pose-Transfer. Networks, losses, schedule, options and what is tested:
docs/models/pg2.md.

- `--stage 1` trains G1 alone on the pose-mask L1: Ĝ1 = G1(I_A, P_B).
- `--stage 2` loads G1 from a stage-1 run (`--stage1_name`, `--stage1_epoch`), freezes it, and trains G2 and
  D: Ĝ2 = Ĝ1 + G2(I_A, Ĝ1); per iteration one G2 step, then one D step on the same batch. Stage 2 also
  saves G1, so test.py loads G1 and G2 from the same run.
- Length: `--niter_stage1` / `--niter_stage2` (iterations; paper defaults per dataset) set `--max_steps`
  unless it is given; `--niter` (epochs) is only a cap.
- Initialisation (Xavier-uniform G1/G2 as TF slim's default, HPT's `tflib` uniform D; docs/models/pg2.md) is
  built into the networks; `--init_type` is not used.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from models.base_model import BaseModel, LossTerms, MicroBatch, unwrap
from models.networks import pg2_losses
from models.networks.pg2_discriminator import PG2Discriminator
from models.networks.pg2_generator_stage1 import PG2GeneratorStage1
from models.networks.pg2_generator_stage2 import PG2GeneratorStage2
from models.pg2_gfv import PG2GFVMixin, add_gfv_options
from util.checkpoint import load_weights, save_weights
from util.distributed import print0
from util.io import InputError

INPUTS = ("source_image", "target_image", "target_pose", "target_mask")  # I_A, I_B, P_B, M_B

PAPER_NGF = 128


@dataclass(frozen=True)
class PG2Geometry:
    """Network frame and depths for one dataset layout (docs/models/pg2.md, "The model" and "Geometry")."""

    height: int
    width: int
    g1_depth: int  # N
    g2_depth: int  # R
    g2_skips: tuple[int, ...] | None  # encoder levels G2's decoder concatenates; None = all
    d_convs: int


GEOMETRIES: dict[tuple[str, str | None], PG2Geometry] = {
    ("market", None): PG2Geometry(128, 64, g1_depth=5, g2_depth=3, g2_skips=(2, 3), d_convs=4),
    ("fashion", "pad256"): PG2Geometry(256, 256, g1_depth=6, g2_depth=4, g2_skips=None, d_convs=5),
    ("fashion", "native"): PG2Geometry(256, 176, g1_depth=5, g2_depth=4, g2_skips=None, d_convs=5),
}

# paper defaults per data format: loss weights of TF's trainer.py / trainer256.py, the paper's batch sizes and
# iteration counts (docs/models/pg2.md, "Losses" and "Training")
PAPER_DEFAULTS = {
    "market": {"lambda_mask_l1": 10.0, "lambda_gan": 1.0, "batch_size": 16, "niter_stage1": 22000,
               "niter_stage2": 14000},
    "fashion": {"lambda_mask_l1": 50.0, "lambda_gan": 0.5, "batch_size": 8, "niter_stage1": 30000,
                "niter_stage2": 20000},
}


def pg2_geometry(data_format: str, fashion_frame: str | None = "pad256") -> PG2Geometry:
    """The geometry for `data_format` ('market' | 'fashion') and, for DeepFashion, the frame (pad256 | native)."""
    key = (data_format, fashion_frame if data_format == "fashion" else None)
    if key not in GEOMETRIES:
        known = ", ".join(f"{f}" + (f"/{g}" if g else "") for f, g in GEOMETRIES)
        raise InputError(f"PG2 has no geometry for data format {data_format!r} with frame {fashion_frame!r}; "
                         f"known: {known}")
    return GEOMETRIES[key]


class PG2Model(PG2GFVMixin, BaseModel):
    """PG2's G1 (stage 1) or frozen G1 + G2 + D (stage 2); see the module docstring."""

    @staticmethod
    def modify_commandline_options(parser: argparse.ArgumentParser, is_train: bool) -> argparse.ArgumentParser:
        g = parser.add_argument_group(
            "PG2 (docs/models/pg2.md)",
            "Paper defaults set by --model PG2: Adam lr 2e-5, betas (0.5, 0.999), constant rate; batch 16 "
            "(Market) / 8 (DeepFashion) when --batch_size is not given; --mask_recipe pg2; --flip_prob 0.5 "
            "for training; DeepFashion frame --fashion_frame pad256 (256x176 padded to 256x256, G1 depth 6: the "
            "paper's network; native = 256x176, G1 depth 5).")
        g.add_argument("--stage", type=int, choices=[1, 2], default=1 if is_train else 2,
                       help="1: G1 alone; 2: G2 and D on top of a frozen stage-1 G1. Training starts at 1; "
                            "testing defaults to 2, the final output Ĝ2")
        g.add_argument("--ngf", type=int, default=PAPER_NGF,
                       help="width n of G1 and G2. The paper's network is n=128; smaller values make a smaller, "
                            "faster network that is NOT the paper's PG2 (quick demos and tests only)")
        if is_train:
            g.add_argument("--stage1_name", type=str, default=None,
                           help="stage 2: run whose checkpoints hold G1; None = this run's --name")
            g.add_argument("--stage1_epoch", type=str, default="latest",
                           help="stage 2: load <checkpoints_dir>/<stage1_name>/<stage1_epoch>_net_G1.pth")
            g.add_argument("--lambda_mask_l1", type=float, default=None,
                           help="stage 2: weight of the pose-mask L1; None = 10 Market, 50 DeepFashion "
                                "(stage 1 trains on the unweighted L_G1)")
            g.add_argument("--lambda_gan", type=float, default=None,
                           help="stage 2: weight of G2's GAN term; None = 1 Market, 0.5 DeepFashion")
            g.add_argument("--mask_ratio", type=float, default=1.0,
                           help="r in L_mask = mean|G - I_B| + r * mean(|G - I_B| * M_B)")
            g.add_argument("--d_batching", type=str, default="concat", choices=["concat", "separate"],
                           help="concat: D sees [I_B; Ĝ2; I_A] in one pass (TF, shared BN statistics); "
                                "separate: three passes (HPT)")
            g.add_argument("--d_conv_bias", action="store_true",
                           help="give D's convs biases (TF); without it they have none (HPT)")
            g.add_argument("--niter_stage1", type=int, default=None,
                           help="stage-1 iterations, used as --max_steps when that is 0; "
                                "None = 22000 Market, 30000 DeepFashion (--niter epochs only cap the run)")
            g.add_argument("--niter_stage2", type=int, default=None,
                           help="stage-2 iterations, used as --max_steps when that is 0; "
                                "None = 14000 Market, 20000 DeepFashion")
            # Adam 2e-5, betas (0.5, 0.999), constant rate; batch 16 Market / 8 DeepFashion (derive_options)
            parser.set_defaults(lr=2e-5, beta1=0.5, lr_policy="constant", niter_decay=0, batch_size=None)
        # the paper's initialisation is built into the networks: --init_type / --init_gain must stay unset
        parser.set_defaults(mask_recipe="pg2", fashion_frame="pad256", flip_prob=0.5 if is_train else 0.0,
                            init_type=None, init_gain=None)
        if not is_train:
            add_gfv_options(parser)
        return parser

    @staticmethod
    def derive_options(opt) -> None:
        fmt = getattr(opt, "data_format", None)
        if fmt not in PAPER_DEFAULTS:
            raise InputError(f"PG2 needs data format market or fashion, the dataset gave {fmt!r}")
        if opt.ngf < 1:
            raise InputError(f"--ngf must be >= 1, got {opt.ngf}")
        if opt.init_type is not None or opt.init_gain is not None:
            raise InputError("PG2 initialises its networks as the paper does (Xavier-uniform G1/G2, uniform D); "
                             "--init_type and --init_gain do not apply to --model PG2")
        pg2_geometry(fmt, opt.fashion_frame)  # reject an unknown frame now, before anything is written
        if not opt.is_train:
            return
        for key, value in PAPER_DEFAULTS[fmt].items():
            if getattr(opt, key) is None:
                setattr(opt, key, value)
        if opt.stage1_name is None:
            opt.stage1_name = opt.name
        if opt.max_steps == 0:
            opt.max_steps = opt.niter_stage1 if opt.stage == 1 else opt.niter_stage2
        if opt.mask_ratio < 0:
            raise InputError(f"--mask_ratio must be >= 0, got {opt.mask_ratio}")

    def __init__(self, opt, ctx) -> None:
        super().__init__(opt, ctx)
        self.stage: int = opt.stage
        self.geometry = geo = pg2_geometry(opt.data_format, opt.fashion_frame)
        if opt.ngf != PAPER_NGF:
            print0(f"note: --ngf {opt.ngf} builds a reduced PG2, not the paper's network (n = {PAPER_NGF})")
        self.source_image = self.target_image = self.target_pose = self.target_mask = None
        self.fake_g1 = self.fake_g2 = None

        self.netG1 = PG2GeneratorStage1(geo.height, geo.width, geo.g1_depth, opt.ngf).to(self.device)
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
        self.netG2 = PG2GeneratorStage2(geo.height, geo.width, geo.g2_depth, opt.ngf, geo.g2_skips).to(self.device)
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
            self.optimizer_D = self.adam(self.netD)
            self.optimizers = [self.optimizer_G2, self.optimizer_D]

    # --- construction helpers --------------------------------------------------------------------------

    def adam(self, net: nn.Module) -> torch.optim.Adam:
        """Adam(lr, betas (beta1, 0.999), eps 1e-8) over the network's parameters (TF trainer.py, dcgan mode)."""
        return torch.optim.Adam(net.parameters(), lr=self.opt.lr, betas=(self.opt.beta1, 0.999), eps=1e-8)

    @staticmethod
    def stage1_weights_path(opt) -> Path:
        """<checkpoints_dir>/<stage1_name>/<stage1_epoch>_net_G1.pth, where stage 2 reads G1."""
        return Path(opt.checkpoints_dir) / opt.stage1_name / f"{opt.stage1_epoch}_net_G1.pth"

    @staticmethod
    def prepare_benchmark(opt) -> None:
        """Stage 2 starts from a saved stage-1 G1: write a freshly initialised one where it is read."""
        if opt.is_train and opt.stage == 2:
            geo = pg2_geometry(opt.data_format, opt.fashion_frame)
            generator = PG2GeneratorStage1(geo.height, geo.width, geo.g1_depth, opt.ngf)
            save_weights(generator, PG2Model.stage1_weights_path(opt))

    def load_stage1_generator(self) -> None:
        """Load G1 strictly from the stage-1 run; a missing file is an InputError naming it."""
        path = self.stage1_weights_path(self.opt)
        if not path.is_file():
            raise InputError(f"PG2 stage 2 needs the stage-1 generator {path}, which does not exist: train "
                             f"stage 1 first (--stage 1 --name {self.opt.stage1_name}) or point --stage1_name / "
                             "--stage1_epoch at the run that holds it")
        load_weights(self.netG1, path)
        print0(f"stage 2: G1 loaded from {path} (frozen)")

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
