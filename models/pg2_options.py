"""PG2's command line: its flags, the paper's defaults per dataset (TF `trainer.py` / `trainer256.py`), Mobile
PG2's defaults (kevinleewy/Human-Pose-Transfer `implementations/PG2/mobile/{stage1,stage2}.toml`), and the derived
values; docs/models/pg2.md, "Options" and "Mobile PG2".

Geometry per dataset layout lives here too, so that the options can reject an unknown frame before anything is
written, and the model builds its networks from the same table.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

from models.pg2_gfv import add_gfv_options, derive_gfv_options
from util.io import InputError
from util.run_options import mark_run_shaping

PAPER_NGF = 128
ARCHS = ("standard", "mobile")


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
PAPER_LR = 2e-5  # G1, G2 and D
EPOCH_CAP = 100  # the shared --niter default: PG2's length is --niter_stage1/2 iterations, epochs only cap it
# KLW's mobile TOMLs (stage 1 trains G1, stage 2 G2 and D): epochs (the run's length; no iteration count),
# the generator's and D's learning rates. They apply when the network the stage trains is mobile.
MOBILE_DEFAULTS = {1: {"niter": 6, "lr": 1e-4}, 2: {"niter": 5, "lr": 1e-4, "lr_D": 2e-5}}


class ParserDefault:
    """Marks a value as the parser's default, so that derive_options can tell it from the same value typed by the
    user (Mobile PG2 changes the default, an explicit flag wins), while the option dump still shows the paper's
    value as the default. derive_options turns it into a plain number."""


class DefaultFloat(ParserDefault, float):
    pass


class DefaultInt(ParserDefault, int):
    pass


def pg2_geometry(data_format: str, fashion_frame: str | None = "pad256") -> PG2Geometry:
    """The geometry for `data_format` ('market' | 'fashion') and, for DeepFashion, the frame (pad256 | native)."""
    key = (data_format, fashion_frame if data_format == "fashion" else None)
    if key not in GEOMETRIES:
        known = ", ".join(f"{f}" + (f"/{g}" if g else "") for f, g in GEOMETRIES)
        raise InputError(f"PG2 has no geometry for data format {data_format!r} with frame {fashion_frame!r}; "
                         f"known: {known}")
    return GEOMETRIES[key]


def add_options(parser: argparse.ArgumentParser, is_train: bool) -> argparse.ArgumentParser:
    """The PG2 hook: its flags and the paper's defaults of the shared ones."""
    g = parser.add_argument_group(
        "PG2 (docs/models/pg2.md)",
        "Paper defaults set by --model PG2: Adam lr 2e-5, betas (0.5, 0.999), constant rate; batch 16 "
        "(Market) / 8 (DeepFashion) when --batch_size is not given; --mask_recipe pg2; --flip_prob 0.5 "
        "for training; DeepFashion frame --fashion_frame pad256 (256x176 padded to 256x256, G1 depth 6: the "
        "paper's network; native = 256x176, G1 depth 5). Mobile PG2 (--mobilenet, kevinleewy/Human-Pose-Transfer): "
        "a stage that trains a mobile network defaults to its TOML: stage 1 --niter 6 epochs, lr 1e-4; stage 2 "
        "--niter 5 epochs, G2 lr 1e-4, --lr_D 2e-5; explicit flags win.")
    g.add_argument("--stage", type=int, choices=[1, 2], default=1 if is_train else 2,
                   help="1: G1 alone; 2: G2 and D on top of a frozen stage-1 G1. Training starts at 1; "
                        "testing defaults to 2, the final output Ĝ2")
    g.add_argument("--ngf", type=int, default=PAPER_NGF,
                   help="width n of G1 and G2. The paper's network is n=128; smaller values make a smaller, "
                        "faster network that is NOT the paper's PG2 (quick demos and tests only)")
    g.add_argument("--mobilenet", action="store_true",
                   help="Mobile PG2 (kevinleewy/Human-Pose-Transfer --mobilenet): both generators built from "
                        "depthwise-separable convs, i.e. --g1_arch mobile --g2_arch mobile. Its checkpoints do not "
                        "load into the standard networks, nor the reverse: give the same flags to every stage, "
                        "--continue_train and test.py")
    g.add_argument("--g1_arch", type=str, default=None, choices=ARCHS,
                   help="G1's convs: standard (PG2) or mobile (depthwise-separable); default mobile under "
                        "--mobilenet, else standard")
    g.add_argument("--g2_arch", type=str, default=None, choices=ARCHS,
                   help="stage 2: G2's convs, as --g1_arch. --g1_arch mobile --g2_arch standard is KLW's "
                        "generation pipeline (mobile G1, standard G2)")
    mark_run_shaping(g, "ngf", "mobilenet", "g1_arch", "g2_arch")  # test.py takes them from the run
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
        g.add_argument("--lr_D", type=float, default=None,
                       help="stage 2: D's learning rate; None = --lr, or 2e-5 when G2 is mobile (KLW's "
                            "mobile/stage2.toml keeps D at the paper's rate while G2 runs at 1e-4)")
        g.add_argument("--niter_stage1", type=int, default=None,
                       help="stage-1 iterations, used as --max_steps when that is 0; None = 22000 Market, 30000 "
                            "DeepFashion (--niter epochs only cap the run); a mobile G1 runs --niter epochs "
                            "(6) instead")
        g.add_argument("--niter_stage2", type=int, default=None,
                       help="stage-2 iterations, used as --max_steps when that is 0; None = 14000 Market, 20000 "
                            "DeepFashion; a mobile G2 runs --niter epochs (5) instead")
        # Adam 2e-5, betas (0.5, 0.999), constant rate; batch 16 Market / 8 DeepFashion (derive_options); --lr and
        # --niter keep a marked default that a mobile stage replaces unless typed
        parser.set_defaults(lr=DefaultFloat(PAPER_LR), niter=DefaultInt(EPOCH_CAP), beta1=0.5,
                            lr_policy="constant", niter_decay=0, batch_size=None)
    # the paper's initialisation is built into the networks: --init_gain stays unset, --init_type is unset or torch
    parser.set_defaults(mask_recipe="pg2", fashion_frame="pad256", flip_prob=0.5 if is_train else 0.0,
                        init_type=None, init_gain=None)
    if not is_train:
        add_gfv_options(parser)
    return parser


def trained_arch(opt) -> str:
    """The architecture of the generator this training stage trains (G1 in stage 1, G2 in stage 2)."""
    return opt.g1_arch if opt.stage == 1 else opt.g2_arch


def check_init(opt) -> None:
    """Only `--init_type torch` (stage-1 training: G1 at PyTorch's default init, as HPT and KLW) means something."""
    if opt.init_gain is not None or opt.init_type not in (None, "torch"):
        given = f"--init_gain {opt.init_gain}" if opt.init_gain is not None else f"--init_type {opt.init_type}"
        raise InputError(f"{given}: --init_type and --init_gain do not apply to --model PG2, which initialises as "
                         "the paper does (Xavier-uniform G1/G2, uniform D); the one alternative is --init_type torch "
                         "(stage 1: G1 at PyTorch's default init, as HPT and KLW train it)")
    if opt.init_type == "torch" and not (opt.is_train and opt.stage == 1):
        raise InputError("--init_type torch sets G1's initial weights in stage-1 training; stage 2 loads G1 from "
                         "the stage-1 run and test.py loads trained weights, so it does not apply here (G2 and D "
                         "keep their Xavier and uniform init in every reference)")


def derive_options(opt) -> None:
    """Resolve the generator architectures, the per-dataset and Mobile PG2 defaults; check values."""
    fmt = getattr(opt, "data_format", None)
    if fmt not in PAPER_DEFAULTS:
        raise InputError(f"PG2 needs data format market or fashion, the dataset gave {fmt!r}")
    if opt.ngf < 1:
        raise InputError(f"--ngf must be >= 1, got {opt.ngf}")
    pg2_geometry(fmt, opt.fashion_frame)  # reject an unknown frame now, before anything is written
    default_arch = "mobile" if opt.mobilenet else "standard"
    opt.g1_arch = opt.g1_arch or default_arch
    opt.g2_arch = opt.g2_arch or default_arch
    check_init(opt)
    if not opt.is_train:
        derive_gfv_options(opt)  # the GFV modes of test.py (--export_gfv, --decode_gfv_dir)
        return
    mobile = MOBILE_DEFAULTS[opt.stage] if trained_arch(opt) == "mobile" else {}
    niter_key = f"niter_stage{opt.stage}"
    typed_iterations = getattr(opt, niter_key)
    for key, value in PAPER_DEFAULTS[fmt].items():
        if getattr(opt, key) is None:
            setattr(opt, key, value)
    if mobile and typed_iterations is None:
        setattr(opt, niter_key, None)  # KLW counts epochs: --niter is the length, no iteration count
    opt.niter = int(mobile.get("niter", opt.niter) if isinstance(opt.niter, ParserDefault) else opt.niter)
    opt.lr = float(mobile.get("lr", opt.lr) if isinstance(opt.lr, ParserDefault) else opt.lr)
    if opt.lr_D is None:
        opt.lr_D = mobile.get("lr_D", opt.lr)
    if opt.stage1_name is None:
        opt.stage1_name = opt.name
    if opt.max_steps == 0 and getattr(opt, niter_key) is not None:
        opt.max_steps = getattr(opt, niter_key)
    if opt.mask_ratio < 0:
        raise InputError(f"--mask_ratio must be >= 0, got {opt.mask_ratio}")
    if opt.lr_D <= 0:
        raise InputError(f"--lr_D must be > 0, got {opt.lr_D}")
