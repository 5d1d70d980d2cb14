"""DPTN: Dual-task Pose Transformer Network.

Paper: Zhang et al., "Exploring Dual-task Correlation for Pose Guided Person Image Generation", CVPR 2022.
Official code: PangzeCheung/Dual-task-Pose-Transformer-Network. Options: models/dptn_options.py; losses:
models/networks/dptn_losses.py; what is exact and how it is tested: docs/models/dptn.md.

One iteration (official order): G(X_s, P_s, P_t) -> (fake_t, fake_s); D step on
L_D = 0.5 [GAN(D(X_t), real) + GAN(D(fake_t.detach()), fake)]; then G step with the updated D on
L_G = r (l_rec L1_t + l_style Style_t + l_content Content_t) + (1 - r) (same terms for fake_s vs X_s)
      + l_g GAN(D(fake_t), real),    r = --t_s_ratio.

Speed (training only): unless --official_ops, the two Siamese branches run as one batch, fake_t and fake_s go
through VGG19 as one batch, the real images' VGG features and Gram matrices are computed once without grad,
VGG runs channels_last and stops at relu5_2, and the PTM uses PyTorch's fused attention. Every loss keeps its
formula; only float rounding differs. D keeps its separate calls per step, because spectral norm runs one
power iteration per call. Testing always follows the official sequence of operations (bit-identical outputs).
"""
from __future__ import annotations

import contextlib

import torch

from models import dptn_options
from models.base_model import BaseModel, MicroBatch, unwrap
from models.networks.dptn_discriminator import DPTNDiscriminator
from models.networks.dptn_generator import DPTNGenerator
from models.networks.dptn_losses import DPTN_CONTENT_LAYERS, DPTN_STYLE_LAYERS, LOSS_NAMES, DPTNLosses
from models.networks.init import init_weights
from models.networks.vgg19 import VGG19Features
from util.distributed import print0
from util.io import InputError

INPUTS = ("source_image", "target_image", "source_pose", "target_pose")


class DPTNModel(BaseModel):
    """DPTN's generator G (and, for training, the discriminator D, VGG19 losses and two Adam optimizers)."""

    modify_commandline_options = staticmethod(dptn_options.add_options)
    derive_options = staticmethod(dptn_options.derive_options)
    benchmark_argv = staticmethod(dptn_options.benchmark_argv)
    benchmark_variants = ("--official_ops",)

    def __init__(self, opt, ctx) -> None:
        super().__init__(opt, ctx)
        self.source_image = self.target_image = self.source_pose = self.target_pose = None
        self.fake_image_t = self.fake_image_s = None
        self.fast = opt.is_train and not opt.official_ops
        # official order: G built and initialised, then D, then the VGG of the losses
        generator = init_weights(DPTNGenerator(
            image_nc=opt.image_nc, pose_nc=opt.structure_nc, ngf=64, img_f=512, layers=opt.layers_g,
            num_blocks=opt.num_blocks, norm=opt.norm, nhead=opt.nhead, num_CABs=opt.num_CABs,
            num_TTBs=opt.num_TTBs, affine=opt.affine), opt.init_type, opt.init_gain)
        generator.set_fast(self.fast)
        self.model_names = ["G"]
        self.visual_names = ["source_image", "source_pose", "target_image", "target_pose", "fake_image_s",
                             "fake_image_t"]
        self.loss_names = list(LOSS_NAMES)
        if not self.is_train:
            self.netG = self.prepare(generator, trained=False)
            return
        discriminator = init_weights(DPTNDiscriminator(layers=opt.dis_layers, use_spect=opt.use_spect_d),
                                     opt.init_type, opt.init_gain)
        self.model_names = ["G", "D"]
        vgg = VGG19Features(DPTN_CONTENT_LAYERS + DPTN_STYLE_LAYERS, opt.vgg_path, opt.vgg_random_init,
                            download=not opt.no_download)
        vgg_format = torch.channels_last if self.fast or opt.channels_last else torch.contiguous_format
        self.criterion = DPTNLosses(vgg.to(self.device, memory_format=vgg_format), opt, vgg_format)
        self.netG = self.prepare(generator, trained=True)
        # spectral norm updates u, v in place during the forward, which torch.compile's autograd rejects
        self.netD = self.prepare(discriminator, trained=True, compilable=False)
        if opt.compile:
            print0("note: --compile compiles G; D (spectral norm) runs eagerly")
        betas = (opt.beta1, 0.999)
        self.optimizer_G = torch.optim.Adam(self.netG.parameters(), lr=opt.lr, betas=betas)
        self.optimizer_D = torch.optim.Adam(self.netD.parameters(), lr=opt.lr * opt.ratio_g2d, betas=betas)
        self.optimizers = [self.optimizer_G, self.optimizer_D]

    @property
    def vgg(self) -> VGG19Features:
        """The frozen VGG19 of the content and style losses."""
        return self.criterion.vgg

    # --- the loop's interface --------------------------------------------------------------------------

    def set_input(self, batch: dict) -> None:
        """X_s, X_t (B, 3, H, W) in [-1, 1] and P_s, P_t (B, 18, H, W) heatmaps onto the device; pair names."""
        self.keep_batch(batch, INPUTS)
        height, width = self.source_image.shape[-2:]
        factor = 2 ** max(self.opt.layers_g, self.opt.dis_layers if self.is_train else 0)
        if height % factor or width % factor:
            raise InputError(f"DPTN needs frames divisible by {factor}; the batch is {height}x{width}")

    def forward(self) -> None:
        """fake_t, fake_s = G(X_s, P_s, P_t) in training mode (both branches)."""
        self.fake_image_t, self.fake_image_s = self.netG(self.source_image, self.source_pose, self.target_pose)

    def test(self) -> None:
        """fake_t = G(X_s, P_s, P_t, is_train=False), no grad; no source-to-source output (as the official test)."""
        with torch.no_grad(), self.autocast():
            fake_t, self.fake_image_s = unwrap(self.netG)(self.source_image, self.source_pose, self.target_pose,
                                                          False)
        self.fake_image_t = fake_t.float()

    def generated_images(self) -> torch.Tensor:
        return self.fake_image_t

    def training_iteration(self) -> None:
        """Forward, one D step, then one G step with the updated D (the official order).

        With --accum_steps k the batch is split into k micro-batches: the D step accumulates over fakes made
        without grad, then the G step runs the generator again on each micro-batch (one extra generator forward
        per micro-batch, for the memory of one micro-batch). D's spectral-norm vectors are reset before each
        micro-batch, so every one sees the power iterations the whole batch sees: the result is the whole
        batch's step, up to float rounding.
        """
        self.optimize_discriminator()
        self.optimize_generator()

    def optimize_discriminator(self) -> None:
        """L_D = 0.5 [GAN(D(X_t), real) + GAN(D(fake_t.detach()), fake)]: two D calls, two power iterations."""
        self.set_requires_grad(self.netD, True)

        def compute(micro: MicroBatch):
            with torch.no_grad() if micro.count > 1 else contextlib.nullcontext():
                self.forward()
            return self.criterion.discriminator(self.netD, self.target_image, self.fake_image_t)

        self.train_step(self.optimizer_D, compute, keep_buffers=(self.netD,))

    def optimize_generator(self) -> None:
        """L_G = r * L_t + (1 - r) * L_s + lambda_g * GAN(D(fake_t), real), D frozen (run as the bare module:
        no gradient, no DDP synchronisation). With one part, the fakes of the D step are reused."""
        net_d = unwrap(self.netD)
        self.set_requires_grad(net_d, False)
        generator_terms = self.criterion.generator_batched if self.fast else self.criterion.generator_official

        def compute(micro: MicroBatch):
            if micro.count > 1:
                self.forward()
            return generator_terms(self.fake_image_t, self.target_image, self.fake_image_s, self.source_image,
                                   net_d)

        self.train_step(self.optimizer_G, compute, keep_buffers=(net_d,))
