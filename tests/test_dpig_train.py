"""DPIG end to end on tiny synthetic data: the four training stages (their per-iteration rules, frozen stage-I
networks, the halving schedule), refusals of a missing earlier run, kill -9 and resume, and the transfer test.

Networks are narrow (--ngf 8 --ndf 8): the mechanism, not the size, is tested (sizes: test_dpig_networks.py).
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch.utils.data import default_collate

import test as test_script
import train as train_script
from data import create_dataset
from models import create_model
from models.networks.dpig_parts import disc_pose_map
from options.test_options import TestOptions
from options.train_options import TrainOptions
from test_reliability import kill_then_resume, run_args, same_weights, train_process
from util.distributed import build_context

NARROW = ("--ngf", "8")
STAGE_1A = ("--model", "DPIG", "--dpig_stage", "1a", *NARROW, "--ndf", "8")


def common(root: Path, ckpt: Path, mode: str = "market") -> list[str]:
    return ["--dataset_mode", mode, "--dataroot", str(root), "--checkpoints_dir", str(ckpt), "--gpu_ids", "-1",
            "--num_threads", "0", "--seed", "3"]


def train_model(root: Path, ckpt: Path, stage: str, name: str, *extra: str, mode: str = "market"):
    """(model after setup, one loader-like batch) of a training stage, built as train.py builds them."""
    widths = NARROW if stage in ("1a", "2a") else ()
    argv = ["--model", "DPIG", "--dpig_stage", stage, "--name", name, *widths, "--batch_size", "2",
            *common(root, ckpt, mode), *extra]
    opt = TrainOptions().parse(argv, echo=False, check_folder=False)
    dataset = create_dataset(opt)
    batch = default_collate([dataset[i] for i in range(opt.batch_size)])
    model = create_model(opt, build_context([]))
    model.setup()
    model.start_of_training(1, dataset)
    model.train()
    return model, batch


def params(net: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


def same(a: list[torch.Tensor], net: torch.nn.Module) -> bool:
    return all(torch.equal(x, p) for x, p in zip(a, net.parameters()))


def finite(model) -> dict[str, float]:
    losses = model.get_current_losses()
    assert losses and all(math.isfinite(v) for v in losses.values()), losses
    return losses


@pytest.fixture(scope="module")
def stage_runs(tiny_market_root, tmp_path_factory):
    """Saved runs of 1a and 1b (2 iterations each), which stage II and the test tasks read."""
    ckpt = tmp_path_factory.mktemp("dpig_runs")
    for stage, name, extra in (("1a", "run1a", (*NARROW, "--ndf", "8")), ("1b", "run1b", ())):
        argv = ["--model", "DPIG", "--dpig_stage", stage, "--name", name, *extra, "--batch_size", "2",
                "--max_steps", "2", *common(tiny_market_root, ckpt)]
        assert train_script.main(argv) == 0
    return ckpt


def test_stage_1a_iteration_0_steps_only_d_then_g_and_d(tiny_market_root, tmp_path):
    model, batch = train_model(tiny_market_root, tmp_path, "1a", "a", "--ndf", "8")
    assert model.model_names == ["E", "G", "D"] and model.opt.d_batching == "separate"
    # P(x): the disc maps the generator reads are the dataset's tf_disc maps (Market)
    assert torch.equal(disc_pose_map(batch["source_keypoints"], 128, 64), batch["source_pose"])
    e0, g0, d0 = params(model.netE), params(model.netG), params(model.netD)
    model.set_input(batch)
    model.optimize_parameters()
    assert same(e0, model.netE) and same(g0, model.netG) and not same(d0, model.netD)  # TF: step 0 is D only
    assert set(finite(model)) == {"D_real", "D_fake"}
    model.set_input(batch)
    model.optimize_parameters()
    assert not same(e0, model.netE) and not same(g0, model.netG)
    assert set(finite(model)) == {"G_gan", "G_l1", "D_real", "D_fake"}
    assert model.fake.shape == (2, 3, 128, 64)
    assert model.iteration == 2 and model.optimizers[0].param_groups[0]["lr"] == pytest.approx(2e-5)


def test_stage_1a_trains_on_deepfashion_pad256(tiny_fashion_root, tmp_path):
    model, batch = train_model(tiny_fashion_root, tmp_path, "1a", "f", "--ndf", "8", mode="fashion")
    assert model.opt.d_batching == "concat" and unwrap_d(model).logits_per_image == 8
    for _ in range(2):
        model.set_input(batch)
        model.optimize_parameters()
    assert set(finite(model)) == {"G_gan", "G_l1", "D_real", "D_fake"}
    assert model.fake.shape == (2, 3, 256, 256) and model.appearance(
        model.source_image, model.source_keypoints, None).shape == (2, 224)


def unwrap_d(model):
    from util.checkpoint import unwrap
    return unwrap(model.netD)


def test_stage_1b_skips_iteration_0_then_learns_and_halves(tiny_market_root, tmp_path):
    model, batch = train_model(tiny_market_root, tmp_path, "1b", "b", "--lr_update_step", "2")
    e0 = params(model.netPoseE)
    model.set_input(batch)
    model.optimize_parameters()
    assert same(e0, model.netPoseE) and set(finite(model)) == {"pose_mse"}  # TF: `if step>0`
    visuals = model.get_current_visuals()
    assert list(visuals) == ["pose_real", "pose_reconstructed"] and visuals["pose_real"].shape == (128, 64, 3)
    model.set_input(batch)
    model.optimize_parameters()
    assert not same(e0, model.netPoseE)
    assert model.optimizers[0].param_groups[0]["lr"] == pytest.approx(1e-5)  # halved after iteration 1


def test_stage_2a_trains_mappings_on_the_frozen_1a_encoder(tiny_market_root, stage_runs):
    model, batch = train_model(tiny_market_root, stage_runs, "2a", "m2a", "--stage1a_name", "run1a",
                               "--critic_iters", "2")
    assert model.model_names == ["Phi_fg", "D_fg", "Phi_bg", "D_bg"]
    assert same(params(model.netE), model.netE)
    saved = torch.load(stage_runs / "run1a" / "latest_net_E.pth", weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in model.netE.state_dict().items())
    phi0, critic0, e0 = params(model.netPhi_fg), params(model.netD_fg), params(model.netE)
    model.set_input(batch)
    model.optimize_parameters()
    assert same(phi0, model.netPhi_fg) and not same(critic0, model.netD_fg)  # iteration 0: critics only
    assert all(p.abs().max() <= 0.01 for p in model.netD_fg.parameters())  # clipped after every critic step
    model.set_input(batch)
    model.optimize_parameters()
    assert not same(phi0, model.netPhi_fg) and same(e0, model.netE) and not model.netE.training
    assert set(finite(model)) == {"Phi_fg", "D_fg", "Phi_bg", "D_bg"}


def test_stage_2b_trains_on_the_frozen_1b_encoder(tiny_market_root, stage_runs):
    argv = ["--model", "DPIG", "--dpig_stage", "2b", "--name", "m2b", "--stage1b_name", "run1b",
            "--batch_size", "2", "--max_steps", "2", "--rmsprop", "torch", *common(tiny_market_root, stage_runs)]
    assert train_script.main(argv) == 0
    assert {p.name for p in (stage_runs / "m2b").glob("latest_net_*.pth")} == {"latest_net_Phi_pose.pth",
                                                                            "latest_net_D_pose.pth"}


def test_width_flags_apply_only_where_the_networks_are(tiny_market_root, tmp_path, capsys):
    argv = ["--model", "DPIG", "--dpig_stage", "1b", "--name", "w", "--ngf", "8", "--max_steps", "1",
            *common(tiny_market_root, tmp_path)]
    assert train_script.main(argv) == 2
    assert "--ngf does not apply to --dpig_stage 1b" in capsys.readouterr().err


def test_stage_2_refuses_a_missing_earlier_run(tiny_market_root, tmp_path, capsys):
    argv = ["--model", "DPIG", "--dpig_stage", "2a", "--name", "m", "--stage1a_name", "absent", *NARROW,
            "--batch_size", "2", "--max_steps", "1", *common(tiny_market_root, tmp_path)]
    assert train_script.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "absent/latest_net_E.pth does not exist" in err[0] and "--stage1a_name" in err[0]
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").glob("*_net_*.pth"))


def test_transfer_writes_one_image_per_test_pair(tiny_market_root, stage_runs, tmp_path):
    results = tmp_path / "results"
    argv = ["--model", "DPIG", "--name", "run1a", *NARROW, "--results_dir", str(results), "--batch_size", "4",
            *common(tiny_market_root, stage_runs)]
    assert test_script.main(argv) == 0
    pairs = (tiny_market_root / "market-pairs-test.csv").read_text().splitlines()[1:]
    expected = {f"{Path(a).stem}_2_{Path(b).stem}_vis.jpg" for a, b in (p.split(",")[:2] for p in pairs)}
    assert {p.name for p in results.glob("*_vis.jpg")} == expected and len(expected) == 18


def test_test_time_api_and_a_missing_stage_run(tiny_market_root, stage_runs, tmp_path, capsys):
    argv = ["--model", "DPIG", "--name", "run1a", *NARROW, "--dpig_task", "interpolate", "--stage1b_name",
            "run1b", "--results_dir", str(tmp_path / "r"), *common(tiny_market_root, stage_runs)]
    opt = TestOptions().parse(argv, echo=False)
    model = create_model(opt, build_context([]))
    model.setup()
    assert model.model_names == ["E", "G", "PoseE", "PoseD"]
    dataset = create_dataset(opt)
    batch = default_collate([dataset[i] for i in range(2)])
    with torch.no_grad():
        e = model.appearance(batch["source_image"], batch["source_keypoints"], batch["source_mask"])
        parts = model.split_appearance(e)
        assert e.shape == (2, 352) and {k: v.shape[1] for k, v in parts.items()} == {"fg": 224, "bg": 128}
        assert torch.equal(model.join_appearance(parts), e)
        assert model.render(e, batch["target_keypoints"]).shape == (2, 3, 128, 64)
        pose = model.encode_pose(batch["target_keypoints"])
        decoded = model.decode_pose(pose)
        assert pose.shape == (2, 32) and decoded.shape == (2, 18, 2) and decoded.dtype == torch.int64
    missing = [("absent1b" if a == "run1b" else a) for a in argv]
    assert test_script.main(missing) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(err) == 1 and "absent1b/latest_net_PoseE.pth does not exist" in err[0]
    assert "--stage1b_name" in err[0]


RESUMED_STAGES = {  # stage -> (model flags, steps, the networks it trains)
    "1a": ((*STAGE_1A, "--lr_update_step", "3"), 12, ("E", "G", "D")),
    "1b": (("--model", "DPIG", "--dpig_stage", "1b", "--lr_update_step", "3"), 8, ("PoseE", "PoseD")),
    "2a": (("--model", "DPIG", "--dpig_stage", "2a", "--stage1a_name", "run1a", *NARROW, "--critic_iters", "2",
            "--lr_update_step", "3"), 8, ("Phi_fg", "D_fg", "Phi_bg", "D_bg")),
    "2b": (("--model", "DPIG", "--dpig_stage", "2b", "--stage1b_name", "run1b", "--critic_reals", "cache",
            "--lr_update_step", "3"), 8, ("Phi_pose", "D_pose")),
}


@pytest.mark.slow
@pytest.mark.parametrize("stage", sorted(RESUMED_STAGES))
def test_kill_minus_9_then_resume(stage, tiny_market_root, tmp_path):
    """Killed at a random iteration and resumed, every stage's weights equal an uninterrupted run's: 1a across
    the iteration-0 rule, a halving of the rate (every 3 iterations) and an epoch boundary; 2a with fresh real
    batches per critic step; 2b with the embedding cache, rebuilt on resume."""
    if stage in ("2a", "2b"):
        earlier, extra = ("1a", (*NARROW, "--ndf", "8")) if stage == "2a" else ("1b", ())
        argv = ["--model", "DPIG", "--dpig_stage", earlier, "--name", f"run{earlier}", *extra, "--batch_size", "2",
                "--max_steps", "2", *common(tiny_market_root, tmp_path)]
        assert train_script.main(argv) == 0
    model, steps, nets = RESUMED_STAGES[stage]
    assert train_process(run_args(tiny_market_root, tmp_path, "straight", "--max_steps", str(steps),
                                  model=model)).wait() == 0
    kill_then_resume(tiny_market_root, tmp_path, model, steps)
    for net in nets:
        assert same_weights(tmp_path / "straight" / f"latest_net_{net}.pth",
                            tmp_path / "victim" / f"latest_net_{net}.pth")
