"""DPTN's command line: the official flags with their defaults (PangzeCheung/Dual-task-Pose-Transformer-Network,
`options/*.py` and `models/DPTN_model.py`), the official flags that are refused, and the derived values.

The official README commands run verbatim (docs/models/dptn.md lists them).
"""
from __future__ import annotations

import argparse
import math

from util.io import InputError
from util.official_flags import Refused, add_refused_flags
from util.run_options import mark_run_shaping

# what shapes G's parameters or its inputs: test.py takes them from the run's train_opt.txt
RUN_SHAPING = ("norm", "image_nc", "pose_nc", "layers_g", "num_blocks", "affine", "nhead", "num_CABs", "num_TTBs")

CODE = "the official DPTN code"
DATASET_SIZES = {"market": (128, 64), "fashion": (256, 176)}  # old_size: the size of the files and the outputs
PIX2PIXHD = "a pix2pixHD option"

# official flags that this project refuses: the official code ignores them (or they do what is not supported)
REFUSED = {
    # base options
    "use_dropout": Refused("DPTN's generator has no dropout"),
    "data_type": Refused("the official code always trains in float32; use --amp bf16|fp16 for mixed precision"),
    "fp16": Refused("the official code never uses AMP; use --amp fp16"),
    "local_rank": Refused("under torchrun the rank comes from the environment"),
    "fineSize": Refused("DPTN does not crop; --loadSize sets the DeepFashion size"),
    "label_nc": Refused(PIX2PIXHD), "input_nc": Refused("a pix2pixHD option (DPTN uses --image_nc)"),
    "output_nc": Refused(PIX2PIXHD), "resize_or_crop": Refused("DPTN resizes only (Market none, DeepFashion 256x256)"),
    "tf_log": Refused("losses go to loss_log.txt and the HTML page"),
    "display_single_pane_ncols": Refused("a pix2pixHD display option"),
    "no_instance": Refused(PIX2PIXHD), "instance_feat": Refused(PIX2PIXHD), "label_feat": Refused(PIX2PIXHD),
    "feat_num": Refused(PIX2PIXHD), "load_features": Refused(PIX2PIXHD), "n_downsample_E": Refused(PIX2PIXHD),
    "nef": Refused(PIX2PIXHD), "n_clusters": Refused(PIX2PIXHD),
    "old_size": Refused("it is set by the dataset (128x64 Market, 256x176 DeepFashion); the official flag cannot be "
                        "set from the command line either", ignored=False),
    "use_coord": Refused("CoordConv is an untested path of the official code (it prints ERROR when used)",
                         ignored=False, default=False),
    # model hook
    "use_spect_g": Refused("the official flag is store_false with default False, so it can never add spectral "
                           "norm to G", default=False),
    "save_input": Refused("the official test never saves inputs; our HTML panels show them (drop "
                          "--only_generated)", default=False),
    # train options
    "no_html": Refused("the HTML page is always written", phase="train"),
    "load_pretrain": Refused("use --continue_train with --which_epoch", phase="train"),
    "num_D": Refused("DPTN has one discriminator", phase="train"),
    "n_layers_D": Refused("use --dis_layers", phase="train"),
    "ndf": Refused("D's width is fixed at 32 (define_D ndf=32)", phase="train"),
    "lambda_feat": Refused("DPTN has no feature-matching loss", phase="train"),
    "no_ganFeat_loss": Refused("DPTN has no feature-matching loss", phase="train"),
    "no_vgg_loss": Refused("DPTN's VGG losses are always on", phase="train"),
    # test options
    "ntest": Refused("use --how_many", phase="test"), "aspect_ratio": Refused("outputs keep the dataset's size",
                                                                              phase="test"),
    "cluster_path": Refused(PIX2PIXHD, phase="test"), "use_encoded_image": Refused(PIX2PIXHD, phase="test"),
    "export_onnx": Refused("not supported", phase="test"), "engine": Refused("not supported", phase="test"),
    "onnx": Refused("not supported", phase="test"),
}


def add_options(parser: argparse.ArgumentParser, is_train: bool) -> argparse.ArgumentParser:
    """The DPTN hook: official flags and defaults, the refused ones, and ours."""
    g = parser.add_argument_group(
        "DPTN (docs/models/dptn.md)",
        "Official flags and defaults. Set by --model DPTN: --init_type orthogonal, --lr_policy lambda, "
        "--niter 100 --niter_decay 100, lr 2e-4 (D: lr * ratio_g2d), betas (0.5, 0.999), no flips, "
        "DeepFashion stretched to 256x256 (--fashion_frame stretch256), print/display every 200 samples, "
        "latest every 1000 samples, a numbered checkpoint every epoch.")
    # flags of the official base options that DPTN reads
    g.add_argument("--norm", type=str, default="instance", choices=["instance", "batch"],
                   help="norm of G (2-d) and of the PTM (1-d)")
    g.add_argument("--image_nc", type=int, default=3, help="image channels (must be 3)")
    g.add_argument("--pose_nc", type=int, default=18, help="pose channels (must be 18; G reads structure_nc = 18)")
    g.add_argument("--loadSize", type=int, default=None,
                   help="DeepFashion network size: the 256x176 images are stretched to loadSize x loadSize, i.e. "
                        "--fashion_frame stretch256 (only 256 is supported; it contradicts another "
                        "--fashion_frame); Market is always 128x64. Recorded as 256")
    # the official DPTN hook (models/DPTN_model.py modify_options); G's flags in train and test alike, the
    # losses' and D's in training only (test.py builds G alone: there they would change nothing)
    g.add_argument("--layers_g", type=int, default=3, help="encoder levels of G (official value 3)")
    g.add_argument("--num_blocks", type=int, default=3, help="ResBlocks after G's encoder (official value 3)")
    g.add_argument("--affine", action="store_true", default=True,
                   help="affine PTM norms (official store_true flag with default True: on unless --no_affine)")
    g.add_argument("--no_affine", dest="affine", action="store_false",
                   help="PTM norms without affine parameters (not the official network)")
    g.add_argument("--nhead", type=int, default=2, help="attention heads in the PTM")
    g.add_argument("--num_CABs", type=int, default=2, help="Context Augment Blocks in the PTM")
    g.add_argument("--num_TTBs", type=int, default=2, help="Texture Transfer Blocks in the PTM")
    mark_run_shaping(g, *RUN_SHAPING)
    if is_train:
        g.add_argument("--use_spect_d", action="store_false",
                       help="turn OFF spectral norm in D (official store_false flag; the last 1x1 conv keeps it)")
        g.add_argument("--lambda_style", type=float, default=500.0, help="weight of the VGG19 style loss")
        g.add_argument("--lambda_content", type=float, default=0.5, help="weight of the VGG19 content loss")
        g.add_argument("--ratio_g2d", type=float, default=0.1, help="D's learning rate = lr * ratio_g2d")
        g.add_argument("--lambda_rec", type=float, default=5.0, help="weight of the L1 reconstruction loss")
        g.add_argument("--lambda_g", type=float, default=2.0,
                       help="weight of the adversarial loss (source-to-target branch only, not scaled by "
                            "t_s_ratio)")
        g.add_argument("--t_s_ratio", type=float, default=0.5,
                       help="weight r of the source-to-target losses; the source-to-source losses get 1 - r")
        g.add_argument("--dis_layers", type=int, default=4, help="levels of D (README: 3 for Market)")
    # official train flags DPTN reads
    if is_train:
        g.add_argument("--gan_mode", type=str, default="lsgan", choices=["wgan-gp", "hinge", "lsgan"],
                       help="adversarial loss: lsgan (official) or hinge; wgan-gp is refused (unreachable "
                            "officially)")
        g.add_argument("--pool_size", type=int, default=0, help="image pool size (DPTN uses none: must be 0)")
        g.add_argument("--iter_start", type=int, default=0,
                       help="official: overwritten with the start epoch by train.py (use --epoch_count); must be 0")
        g.add_argument("--debug", action="store_true",
                       help="official debug run: 1 epoch, no decay, 10 pairs, print and display every step")
    if is_train:  # test.py never flips
        g.add_argument("--no_flip", action="store_true",
                       help="do not flip (DPTN's default --flip_prob 0; the official flag, it contradicts "
                            "--flip_prob > 0)")
    # our own (training only: the losses' VGG19 and the order of the training operations)
    if is_train:
        g.add_argument("--vgg_path", type=str, default=None,
                       help="torchvision's vgg19-dcbb9e9d.pth (a file or a folder holding it); default: the torch "
                            "hub cache. Fetched there when missing (--no_download: never)")
        g.add_argument("--vgg_random_init", action="store_true",
                       help="random VGG19 weights for the perceptual/style losses (tests and offline demos ONLY)")
        g.add_argument("--official_ops", action="store_true",
                       help="train with the official sequence of operations (bit-identical to the official code "
                            "for the same weights and batch, slower); default: the same losses, batched")
    add_refused_flags(g, REFUSED, is_train, CODE)
    parser.set_defaults(init_type="orthogonal", flip_prob=0.0, display_winsize=512,
                        fashion_frame="stretch256")
    if is_train:
        parser.set_defaults(lr=2e-4, beta1=0.5, lr_policy="lambda", niter=100, niter_decay=100,
                            display_freq=200, print_freq=200, save_latest_freq=1000, save_epoch_freq=1)
    return parser


def benchmark_argv(dataset_mode: str, is_train: bool) -> list[str]:
    """The README training command's model flags (Market's differ from the defaults) and a random VGG19."""
    market = ["--dis_layers=3", "--lambda_g=5", "--lambda_rec", "2", "--t_s_ratio=0.8"]
    return (market if dataset_mode == "market" else []) + (["--vgg_random_init"] if is_train else [])


def derive_options(opt) -> None:
    """Check DPTN's flags and fill the values the official options carry."""
    fmt = getattr(opt, "data_format", None)
    if fmt not in DATASET_SIZES:
        raise InputError(f"DPTN needs data format market or fashion, the dataset gave {fmt!r}")
    checks = [(opt.image_nc == 3, f"--image_nc {opt.image_nc}: DPTN reads RGB images (3)"),
              (opt.pose_nc == 18, f"--pose_nc {opt.pose_nc}: the pose maps have 18 channels (COCO-18)"),
              (opt.loadSize in (None, 256), f"--loadSize {opt.loadSize}: only 256 is supported"),
              (opt.loadSize is None or fmt == "market" or getattr(opt, "fashion_frame", None) == "stretch256",
               f"--loadSize {opt.loadSize} stretches DeepFashion to {opt.loadSize}x{opt.loadSize} (--fashion_frame "
               f"stretch256); it contradicts --fashion_frame {getattr(opt, 'fashion_frame', None)}"),
              (opt.flip_prob == 0.0 or not getattr(opt, "no_flip", False), "--no_flip contradicts --flip_prob > 0"),
              (getattr(opt, "pose_encoding", "gaussian") == "gaussian",
               "DPTN's pose input is the Gaussian heatmaps (--pose_encoding gaussian)")]
    for positive in ("layers_g", "num_blocks", "nhead", "num_CABs", "num_TTBs") + (("dis_layers",) if opt.is_train
                                                                                   else ()):
        checks.append((getattr(opt, positive) >= 1, f"--{positive} must be >= 1"))
    d_model = 64 * min(2 ** (opt.layers_g - 1), 8)  # the PTM width (256 with the official 3 levels)
    checks.append((d_model % opt.nhead == 0, f"--nhead {opt.nhead} must divide the PTM width {d_model}"))
    for ok, message in checks:
        if not ok:
            raise InputError(message)
    # values the official options carry
    opt.loadSize = 256  # the official value (the frame itself is --fashion_frame)
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
