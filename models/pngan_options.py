"""PN-GAN's command line: our flags for the official code's choices and their alternatives
(docs/models/pngan.md), the official defaults (naiq/PN_GAN `script/GAN/config.py`, `train.py`), the refused
values and the derived checks.

`--load_size 256 128` is the official resize (`script/GAN/dataset.py`: `transforms.Resize((256, 128),
interpolation=3)`): it sets the dataset's `opt.market_frame` to 'double' (data/geometry.py)."""
from __future__ import annotations

import argparse

from util.io import InputError
from util.official_flags import Refused, add_refused_flags
from util.run_options import mark_run_shaping

CODE = "PN-GAN"
POSE_INPUTS = {"heatmap": 18, "skeleton_rgb": 3}  # --pose_input -> pose channels of G's input
MIN_D_SIDE = 56  # below this the unpadded 4x4 convs of D leave no score
# Market's --load_size -> the dataset frame it selects; the data's own size is accepted as a no-op. DeepFashion's
# frame has one flag everywhere, --fashion_frame, so --load_size is refused there.
LOAD_SIZES = {(128, 64): "native", (256, 128): "double"}

# the discriminator's flags exist only in training (test.py builds G alone)
REFUSED = {name: Refused("the discriminator takes no part in testing; test.py builds G only", ignored=False,
                         phase="test")
           for name in ("ndf", "gan_mode", "lambda_L1", "d_loss_scale", "pngan_d_real", "pngan_d_cond")}


def add_options(parser: argparse.ArgumentParser, is_train: bool) -> argparse.ArgumentParser:
    """The PN-GAN hook: its flags, and the official defaults of the shared ones."""
    g = parser.add_argument_group(
        "PN-GAN (docs/models/pngan.md)",
        "Set by --model PN-GAN: Adam lr 2e-4, betas (0.5, 0.999) for G and D, batch 32, --niter 10 --niter_decay "
        "10 with the official rule lr(e) = lr (1 - max(0, e - niter) / niter_decay) (epoch 20 runs at 0), no "
        "flip, PyTorch's default initialisation, DeepFashion at its native 256x176 frame (--fashion_frame).")
    g.add_argument("--pose_input", type=str, default="heatmap", choices=tuple(POSE_INPUTS),
                   help="G's pose input: heatmap = the 18 Gaussian maps of the target pose (default); skeleton_rgb "
                        "= the target skeleton drawn in colour on black, 3 channels in [-1, 1] (the official "
                        "input; our drawing approximates OpenPose's, whose exact widths are unpublished)")
    g.add_argument("--ngf", type=int, default=64, help="generator width (the paper's network: 64)")
    g.add_argument("--pngan_blocks", type=int, default=9,
                   help="residual blocks of G (the paper's network: 9; fewer only for quick tests)")
    g.add_argument("--load_size", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help="network frame: unset = the data's own (Market 128x64, DeepFashion 256x176); 256 128 = "
                        "the official resize of Market (PIL bicubic images, keypoints x2, pose maps drawn at "
                        "256x128; outputs resized back to 128x64 with PIL bicubic before saving). Give it to "
                        "test.py as in training. Market only: DeepFashion's frame is --fashion_frame")
    mark_run_shaping(g, "pose_input", "ngf", "pngan_blocks", "load_size")  # test.py takes them from the run
    if is_train:
        g.add_argument("--ndf", type=int, default=64, help="discriminator width (the paper's network: 64)")
        g.add_argument("--gan_mode", type=str, default="lsgan", choices=["lsgan", "vanilla"],
                       help="lsgan: MSE on D's raw scores (the official code); vanilla: BCE on them as logits "
                            "(the paper's formula)")
        g.add_argument("--lambda_L1", type=float, default=10.0, help="weight of L1(G, I_B) (official lambda_idt)")
        g.add_argument("--d_loss_scale", type=float, default=1.0,
                       help="L_D = scale x (fake term + real term): 1 = the official sum, 0.5 = HPT's average")
        g.add_argument("--pngan_d_real", type=str, default="source", choices=["source", "target"],
                       help="the real image D sees: source = the condition image I_A (official), target = I_B")
        g.add_argument("--pngan_d_cond", type=str, default="none", choices=["none", "source"],
                       help="none: D judges the image alone (official); source: D judges cat(image, I_A), "
                            "6 channels (HPT's later variant)")
    add_refused_flags(g, REFUSED, is_train, CODE)
    # PyTorch's default initialisation (the official code calls none): --init_type stays unset unless asked
    parser.set_defaults(init_type=None, init_gain=None, flip_prob=0.0, fashion_frame="native")
    if is_train:
        parser.set_defaults(niter=10, niter_decay=10, lr=2e-4, beta1=0.5, batch_size=32, lr_policy="linear")
    return parser


def derive_options(opt) -> None:
    """Check the values the flags alone cannot."""
    if getattr(opt, "data_format", None) not in ("market", "fashion"):
        raise InputError(f"PN-GAN needs data format market or fashion, the dataset gave "
                         f"{getattr(opt, 'data_format', None)!r}")
    if opt.init_type not in (None, "normal"):
        raise InputError(f"--init_type {opt.init_type} does not apply to --model PN-GAN: it uses PyTorch's default "
                         "initialisation (the official code), or --init_type normal (N(0, 0.02) conv weights, zero "
                         "biases, for HPT parity)")
    if opt.init_gain is not None and opt.init_type != "normal":
        raise InputError("--init_gain needs --init_type normal (it is the std of the normal initialisation); "
                         "PN-GAN's default is PyTorch's initialisation")
    if opt.load_size is not None:
        derive_load_size(opt)
    checks = [(opt.ngf >= 1, f"--ngf must be >= 1, got {opt.ngf}"),
              (opt.pngan_blocks >= 0, f"--pngan_blocks must be >= 0, got {opt.pngan_blocks}"),
              (opt.pose_input != "heatmap" or opt.pose_encoding == "gaussian",
               f"--pose_encoding {opt.pose_encoding}: PN-GAN's heatmap input is the Gaussian maps")]
    if opt.is_train:
        checks += [(opt.ndf >= 1, f"--ndf must be >= 1, got {opt.ndf}"),
                   (opt.lambda_L1 >= 0, f"--lambda_L1 must be >= 0, got {opt.lambda_L1}"),
                   (opt.d_loss_scale > 0, f"--d_loss_scale must be > 0, got {opt.d_loss_scale}")]
    for ok, message in checks:
        if not ok:
            raise InputError(message)


def derive_load_size(opt) -> None:
    """--load_size H W -> opt.market_frame; only the sizes of LOAD_SIZES, and only for modes that read it."""
    size = tuple(opt.load_size)
    if opt.data_format != "market":
        raise InputError(f"--load_size {size[0]} {size[1]}: --load_size sets Market's frame; DeepFashion's frame is "
                         f"--fashion_frame (native 256x176 for PN-GAN, or pad256 / stretch256), as in every command")
    frame = LOAD_SIZES.get(size)
    if frame is None:
        accepted = " or ".join(f"{h} {w}" for h, w in LOAD_SIZES)
        raise InputError(f"--load_size {size[0]} {size[1]} is not supported on market data: give "
                         f"{accepted}, or leave it unset")
    if frame == "native":
        return
    if not hasattr(opt, "market_frame"):
        raise InputError(f"--load_size {size[0]} {size[1]} needs a dataset mode that reads Market at 256x128 "
                         f"(--dataset_mode market or synthetic), not --dataset_mode {opt.dataset_mode}")
    opt.market_frame = frame
