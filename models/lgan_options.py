"""The latent GAN's command line (docs/models/lgan.md): its flags, KLW's defaults (kevinleewy/Human-Pose-Transfer
branch RL-GAN-NET `implementations/LGAN/lgan.toml`, `trainer.py`) and the combinations it refuses."""
from __future__ import annotations

import argparse

from util.gfv_store import GFVStore
from util.io import InputError
from util.run_options import mark_run_shaping

NORMALIZE = ("none", "minmax", "standard")


def add_options(parser: argparse.ArgumentParser, is_train: bool) -> argparse.ArgumentParser:
    """The LGAN hook: its flags, and KLW's values of the shared ones."""
    g = parser.add_argument_group(
        "latent GAN (docs/models/lgan.md)",
        "Set by --model LGAN: WGAN-GP on GFVs, Adam lr 1e-4, betas (0.5, 0.9) for G and D, batch 32, a constant "
        "rate (KLW's lr_decay is unused), the last partial batch kept, PyTorch's default initialisation. Reads "
        "--dataset_mode gfv.")
    g.add_argument("--lgan_z_dim", type=int, default=1,
                   help="size of G's input z ~ N(0, 1) (KLW and RL-GAN-Net: 1, the RL agent's action); give "
                        "test.py the training value")
    mark_run_shaping(g, "lgan_z_dim")  # test.py takes it from the run
    if is_train:
        g.add_argument("--d_iters", type=int, default=1,
                       help="critic iterations (Wasserstein step + penalty step, each with fresh z, on the "
                            "iteration's real batch) per G step. 1 = what KLW runs: its lgan.toml says d_iters 5, "
                            "but its trainer never reads it")
        g.add_argument("--lambda_gp", type=float, default=10.0, help="weight of the gradient penalty")
        g.add_argument("--beta2", type=float, default=0.9, help="Adam beta2 of G and D")
        g.add_argument("--gfv_normalize", type=str, default="none", choices=NORMALIZE,
                       help="map the real GFVs into G's tanh range with the training store's per-channel "
                            "statistics: none (KLW: raw GFVs, >= 0 and unbounded, against G's (-1, 1)), minmax "
                            "([min, max] -> [-1, 1]) or standard ((x - mean) / std). Saved with the weights "
                            "(net_S); test.py de-normalises with it")
    parser.set_defaults(init_type=None, init_gain=None)
    if is_train:
        parser.set_defaults(lr=1e-4, beta1=0.5, batch_size=32, lr_policy="constant", niter=117, niter_decay=0,
                            last_batch="keep")
    return parser


def derive_options(opt) -> None:
    """Check what the flags alone cannot; at test time, say where the generated store goes."""
    if opt.dataset_mode.lower() != "gfv":
        raise InputError(f"--model LGAN reads GFV stores: pass --dataset_mode gfv --gfv_dir DIR (got "
                         f"--dataset_mode {opt.dataset_mode})")
    if opt.init_type is not None or opt.init_gain is not None:
        raise InputError("--init_type / --init_gain do not apply to --model LGAN: it keeps PyTorch's default "
                         "initialisation, as KLW's code")
    if opt.lgan_z_dim < 1:
        raise InputError(f"--lgan_z_dim must be >= 1, got {opt.lgan_z_dim}")
    if opt.is_train:
        if opt.d_iters < 1:
            raise InputError(f"--d_iters must be >= 1, got {opt.d_iters}")
        if opt.lambda_gp < 0:
            raise InputError(f"--lambda_gp must be >= 0, got {opt.lambda_gp}")
        if opt.accum_steps != 1:
            raise InputError("--accum_steps must be 1 for --model LGAN: G's BatchNorm normalises over the batch, so "
                             "micro-batches would not give the whole batch's step")
        if opt.amp == "fp16":
            raise InputError("--amp fp16 is not supported by --model LGAN: an iteration steps D twice (Wasserstein "
                             "and penalty steps), which one GradScaler update per iteration cannot serve; use "
                             "--amp bf16")
    else:
        opt.gfv_arrays = False  # G needs only the rows (pair names) of the store; its arrays are not read
        if opt.results_dir is None:  # named after the input store's phase, which --phase does not set here
            opt.results_dir = f"./results/{opt.name}/gfv_lgan_{GFVStore(opt.gfv_dir).phase}"
