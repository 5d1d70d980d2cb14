"""PN-GAN: the pose-normalization GAN.

Paper: Qian et al., "Pose-Normalized Image Generation for Person Re-identification", ECCV 2018 (arXiv
1712.02225). Official code: naiq/PN_GAN (`script/GAN/network.py`, `train.py`, `config.py`). Options:
models/pngan_options.py; networks: models/networks/pngan_generator.py, pngan_discriminator.py; losses:
models/networks/pngan_losses.py; what is exact and how it is tested: docs/models/pngan.md.

Ĝ = G(I_A, P_B), P_B the target's 18 heatmaps (default) or its skeleton drawn in colour (`--pose_input
skeleton_rgb`, the official input). One iteration, in the official order: a G step on L_G = GAN(D(Ĝ), real) +
10 L1(Ĝ, I_B), with D frozen (it gets no gradient from L_G); then a D step on L_D = GAN(D(Ĝ.detach()), fake) +
GAN(D(I_A), real) with the Ĝ made before the G step. Learning rate: the official LambdaLR rule
lr(e) = lr (1 - max(0, e - niter) / niter_decay) for the 1-based epoch e (epoch 20 of 10 + 10 runs at 0).
"""
from __future__ import annotations

import torch
from torch.optim import lr_scheduler

from models import pngan_options
from models.base_model import BaseModel, LossTerms, MicroBatch, unwrap
from models.networks.init import init_weights
from models.networks.pngan_discriminator import PNGANDiscriminator
from models.networks.pngan_generator import PNGANGenerator
from models.networks.pngan_losses import LOSS_NAMES, PNGANLosses
from util.checkpoint import read_checkpoint, strip_wrapper_prefixes
from util.distributed import print0
from util.image import uint8_to_tensor
from util.io import InputError
from util.pose_drawing import draw_skeleton

INPUTS = ("source_image", "target_image", "target_pose")  # I_A, I_B, P_B


def official_lr_factor(epoch_index: int, epoch_count: int, niter: int, niter_decay: int) -> float:
    """Multiplier of the base rate after `epoch_index` scheduler steps: the official 1 - max(0, e - niter) /
    niter_decay for the 1-based epoch e = epoch_index + epoch_count, clamped at 0 (never a negative rate)."""
    if niter_decay <= 0:
        return 1.0
    epoch = epoch_index + epoch_count
    return max(0.0, 1.0 - max(0, epoch - niter) / niter_decay)


def skeleton_poses(keypoints: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, 18, 2) network-frame keypoints -> (B, 3, H, W) skeletons in colour on black, in [-1, 1].

    An approximation of the official pose images (OpenPose/AlphaPose renderings, unpublished): the COCO-18 limb
    list in colour, joints on top (util/pose_drawing.py)."""
    drawn = [uint8_to_tensor(draw_skeleton(k.cpu().numpy(), height, width)) for k in keypoints]
    return torch.stack(drawn)


class PNGANModel(BaseModel):
    """PN-GAN's G (and, for training, D and the LSGAN + L1 losses)."""

    modify_commandline_options = staticmethod(pngan_options.add_options)
    derive_options = staticmethod(pngan_options.derive_options)
    reads_source_pose = False  # G(I_A, P_B): test.py --canonical_poses needs no annotation of the inputs

    def __init__(self, opt, ctx) -> None:
        super().__init__(opt, ctx)
        self.source_image = self.target_image = self.target_pose = self.fake_image = None
        self.pose_nc = pngan_options.POSE_INPUTS[opt.pose_input]
        if opt.ngf != 64 or opt.pngan_blocks != 9 or getattr(opt, "ndf", 64) != 64:
            print0("note: --ngf / --ndf / --pngan_blocks other than 64 / 64 / 9 build a PN-GAN of another size "
                   "than the paper's")
        generator = PNGANGenerator(pose_nc=self.pose_nc, ngf=opt.ngf, blocks=opt.pngan_blocks)
        self.model_names = ["G"]
        self.visual_names = ["source_image", "target_pose", "target_image", "fake_image"]
        self.netG = self.prepare(self.initialise(generator), trained=self.is_train)
        if not self.is_train:
            return
        d_input = 6 if opt.pngan_d_cond == "source" else 3
        self.netD = self.prepare(self.initialise(PNGANDiscriminator(d_input, opt.ndf)), trained=True)
        self.model_names.append("D")
        self.loss_names = list(LOSS_NAMES)
        self.criterion = PNGANLosses(opt)
        betas = (opt.beta1, 0.999)
        self.optimizer_G = torch.optim.Adam(self.netG.parameters(), lr=opt.lr, betas=betas)
        self.optimizer_D = torch.optim.Adam(self.netD.parameters(), lr=opt.lr, betas=betas)
        self.optimizers = [self.optimizer_G, self.optimizer_D]

    def initialise(self, net: torch.nn.Module) -> torch.nn.Module:
        """PyTorch's default (the official code), or --init_type normal: N(0, gain) conv weights, zero biases."""
        if self.opt.init_type == "normal":
            init_weights(net, "normal", 0.02 if self.opt.init_gain is None else self.opt.init_gain, zero_bias=True)
        return net

    def setup(self) -> None:
        """As BaseModel's, but --lr_policy linear/lambda is the official rule (decay over niter_decay epochs, so
        the last epoch runs at 0) instead of pix2pix's 1 / (niter_decay + 1) steps."""
        super().setup()
        if self.is_train and self.opt.lr_policy in ("linear", "lambda"):
            opt = self.opt
            self.schedulers = [lr_scheduler.LambdaLR(optimizer, lambda e: official_lr_factor(
                e, opt.epoch_count, opt.niter, opt.niter_decay)) for optimizer in self.optimizers]

    # --- the loop's interface --------------------------------------------------------------------------

    def set_input(self, batch: dict) -> None:
        """I_A, I_B (B, 3, H, W) in [-1, 1] and P_B onto the device: the heatmaps (B, 18, H, W), or under
        --pose_input skeleton_rgb the skeleton (B, 3, H, W) drawn from batch['target_keypoints']."""
        if self.opt.pose_input == "skeleton_rgb":
            height, width = batch["source_image"].shape[-2:]
            batch = {**batch, "target_pose": skeleton_poses(batch["target_keypoints"], height, width)}
        self.target_image = None
        self.keep_batch(batch, INPUTS)
        if self.is_train and self.target_image is None:
            raise InputError("PN-GAN training needs batch['target_image']")

    def forward(self) -> None:
        """Ĝ = G(I_A, P_B), (B, 3, H, W) in (-1, 1)."""
        self.fake_image = self.netG(self.source_image, self.target_pose)

    def generated_images(self) -> torch.Tensor:
        return self.fake_image.float()

    def training_iteration(self) -> None:
        """The G step, then the D step on the fakes made before it (the official order)."""
        fakes = self.optimize_generator()
        self.optimize_discriminator(fakes)

    def optimize_generator(self) -> list[torch.Tensor]:
        """G step on L_G. D judges Ĝ frozen (the bare module: no parameter gradients, no DDP sync), so nothing
        of L_G reaches D's step. Returns each micro-batch's detached Ĝ."""
        net_d = unwrap(self.netD)
        fakes: list[torch.Tensor] = []

        def compute(micro: MicroBatch) -> LossTerms:
            self.forward()
            fakes.append(self.fake_image.detach())
            return self.criterion.generator(net_d, self.fake_image, self.target_image, self.source_image)

        with self.frozen(net_d):
            self.train_step(self.optimizer_G, compute)
        return fakes

    def optimize_discriminator(self, fakes: list[torch.Tensor]) -> None:
        """D step on L_D: Ĝ (detached) against the real image (--pngan_d_real: I_A or I_B)."""

        def compute(micro: MicroBatch) -> LossTerms:
            real = self.source_image if self.opt.pngan_d_real == "source" else self.target_image
            return self.criterion.discriminator(self.netD, fakes[micro.index], real, self.source_image)

        self.train_step(self.optimizer_D, compute)

    # --- weights ---------------------------------------------------------------------------------------

    def load_networks(self, tag: str | int, names: list[str] | None = None) -> None:
        """Load strictly; a G saved for another pose input names both channel counts and the flag to use."""
        path = self.weight_path(str(tag), "G")
        if path.is_file():
            weight = strip_wrapper_prefixes(read_checkpoint(path)).get("conv1.conv.weight")
            expected = 3 + self.pose_nc
            if weight is not None and weight.dim() == 4 and weight.shape[1] != expected:
                found = weight.shape[1]
                hint = {v + 3: k for k, v in pngan_options.POSE_INPUTS.items()}.get(found)
                advice = f"; pass --pose_input {hint}" if hint else ""
                raise InputError(f"{path}: G takes {found} input channels (image + pose), but --pose_input "
                                 f"{self.opt.pose_input} builds one with {expected}{advice}")
        super().load_networks(tag, names)
