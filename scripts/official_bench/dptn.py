"""The official DPTN (PangzeCheung/Dual-task-Pose-Transformer-Network) for scripts.bench_train, with the README
flags; VGG19 with random weights."""
from __future__ import annotations

import argparse
import contextlib
import io
import tempfile

import torch

from scripts.official_bench import device_of, prepare_official_import


def build(spec: dict, random_batch):
    """(step, device): one official optimize_parameters (training) or G forward without grad (inference)."""
    prepare_official_import()
    from models.DPTN_model import DPTNModel  # the official module, from the current directory

    market = spec["dataset_mode"] == "market"
    gpu_ids, device = device_of(spec)
    train = spec["phase"] == "train"
    opt = argparse.Namespace(
        gpu_ids=gpu_ids, isTrain=train, checkpoints_dir=tempfile.mkdtemp(), name="bench", model="DPTN", image_nc=3,
        structure_nc=18, norm="instance", use_spect_g=False, use_spect_d=True, use_coord=False, nhead=2,
        num_CABs=2, num_TTBs=2, dis_layers=3 if market else 4, init_type="orthogonal", pool_size=0, lr=2e-4,
        gan_mode="lsgan", device=device, beta1=0.5, ratio_g2d=0.1, lr_policy="lambda", iter_start=1, niter=100,
        niter_decay=100, t_s_ratio=0.8 if market else 0.5, old_size=(128, 64) if market else (256, 176),
        lambda_rec=2.0 if market else 5.0, lambda_g=5.0 if market else 2.0, lambda_style=500.0,
        lambda_content=0.5, continue_train=False, verbose=False, batchSize=spec["batch"], which_epoch="latest")
    torch.manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()):
        if train:
            model = DPTNModel(opt)
        else:  # its test-mode constructor loads a checkpoint; build the generator the same way instead
            from models import networks
            model = argparse.Namespace(net_G=networks.define_G(
                opt, image_nc=3, pose_nc=18, ngf=64, img_f=512, encoder_layer=3, norm="instance",
                activation="LeakyReLU", use_spect=False, use_coord=False, output_nc=3, num_blocks=3, affine=True,
                nhead=2, num_CABs=2, num_TTBs=2).eval())
    height, width = (128, 64) if market else (256, 256)
    batch = random_batch(spec["batch"], height, width)
    for key in ("source_image", "target_image", "source_pose", "target_pose"):
        setattr(model, key, batch[key].to(device))  # the official set_input moves tensors only on CUDA

    def step() -> None:
        if train:
            model.optimize_parameters()
        else:
            with torch.no_grad():
                model.net_G(model.source_image, model.source_pose, model.target_pose, False)
    return step, device
