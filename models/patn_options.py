"""PATN's command line: the official flags and defaults (tengteng95/Pose-Transfer, `options/*.py`), the official
flags that are refused, the paper's per-dataset settings, and the derived values.

The official README commands run verbatim; docs/models/patn.md lists them. Flags the README passes for each
dataset (--norm, --no_lsgan, --lambda_A/B, --batchSize, --pool_size) default to those values per dataset, so
that `--model PATN --dataset_mode market` alone is the paper's Market model; every other flag keeps the
official default.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from util.io import InputError
from util.official_flags import Refused, add_refused_flags
from util.run_options import mark_run_shaping

CODE = "the official PATN code"
SIZES = {"market": (128, 64), "fashion": (256, 176)}
# the README's training flags per dataset (and the paper's Table 1 settings)
PER_DATASET = {
    "market": {"norm": "batch", "no_lsgan": 1, "lambda_A": 10.0, "lambda_B": 10.0, "batch_size": 32,
               "pool_size": 50},
    "fashion": {"norm": "instance", "no_lsgan": 0, "lambda_A": 1.0, "lambda_B": 1.0, "batch_size": 7,
                "pool_size": 0},
}

REFUSED = {
    "loadSize": Refused("PATN uses the images at their size (--resize_or_crop no); it is never resized"),
    "fineSize": Refused("PATN uses the images at their size (--resize_or_crop no); it is never cropped"),
    "input_nc": Refused("PATN's image input is --P_input_nc"),
    "output_nc": Refused("PATN's generator always outputs 3 channels"),
    "which_direction": Refused("a pix2pix option"),
    "resize_or_crop": Refused("only 'no' (what the README passes) is supported: the official resize and crop "
                              "modes move the images but not their pose maps", ignored=False, default="no",
                              allowed=("no",)),
    "use_flip": Refused("the official flip mirrors the pose maps without swapping their left/right channels; "
                        "use --flip_prob 0.5, which swaps them", ignored=False, default=0, allowed=("0",)),
    "display_single_pane_ncols": Refused("visdom shows each visual in its own pane", phase="train"),
    "update_html_freq": Refused("the HTML page is updated at every --display_freq", ignored=False, phase="train"),
    "no_html": Refused("the HTML page is always written", phase="train"),
    "ntest": Refused("use --how_many", phase="test"),
    **{name: Refused("the discriminators take no part in testing", phase="test")
       for name in ("which_model_netD", "ndf", "n_layers_D", "n_layers", "with_D_PP", "with_D_PB",
                    "D_n_downsampling")},
    "aspect_ratio": Refused("results keep the dataset's size", phase="test"),
    # the official test builds its generator with or without dropout layers, but runs it in eval mode, where
    # dropout does nothing (our generator keeps an identity in the layer's place, so the weights load either way)
    "no_dropout": Refused("test.py runs the generator in eval mode, where dropout is off anyway", phase="test",
                          default=False),
}


def add_options(parser: argparse.ArgumentParser, is_train: bool) -> argparse.ArgumentParser:
    """The PATN hook: official flags (official names and defaults), the refused ones, and ours."""
    g = parser.add_argument_group(
        "PATN (docs/models/patn.md)",
        "Official flags and defaults. Set by --model PATN: per dataset (Market / DeepFashion) --norm batch / "
        "instance, --no_lsgan 1 / 0, --lambda_A and --lambda_B 10 / 1, --batchSize 32 / 7, --pool_size 50 / 0; "
        "epochs of --pairs_per_epoch 4000 random pairs (last batch kept), --niter 500 --niter_decay 200, the "
        "2017 pix2pix 'lambda' schedule, DeepFashion at its native 256x176 frame, keypoints outside the frame "
        "drawn as the official map scripts draw them.")
    g.add_argument("--which_model_netG", type=str, default="PATN", choices=["PATN"], help="generator (PATN)")
    g.add_argument("--ngf", type=int, default=64, help="generator width (the paper's network: 64)")
    g.add_argument("--norm", type=str, default=None, choices=["batch", "instance"],
                   help="batch (Market) or instance (DeepFashion) normalisation; None = per dataset")
    if is_train:  # at test time the generator runs in eval mode: refused there (REFUSED)
        g.add_argument("--no_dropout", action="store_true",
                       help="no dropout in the generator (an identity keeps its place, so weights still load)")
    g.add_argument("--P_input_nc", type=int, default=3, help="image channels (must be 3)")
    g.add_argument("--BP_input_nc", type=int, default=18,
                   help="pose map channels (must be 18; the official default 1 fits no dataset, the README "
                        "passes 18)")
    g.add_argument("--padding_type", type=str, default="reflect", choices=["reflect", "replicate", "zero"],
                   help="padding of the 3x3 convolutions in the PATBs and residual blocks")
    g.add_argument("--G_n_downsampling", type=int, default=2, help="downsamplings of the generator's encoders")
    mark_run_shaping(g, "which_model_netG", "ngf", "norm", "P_input_nc", "BP_input_nc", "padding_type",
                     "G_n_downsampling")  # test.py takes them from the run
    g.add_argument("--no_flip", action="store_true",
                   help="do not flip (PATN never flips; kept for the README, contradicts --flip_prob > 0). test.py "
                        "never flips: there it is always on (the official test command passes it)")
    if is_train:  # the discriminators and the losses exist only in training
        g.add_argument("--which_model_netD", type=str, default="resnet", choices=["resnet"],
                       help="discriminators (pix2pix's ResNet discriminator)")
        g.add_argument("--ndf", type=int, default=64, help="discriminator width (the paper's network: 64)")
        g.add_argument("--n_layers_D", "--n_layers", dest="n_layers_D", type=int, default=3,
                       help="residual blocks of each discriminator (the README's --n_layers is an abbreviation)")
        g.add_argument("--with_D_PP", type=int, default=1, choices=[0, 1],
                       help="train the appearance discriminator")
        g.add_argument("--with_D_PB", type=int, default=1, choices=[0, 1], help="train the shape discriminator")
        g.add_argument("--D_n_downsampling", type=int, default=2,
                       help="downsamplings of the discriminators (0-3)")
        g.add_argument("--no_dropout_D", action="store_true", help="no dropout in the discriminators")
        g.add_argument("--no_lsgan", type=int, nargs="?", const=1, default=None, choices=[0, 1],
                       help="vanilla GAN (sigmoid + BCE, on D's logits) instead of LSGAN; `--no_lsgan 0` forces "
                            "LSGAN; None = per dataset (Market vanilla, DeepFashion LSGAN)")
        g.add_argument("--lambda_A", type=float, default=None, help="weight of the L1 loss; None = 10 / 1")
        g.add_argument("--lambda_B", type=float, default=None, help="weight of the perceptual loss; None = 10 / 1")
        g.add_argument("--lambda_GAN", type=float, default=5.0, help="weight of the GAN losses")
        g.add_argument("--pool_size", type=int, default=None,
                       help="images in each discriminator's history pool; None = 50 Market, 0 DeepFashion")
        g.add_argument("--L1_type", type=str, default="l1_plus_perL1", choices=["origin", "l1_plus_perL1"],
                       help="l1_plus_perL1: L1 + perceptual (the paper, the README); origin: L1 alone (the "
                            "official default)")
        g.add_argument("--perceptual_layers", type=int, default=3,
                       help="the perceptual features are the output of vgg19().features[perceptual_layers] "
                            "(3 = relu1_2)")
        g.add_argument("--percep_is_l1", type=int, default=1, choices=[0, 1],
                       help="perceptual distance: 1 = mean absolute, 0 = mean squared")
        g.add_argument("--DG_ratio", type=int, default=1, help="steps of each discriminator per generator step")
        g.add_argument("--official_ops", action="store_true",
                       help="vanilla GAN as the official Sigmoid + BCELoss (bit-identical training steps to the "
                            "official code); default: BCE on logits (the same function, safe for extreme logits)")
        g.add_argument("--vgg_path", type=str, default=None,
                       help="torchvision's vgg19-dcbb9e9d.pth (a file or a folder holding it); default: the "
                            "torch hub cache. Fetched there when missing (--no_download: never)")
        g.add_argument("--vgg_random_init", action="store_true",
                       help="random VGG19 weights for the perceptual loss (tests and offline demos ONLY)")
    add_refused_flags(g, REFUSED, is_train, CODE)
    parser.set_defaults(batch_size=None, fashion_frame="native", keypoints_outside="draw", flip_prob=0.0,
                        init_gain=None)
    if not is_train:  # test.py never flips: test_opt.txt records what happens, and --no_flip restates it
        parser.set_defaults(no_flip=True)
    if is_train:
        parser.set_defaults(niter=500, niter_decay=200, lr_policy="lambda", lr=2e-4, beta1=0.5, display_freq=100,
                            print_freq=100, save_latest_freq=5000, save_epoch_freq=20, pairs_per_epoch=4000,
                            last_batch="keep")
    return parser


README_MODEL_FLAGS = {  # the official README training commands without their data and run flags
    "market": "--lambda_GAN 5 --lambda_A 10 --lambda_B 10 --no_lsgan --n_layers 3 --norm batch --batchSize 32 "
              "--resize_or_crop no --BP_input_nc 18 --no_flip --which_model_netG PATN --niter 500 "
              "--niter_decay 200 --L1_type l1_plus_perL1 --n_layers_D 3 --with_D_PP 1 --with_D_PB 1",
    "fashion": "--lambda_GAN 5 --lambda_A 1 --lambda_B 1 --n_layers 3 --norm instance --batchSize 7 --pool_size 0 "
               "--resize_or_crop no --BP_input_nc 18 --no_flip --which_model_netG PATN --niter 500 "
               "--niter_decay 200 --L1_type l1_plus_perL1 --n_layers_D 3 --with_D_PP 1 --with_D_PB 1",
}


def benchmark_argv(dataset_mode: str, is_train: bool) -> list[str]:
    """The README command's model flags for the dataset (the test command: --norm) and a random VGG19."""
    fmt = "fashion" if dataset_mode == "fashion" else "market"
    if not is_train:
        return ["--norm", PER_DATASET[fmt]["norm"]]
    return README_MODEL_FLAGS[fmt].split() + ["--vgg_random_init"]


def derive_options(opt) -> None:
    """Per-dataset values, checks, and (testing) PATN's results folder <results_dir>/<name>/<phase>_<epoch>."""
    fmt = getattr(opt, "data_format", None)
    if fmt not in SIZES:
        raise InputError(f"PATN needs data format market or fashion, the dataset gave {fmt!r}")
    if opt.init_gain is not None:
        raise InputError("--init_gain does not apply to --model PATN: the official initialisation uses std 0.02 "
                         "(normal, xavier) and gain 1 (orthogonal)")
    for key, value in PER_DATASET[fmt].items():
        if getattr(opt, key, value) is None:
            setattr(opt, key, value)
    checks = [(opt.P_input_nc == 3, f"--P_input_nc {opt.P_input_nc}: PATN reads RGB images (3)"),
              (opt.BP_input_nc == 18, f"--BP_input_nc {opt.BP_input_nc}: the pose maps have 18 channels"),
              (opt.ngf >= 1, "--ngf must be >= 1"),
              (opt.G_n_downsampling >= 0, "--G_n_downsampling must be >= 0"),
              (opt.flip_prob == 0.0 or not opt.no_flip, "--no_flip contradicts --flip_prob > 0"),
              (opt.pose_encoding in ("gaussian", "pixel"),
               f"--pose_encoding {opt.pose_encoding}: PATN reads Gaussian (or one-pixel) maps in [0, 1]")]
    height, width = SIZES[fmt] if fmt == "market" or opt.fashion_frame == "native" else (256, 256)
    factor = 2 ** opt.G_n_downsampling
    checks.append((height % factor == 0 and width % factor == 0,
                   f"--G_n_downsampling {opt.G_n_downsampling}: the {height}x{width} frame is not divisible by "
                   f"{factor}"))
    if opt.is_train:
        checks += [(opt.ndf >= 1, "--ndf must be >= 1"), (opt.n_layers_D >= 0, "--n_layers_D must be >= 0"),
                   (0 <= opt.D_n_downsampling <= 3, "--D_n_downsampling must be 0 to 3 (the official discriminator)"),
                   (opt.DG_ratio >= 1, "--DG_ratio must be >= 1"),
                   (opt.pool_size >= 0, "--pool_size must be >= 0"),
                   (0 <= opt.perceptual_layers <= 36, "--perceptual_layers must index vgg19().features (0-36)")]
    for ok, message in checks:
        if not ok:
            raise InputError(message)
    if not opt.is_train:
        root = opt.results_dir if opt.results_dir is not None else "./results"
        opt.results_dir = str(Path(root) / opt.name / f"{opt.phase}_{opt.which_epoch}")
