"""DPTN: Dual-task Pose Transformer Network.

Paper: Zhang et al., "Exploring Dual-task Correlation for Pose Guided Person Image Generation", CVPR 2022.
Spec: specs/dptn.md (options Sec. 1, generator Sec. 2, discriminator Sec. 3, losses Sec. 5, data Sec. 6,
test outputs Sec. 7, training Sec. 9).

One iteration (official order): G(X_s, P_s, P_t) -> (fake_t, fake_s); D step on
L_D = 0.5 [GAN(D(X_t), real) + GAN(D(fake_t.detach()), fake)]; then G step with the updated D on
L_G = r (l_rec L1_t + l_style Style_t + l_content Content_t) + (1 - r) (same terms for fake_s vs X_s)
      + l_g GAN(D(fake_t), real),    r = --t_s_ratio.
Logged losses are already multiplied by their lambda, not by r (as the official log).

Speed (training only): unless --official_ops, the two Siamese branches run as one batch, fake_t and fake_s go
through VGG19 as one batch, the real images' VGG features and Gram matrices are computed once without grad,
VGG runs channels_last and stops at relu5_2, and the PTM uses PyTorch's fused attention. Every loss keeps its
formula; only float rounding differs. D keeps its three separate calls per step, because spectral norm runs one
power iteration per call. Testing always follows the official sequence of operations (bit-identical outputs).
"""
from __future__ import annotations

import argparse
import contextlib
import math

import torch
from torch import nn
import torch.nn.functional as F

from models.base_model import BaseModel, unwrap
from models.networks.dptn_discriminator import DPTNDiscriminator
from models.networks.dptn_generator import DPTNGenerator
from models.networks.init import init_weights
from models.networks.losses import (DPTN_CONTENT_LAYERS, DPTN_STYLE_LAYERS, content_loss, gram_matrix, hinge_loss,
                                    lsgan_loss, style_loss)
from models.networks.vgg19 import VGG19Features
from util.distributed import print0
from util.io import InputError

# official flags that the official code accepts but ignores (specs/dptn.md Sec. 1.2): name -> why they are refused
IGNORED_OFFICIALLY = {
    # base options
    "use_dropout": "DPTN's generator has no dropout",
    "data_type": "the official code always trains in float32; use --amp bf16|fp16 for mixed precision",
    "fp16": "the official code never uses AMP; use --amp fp16",
    "local_rank": "under torchrun the rank comes from the environment",
    "fineSize": "DPTN does not crop; --loadSize sets the DeepFashion size",
    "label_nc": "a pix2pixHD option", "input_nc": "a pix2pixHD option (DPTN uses --image_nc)",
    "output_nc": "a pix2pixHD option", "resize_or_crop": "DPTN resizes only (Market none, DeepFashion 256x256)",
    "tf_log": "losses go to loss_log.txt and the HTML page", "display_single_pane_ncols": "a pix2pixHD display option",
    "no_instance": "a pix2pixHD option", "instance_feat": "a pix2pixHD option", "label_feat": "a pix2pixHD option",
    "feat_num": "a pix2pixHD option", "load_features": "a pix2pixHD option", "n_downsample_E": "a pix2pixHD option",
    "nef": "a pix2pixHD option", "n_clusters": "a pix2pixHD option",
    # model hook
    "use_spect_g": "the official flag is store_false with default False, so it can never add spectral norm to G",
    "save_input": "the official test never saves inputs; our HTML panels show them (drop --only_generated)",
    # train options
    "no_html": "the HTML page is always written", "load_pretrain": "use --continue_train with --which_epoch",
    "num_D": "DPTN has one discriminator", "n_layers_D": "use --dis_layers",
    "ndf": "D's width is fixed at 32 (define_D ndf=32)", "lambda_feat": "DPTN has no feature-matching loss",
    "no_ganFeat_loss": "DPTN has no feature-matching loss", "no_vgg_loss": "DPTN's VGG losses are always on",
    # test options
    "ntest": "use --how_many", "aspect_ratio": "outputs keep the dataset's size",
    "cluster_path": "a pix2pixHD option", "use_encoded_image": "a pix2pixHD option",
    "export_onnx": "not supported", "engine": "not supported", "onnx": "not supported",
}
TRAIN_ONLY = {"no_html", "load_pretrain", "num_D", "n_layers_D", "ndf", "lambda_feat", "no_ganFeat_loss",
              "no_vgg_loss"}
TEST_ONLY = {"ntest", "aspect_ratio", "cluster_path", "use_encoded_image", "export_onnx", "engine", "onnx"}
# official defaults of the flags above that hold a value (the others are off by default)
IGNORED_DEFAULTS = {"use_spect_g": False, "save_input": False}

DATASET_SIZES = {"market": (128, 64), "fashion": (256, 176)}  # old_size: the size of the files and the outputs
INPUTS = ("source_image", "target_image", "source_pose", "target_pose")


class RefusedFlag(argparse.Action):
    """An official flag that is not supported here: using it is an error that says why (never silently ignored)."""

    def __init__(self, option_strings, dest, reason: str, ignored: bool = True, default=argparse.SUPPRESS,
                 **kwargs) -> None:
        super().__init__(option_strings, dest, nargs="?", default=default,
                         help=f"official flag, refused here: {reason}")
        self.reason = reason
        self.ignored = ignored

    def __call__(self, parser, namespace, values, option_string=None):
        if self.ignored:
            raise InputError(f"{option_string} is accepted but ignored by the official DPTN code, so it is refused "
                             f"here rather than silently ignored: {self.reason}")
        raise InputError(f"{option_string} is not supported: {self.reason}")


def _add(parser: argparse.ArgumentParser, flag: str, **kwargs) -> None:
    """Add `flag` unless another hook added it already."""
    if flag not in parser._option_string_actions:
        parser.add_argument(flag, **kwargs)


class DPTNModel(BaseModel):
    """DPTN's generator G (and, for training, the discriminator D, VGG19 losses and two Adam optimizers)."""

    @staticmethod
    def modify_commandline_options(parser: argparse.ArgumentParser, is_train: bool) -> argparse.ArgumentParser:
        g = parser.add_argument_group(
            "DPTN (specs/dptn.md)",
            "Official flags and defaults. Set by --model DPTN: --init_type orthogonal, --lr_policy lambda, "
            "--niter 100 --niter_decay 100, lr 2e-4 (D: lr * ratio_g2d), betas (0.5, 0.999), no flips, "
            "DeepFashion stretched to 256x256 (--fashion_frame stretch256), print/display every 200 samples, "
            "latest every 1000 samples, a numbered checkpoint every epoch.")
        # flags of the official base options that DPTN reads
        _add(g, "--norm", type=str, default="instance", choices=["instance", "batch"],
             help="norm of G (2-d) and of the PTM (1-d)")
        _add(g, "--image_nc", type=int, default=3, help="image channels (must be 3)")
        _add(g, "--pose_nc", type=int, default=18, help="pose channels (must be 18; G reads structure_nc = 18)")
        _add(g, "--loadSize", type=int, default=256,
             help="DeepFashion network size: the 256x176 images are stretched to loadSize x loadSize (only 256 "
                  "is supported); Market is always 128x64")
        g.add_argument("--old_size", action=RefusedFlag, ignored=False, reason="it is set by the dataset (128x64 "
                       "Market, 256x176 DeepFashion); the official flag cannot be set from the command line either")
        g.add_argument("--use_coord", action=RefusedFlag, ignored=False, default=False,
                       reason="CoordConv is an untested path of the official code (it prints ERROR when used)")
        # the official DPTN hook (models/DPTN_model.py modify_options), in train and test alike
        g.add_argument("--use_spect_d", action="store_false",
                       help="turn OFF spectral norm in D (official store_false flag; the last 1x1 conv keeps it)")
        g.add_argument("--lambda_style", type=float, default=500.0, help="weight of the VGG19 style loss")
        g.add_argument("--lambda_content", type=float, default=0.5, help="weight of the VGG19 content loss")
        g.add_argument("--layers_g", type=int, default=3, help="encoder levels of G (official value 3)")
        g.add_argument("--num_blocks", type=int, default=3, help="ResBlocks after G's encoder (official value 3)")
        g.add_argument("--affine", action="store_true", default=True,
                       help="affine PTM norms (official store_true flag with default True: always on)")
        g.add_argument("--nhead", type=int, default=2, help="attention heads in the PTM")
        g.add_argument("--num_CABs", type=int, default=2, help="Context Augment Blocks in the PTM")
        g.add_argument("--num_TTBs", type=int, default=2, help="Texture Transfer Blocks in the PTM")
        g.add_argument("--ratio_g2d", type=float, default=0.1, help="D's learning rate = lr * ratio_g2d")
        g.add_argument("--lambda_rec", type=float, default=5.0, help="weight of the L1 reconstruction loss")
        g.add_argument("--lambda_g", type=float, default=2.0,
                       help="weight of the adversarial loss (source-to-target branch only, not scaled by t_s_ratio)")
        g.add_argument("--t_s_ratio", type=float, default=0.5,
                       help="weight r of the source-to-target losses; the source-to-source losses get 1 - r")
        g.add_argument("--dis_layers", type=int, default=4, help="levels of D (README: 3 for Market)")
        # official train flags DPTN reads
        if is_train:
            _add(g, "--gan_mode", type=str, default="lsgan", choices=["wgan-gp", "hinge", "lsgan"],
                 help="adversarial loss: lsgan (official) or hinge; wgan-gp is refused (unreachable officially)")
            _add(g, "--pool_size", type=int, default=0, help="image pool size (DPTN uses none: must be 0)")
            _add(g, "--iter_start", type=int, default=0,
                 help="official: overwritten with the start epoch by train.py (use --epoch_count); must be 0")
            _add(g, "--debug", action="store_true",
                 help="official debug run: 1 epoch, no decay, 10 pairs, print and display every step")
        _add(g, "--no_flip", action="store_true", help="do not flip (DPTN never flips; kept for the official flag)")
        # our own
        g.add_argument("--vgg_path", type=str, default=None,
                       help="torchvision's vgg19-dcbb9e9d.pth (a file or a folder holding it); default: the torch "
                            "hub cache. Never downloaded")
        g.add_argument("--vgg_random_init", action="store_true",
                       help="random VGG19 weights for the perceptual/style losses (tests and offline demos ONLY)")
        g.add_argument("--fashion_native_width", action="store_true",
                       help="DeepFashion at its native 256x176 instead of the official stretch to 256x256 "
                            "(our improvement; not the released checkpoints' input distribution)")
        g.add_argument("--official_ops", action="store_true",
                       help="train with the official sequence of operations (bit-identical to the official code "
                            "for the same weights and batch, slower); default: the same losses, batched")
        for name, reason in IGNORED_OFFICIALLY.items():
            if (name in TRAIN_ONLY and not is_train) or (name in TEST_ONLY and is_train):
                continue
            if f"--{name}" not in parser._option_string_actions:
                g.add_argument(f"--{name}", action=RefusedFlag, reason=reason,
                               default=IGNORED_DEFAULTS.get(name, argparse.SUPPRESS))
        parser.set_defaults(init_type="orthogonal", flip_prob=0.0, display_port=8096, display_winsize=512)
        if "--fashion_frame" in parser._option_string_actions:
            parser.set_defaults(fashion_frame="stretch256")
        if is_train:
            parser.set_defaults(lr=2e-4, beta1=0.5, lr_policy="lambda", niter=100, niter_decay=100,
                                display_freq=200, print_freq=200, save_latest_freq=1000, save_epoch_freq=1)
        return parser

    @staticmethod
    def derive_options(opt) -> None:
        fmt = getattr(opt, "data_format", None)
        if fmt not in DATASET_SIZES:
            raise InputError(f"DPTN needs data format market or fashion, the dataset gave {fmt!r}")
        checks = [(opt.image_nc == 3, f"--image_nc {opt.image_nc}: DPTN reads RGB images (3)"),
                  (opt.pose_nc == 18, f"--pose_nc {opt.pose_nc}: the pose maps have 18 channels (COCO-18)"),
                  (opt.loadSize == 256, f"--loadSize {opt.loadSize}: only 256 is supported"),
                  (opt.flip_prob == 0.0 or not opt.no_flip, "--no_flip contradicts --flip_prob > 0"),
                  (getattr(opt, "pose_encoding", "gaussian") == "gaussian",
                   "DPTN's pose input is the Gaussian heatmaps (--pose_encoding gaussian)")]
        for positive in ("layers_g", "num_blocks", "nhead", "num_CABs", "num_TTBs", "dis_layers"):
            checks.append((getattr(opt, positive) >= 1, f"--{positive} must be >= 1"))
        d_model = 64 * min(2 ** (opt.layers_g - 1), 8)  # the PTM width (256 with the official 3 levels)
        checks.append((d_model % opt.nhead == 0, f"--nhead {opt.nhead} must divide the PTM width {d_model}"))
        for ok, message in checks:
            if not ok:
                raise InputError(message)
        if fmt == "fashion":
            if opt.fashion_native_width:
                if opt.fashion_frame not in ("stretch256", "native"):
                    raise InputError(f"--fashion_native_width contradicts --fashion_frame {opt.fashion_frame}")
                opt.fashion_frame = "native"
        elif opt.fashion_native_width:
            raise InputError("--fashion_native_width is for DeepFashion (--dataset_mode fashion)")
        # values the official options carry (specs/dptn.md Sec. 1.2)
        opt.old_size = DATASET_SIZES[fmt]
        opt.structure_nc = 18
        opt.load_size = 128 if fmt == "market" else opt.loadSize
        if opt.display_env == opt.name:
            opt.display_env = opt.name.replace("_", "")  # the official visdom environment
        if not opt.is_train:
            return
        if opt.gan_mode == "wgan-gp":
            raise InputError("--gan_mode wgan-gp is unreachable in the official code (its GANLoss knows only "
                             "'wgangp' and raises); use lsgan (official) or hinge")
        if opt.pool_size != 0:
            raise InputError(f"--pool_size {opt.pool_size}: DPTN uses no image pool (the official flag is ignored)")
        if opt.iter_start != 0:
            raise InputError("--iter_start is overwritten by the official train.py with the start epoch; use "
                             "--epoch_count to start the schedule at another epoch")
        if not 0.0 <= opt.t_s_ratio <= 1.0:
            raise InputError(f"--t_s_ratio must be in [0, 1], got {opt.t_s_ratio}")
        if opt.debug:  # the official train.py's debug settings
            opt.display_freq, opt.print_freq, opt.niter, opt.niter_decay = 1, 1, 1, 0
            opt.max_dataset_size = min(opt.max_dataset_size, 10)
        opt.print_freq = math.lcm(opt.print_freq, opt.batch_size)  # official: lcm(print_freq, batchSize)

    def __init__(self, opt, ctx) -> None:
        super().__init__(opt, ctx)
        self.source_image = self.target_image = self.source_pose = self.target_pose = None
        self.fake_image_t = self.fake_image_s = None
        self.t_s_ratio = opt.t_s_ratio
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
        self.loss_names = ["app_gen_s", "content_gen_s", "style_gen_s", "app_gen_t", "ad_gen_t", "dis_img_gen_t",
                           "content_gen_t", "style_gen_t"]
        if not self.is_train:
            self.netG = self.prepare(generator, trained=False)
            return
        discriminator = init_weights(DPTNDiscriminator(layers=opt.dis_layers, use_spect=opt.use_spect_d),
                                     opt.init_type, opt.init_gain)
        self.model_names = ["G", "D"]
        self.vgg = VGG19Features(DPTN_CONTENT_LAYERS + DPTN_STYLE_LAYERS, opt.vgg_path,
                                 opt.vgg_random_init).to(self.device)
        self.vgg_format = torch.channels_last if self.fast or opt.channels_last else torch.contiguous_format
        self.vgg.to(memory_format=self.vgg_format)
        self.netG = self.prepare(generator, trained=True)
        # spectral norm updates u, v in place during the forward, which torch.compile's autograd rejects
        self.netD = self.prepare(discriminator, trained=True, compilable=False)
        if opt.compile:
            print0("note: --compile compiles G; D (spectral norm) runs eagerly")
        betas = (opt.beta1, 0.999)
        self.optimizer_G = torch.optim.Adam(self.netG.parameters(), lr=opt.lr, betas=betas)
        self.optimizer_D = torch.optim.Adam(self.netD.parameters(), lr=opt.lr * opt.ratio_g2d, betas=betas)
        self.optimizers = [self.optimizer_G, self.optimizer_D]

    # --- the loop's interface --------------------------------------------------------------------------

    def set_input(self, batch: dict) -> None:
        """X_s, X_t (B, 3, H, W) in [-1, 1] and P_s, P_t (B, 18, H, W) heatmaps onto the device; pair names."""
        self.keep_batch(batch, INPUTS)
        height, width = self.source_image.shape[-2:]
        factor = 2 ** max(self.opt.layers_g, self.opt.dis_layers if self.is_train else 0)
        if height % factor or width % factor:
            raise InputError(f"DPTN needs frames divisible by {factor}; the batch is {height}x{width}")
        self.image_paths = list(zip(batch["source_name"], batch["target_name"]))

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

    def gan_loss(self, prediction: torch.Tensor, target_is_real: bool, for_discriminator: bool) -> torch.Tensor:
        if self.opt.gan_mode == "hinge":
            return hinge_loss(prediction, target_is_real, for_discriminator)
        return lsgan_loss(prediction, target_is_real)

    def optimize_parameters(self) -> None:
        """Forward, one D step, then one G step with the updated D (the official order).

        With --accum_steps k the batch is split into k micro-batches: the D step accumulates over fakes made
        without grad, then the G step runs the generator again on each micro-batch (one extra generator forward
        per micro-batch, for the memory of one micro-batch). D's spectral-norm vectors are reset before each
        micro-batch, so every one sees the power iterations the whole batch sees: the result is the whole
        batch's step, up to float rounding.
        """
        parts = self.micro_batches(self.batch["source_image"].shape[0])
        self.optimize_discriminator(parts)
        self.optimize_generator(parts)
        self.end_iteration()

    def optimize_discriminator(self, parts: list[slice]) -> None:
        """L_D = 0.5 [GAN(D(X_t), real) + GAN(D(fake_t.detach()), fake)]: two D calls, two power iterations."""
        self.set_requires_grad(self.netD, True)
        self.optimizer_D.zero_grad(set_to_none=True)
        vectors = self.buffers_of(self.netD)  # spectral norm: every part starts from the same u, v
        total = 0.0
        for index, part in enumerate(parts):
            self.use_part(part)
            if index:
                self.restore_buffers(self.netD, vectors)
            with self.autocast(), (torch.no_grad() if len(parts) > 1 else contextlib.nullcontext()):
                self.forward()
            with self.autocast():
                real = self.gan_loss(self.netD(self.target_image), True, True)
                fake = self.gan_loss(self.netD(self.fake_image_t.detach()), False, True)
                loss = (real + fake) * 0.5
            self.backward(loss)
            total += loss.detach() / len(parts)
        self.step(self.optimizer_D)
        self.loss_dis_img_gen_t = total

    def official_branch_losses(self, fake: torch.Tensor, real: torch.Tensor, net_d: nn.Module | None
                               ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """The official backward_G_basic, op for op (--official_ops): weighted (L1, GAN or None, style, content).

        The order of operations fixes the order in which autograd sums gradients, and Adam's first steps
        amplify the last bits of gradients near its eps, so --official_ops keeps even the 0.0 start and the 1.0
        layer weights of the official sums.
        """
        opt = self.opt
        app = F.l1_loss(fake, real) * opt.lambda_rec
        adversarial = None if net_d is None else self.gan_loss(net_d(fake), True, False) * opt.lambda_g
        fake_f, real_f = self.vgg(fake), self.vgg(real)
        content = 0.0
        for name in DPTN_CONTENT_LAYERS:
            content += 1.0 * F.l1_loss(fake_f[name], real_f[name])
        style = 0.0
        for name in DPTN_STYLE_LAYERS:
            style += F.l1_loss(gram_matrix(fake_f[name]), gram_matrix(real_f[name]))
        return app, adversarial, style * opt.lambda_style, content * opt.lambda_content

    def batched_losses(self, net_d: nn.Module) -> tuple[tuple, tuple]:
        """The same weighted terms, computed once each: ((L1_t, GAN_t, style_t, content_t), (L1_s, None, ...)).

        The real images' VGG features and Grams come from one pass without grad (shared by the content and the
        style loss); fake_t and fake_s go through VGG19 as one batch, channels_last.
        """
        opt = self.opt
        fake_t, fake_s = self.fake_image_t, self.fake_image_s
        adversarial = self.gan_loss(net_d(fake_t), True, False) * opt.lambda_g
        with torch.no_grad():
            real_f = self.vgg(torch.cat((self.target_image, self.source_image)).contiguous(
                memory_format=self.vgg_format))
            real_grams = {name: gram_matrix(real_f[name]) for name in DPTN_STYLE_LAYERS}
        fake_f = self.vgg(torch.cat((fake_t, fake_s)).contiguous(memory_format=self.vgg_format))
        batch = fake_t.shape[0]
        out = []
        for fake, real, half, adv in ((fake_t, self.target_image, slice(0, batch), adversarial),
                                      (fake_s, self.source_image, slice(batch, 2 * batch), None)):
            fake_h = {k: v[half] for k, v in fake_f.items()}
            content = content_loss(fake_h, {k: v[half] for k, v in real_f.items()})
            style = style_loss(fake_h, {k: v[half] for k, v in real_grams.items()})
            out.append((F.l1_loss(fake, real) * opt.lambda_rec, adv, style * opt.lambda_style,
                        content * opt.lambda_content))
        return out[0], out[1]

    def optimize_generator(self, parts: list[slice]) -> None:
        """L_G = r * L_t + (1 - r) * L_s + lambda_g * GAN(D(fake_t), real), D frozen (run as the bare module:
        no gradient, no DDP synchronisation). With one part, the fakes of the D step are reused."""
        net_d = unwrap(self.netD)
        self.set_requires_grad(net_d, False)
        self.optimizer_G.zero_grad(set_to_none=True)
        vectors = self.buffers_of(net_d)
        logged: dict[str, torch.Tensor] = {}
        for index, part in enumerate(parts):
            if len(parts) > 1:
                self.use_part(part)
                self.restore_buffers(net_d, vectors)
                with self.autocast():
                    self.forward()
            with self.autocast():
                if self.fast:
                    (app_t, adversarial, style_t, content_t), (app_s, _, style_s, content_s) = \
                        self.batched_losses(net_d)
                else:
                    app_t, adversarial, style_t, content_t = self.official_branch_losses(
                        self.fake_image_t, self.target_image, net_d)
                    app_s, _, style_s, content_s = self.official_branch_losses(
                        self.fake_image_s, self.source_image, None)
                r = self.t_s_ratio
                loss = r * (app_t + style_t + content_t) + (1 - r) * (app_s + style_s + content_s) + adversarial
            self.backward(loss)
            terms = {"app_gen_s": app_s, "content_gen_s": content_s, "style_gen_s": style_s, "app_gen_t": app_t,
                     "ad_gen_t": adversarial, "content_gen_t": content_t, "style_gen_t": style_t}
            for name, value in terms.items():
                logged[name] = logged.get(name, 0.0) + value.detach() / len(parts)
        self.step(self.optimizer_G)
        for name, value in logged.items():
            setattr(self, "loss_" + name, value)
