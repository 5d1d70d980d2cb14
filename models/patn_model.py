"""PATN: Progressive Pose Attention Transfer.

Paper: Zhu et al., "Progressive Pose Attention Transfer for Person Image Generation", CVPR 2019. Official code:
tengteng95/Pose-Transfer. Options: models/patn_options.py; networks: models/networks/patn_generator.py,
patn_discriminator.py; losses: models/networks/patn_losses.py; what is exact and how it is tested:
docs/models/patn.md.

fake = G(P1, cat(BP1, BP2)). One iteration, in the official order: G step on
L_G = L1 + perceptual + lambda_GAN [GAN(D_PB(fake, BP2)) + GAN(D_PP(fake, P1))] / 2, then --DG_ratio steps of
D_PP and then of D_PB, each on the real pair and a pooled fake pair. Every network stays in training mode
while training (batch statistics and dropout, in D during the G step too), as in the official code.
Checkpoints are the official files: <tag>_net_netG.pth, <tag>_net_netD_PB.pth, <tag>_net_netD_PP.pth.
"""
from __future__ import annotations

import torch

from models import patn_options
from models.base_model import BaseModel, LossTerms, MicroBatch, unwrap
from models.networks.image_pool import ImagePool
from models.networks.init import init_weights
from models.networks.patn_discriminator import PATNDiscriminator
from models.networks.patn_generator import PATNGenerator
from models.networks.patn_losses import PATNLosses, loss_names
from models.networks.vgg19 import VGG19Features
from util.distributed import print0

INPUTS = ("source_image", "target_image", "source_pose", "target_pose")  # P1, P2, BP1, BP2


class PATNModel(BaseModel):
    """PATN's generator (and, for training, D_PB, D_PP, their image pools and the L1 + perceptual loss)."""

    modify_commandline_options = staticmethod(patn_options.add_options)
    derive_options = staticmethod(patn_options.derive_options)
    benchmark_argv = staticmethod(patn_options.benchmark_argv)
    benchmark_variants = ("--official_ops",)
    weight_file_format = "net{}"  # latest_net_netG.pth, as the released checkpoints are named
    lr_decay_offset = 1  # the 2017 pix2pix rule: the rate first drops in epoch niter, and is 0 in the last

    def __init__(self, opt, ctx) -> None:
        super().__init__(opt, ctx)
        self.source_image = self.target_image = self.source_pose = self.target_pose = None
        self.fake_image = None
        if opt.ngf != 64 or getattr(opt, "ndf", 64) != 64:
            print0("note: --ngf / --ndf other than 64 build a PATN of another width than the paper's")
        # official order: G built and initialised, then D_PB, then D_PP (PyTorch's default init), then VGG
        generator = PATNGenerator(image_nc=opt.P_input_nc, pose_nc=2 * opt.BP_input_nc, ngf=opt.ngf, norm=opt.norm,
                                  dropout=not opt.no_dropout, padding_type=opt.padding_type,
                                  downsampling=opt.G_n_downsampling)
        init_weights(generator, opt.init_type, 1.0 if opt.init_type == "orthogonal" else 0.02, zero_bias=False,
                     norm_std=0.02)
        self.model_names = ["G"]
        self.visual_names = ["source_image", "source_pose", "target_image", "target_pose", "fake_image"]
        self.netG = self.prepare(generator, trained=self.is_train)
        if not self.is_train:
            return
        self.loss_names = loss_names(opt.L1_type, bool(opt.with_D_PB), bool(opt.with_D_PP))
        self.discriminators = {}  # name -> (image pool, optimizer); D_PB first, as the official code builds them
        conditions = {"D_PB": opt.BP_input_nc, "D_PP": opt.P_input_nc}
        for name, enabled in (("D_PB", opt.with_D_PB), ("D_PP", opt.with_D_PP)):
            if enabled:
                net = PATNDiscriminator(opt.P_input_nc + conditions[name], opt.ndf, opt.norm, not opt.no_dropout_D,
                                        opt.n_layers_D, opt.padding_type, opt.D_n_downsampling)
                setattr(self, "net" + name, self.prepare(net, trained=True))
                self.model_names.append(name)
        vgg = None
        if opt.L1_type == "l1_plus_perL1":
            vgg = VGG19Features((opt.perceptual_layers,), opt.vgg_path, opt.vgg_random_init,
                                download=not opt.no_download).to(self.device)
        self.criterion = PATNLosses(opt, vgg).to(self.device)
        betas = (opt.beta1, 0.999)
        self.optimizer_G = torch.optim.Adam(self.netG.parameters(), lr=opt.lr, betas=betas)
        self.optimizers = [self.optimizer_G]
        for name in ("D_PB", "D_PP"):
            if name in self.model_names:
                optimizer = torch.optim.Adam(getattr(self, "net" + name).parameters(), lr=opt.lr, betas=betas)
                self.discriminators[name] = (ImagePool(opt.pool_size), optimizer)
                self.optimizers.append(optimizer)

    # --- the loop's interface --------------------------------------------------------------------------

    def set_input(self, batch: dict) -> None:
        """P1, P2 (B, 3, H, W) in [-1, 1] and BP1, BP2 (B, 18, H, W) pose maps onto the device; pair names."""
        self.keep_batch(batch, INPUTS)

    def forward(self) -> None:
        """fake = G(P1, cat(BP1, BP2)): the source pose first."""
        self.fake_image = self.netG(self.source_image, torch.cat((self.source_pose, self.target_pose), 1))

    def generated_images(self) -> torch.Tensor:
        return self.fake_image.float()

    def training_iteration(self) -> None:
        """The G step, then DG_ratio steps of D_PP, then of D_PB (the official order)."""
        fakes = self.optimize_generator()
        for name in ("D_PP", "D_PB"):
            if name in self.discriminators:
                for _ in range(self.opt.DG_ratio):
                    self.optimize_discriminator(name, fakes)

    def optimize_generator(self) -> list[torch.Tensor]:
        """G step; the discriminators judge the fakes frozen (bare modules: no gradient, no DDP sync) but in
        training mode. Returns each micro-batch's detached fake for the D steps."""
        nets = {name: unwrap(getattr(self, "net" + name)) for name in self.discriminators}
        self.set_requires_grad(list(nets.values()), False)
        fakes = []

        def compute(micro: MicroBatch) -> LossTerms:
            self.forward()
            fakes.append(self.fake_image.detach())
            return self.criterion.generator(self.fake_image, self.target_image, self.source_image,
                                            self.target_pose, nets.get("D_PB"), nets.get("D_PP"))

        self.train_step(self.optimizer_G, compute)
        return fakes

    def optimize_discriminator(self, name: str, fakes: list[torch.Tensor]) -> None:
        """One step of D_PB (judging (image, BP2)) or D_PP (judging (image, P1)) on real and pooled fake pairs."""
        net = getattr(self, "net" + name)
        self.set_requires_grad(net, True)
        pool, optimizer = self.discriminators[name]

        def compute(micro: MicroBatch) -> LossTerms:
            condition = self.target_pose if name == "D_PB" else self.source_image
            real = torch.cat((self.target_image, condition), 1)
            fake = pool.query(torch.cat((fakes[micro.index], condition), 1))
            return self.criterion.discriminator(net, real, fake, name)

        self.train_step(optimizer, compute)

    # --- the image pools belong to the training state ----------------------------------------------------

    def extra_state(self) -> dict:
        return {"pools": {name: pool.state_dict() for name, (pool, _) in self.discriminators.items()}}

    def load_extra_state(self, state: dict) -> None:
        for name, saved in state.get("pools", {}).items():
            self.discriminators[name][0].load_state_dict(saved, self.device)
