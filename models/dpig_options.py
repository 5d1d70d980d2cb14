"""DPIG's command line (Ma et al., "Disentangled Person Image Generation", CVPR 2018): its flags, the official
defaults per dataset and stage (charliememory/Disentangled-Person-Image-Generation `run_market_train.sh`,
`run_DF_train.sh`, `trainer.py`, `trainer_256.py`, `tester.py`), the combinations it refuses, and which earlier
runs a stage or a test task reads; docs/models/dpig.md, "Options".

Training is four runs, one per `--dpig_stage`: 1a image reconstruction (encoder, G, image D), 1b pose
auto-encoder, 2a appearance mappings (on the frozen 1a encoder), 2b pose mapping (on the frozen 1b encoder).
A flag that does not apply to the chosen stage, dataset or test task is an error, never silently unused.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

from models.networks.dpig_parts import MARKET_MARGIN as PART_MARGIN  # TF get_part_bbox37(..., radius=6)
from models.dpig_critic_reals import CRITIC_REALS
from models.networks.tf_rmsprop import RMSPROP_KINDS
from util.io import InputError
from util.run_options import mark_run_shaping

STAGES = ("1a", "1b", "2a", "2b")
TASKS = ("transfer", "sample", "interpolate")
INTERP_FACTORS = ("pose", "fg", "bg", "app")
FRAMES = ("pad256", "native")  # the --fashion_frame values DPIG has networks for
FRAME_SIZES = {("market", None): (128, 64), ("fashion", "pad256"): (256, 256), ("fashion", "native"): (256, 176)}
PAPER_LR = 2e-5  # every optimiser of every stage (the scripts' --g_lr and --d_lr)
PAPER_NGF, PAPER_NDF = 128, 64  # encoder/G stem width n (TF conv_hidden_num), image D width (tflib DIM)
ADAM_BETAS = (0.5, 0.999)  # stage I (TF AdamOptimizer(beta1=0.5), default beta2)


@dataclass(frozen=True)
class Stage:
    """One training run of the official scripts (TF model numbers Market / DeepFashion)."""

    trains: str
    loads: str | None  # the earlier stage whose frozen networks this one reads
    optimizer: str  # adam | rmsprop
    batch_size: dict[str, int]  # per data format
    steps: dict[str, int]
    tf_models: tuple[int, int]


STAGE_TABLE = {
    "1a": Stage("appearance encoder, image generator G, image D", None, "adam",
                {"market": 16, "fashion": 6}, {"market": 120000, "fashion": 120000}, (1, 101)),
    "1b": Stage("pose auto-encoder", None, "adam",
                {"market": 64, "fashion": 16}, {"market": 60000, "fashion": 120000}, (2, 102)),
    "2a": Stage("appearance mappings and their critics (Market fg + bg, DeepFashion app)", "1a", "rmsprop",
                {"market": 32, "fashion": 16}, {"market": 120000, "fashion": 120000}, (3, 103)),
    "2b": Stage("pose mapping and its critic", "1b", "rmsprop",
                {"market": 64, "fashion": 32}, {"market": 60000, "fashion": 60000}, (4, 104)),
}
FACTORS = {"market": ("fg", "bg"), "fashion": ("app",)}  # appearance factors per data format
# flags whose default None means "not typed": (dest, stages it applies to in training, value when it applies)
TRAIN_STAGE_FLAGS = {
    "ngf": (("1a", "2a"), PAPER_NGF),
    "ndf": (("1a",), PAPER_NDF),
    "lambda_l1": (("1a",), 20.0),
    "d_batching": (("1a",), None),  # per data format, below
    "lambda_pose": (("1b",), 20.0),
    "beta1": (("1a", "1b"), ADAM_BETAS[0]),
    "rmsprop": (("2a", "2b"), "tf"),
    "critic_iters": (("2a", "2b"), 5),
    "critic_reals": (("2a", "2b"), "fresh"),
    "clip_value": (("2a", "2b"), 0.01),
}
D_BATCHING = {"market": "separate", "fashion": "concat"}  # TF trainer.py L601-602 / trainer_256.py L61-63
IMAGE_STAGES = ("1a", "2a")  # training stages that encode images (foreground mask, part boxes)
UNUSED_SHARED = ("lr_policy", "lr_decay_iters", "init_type", "init_gain")
MASK_RADIUS = 7  # TF convert_market.py `_getPoseMask(..., radius=7)`; data/keypoints.py DPIG_MASK_RADIUS


def add_options(parser: argparse.ArgumentParser, is_train: bool) -> argparse.ArgumentParser:
    """The DPIG hook: its flags and the official defaults of the shared ones."""
    g = parser.add_argument_group(
        "DPIG (docs/models/dpig.md)",
        "Set by --model DPIG: per stage and dataset (Market / DeepFashion) --batch_size and --max_steps of the "
        "official scripts (1a 16/6 x 120k, 1b 64/16 x 60k/120k, 2a 32/16 x 120k, 2b 64/32 x 60k) unless typed; "
        "lr 2e-5 for every optimiser, halved after every --lr_update_step iterations; Adam betas (0.5, 0.999) "
        "in stage I, TF 1.x RMSProp in stage II; radius-4 disc pose maps (--pose_encoding tf_disc); keypoints "
        "outside the frame count as missing; --flip_prob 0.5 in training; DeepFashion --fashion_frame pad256.")
    # the foreground mask M is the datasets' --mask_recipe dpig (source_mask) with its --fg_mask_radius
    g.add_argument("--ngf", type=int, default=None,
                   help=f"stages 1a, 2a and test: stem width n of the appearance encoder and of the generator G "
                        f"(the paper's network: {PAPER_NGF}; smaller values build a reduced DPIG, e.g. for tests); "
                        f"None = {PAPER_NGF}")
    g.add_argument("--part_margin", type=int, default=None,
                   help="Market: margin m of a part box with >= 2 visible joints (TF convert_market.py: 6); "
                        "None = 6")
    mark_run_shaping(g, "ngf", "part_margin")  # test.py takes them from the run
    if is_train:
        g.add_argument("--dpig_stage", "--stage", dest="dpig_stage", type=str, default="1a",
                       help="which run: 1a image reconstruction, 1b pose auto-encoder, 2a appearance mappings "
                            "(needs --stage1a_name), 2b pose mapping (needs --stage1b_name)")
        g.add_argument("--ndf", type=int, default=None,
                       help=f"stage 1a: width of the image D's first conv (the paper's network: {PAPER_NDF}); "
                            f"None = {PAPER_NDF}")
        g.add_argument("--lr_update_step", type=int, default=50000,
                       help="halve every learning rate after each iteration s with s %% N == N - 1 (TF)")
        g.add_argument("--lambda_l1", type=float, default=None, help="stage 1a: weight of the L1 term; None = 20")
        g.add_argument("--lambda_pose", type=float, default=None,
                       help="stage 1b: weight of the pose auto-encoder's MSE; None = 20")
        g.add_argument("--d_batching", type=str, default=None, choices=["separate", "concat"],
                       help="stage 1a: the image D sees real and fake in two passes (separate, TF Market) or one "
                            "(concat, TF DeepFashion); BN statistics differ. None = per dataset")
        g.add_argument("--rmsprop", type=str, default=None, choices=RMSPROP_KINDS,
                       help="stage II: tf = TF 1.x RMSProp (mean square starts at 1, decay 0.9, eps 1e-10 inside "
                            "the root); torch = torch.optim.RMSprop with its defaults. None = tf")
        g.add_argument("--critic_iters", type=int, default=None,
                       help="stage II: critic steps per mapping step; None = 5")
        g.add_argument("--clip_value", type=float, default=None,
                       help="stage II: clamp every critic parameter to [-c, c] after each critic step; None = 0.01")
        g.add_argument("--critic_reals", type=str, default=None, choices=CRITIC_REALS,
                       help="stage II: the critics' real batches. fresh = a new batch of training images for every "
                            "critic step, loaded and encoded (TF); cache = the same draws from embeddings of every "
                            "image (both mirror states) computed once at the start; loader = every critic step of "
                            "an iteration reuses the loader batch (cheapest, not TF). None = fresh")
        g.add_argument("--tf_df_stage2_roi48", action="store_true",
                       help="DeepFashion stage 2a, for parity with TF trainer_256.py: real embeddings from 48x48 "
                            "ROIs without the visibility mask (test time uses 64x64, masked)")
        for stage in ("1a", "1b"):
            g.add_argument(f"--stage{stage}_name", type=str, default=None,
                           help=f"stage 2{stage[1]}: the run trained with --dpig_stage {stage} (required)")
            g.add_argument(f"--stage{stage}_epoch", type=str, default=None,
                           help=f"stage 2{stage[1]}: its checkpoint tag; None = latest")
        parser.set_defaults(lr=PAPER_LR, beta1=None, batch_size=None, max_steps=None, niter=None, niter_decay=0,
                            flip_prob=0.5, **{name: None for name in UNUSED_SHARED})
    else:
        g.add_argument("--dpig_task", type=str, default="transfer", choices=TASKS,
                       help="transfer: every test pair, appearance of `from` in the pose of `to`; sample: factors "
                            "drawn by the stage-II mappings (--sample_*); interpolate: between from and to")
        g.add_argument("--sample_fg", action="store_true", help="sample: Market foreground from noise")
        g.add_argument("--sample_bg", action="store_true", help="sample: Market background from noise")
        g.add_argument("--sample_app", action="store_true", help="sample: DeepFashion appearance from noise")
        g.add_argument("--sample_pose", action="store_true", help="sample: pose from noise")
        g.add_argument("--num_samples", type=int, default=None, help="sample: outputs per source; None = 1")
        g.add_argument("--num_inner", type=int, default=None,
                       help="interpolate: inner points K (K + 2 outputs, t = i / (K + 1)); None = 6")
        g.add_argument("--interp_factor", type=str, default=None, choices=INTERP_FACTORS,
                       help="interpolate: pose (decoded poses, appearance of from) or an appearance factor "
                            "(fg, bg on Market; app on DeepFashion) with the pose fixed; None = pose")
        g.add_argument("--tf_pose_sample_bug", action="store_true",
                       help="sample --sample_pose, for parity with TF tester.py: decode the encoded real pose "
                            "instead of the mapping's sample (TF issue #7)")
        for stage in STAGES:
            g.add_argument(f"--stage{stage}_name", type=str, default=None,
                           help=f"the run trained with --dpig_stage {stage}; None = --name")
            g.add_argument(f"--stage{stage}_epoch", type=str, default=None,
                           help="its checkpoint tag; None = --which_epoch")
        parser.set_defaults(flip_prob=0.0, init_type=None, init_gain=None)
    parser.set_defaults(pose_encoding="tf_disc", keypoints_outside="missing", fashion_frame="pad256",
                        mask_recipe=None)  # None: dpig where the foreground mask is used (Market images), else none
    return parser


def frame_size(opt) -> tuple[int, int]:
    """(H, W) of the network frame: Market 128x64; DeepFashion pad256 256x256 or native 256x176."""
    key = (opt.data_format, opt.fashion_frame if opt.data_format == "fashion" else None)
    if key not in FRAME_SIZES:
        raise InputError(f"DPIG has no network frame for data format {opt.data_format!r} with --fashion_frame "
                         f"{getattr(opt, 'fashion_frame', None)!r}; DeepFashion frames: {', '.join(FRAMES)}")
    return FRAME_SIZES[key]


def needed_stages(opt) -> tuple[str, ...]:
    """The stages whose weights the run reads: in training the frozen one (2a: 1a, 2b: 1b); at test time
    those the task uses (transfer: 1a; sample: 1a, plus 2a for a sampled appearance factor, 1b and 2b for a
    sampled pose; interpolate: 1a, plus 1b for the pose)."""
    if opt.is_train:
        loads = STAGE_TABLE[opt.dpig_stage].loads
        return (loads,) if loads else ()
    needed = ["1a"]
    if opt.dpig_task == "sample":
        if any(getattr(opt, f"sample_{f}") for f in FACTORS[opt.data_format]):
            needed.append("2a")
        if opt.sample_pose:
            needed += ["1b"] if opt.tf_pose_sample_bug else ["1b", "2b"]
    elif opt.dpig_task == "interpolate" and opt.interp_factor == "pose":
        needed.append("1b")
    return tuple(sorted(needed))


def stage_run(opt, stage: str) -> tuple[str, str]:
    """(run name, checkpoint tag) holding the weights of `stage`: the model loads
    <checkpoints_dir>/<name>/<tag>_net_<X>.pth from it."""
    name, epoch = getattr(opt, f"stage{stage}_name", None), getattr(opt, f"stage{stage}_epoch", None)
    if name is None or epoch is None:
        raise InputError(f"this DPIG run does not read stage {stage} (it reads: "
                         f"{', '.join(needed_stages(opt)) or 'no earlier stage'})")
    return name, epoch


def check_range(checks: list[tuple[bool, str]]) -> None:
    for ok, message in checks:
        if not ok:
            raise InputError(message)


def derive_common(opt) -> None:
    """Data format, frame, pose encoding, shared flags and the Market-only input flags."""
    fmt = getattr(opt, "data_format", None)
    if fmt not in FACTORS:
        raise InputError(f"DPIG needs data format market or fashion, the dataset gave {fmt!r}")
    if fmt == "fashion" and opt.fashion_frame not in FRAMES:
        raise InputError(f"--fashion_frame {opt.fashion_frame}: DPIG runs DeepFashion at pad256 (256x176 padded "
                         "white to 256x256, the official frame) or native (256x176)")
    if not hasattr(opt, "mask_recipe"):
        raise InputError(f"--model DPIG reads pose pairs (--dataset_mode market, fashion or synthetic), not "
                         f"--dataset_mode {opt.dataset_mode}")
    if opt.pose_encoding != "tf_disc":
        raise InputError(f"--pose_encoding {opt.pose_encoding}: DPIG's generator reads TF's radius-4 disc maps in "
                         "{-1, +1} (tf_disc)")
    for name in UNUSED_SHARED:
        if getattr(opt, name, None) is not None:
            raise InputError(f"--{name} does not apply to --model DPIG: its initialisation is the official one "
                             "(built into the networks) and its schedule is the per-iteration halving of "
                             "--lr_update_step")
    uses_images = not opt.is_train or opt.dpig_stage in IMAGE_STAGES
    for flag, default in (("fg_mask_radius", MASK_RADIUS), ("part_margin", PART_MARGIN)):
        value = getattr(opt, flag)
        if value is not None and fmt != "market":
            raise InputError(f"--{flag} applies to Market only (DeepFashion has no foreground mask, and its part "
                             "boxes follow their own whole-body margin rule)")
        if value is not None and not uses_images:
            raise InputError(f"--{flag} does not apply to --dpig_stage {opt.dpig_stage}, which reads no images")
        if fmt == "market" and uses_images:
            setattr(opt, flag, default if value is None else value)
    wanted = "dpig" if fmt == "market" and uses_images else "none"
    if opt.mask_recipe is None:
        opt.mask_recipe = wanted
    elif opt.mask_recipe != wanted:
        why = ("DPIG's Market encoder splits the features with its foreground mask (the pg2 recipe at "
               "--fg_mask_radius)" if wanted == "dpig" else
               "DeepFashion has no foreground mask" if fmt == "fashion" else
               f"--dpig_stage {opt.dpig_stage} reads no images")
        raise InputError(f"--mask_recipe {opt.mask_recipe}: {why}; DPIG sets --mask_recipe {wanted} here")
    check_range([(opt.fg_mask_radius is None or opt.fg_mask_radius >= 1, "--fg_mask_radius must be >= 1"),
                 (opt.part_margin is None or opt.part_margin >= 0, "--part_margin must be >= 0")])


def derive_train(opt) -> None:
    """Stage, per-stage defaults, the frozen stage to load, the schedule's length."""
    stage = opt.dpig_stage
    if stage not in STAGES:
        hint = {"1": "stage I is two independent runs: 1a (image reconstruction) and 1b (pose auto-encoder)",
                "2": "stage II is two independent runs, as in the official scripts (TF models 3 and 4 / 103 and "
                     "104, with their own batch sizes and lengths): 2a (appearance mappings, on the 1a encoder) "
                     "and 2b (pose mapping, on the 1b pose encoder)"}.get(stage, "")
        raise InputError(f"--dpig_stage {stage}: choose one of {', '.join(STAGES)}" + (f"; {hint}" if hint else ""))
    fmt, recipe = opt.data_format, STAGE_TABLE[stage]
    for flag, (stages, default) in TRAIN_STAGE_FLAGS.items():
        value = getattr(opt, flag)
        if stage not in stages:
            if value is not None:
                raise InputError(f"--{flag} does not apply to --dpig_stage {stage}; it belongs to stage "
                                 + " and ".join(stages))
            continue
        if value is None:
            setattr(opt, flag, D_BATCHING[fmt] if flag == "d_batching" else default)
    if opt.tf_df_stage2_roi48 and (fmt != "fashion" or stage != "2a"):
        raise InputError("--tf_df_stage2_roi48 applies to DeepFashion stage 2a only (TF trainer_256.py's II-a "
                         "encoder)")
    if opt.amp == "fp16" and stage in ("2a", "2b"):
        raise InputError("--amp fp16 is not supported in DPIG stage II: an iteration steps each critic "
                         f"{opt.critic_iters} times, which one GradScaler update per iteration cannot serve; use "
                         "--amp bf16")
    for earlier in ("1a", "1b"):
        name_flag, epoch_flag = f"stage{earlier}_name", f"stage{earlier}_epoch"
        if recipe.loads != earlier:
            given = [f for f in (name_flag, epoch_flag) if getattr(opt, f) is not None]
            if given:
                raise InputError(f"--{given[0]} does not apply to --dpig_stage {stage}; stage 2{earlier[1]} reads "
                                 f"the {earlier} run")
            continue
        if getattr(opt, name_flag) is None:
            raise InputError(f"--dpig_stage {stage} trains on the frozen networks of stage {earlier}: pass "
                             f"--{name_flag} RUN, the --name of the run trained with --dpig_stage {earlier}")
        if getattr(opt, name_flag) == opt.name:
            raise InputError(f"--{name_flag} {opt.name} is this run's own --name: stage {stage} needs a run folder "
                             f"of its own, apart from the {earlier} run it reads")
        if getattr(opt, epoch_flag) is None:
            setattr(opt, epoch_flag, "latest")
    if opt.batch_size is None:
        opt.batch_size = recipe.batch_size[fmt]
    if opt.max_steps is None:
        opt.max_steps = recipe.steps[fmt]
    if opt.niter is None:
        if opt.max_steps == 0:
            raise InputError("--max_steps 0 runs --niter epochs instead of the official iteration count: give "
                             "--niter too")
        opt.niter = opt.max_steps  # an epoch has >= 1 iteration, so this cap never ends a run early
    check_range([(opt.lr > 0, f"--lr must be > 0, got {opt.lr}"),
                 (opt.lr_update_step >= 1, f"--lr_update_step must be >= 1, got {opt.lr_update_step}"),
                 (opt.max_steps >= 0, f"--max_steps must be >= 0, got {opt.max_steps}"),
                 (opt.niter_decay == 0, "--niter_decay does not apply to --model DPIG (no linear decay: the rate "
                                        "halves every --lr_update_step iterations)"),
                 (opt.lambda_l1 is None or opt.lambda_l1 >= 0, "--lambda_l1 must be >= 0"),
                 (opt.ngf is None or opt.ngf >= 1, "--ngf must be >= 1"),
                 (opt.ndf is None or opt.ndf >= 1, "--ndf must be >= 1"),
                 (opt.lambda_pose is None or opt.lambda_pose >= 0, "--lambda_pose must be >= 0"),
                 (opt.critic_iters is None or opt.critic_iters >= 1, "--critic_iters must be >= 1"),
                 (opt.clip_value is None or opt.clip_value > 0, "--clip_value must be > 0")])


def derive_test(opt) -> None:
    """Task flags, their refusals, and the runs the task reads."""
    fmt, task = opt.data_format, opt.dpig_task
    factors = FACTORS[fmt]
    other = "fashion" if fmt == "market" else "market"
    sampled = [f for f in ("fg", "bg", "app", "pose") if getattr(opt, f"sample_{f}")]
    if sampled and task != "sample":
        raise InputError(f"--sample_{sampled[0]} belongs to --dpig_task sample (got --dpig_task {task})")
    for factor in sampled:
        if factor != "pose" and factor not in factors:
            raise InputError(f"--sample_{factor} does not apply to {fmt}: its appearance factors are "
                             f"{', '.join(factors)} (--sample_{factor} is for {other})")
    if task == "sample" and not sampled:
        raise InputError("--dpig_task sample needs at least one of " + ", ".join(
            f"--sample_{f}" for f in factors + ("pose",)))
    if opt.num_samples is not None and task != "sample":
        raise InputError(f"--num_samples belongs to --dpig_task sample (got --dpig_task {task})")
    if opt.tf_pose_sample_bug and not (task == "sample" and opt.sample_pose):
        raise InputError("--tf_pose_sample_bug changes how --dpig_task sample --sample_pose decodes poses; it does "
                         "not apply here")
    for flag in ("num_inner", "interp_factor"):
        if getattr(opt, flag) is not None and task != "interpolate":
            raise InputError(f"--{flag} belongs to --dpig_task interpolate (got --dpig_task {task})")
    opt.ngf = PAPER_NGF if opt.ngf is None else opt.ngf
    if task == "sample":
        opt.num_samples = 1 if opt.num_samples is None else opt.num_samples
    if task == "interpolate":
        opt.num_inner = 6 if opt.num_inner is None else opt.num_inner
        opt.interp_factor = opt.interp_factor or "pose"
        if opt.interp_factor not in ("pose",) + factors:
            raise InputError(f"--interp_factor {opt.interp_factor} does not apply to {fmt}: choose "
                             + ", ".join(("pose",) + factors))
    if task != "transfer" and getattr(opt, "result_layout", "single") != "single":
        raise InputError(f"--result_layout {opt.result_layout}: --dpig_task {task} writes single images "
                         f"<from_stem>_{task}_<k>")
    check_range([(opt.num_samples is None or opt.num_samples >= 1, "--num_samples must be >= 1"),
                 (opt.num_inner is None or opt.num_inner >= 0, "--num_inner must be >= 0")])
    needed = needed_stages(opt)
    for stage in STAGES:
        name_flag, epoch_flag = f"stage{stage}_name", f"stage{stage}_epoch"
        if stage not in needed:
            given = [f for f in (name_flag, epoch_flag) if getattr(opt, f) is not None]
            if given:
                raise InputError(f"--{given[0]}: this --dpig_task {task} run reads stages {', '.join(needed)} "
                                 f"only, not {stage}")
            continue
        if getattr(opt, name_flag) is None:
            setattr(opt, name_flag, opt.name)
        if getattr(opt, epoch_flag) is None:
            setattr(opt, epoch_flag, opt.which_epoch)


def derive_options(opt) -> None:
    """Fill the per-dataset and per-stage defaults, refuse what does not apply (called by parse())."""
    derive_common(opt)
    if opt.is_train:
        derive_train(opt)
    else:
        derive_test(opt)
