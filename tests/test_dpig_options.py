"""DPIG's optimiser, schedule and option hook: TF 1.x RMSProp against hand computations and torch's RMSprop,
the --lr_update_step halving at its boundaries, exact resume of both, and the per-stage/per-dataset defaults
and refusals of models/dpig_options.py parsed through the real TrainOptions/TestOptions."""
from __future__ import annotations

import math
import warnings

import pytest
import torch

import models
from models import dpig_options
from models.base_model import BaseModel
from models.networks.schedulers import halving_factor, iteration_halving_scheduler, step_iteration_schedulers
from models.networks.tf_rmsprop import TFRMSprop, make_rmsprop
from options.test_options import TestOptions
from options.train_options import TrainOptions
from util.io import InputError

# --- TF 1.x RMSProp -------------------------------------------------------------------------------------


def run_steps(optimizer_factory, grads, start):
    p = torch.nn.Parameter(start.clone())
    opt = optimizer_factory([p])
    values = []
    for g in grads:
        p.grad = g.clone()
        opt.step()
        values.append(p.detach().clone())
    return values, opt, p


def test_tf_rmsprop_two_steps_equal_a_hand_computation_in_float64():
    lr, rho, eps = 0.01, 0.9, 1e-10
    w0 = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    g1 = torch.tensor([0.3, -0.01, 2.0], dtype=torch.float64)
    g2 = torch.tensor([-0.2, 0.05, 1.0], dtype=torch.float64)
    (w1, w2), _, _ = run_steps(lambda ps: TFRMSprop(ps, lr=lr), [g1, g2], w0)
    ms1 = 1.0 + (g1 ** 2 - 1.0) * (1 - rho)  # the slot starts at 1
    hand1 = w0 - lr * g1 / torch.sqrt(ms1 + eps)
    ms2 = ms1 + (g2 ** 2 - ms1) * (1 - rho)
    hand2 = hand1 - lr * g2 / torch.sqrt(ms2 + eps)
    torch.testing.assert_close(w1, hand1, rtol=1e-15, atol=0)
    torch.testing.assert_close(w2, hand2, rtol=1e-15, atol=0)
    # the first element by hand: ms = 0.9 + 0.1 * 0.09 = 0.909; w = 1 - 0.01 * 0.3 / sqrt(0.909 + 1e-10)
    assert w1[0].item() == pytest.approx(1 - 0.003 / math.sqrt(0.909 + 1e-10), abs=1e-15)


def test_tf_rmsprop_float32_follows_tf_arithmetic():
    # TF forms 1 - rho in float32 (0.100000024) and computes (g * lr) / sqrt(ms + eps) in float32
    w0, g = torch.tensor([0.25, -1.0]), torch.tensor([0.125, 3.0])
    (w1,), _, _ = run_steps(lambda ps: TFRMSprop(ps, lr=2e-5), [g], w0)
    one_minus = torch.tensor(1.0) - torch.tensor(0.9)
    assert one_minus.item() == pytest.approx(0.100000024, abs=1e-9)
    ms = torch.ones(2) + (g * g - torch.ones(2)) * one_minus
    hand = w0 - (g * torch.tensor(2e-5)) / torch.sqrt(ms + torch.tensor(1e-10))
    assert torch.equal(w1, hand)


def test_tf_rmsprop_differs_from_torch_rmsprop_early():
    lr = 2e-5
    w0, g = torch.tensor([0.0, 0.0]), torch.tensor([1e-3, -1e-3])
    (tf1,), _, _ = run_steps(lambda ps: TFRMSprop(ps, lr=lr), [g], w0)
    (pt1,), _, _ = run_steps(lambda ps: torch.optim.RMSprop(ps, lr=lr), [g], w0)
    # TF: lr * g / sqrt(0.9 + 0.1 g^2) ~ lr * g / 0.949 (tiny); torch: lr * g / (sqrt(0.01 g^2) + 1e-8) ~ 10 lr sign(g)
    torch.testing.assert_close(tf1, -lr * g / math.sqrt(0.9 + 0.1 * 1e-6), rtol=1e-6, atol=0)
    torch.testing.assert_close(pt1, -lr * torch.sign(g) * 1e-3 / (0.1 * 1e-3 + 1e-8), rtol=1e-5, atol=0)
    assert (pt1.abs() / tf1.abs()).min() > 9000  # ~9.5e3 times larger
    # with TF's hyper-parameters torch's RMSprop still starts its average at 0: first step ~3.16 lr sign(g)
    (pt09,), _, _ = run_steps(lambda ps: torch.optim.RMSprop(ps, lr=lr, alpha=0.9, eps=1e-10), [g], w0)
    torch.testing.assert_close(pt09.abs(), torch.full((2,), lr * math.sqrt(10)), rtol=1e-5, atol=0)
    assert isinstance(make_rmsprop([torch.nn.Parameter(w0)], lr, "torch"), torch.optim.RMSprop)
    assert isinstance(make_rmsprop([torch.nn.Parameter(w0)], lr, "tf"), TFRMSprop)
    with pytest.raises(ValueError, match="unknown RMSProp kind"):
        make_rmsprop([torch.nn.Parameter(w0)], lr, "keras")


def test_tf_rmsprop_state_dict_resume_is_exact():
    torch.manual_seed(0)
    w0 = torch.randn(5, 3)
    grads = [torch.randn(5, 3) for _ in range(6)]
    straight, _, _ = run_steps(lambda ps: TFRMSprop(ps, lr=1e-2), grads, w0)
    first, opt, p = run_steps(lambda ps: TFRMSprop(ps, lr=1e-2), grads[:3], w0)
    saved = opt.state_dict()
    assert torch.equal(saved["state"][0]["rms"], opt.state[p]["rms"]) and saved["state"][0]["step"] == 3
    resumed, opt2, _ = run_steps(lambda ps: TFRMSprop(ps, lr=1e-2), [], p.detach())
    p2 = opt2.param_groups[0]["params"][0]
    opt2.load_state_dict(saved)
    for g in grads[3:]:
        p2.grad = g.clone()
        opt2.step()
    assert torch.equal(p2.detach(), straight[-1])
    # a fresh optimiser (slot reset to 1) would not have reproduced it
    fresh, _, _ = run_steps(lambda ps: TFRMSprop(ps, lr=1e-2), grads[3:], first[-1])
    assert not torch.equal(fresh[-1], straight[-1])


def test_tf_rmsprop_momentum_and_skipped_parameters():
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    opt = TFRMSprop([a, b], lr=0.1, momentum=0.5)
    a.grad = torch.tensor([1.0, -1.0])
    opt.step()
    opt.step()  # same gradient: mom = 0.5 * u1 + u2
    u1 = 0.1 / math.sqrt(1.0 + 1e-10)  # ms stays 1 for |g| = 1; the two updates are u1 and 1.5 u1
    torch.testing.assert_close(a.detach(), torch.tensor([1 - 2.5 * u1, 1 + 2.5 * u1]))
    assert torch.equal(b.detach(), torch.ones(2)) and b not in opt.state  # no gradient: untouched, no slots
    with pytest.raises(ValueError, match="lr must be >= 0"):
        TFRMSprop([a], lr=-1.0)


# --- the --lr_update_step halving -----------------------------------------------------------------------

@pytest.mark.parametrize("step, rate", [(0, 2e-5), (49999, 2e-5), (50000, 1e-5), (99999, 1e-5), (100000, 5e-6),
                                        (149999, 5e-6), (150000, 2.5e-6)])
def test_halving_factor_at_the_tf_boundaries(step, rate):
    # TF: g_lr <- 0.5 g_lr after the step with step % 50000 == 49999, so step 50000 is the first at half
    assert 2e-5 * halving_factor(step, 50000) == rate


def test_iteration_scheduler_rates_and_exact_resume():
    period = 4  # small period, same rule
    p = torch.nn.Parameter(torch.zeros(1))
    optimizers = [torch.optim.Adam([p], lr=2e-5), TFRMSprop([torch.nn.Parameter(torch.zeros(1))], lr=4e-5)]
    schedulers = [iteration_halving_scheduler(o, period) for o in optimizers]
    rates = []
    for it in range(10):
        rates.append([o.param_groups[0]["lr"] for o in optimizers])  # the rate iteration `it` runs at
        if it > 0:  # like TF's generator, the first optimiser sits out step 0: no warning, same counter
            optimizers[0].step()
        optimizers[1].step()
        with NoSchedulerWarning():
            step_iteration_schedulers(schedulers)
    assert [r[0] for r in rates] == [2e-5] * 4 + [1e-5] * 4 + [5e-6] * 2
    assert [r[1] for r in rates] == [4e-5] * 4 + [2e-5] * 4 + [1e-5] * 2
    # resume after 6 iterations: optimiser then scheduler state (BaseModel.load_state_dict's order)
    saved = [(o.state_dict(), s.state_dict()) for o, s in zip(optimizers, schedulers)]
    q = torch.nn.Parameter(torch.zeros(1))
    fresh = [torch.optim.Adam([q], lr=2e-5), TFRMSprop([torch.nn.Parameter(torch.zeros(1))], lr=4e-5)]
    fresh_s = [iteration_halving_scheduler(o, period) for o in fresh]
    for o, s, (os_, ss) in zip(fresh, fresh_s, saved):
        o.load_state_dict(os_)
        s.load_state_dict(ss)
    assert [o.param_groups[0]["lr"] for o in fresh] == [5e-6, 1e-5]
    step_iteration_schedulers(fresh_s)
    step_iteration_schedulers(fresh_s)
    assert [o.param_groups[0]["lr"] for o in fresh] == [2.5e-6, 5e-6]  # iteration 12 = 3 * period
    with pytest.raises(ValueError, match="period must be >= 1"):
        iteration_halving_scheduler(optimizers[0], 0)


class NoSchedulerWarning:
    """Fails when PyTorch warns about the scheduler/optimiser order inside the block."""

    def __enter__(self):
        self._ctx = warnings.catch_warnings(record=True)
        self.records = self._ctx.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)
        assert not [str(r.message) for r in self.records if "lr_scheduler" in str(r.message)]


# --- the option hook, through the real parsers ------------------------------------------------------------

class FakeDPIG(BaseModel):
    """Stands in for models/dpig_model.py (a later session) so that --model DPIG parses with the hook."""

    modify_commandline_options = staticmethod(dpig_options.add_options)
    derive_options = staticmethod(dpig_options.derive_options)


@pytest.fixture
def dpig_registered(monkeypatch):
    real = models.find_model_class
    monkeypatch.setattr(models, "find_model_class", lambda name: FakeDPIG if name.lower() == "dpig" else real(name))


def train(tmp_path, *argv, dataset="market"):
    return TrainOptions().parse(["--model", "DPIG", "--dataset_mode", dataset, "--gpu_ids", "-1",
                                 "--name", "dpig_run", f"--checkpoints_dir={tmp_path}", *argv], echo=False)


def parse_test(tmp_path, *argv, dataset="market"):
    return TestOptions().parse(["--model", "DPIG", "--dataset_mode", dataset, "--gpu_ids", "-1",
                                "--name", "dpig_1a", f"--checkpoints_dir={tmp_path}", *argv], echo=False)


LOADS = {"1a": [], "1b": [], "2a": ["--stage1a_name", "m1a"], "2b": ["--stage1b_name", "m1b"]}
EXPECTED = {  # (batch, steps) per stage and data format: run_market_train.sh, run_DF_train.sh
    ("market", "1a"): (16, 120000), ("market", "1b"): (64, 60000), ("market", "2a"): (32, 120000),
    ("market", "2b"): (64, 60000), ("fashion", "1a"): (6, 120000), ("fashion", "1b"): (16, 120000),
    ("fashion", "2a"): (16, 120000), ("fashion", "2b"): (32, 60000),
}


@pytest.mark.parametrize("fmt, stage", sorted(EXPECTED))
def test_train_defaults_per_dataset_and_stage(dpig_registered, tmp_path, fmt, stage):
    opt = train(tmp_path, "--dpig_stage", stage, *LOADS[stage], dataset=fmt)
    assert (opt.batch_size, opt.max_steps) == EXPECTED[(fmt, stage)]
    assert opt.niter == opt.max_steps and opt.niter_decay == 0  # epochs only cap the run, never end it early
    assert opt.lr == 2e-5 and opt.lr_update_step == 50000 and opt.lr_policy is None
    assert opt.pose_encoding == "tf_disc" and opt.keypoints_outside == "missing" and opt.flip_prob == 0.5
    assert opt.init_type is None and opt.init_gain is None
    stage_one = stage in ("1a", "1b")
    assert opt.beta1 == (0.5 if stage_one else None)
    assert opt.rmsprop == (None if stage_one else "tf")
    assert (opt.critic_iters, opt.clip_value) == ((None, None) if stage_one else (5, 0.01))
    assert opt.lambda_l1 == (20.0 if stage == "1a" else None) and opt.lambda_pose == (20.0 if stage == "1b" else None)
    assert opt.d_batching == ({"market": "separate", "fashion": "concat"}[fmt] if stage == "1a" else None)
    images = fmt == "market" and stage in ("1a", "2a")
    assert (opt.fg_mask_radius, opt.part_margin) == ((7, 6) if images else (None, None))
    assert opt.mask_recipe == ("dpig" if images else "none")  # the datasets' source_mask is then M
    assert dpig_options.needed_stages(opt) == {"1a": (), "1b": (), "2a": ("1a",), "2b": ("1b",)}[stage]
    if stage == "2a":
        assert dpig_options.stage_run(opt, "1a") == ("m1a", "latest")
    if fmt == "fashion":
        assert opt.fashion_frame == "pad256" and dpig_options.frame_size(opt) == (256, 256)
    else:
        assert dpig_options.frame_size(opt) == (128, 64)


def test_typed_values_win_and_aliases(dpig_registered, tmp_path):
    opt = train(tmp_path, "--stage", "2b", "--stage1b_name", "pose_ae", "--stage1b_epoch", "60", "--batch_size",
                "8", "--max_steps", "100", "--rmsprop", "torch", "--critic_iters", "3", "--clip_value", "0.05",
                "--lr", "1e-4", "--lr_update_step", "10", "--critic_reals", "cache")
    assert (opt.dpig_stage, opt.batch_size, opt.max_steps, opt.niter) == ("2b", 8, 100, 100)
    assert (opt.rmsprop, opt.critic_iters, opt.clip_value, opt.lr, opt.lr_update_step) == ("torch", 3, 0.05, 1e-4, 10)
    assert dpig_options.stage_run(opt, "1b") == ("pose_ae", "60") and opt.critic_reals == "cache"
    opt = train(tmp_path, "--max_steps", "0", "--niter", "3", "--fashion_frame", "native", "--d_batching",
                "separate", "--beta1", "0.9", dataset="fashion")
    assert (opt.max_steps, opt.niter, opt.d_batching, opt.beta1) == (0, 3, "separate", 0.9)
    assert dpig_options.frame_size(opt) == (256, 176)
    opt = train(tmp_path, "--fg_mask_radius", "6", "--part_margin", "7", "--lambda_l1", "10")
    assert (opt.fg_mask_radius, opt.part_margin, opt.lambda_l1) == (6, 7, 10.0)


REFUSED_TRAIN = [
    (["--dpig_stage", "2"], "market", "stage II is two independent runs"),
    (["--dpig_stage", "1"], "market", "stage I is two independent runs"),
    (["--dpig_stage", "3"], "market", "choose one of 1a, 1b, 2a, 2b"),
    (["--dpig_stage", "2a"], "market", "pass --stage1a_name RUN"),
    (["--dpig_stage", "2b", "--stage1b_name", "dpig_run"], "market", "this run's own --name"),
    (["--dpig_stage", "2a", "--stage1a_name", "x", "--stage1b_name", "y"], "market", "--stage1b_name does not apply"),
    (["--stage1a_epoch", "5"], "market", "--stage1a_epoch does not apply to --dpig_stage 1a"),
    (["--rmsprop", "tf"], "market", "--rmsprop does not apply to --dpig_stage 1a"),
    (["--critic_iters", "5"], "market", "--critic_iters does not apply"),
    (["--dpig_stage", "1b", "--lambda_l1", "20"], "market", "--lambda_l1 does not apply to --dpig_stage 1b"),
    (["--dpig_stage", "2a", "--stage1a_name", "x", "--beta1", "0.5"], "market", "--beta1 does not apply"),
    (["--dpig_stage", "2a", "--stage1a_name", "x", "--d_batching", "concat"], "market", "--d_batching does not"),
    (["--critic_reals", "cache"], "market", "--critic_reals does not apply to --dpig_stage 1a"),
    (["--tf_df_stage2_roi48", "--dpig_stage", "2a", "--stage1a_name", "x"], "market", "DeepFashion stage 2a only"),
    (["--fg_mask_radius", "7"], "fashion", "applies to Market only"),
    (["--part_margin", "6"], "fashion", "applies to Market only"),
    (["--dpig_stage", "1b", "--fg_mask_radius", "7"], "market", "reads no images"),
    (["--fashion_frame", "stretch256"], "fashion", "DPIG runs DeepFashion at pad256"),
    (["--mask_recipe", "pg2"], "market", "--mask_recipe pg2: DPIG's Market encoder"),
    (["--mask_recipe", "dpig"], "fashion", "DeepFashion has no foreground mask"),
    (["--dpig_stage", "1b", "--mask_recipe", "dpig"], "market", "--dpig_stage 1b reads no images"),
    (["--pose_encoding", "gaussian"], "market", "radius-4 disc maps"),
    (["--lr_policy", "linear"], "market", "--lr_policy does not apply to --model DPIG"),
    (["--init_type", "xavier"], "market", "--init_type does not apply"),
    (["--niter_decay", "10"], "market", "--niter_decay does not apply"),
    (["--max_steps", "0"], "market", "give --niter too"),
    (["--lr_update_step", "0"], "market", "--lr_update_step must be >= 1"),
    (["--dpig_stage", "2b", "--stage1b_name", "x", "--amp", "fp16"], "market", "--amp fp16 is not supported"),
    (["--dpig_stage", "2b", "--stage1b_name", "x", "--clip_value", "0"], "market", "--clip_value must be > 0"),
]


@pytest.mark.parametrize("argv, fmt, message", REFUSED_TRAIN)
def test_train_refusals(dpig_registered, tmp_path, argv, fmt, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        train(tmp_path, *argv, dataset=fmt)
    assert not (tmp_path / "dpig_run").exists()  # nothing written


def test_test_defaults_and_needed_runs(dpig_registered, tmp_path):
    opt = parse_test(tmp_path)
    assert opt.dpig_task == "transfer" and opt.flip_prob == 0.0 and opt.fg_mask_radius == 7
    assert opt.mask_recipe == "dpig" and opt.part_margin == 6
    assert dpig_options.needed_stages(opt) == ("1a",) and dpig_options.stage_run(opt, "1a") == ("dpig_1a", "latest")
    assert opt.stage2a_name is None and opt.num_samples is None and opt.num_inner is None
    with pytest.raises(InputError, match="does not read stage 2b"):
        dpig_options.stage_run(opt, "2b")
    opt = parse_test(tmp_path, "--dpig_task", "sample", "--sample_fg", "--sample_pose", "--stage1b_name", "pae",
               "--stage2a_name", "maps", "--stage2b_name", "posemap", "--stage2b_epoch", "6000", "--which_epoch", "9")
    assert opt.num_samples == 1 and dpig_options.needed_stages(opt) == ("1a", "1b", "2a", "2b")
    assert [dpig_options.stage_run(opt, s) for s in ("1a", "1b", "2a", "2b")] == [
        ("dpig_1a", "9"), ("pae", "9"), ("maps", "9"), ("posemap", "6000")]
    opt = parse_test(tmp_path, "--dpig_task", "sample", "--sample_pose", "--tf_pose_sample_bug", "--num_samples", "4")
    assert dpig_options.needed_stages(opt) == ("1a", "1b") and opt.num_samples == 4  # TF decodes the real pose
    opt = parse_test(tmp_path, "--dpig_task", "sample", "--sample_app", dataset="fashion")
    assert dpig_options.needed_stages(opt) == ("1a", "2a") and opt.fg_mask_radius is None
    assert opt.mask_recipe == "none"
    opt = parse_test(tmp_path, "--dpig_task", "interpolate")
    assert (opt.interp_factor, opt.num_inner) == ("pose", 6) and dpig_options.needed_stages(opt) == ("1a", "1b")
    opt = parse_test(tmp_path, "--dpig_task", "interpolate", "--interp_factor", "app", "--num_inner", "2",
                     dataset="fashion")
    assert (opt.interp_factor, opt.num_inner) == ("app", 2) and dpig_options.needed_stages(opt) == ("1a",)


REFUSED_TEST = [
    (["--sample_fg"], "market", "--sample_fg belongs to --dpig_task sample"),
    (["--dpig_task", "sample", "--sample_bg"], "fashion", "--sample_bg does not apply to fashion"),
    (["--dpig_task", "sample", "--sample_fg"], "fashion", "--sample_fg does not apply to fashion"),
    (["--dpig_task", "sample", "--sample_app"], "market", "--sample_app does not apply to market"),
    (["--dpig_task", "sample"], "market", "needs at least one of --sample_fg, --sample_bg, --sample_pose"),
    (["--num_samples", "3"], "market", "--num_samples belongs to --dpig_task sample"),
    (["--dpig_task", "sample", "--sample_fg", "--tf_pose_sample_bug"], "market", "--tf_pose_sample_bug"),
    (["--num_inner", "3"], "market", "--num_inner belongs to --dpig_task interpolate"),
    (["--interp_factor", "fg"], "market", "--interp_factor belongs to --dpig_task interpolate"),
    (["--dpig_task", "interpolate", "--interp_factor", "app"], "market", "--interp_factor app does not apply"),
    (["--dpig_task", "interpolate", "--interp_factor", "bg"], "fashion", "--interp_factor bg does not apply"),
    (["--dpig_task", "sample", "--sample_fg", "--num_samples", "0"], "market", "--num_samples must be >= 1"),
    (["--stage2a_name", "maps"], "market", "reads stages 1a only, not 2a"),
    (["--dpig_task", "sample", "--sample_bg", "--stage1b_epoch", "3"], "market", "not 1b"),
    (["--dpig_task", "sample", "--sample_pose", "--result_layout", "patn5"], "market", "writes single images"),
    (["--part_margin", "6"], "fashion", "applies to Market only"),
    (["--init_gain", "0.02"], "market", "--init_gain is a training option"),
]


@pytest.mark.parametrize("argv, fmt, message", REFUSED_TEST)
def test_test_refusals(dpig_registered, tmp_path, argv, fmt, message):
    with pytest.raises(InputError, match=message):
        parse_test(tmp_path, *argv, dataset=fmt)


def test_hook_help_lists_the_stages(dpig_registered, tmp_path, capsys):
    with pytest.raises(SystemExit):
        TrainOptions().parse(["--model", "DPIG", "--help"], echo=False)
    out = capsys.readouterr().out
    assert "--dpig_stage" in out and "--lr_update_step" in out and "--stage1a_name" in out
