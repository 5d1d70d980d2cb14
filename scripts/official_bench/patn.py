"""The official PATN (tengteng95/Pose-Transfer, branch pytorch_v1.0: master is PyTorch 0.3.1 code) for
scripts.bench_train, with the README flags; VGG19 with random weights."""
from __future__ import annotations

import contextlib
import io
import sys
import tempfile

import torch

from scripts.official_bench import device_of, prepare_official_import

README = {
    "market": ["--lambda_GAN", "5", "--lambda_A", "10", "--lambda_B", "10", "--dataset_mode", "keypoint",
               "--no_lsgan", "--n_layers", "3", "--norm", "batch", "--resize_or_crop", "no", "--BP_input_nc", "18",
               "--no_flip", "--which_model_netG", "PATN", "--niter", "500", "--niter_decay", "200",
               "--L1_type", "l1_plus_perL1", "--n_layers_D", "3", "--with_D_PP", "1", "--with_D_PB", "1"],
    "fashion": ["--lambda_GAN", "5", "--lambda_A", "1", "--lambda_B", "1", "--dataset_mode", "keypoint",
                "--n_layers", "3", "--norm", "instance", "--pool_size", "0", "--resize_or_crop", "no",
                "--BP_input_nc", "18", "--no_flip", "--which_model_netG", "PATN", "--niter", "500",
                "--niter_decay", "200", "--L1_type", "l1_plus_perL1", "--n_layers_D", "3", "--with_D_PP", "1",
                "--with_D_PB", "1"],
}


def build(spec: dict, random_batch):
    """(step, device): one official optimize_parameters (training) or test() (inference, eval mode)."""
    prepare_official_import(cpu_only_cuda_calls=True)
    from options.train_options import TrainOptions  # the official modules, from the current directory
    from models.PATN import TransferModel

    gpu_ids, device = device_of(spec)
    train = spec["phase"] == "train"
    argv = ["--dataroot", ".", "--name", "bench", "--model", "PATN", "--checkpoints_dir", tempfile.mkdtemp(),
            "--batchSize", str(spec["batch"]), "--display_id", "0", "--gpu_ids", ",".join(map(str, gpu_ids)) or "-1",
            *README[spec["dataset_mode"]]]
    saved, sys.argv = sys.argv, ["train.py", *argv]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            opt = TrainOptions().parse()
            opt.isTrain = True  # built for training; inference times its generator in eval mode
            torch.manual_seed(0)
            model = TransferModel()
            model.initialize(opt)
    finally:
        sys.argv = saved
    height, width = (128, 64) if spec["dataset_mode"] == "market" else (256, 176)
    batch = random_batch(spec["batch"], height, width)
    model.set_input({"P1": batch["source_image"], "BP1": batch["source_pose"], "P2": batch["target_image"],
                     "BP2": batch["target_pose"], "P1_path": batch["source_name"], "P2_path": batch["target_name"]})
    if not train:
        model.netG.eval()

    def step() -> None:
        if train:
            model.optimize_parameters()
        else:
            model.test()  # the official test path: netG under no_grad
    return step, device
