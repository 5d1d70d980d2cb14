"""PN-GAN's networks, losses, step order and schedule (docs/models/pngan.md; spec figures computed from the
official naiq/PN_GAN `script/GAN/network.py` layout): parameter counts, shapes, the 70x70 receptive field,
state-dict keys, train == eval, loss formulas against constant discriminators, D's gradient equal to that of
L_D alone, and the official learning-rate table."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from models import create_model
from models.networks.pngan_discriminator import PNGANDiscriminator
from models.networks.pngan_generator import PNGANGenerator
from models.networks.pngan_losses import PNGANLosses
from models.pngan_model import official_lr_factor
from options.train_options import TrainOptions
from util.distributed import RunContext
from util.io import InputError


def count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def train_opt(root, *flags: str):
    argv = ["--model", "PNGAN", "--dataset_mode", "market", "--dataroot", str(root), "--gpu_ids", "-1",
            "--checkpoints_dir", str(root / "ck"), *flags]
    return TrainOptions().parse(argv, echo=False, check_folder=False)


def small_model(root, *flags: str):
    model = create_model(train_opt(root, "--ngf", "8", "--ndf", "8", "--pngan_blocks", "2", *flags),
                         RunContext(device=torch.device("cpu")))
    model.setup()
    return model


def random_batch(batch: int = 2, height: int = 128, width: int = 64, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"source_image": torch.rand(batch, 3, height, width, generator=g) * 2 - 1,
            "target_image": torch.rand(batch, 3, height, width, generator=g) * 2 - 1,
            "target_pose": torch.rand(batch, 18, height, width, generator=g),
            "source_name": [f"a{i}.jpg" for i in range(batch)], "target_name": [f"b{i}.jpg" for i in range(batch)]}


# --- 1, 2: sizes and shapes -----------------------------------------------------------------------------------

def test_parameter_counts():
    assert count(PNGANGenerator(pose_nc=18)) == 11_434_624  # 21 input channels (default heatmaps)
    assert count(PNGANGenerator(pose_nc=3)) == 11_387_584  # 6 input channels (official skeleton image)
    assert count(PNGANDiscriminator(3)) == 2_764_672
    assert count(PNGANDiscriminator(6)) == 2_767_744  # --pngan_d_cond source
    g = PNGANGenerator(pose_nc=18)
    parts = {name: count(m) for name, m in g.named_children()}
    assert (parts["conv1"], parts["conv2"], parts["conv3"], parts["res1"], parts["deconv3"], parts["deconv2"],
            parts["deconv1"]) == (65_920, 73_856, 295_168, 1_180_160, 295_040, 73_792, 9_408)


def test_shapes_and_bottleneck():
    torch.manual_seed(0)
    g = PNGANGenerator(pose_nc=18)
    seen = {}
    g.res9.register_forward_hook(lambda m, i, o: seen.update(res9=o.shape))  # returns None: output unchanged
    out = g(torch.rand(2, 3, 128, 64) * 2 - 1, torch.rand(2, 18, 128, 64))
    assert out.shape == (2, 3, 128, 64) and seen["res9"] == (2, 256, 32, 16)
    assert out.abs().max() < 1  # tanh
    d = PNGANDiscriminator(3)
    assert d(torch.randn(2, 3, 128, 64)).shape == (2, 1, 10, 2)
    assert d(torch.randn(1, 3, 256, 128)).shape == (1, 1, 26, 10)  # batch 1 keeps its dimension (no squeeze)
    small = PNGANGenerator(pose_nc=18, ngf=4, blocks=1)
    assert small(torch.zeros(1, 3, 256, 176), torch.zeros(1, 18, 256, 176)).shape == (1, 3, 256, 176)  # DeepFashion
    with pytest.raises(ValueError, match="divisible by 4"):
        small(torch.zeros(1, 3, 130, 64), torch.zeros(1, 18, 130, 64))
    with pytest.raises(ValueError, match="21 input channels"):
        small(torch.zeros(1, 3, 128, 64), torch.zeros(1, 3, 128, 64))


def test_receptive_field_is_70x70():
    torch.manual_seed(0)
    d = PNGANDiscriminator(3).double()
    plain = copy.deepcopy(d)
    for net in (plain,):
        for name, child in list(net.named_modules()):
            if isinstance(child, nn.InstanceNorm2d):
                parent = net.get_submodule(name.rsplit(".", 1)[0])
                setattr(parent, name.rsplit(".", 1)[1], nn.Identity())
    x = torch.randn(1, 3, 256, 128, dtype=torch.float64, requires_grad=True)
    plain(x)[0, 0, 13, 5].backward()
    rows, cols = (x.grad[0].abs().sum(0) != 0).nonzero(as_tuple=True)
    assert (int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())) == (97, 166, 33, 102)
    assert (x.grad[0].abs().sum(0) != 0).sum() == 70 * 70
    x.grad = None
    d(x)[0, 0, 13, 5].backward()  # through the InstanceNorm statistics every pixel counts
    assert (x.grad[0].abs().sum(0) != 0).all()


# --- 4, 5: state dict, train == eval --------------------------------------------------------------------------

def expected_g_keys() -> list[str]:
    keys = [f"conv{i}.conv.{p}" for i in (1, 2, 3) for p in ("weight", "bias")]
    keys += [f"res{i}.conv{j}.conv.{p}" for i in range(1, 10) for j in (1, 2) for p in ("weight", "bias")]
    keys += [f"deconv{i}.deconv.{p}" for i in (3, 2) for p in ("weight", "bias")]
    return keys + ["deconv1.conv.weight"]


def test_state_dict_keys_shapes_and_strict_reload(tmp_path):
    g = PNGANGenerator(pose_nc=18)
    state = g.state_dict()
    assert list(state) == expected_g_keys() and len(state) == 47  # no InstanceNorm buffers
    assert state["conv1.conv.weight"].shape == (64, 21, 7, 7)
    assert PNGANGenerator(pose_nc=3).state_dict()["conv1.conv.weight"].shape == (64, 6, 7, 7)
    assert state["deconv3.deconv.weight"].shape == (256, 128, 3, 3)
    assert state["deconv1.conv.weight"].shape == (3, 64, 7, 7)
    d_state = PNGANDiscriminator(3).state_dict()
    assert list(d_state) == ["conv1.conv.weight", "conv2.conv.weight", "conv2.conv.bias", "conv3.conv.weight",
                             "conv3.conv.bias", "conv4.conv.weight", "conv4.conv.bias", "dis.conv.weight"]
    assert d_state["dis.conv.weight"].shape == (1, 512, 4, 4)
    torch.save(state, tmp_path / "g.pth")
    fresh = PNGANGenerator(pose_nc=18)
    fresh.load_state_dict(torch.load(tmp_path / "g.pth", weights_only=True), strict=True)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), state.values()))


def test_train_and_eval_outputs_are_bit_identical():
    torch.manual_seed(1)
    g = PNGANGenerator(pose_nc=18, ngf=16, blocks=3)
    image, pose = torch.rand(2, 3, 128, 64) * 2 - 1, torch.rand(2, 18, 128, 64)
    with torch.no_grad():
        a = g.train()(image, pose)
        b = g.eval()(image, pose)
    assert torch.equal(a, b)


# --- 6: losses ---------------------------------------------------------------------------------------------

class Constant(nn.Module):
    """A discriminator that answers c for every patch, whatever it sees."""

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = c

    def forward(self, x):
        return torch.full((x.shape[0], 1, 10, 2), self.c, dtype=x.dtype) + 0 * x.sum()


def loss_opt(**kw):
    base = dict(gan_mode="lsgan", lambda_L1=10.0, d_loss_scale=1.0, pngan_d_cond="none")
    return type("Opt", (), {**base, **kw})()


@pytest.mark.parametrize("c", [0.3, -1.7, 2.0])
def test_losses_against_a_constant_discriminator(c):
    batch = random_batch()
    fake, target, source = batch["source_image"] * 0.5, batch["target_image"], batch["source_image"]
    l1 = (fake - target).abs().mean().item()
    losses = PNGANLosses(loss_opt())
    loss_g, terms = losses.generator(Constant(c), fake, target, source)
    assert loss_g.item() == pytest.approx((c - 1) ** 2 + 10 * l1, abs=1e-6)
    assert terms["G_GAN"].item() == pytest.approx((c - 1) ** 2, abs=1e-6)
    loss_d, terms = losses.discriminator(Constant(c), fake, source, source)
    assert loss_d.item() == pytest.approx((c - 1) ** 2 + c ** 2, abs=1e-6)  # a sum, no 0.5
    half, _ = PNGANLosses(loss_opt(d_loss_scale=0.5)).discriminator(Constant(c), fake, source, source)
    assert half.item() == pytest.approx(0.5 * ((c - 1) ** 2 + c ** 2), abs=1e-6)
    vanilla = PNGANLosses(loss_opt(gan_mode="vanilla"))
    loss_d, _ = vanilla.discriminator(Constant(c), fake, source, source)
    softplus = lambda v: math.log1p(math.exp(v))  # noqa: E731
    assert loss_d.item() == pytest.approx(softplus(-c) + softplus(c), abs=1e-6)
    loss_g, _ = vanilla.generator(Constant(c), fake, target, source)
    assert loss_g.item() == pytest.approx(softplus(-c) + 10 * l1, abs=1e-6)


def test_conditioned_discriminator_sees_the_source_image():
    seen = []

    class Probe(Constant):
        def forward(self, x):
            seen.append(x)
            return super().forward(x)

    batch = random_batch()
    losses = PNGANLosses(loss_opt(pngan_d_cond="source"))
    losses.discriminator(Probe(0.0), batch["target_image"], batch["target_image"], batch["source_image"])
    assert [s.shape[1] for s in seen] == [6, 6]
    assert torch.equal(seen[0][:, 3:], batch["source_image"])


# --- 7: step order ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("d_real", ["source", "target"])
def test_d_gradient_is_that_of_l_d_alone(tiny_market_root, d_real):
    torch.manual_seed(0)
    model = small_model(tiny_market_root, "--pngan_d_real", d_real)
    g0, d0 = copy.deepcopy(model.netG), copy.deepcopy(model.netD)
    captured = {}
    g_step, d_step = model.optimizer_G.step, model.optimizer_D.step

    def record_g(*a, **k):
        captured["D_during_G"] = [p.grad for p in model.netD.parameters()]
        return g_step(*a, **k)

    def record_d(*a, **k):
        captured["D"] = [p.grad.clone() for p in model.netD.parameters()]
        return d_step(*a, **k)

    model.optimizer_G.step, model.optimizer_D.step = record_g, record_d
    batch = random_batch()
    model.set_input(batch)
    model.optimize_parameters()
    losses = model.get_current_losses()
    assert set(losses) == {"G_GAN", "G_L1", "D_real", "D_fake"} and all(math.isfinite(v) for v in losses.values())
    assert all(g is None for g in captured["D_during_G"])  # D frozen in the G step: nothing leaks
    assert all(p.requires_grad for p in model.netD.parameters())  # and unfrozen again
    # the reference: L_D alone, with the pre-step G's fake and the pre-step D
    with torch.no_grad():
        fake = g0(batch["source_image"], batch["target_pose"])
    real = batch["source_image"] if d_real == "source" else batch["target_image"]
    d_fake, d_real_scores = d0(fake), d0(real)
    loss_d = F.mse_loss(d_fake, torch.zeros_like(d_fake)) + F.mse_loss(d_real_scores, torch.ones_like(d_real_scores))
    reference = torch.autograd.grad(loss_d, list(d0.parameters()))
    for ours, ref in zip(captured["D"], reference, strict=True):
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-7)
    assert losses["D_real"] + losses["D_fake"] == pytest.approx(loss_d.item(), rel=1e-6)


# --- 8: schedule --------------------------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")
def test_official_learning_rate_table(tiny_market_root):
    model = small_model(tiny_market_root)
    opt = model.opt
    assert (opt.niter, opt.niter_decay, opt.lr, opt.beta1, opt.batch_size) == (10, 10, 2e-4, 0.5, 32)
    rates = []
    for epoch in range(1, 21):
        rates.append([o.param_groups[0]["lr"] for o in model.optimizers])
        model.update_learning_rate()
    expected = [2e-4] * 10 + [2e-4 * f for f in (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0)]
    assert [r[0] for r in rates] == pytest.approx(expected, abs=1e-15)
    assert [r[1] for r in rates] == pytest.approx(expected, abs=1e-15)  # D follows the same table
    assert [o.defaults["betas"] for o in model.optimizers] == [(0.5, 0.999), (0.5, 0.999)]
    assert official_lr_factor(30, 1, 10, 10) == 0.0  # clamped: never a negative rate
    assert official_lr_factor(3, 1, 10, 0) == 1.0


# --- initialisation and options -----------------------------------------------------------------------------

def test_default_initialisation_is_pytorchs_and_normal_is_offered(tiny_market_root):
    torch.manual_seed(3)
    model = small_model(tiny_market_root)
    torch.manual_seed(3)
    reference = PNGANGenerator(pose_nc=18, ngf=8, blocks=2)
    assert all(torch.equal(a, b) for a, b in zip(model.netG.state_dict().values(), reference.state_dict().values()))
    normal = small_model(tiny_market_root, "--init_type", "normal")
    weight = normal.netG.state_dict()["res1.conv1.conv.weight"]
    assert abs(weight.std().item() - 0.02) < 0.002 and not normal.netG.state_dict()["res1.conv1.conv.bias"].any()
    assert model.opt.init_type is None


@pytest.mark.parametrize("flags,words", [
    (["--init_type", "xavier"], "PyTorch's default initialisation"),
    (["--init_gain", "0.1"], "needs --init_type normal"),
    (["--load_size", "256", "176"], "not supported on market data"),
    (["--pose_encoding", "pixel"], "Gaussian maps"),
    (["--d_loss_scale", "0"], "must be > 0"),
])
def test_refused_values(tiny_market_root, flags, words):
    with pytest.raises(InputError, match=words):
        train_opt(tiny_market_root, *flags)


def test_restating_load_size_and_skeleton_input(tiny_market_root):
    model = small_model(tiny_market_root, "--load_size", "128", "64", "--pose_input", "skeleton_rgb",
                        "--pngan_d_cond", "source")
    assert model.netG.conv1.conv.weight.shape[1] == 6 and model.netD.conv1.conv.weight.shape[1] == 6
    batch = random_batch()
    batch["target_keypoints"] = torch.tensor([[[20 + 5 * k, 32] for k in range(18)]] * 2)
    model.set_input(batch)
    pose = model.target_pose
    assert pose.shape == (2, 3, 128, 64) and pose.min() == -1 and pose.max() == 1  # colour on black, [-1, 1]
    model.optimize_parameters()
    assert all(math.isfinite(v) for v in model.get_current_losses().values())
