"""PG2 (Ma et al., "Pose Guided Person Image Generation", NeurIPS 2017): network sizes and names, losses, the
two training stages, weights on disk, options.

The full-width networks are built only to count parameters and read state-dict names; forward and backward
passes run at a reduced width (--ngf 8 or less), which is not the paper's network.
"""
from __future__ import annotations

import argparse
import importlib.util
import math

import pytest
import torch
import torch.nn.functional as F

import data
from data.base_dataset import BaseDataset
from models.networks.blocks import Down, ResBlock, Up
from models.networks.losses import bce_gan_loss
from models.networks.pg2_losses import PG2_D_WEIGHTS, pg2_discriminator_loss, pose_mask_l1
from models.networks.pg2_discriminator import PG2Discriminator
from models.networks.pg2_generator_stage1 import PG2GeneratorStage1
from models.networks.pg2_generator_stage2 import PG2GeneratorStage2
from models.pg2_model import PG2Model
from models.pg2_options import GEOMETRIES, pg2_geometry
from options.test_options import TestOptions
from options.train_options import TrainOptions
from scripts.bench_train import random_batch
from util.distributed import RunContext
from util.io import InputError

CPU = RunContext(device=torch.device("cpu"))


def count(net: torch.nn.Module, prefix: str = "") -> int:
    return sum(p.numel() for name, p in net.named_parameters() if name.startswith(prefix))


# --- parameter counts and state-dict layout (docs/models/pg2.md; names as budui/Human-Pose-Transfer has them) --

# (geometry key, G1 / G2 / D counts computed by building the networks, D with TF's conv biases)
COUNTS = [
    (("market", None), 70_795_075, 6_058_883, 4_323_777, 4_324_737),
    (("fashion", "pad256"), 122_103_235, 12_696_067, 10_894_785, 10_896_257),
    (("fashion", "native"), 77_891_395, 12_696_067, 10_886_593, 10_888_065),
]


def build_nets(geo, ngf: int = 128, d_conv_bias: bool = False):
    return (PG2GeneratorStage1(geo.height, geo.width, geo.g1_depth, ngf),
            PG2GeneratorStage2(geo.height, geo.width, geo.g2_depth, ngf, geo.g2_skips),
            PG2Discriminator(geo.height, geo.width, geo.d_convs, conv_bias=d_conv_bias))


@pytest.fixture(scope="module")
def market_nets():
    torch.manual_seed(0)
    return build_nets(GEOMETRIES[("market", None)])


@pytest.mark.parametrize("key,g1,g2,d,d_biased", COUNTS, ids=["market", "fashion-pad256", "fashion-native"])
def test_parameter_counts(key, g1, g2, d, d_biased):
    geo = pg2_geometry(*key)
    with torch.device("meta"):  # the same constructors without memory or init cost (market_nets is real)
        nets = build_nets(geo)
        biased = PG2Discriminator(geo.height, geo.width, geo.d_convs, conv_bias=True)
    assert [count(n) for n in nets] == [g1, g2, d]
    assert count(biased) == d_biased
    total = {("market", None): 81_177_735, ("fashion", "pad256"): 145_694_087,
             ("fashion", "native"): 101_474_055}[key]
    assert sum(count(n) for n in nets) == total


def test_market_per_stage_counts(market_nets):
    g1, g2, d = market_nets
    assert [count(n) for n in market_nets] == [70_795_075, 6_058_883, 4_323_777]
    g1_table = {"start_conv": 24_320, "encoder.0.": 590_336, "encoder.1.": 2_065_280, "encoder.2.": 4_424_960,
                "encoder.3.": 7_669_376, "encoder.4.": 7_374_080, "down_fc": 1_310_784, "up_fc": 266_240,
                "decoder.0.": 11_012_096, "decoder.1.": 19_270_016, "decoder.2.": 10_815_232,
                "decoder.3.": 4_785_280, "decoder.4.": 1_180_160, "end_conv": 6_915}
    assert {k: count(g1, k) for k in g1_table} == g1_table
    g2_table = {"start_conv": 7_040, "encoder.0.": 442_752, "encoder.1.": 1_475_328, "encoder.2.": 2_212_608,
                "decoder.0.": 1_032_448, "decoder.1.": 590_080, "decoder.2.": 295_168, "end_conv": 3_459}
    assert {k: count(g2, k) for k in g2_table} == g2_table


def test_fashion_g2_per_stage_counts():
    g2 = PG2GeneratorStage2(256, 256, depth=4)
    table = {"start_conv": 7_040, "encoder.0.": 442_752, "encoder.1.": 1_475_328, "encoder.2.": 3_540_096,
             "encoder.3.": 4_129_792, "decoder.0.": 1_327_360, "decoder.1.": 737_536, "decoder.2.": 590_080,
             "decoder.3.": 442_624, "end_conv": 3_459}
    assert {k: count(g2, k) for k in table} == table


def expected_g1_keys(depth: int) -> set[str]:
    """G1's state-dict names in HPT's naming (docs/models/pg2.md)."""
    keys = {"start_conv.0.weight", "start_conv.0.bias", "down_fc.weight", "down_fc.bias", "up_fc.weight",
            "up_fc.bias", "end_conv.weight", "end_conv.bias"}
    for part in ("encoder", "decoder"):
        for i in range(depth):
            keys |= {f"{part}.{i}.res.main.{k}.{p}" for k in (0, 2) for p in ("weight", "bias")}
            if i < depth - 1:
                keys |= {f"{part}.{i}.conv.0.weight", f"{part}.{i}.conv.0.bias"}
    return keys


def test_state_dict_names_and_shapes_market(market_nets):
    g1, g2, d = market_nets
    s1, s2, sd = g1.state_dict(), g2.state_dict(), d.state_dict()
    assert set(s1) == expected_g1_keys(5)
    # example shapes in HPT's naming
    assert s1["down_fc.weight"].shape == (64, 20480)
    assert s1["up_fc.weight"].shape == (4096, 64)
    assert s1["decoder.0.conv.0.weight"].shape == (512, 768, 1, 1)
    assert s2["decoder.0.main.0.weight"].shape == (128, 768, 3, 3)
    assert sd["fc.weight"].shape == (1, 16384)
    assert s1["start_conv.0.weight"].shape == (128, 21, 3, 3) and s1["end_conv.weight"].shape == (3, 256, 3, 3)
    assert s1["encoder.3.conv.0.weight"].shape == (640, 512, 3, 3)
    # G2: encoder.{i}.main, encoder.{i}.conv for i < R-1, decoder.{j}.main, no skip at full resolution
    g2_keys = {"start_conv.0", "end_conv"} | {f"encoder.{i}.main.{k}" for i in range(3) for k in (0, 2)} \
        | {f"encoder.{i}.conv.0" for i in range(2)} | {f"decoder.{j}.main.{k}" for j in range(3) for k in (0, 2)}
    assert set(s2) == {f"{k}.{p}" for k in g2_keys for p in ("weight", "bias")}
    assert s2["start_conv.0.weight"].shape == (128, 6, 3, 3)
    assert s2["decoder.2.main.0.weight"].shape == (128, 128, 3, 3)  # Dec3 has no skip
    assert s2["encoder.1.conv.0.weight"].shape == (256, 256, 3, 3)  # the stride-2 conv keeps the width
    # D: no conv biases, BN at 3, 6, 9
    bn = {f"main.{i}.{p}" for i in (3, 6, 9)
          for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    assert set(sd) == {"main.0.weight", "main.2.weight", "main.5.weight", "main.8.weight", "fc.weight",
                       "fc.bias"} | bn
    assert sd["main.8.weight"].shape == (512, 256, 5, 5)


def test_state_dict_names_fashion():
    with torch.device("meta"):  # names and shapes only: no memory, no compute
        g1 = PG2GeneratorStage1(256, 256, depth=6)
        d = PG2Discriminator(256, 256, num_convs=5)
        d_native = PG2Discriminator(256, 176, num_convs=5)
        g2 = PG2GeneratorStage2(256, 256, depth=4)
    s1 = g1.state_dict()
    assert set(s1) == expected_g1_keys(6)
    assert s1["down_fc.weight"].shape == (64, 49152) and s1["up_fc.weight"].shape == (8192, 64)
    assert s1["decoder.0.conv.0.weight"].shape == (640, 896, 1, 1)
    assert g2.state_dict()["decoder.0.main.0.weight"].shape == (128, 1024, 3, 3)
    sd = d.state_dict()
    assert sd["main.11.weight"].shape == (512, 512, 5, 5) and "main.12.running_var" in sd
    assert sd["fc.weight"].shape == (1, 32768) and d_native.state_dict()["fc.weight"].shape == (1, 24576)


def test_initialisation(market_nets):
    g1, g2, d = market_nets
    for net in (g1, g2):
        for name, p in net.named_parameters():
            if name.endswith("bias"):
                assert torch.count_nonzero(p) == 0, name
    w = g1.state_dict()["encoder.1.res.main.0.weight"]  # xavier-uniform bound sqrt(6 / (fan_in + fan_out))
    bound = math.sqrt(6.0 / (2 * 256 * 9))
    assert w.abs().max() <= bound and w.abs().max() > 0.95 * bound
    fc = g1.state_dict()["down_fc.weight"]
    assert fc.abs().max() <= math.sqrt(6.0 / (20480 + 64))
    bound = 0.02 * math.sqrt(3.0)
    for name in ("main.0.weight", "main.5.weight", "fc.weight"):
        w = d.state_dict()[name]
        assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound, name
    assert d.fc.bias.item() == 0.0
    bn = d.main[6]
    assert abs(bn.weight.mean().item() - 1.0) < 0.01 and 0.01 < bn.weight.std().item() < 0.03
    assert torch.count_nonzero(bn.bias) == 0 and (bn.eps, bn.momentum) == (1e-5, 0.1)


# --- shapes and geometry ---------------------------------------------------------------------------------

@pytest.mark.parametrize("key", list(GEOMETRIES), ids=["market", "fashion-pad256", "fashion-native"])
def test_output_shapes(key):
    torch.manual_seed(0)
    geo = GEOMETRIES[key]
    g1, g2, d = build_nets(geo, ngf=4)
    image = torch.rand(2, 3, geo.height, geo.width) * 2 - 1
    pose = torch.rand(2, 18, geo.height, geo.width)
    coarse = g1(image, pose)
    assert coarse.shape == (2, 3, geo.height, geo.width)
    assert g2(image, coarse).shape == (2, 3, geo.height, geo.width)
    assert d(image).shape == (2, 1)
    separate = d(image, coarse, image[:1])
    assert isinstance(separate, tuple) and [t.shape for t in separate] == [(2, 1), (2, 1), (1, 1)]


def test_blocks():
    x = torch.randn(2, 4, 8, 6)
    res = ResBlock(4)
    assert torch.equal(res(x), x + F.relu(res.main[2](F.relu(res.main[0](x)))))
    assert Down(4, 7)(x).shape == (2, 7, 4, 3)
    up = Up(4, 5)  # conv1x1 + ReLU before nearest x2 equals TF PG2's order (x2 first) exactly
    spec_order = F.relu(up[0](F.interpolate(x, scale_factor=2, mode="nearest")))
    assert torch.allclose(up(x), spec_order, atol=1e-6) and Up()(x).shape == (2, 4, 16, 12)


def test_frame_that_does_not_fit_is_a_clear_error():
    with pytest.raises(InputError, match=r"divisible by 2\^\(N-1\)=32, got 256x176"):
        PG2GeneratorStage1(256, 176, depth=6, ngf=4)  # N = 6 does not fit 176 columns (docs/models/pg2.md)
    with pytest.raises(InputError, match="divisible"):
        PG2GeneratorStage1(100, 64, depth=5, ngf=4)
    with pytest.raises(InputError, match=r"2\^\(R-1\)=8"):
        PG2GeneratorStage2(128, 60, depth=4, ngf=4)
    with pytest.raises(InputError, match="no geometry"):
        pg2_geometry("fashion", "stretch256")


# --- losses (Ma et al. 2017; weights of TF PG2 `trainer.py` / `trainer256.py`) ------------------------------

def test_pose_mask_l1_matches_direct_computation():
    g = torch.Generator().manual_seed(3)
    output = torch.rand(2, 3, 4, 5, generator=g) * 2 - 1
    target = torch.rand(2, 3, 4, 5, generator=g) * 2 - 1
    mask = (torch.rand(2, 1, 4, 5, generator=g) > 0.5).float()
    total = 0.0
    for b in range(2):
        for c in range(3):
            for y in range(4):
                for x in range(5):
                    total += abs(float(output[b, c, y, x]) - float(target[b, c, y, x])) * (1 + float(mask[b, 0, y, x]))
    expected = total / (2 * 3 * 4 * 5)  # ||(G - I_B) * (1 + M_B)||_1 over B*3*H*W
    assert pose_mask_l1(output, target, mask).item() == pytest.approx(expected, rel=1e-6)
    plain = (output - target).abs().mean().item()
    assert pose_mask_l1(output, target, torch.zeros_like(mask)).item() == pytest.approx(plain, rel=1e-6)
    r2 = pose_mask_l1(output, target, mask, mask_ratio=2.0).item()
    assert r2 == pytest.approx(plain + 2 * (expected - plain), rel=1e-6)
    # by hand: |0 - 1| everywhere, mask over half the pixels -> 1 + 0.5
    assert pose_mask_l1(torch.zeros(1, 3, 2, 2), torch.ones(1, 3, 2, 2),
                        torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])).item() == pytest.approx(1.5)


def independent_bce(logits: torch.Tensor, label: float) -> float:
    p = [1 / (1 + math.exp(-float(v))) for v in logits.flatten()]
    return sum(-(label * math.log(q) + (1 - label) * math.log(1 - q)) for q in p) / len(p)


def test_discriminator_loss_weighting():
    g = torch.Generator().manual_seed(5)
    real, fake, cond = (torch.randn(4, 1, generator=g) * 2 for _ in range(3))
    total, terms = pg2_discriminator_loss(real, fake, cond)
    expected_terms = [independent_bce(real, 1.0), independent_bce(fake, 0.0), independent_bce(cond, 0.0)]
    assert [t.item() for t in terms] == pytest.approx(expected_terms, rel=1e-5)
    assert PG2_D_WEIGHTS == (0.5, 0.25, 0.25)
    expected = 0.5 * expected_terms[0] + 0.25 * expected_terms[1] + 0.25 * expected_terms[2]
    assert total.item() == pytest.approx(expected, rel=1e-5)
    # HPT's form: the mean of two halves
    hpt = ((expected_terms[0] + expected_terms[1]) / 2 + (expected_terms[0] + expected_terms[2]) / 2) / 2
    assert total.item() == pytest.approx(hpt, rel=1e-5)
    assert bce_gan_loss(fake, True).item() == pytest.approx(independent_bce(fake, 1.0), rel=1e-5)


# --- options ---------------------------------------------------------------------------------------------

class StubDataset(BaseDataset):
    """Stands in for the data plug-ins: the pose flags with the data layer's defaults, and data_format."""

    @staticmethod
    def modify_commandline_options(parser: argparse.ArgumentParser, is_train: bool) -> argparse.ArgumentParser:
        parser.add_argument("--mask_recipe", default="none", help="stub")
        parser.add_argument("--flip_prob", type=float, default=0.0, help="stub")
        parser.add_argument("--fashion_frame", default="native", help="stub")
        return parser

    @staticmethod
    def derive_options(opt) -> None:
        opt.data_format = "fashion" if opt.dataset_mode == "fashion" else "market"


@pytest.fixture
def parse(monkeypatch, tmp_path):
    """parse(*argv, train=True) -> options of --model PG2 over a stub dataset plug-in, checkpoints in tmp."""
    monkeypatch.setattr(data, "get_option_setter", lambda name: StubDataset.modify_commandline_options)
    monkeypatch.setattr(data, "find_dataset_class", lambda name: StubDataset)

    def run(*argv: str, train: bool = True):
        options = TrainOptions() if train else TestOptions()
        argv = ["--model", "PG2", "--dataset_mode", "market", "--gpu_ids", "-1",
                f"--checkpoints_dir={tmp_path}", *argv]
        return options.parse(argv, echo=False)
    return run


def test_options_paper_defaults(parse):
    opt = parse()
    assert (opt.stage, opt.ngf, opt.lambda_mask_l1, opt.lambda_gan, opt.mask_ratio) == (1, 128, 10.0, 1.0, 1.0)
    assert (opt.lr, opt.beta1, opt.lr_policy, opt.batch_size) == (2e-5, 0.5, "constant", 16)
    assert (opt.mask_recipe, opt.flip_prob, opt.d_batching, opt.d_conv_bias) == ("pg2", 0.5, "concat", False)
    assert (opt.max_steps, opt.stage1_name, opt.stage1_epoch) == (22000, "experiment", "latest")
    assert parse("--stage", "2").max_steps == 14000
    assert parse("--stage", "2", "--max_steps", "7").max_steps == 7
    assert parse("--niter_stage1", "33").max_steps == 33
    fashion = parse("--dataset_mode", "fashion", "--stage", "2")
    assert (fashion.lambda_mask_l1, fashion.lambda_gan, fashion.batch_size) == (50.0, 0.5, 8)
    assert (fashion.fashion_frame, fashion.max_steps) == ("pad256", 20000)
    assert parse("--dataset_mode", "fashion", "--fashion_frame", "native").fashion_frame == "native"
    assert parse("--lambda_mask_l1", "3", "--batch_size", "2").lambda_mask_l1 == 3.0
    test = parse(train=False)
    assert (test.stage, test.flip_prob, test.mask_recipe) == (2, 0.0, "pg2")
    with pytest.raises(InputError):
        parse("--stage", "3")


@pytest.mark.skipif(importlib.util.find_spec("data.market_dataset") is None,
                    reason="data/market_dataset.py (the market plug-in) does not exist yet")
def test_options_hook_with_market_plugin(tmp_path):
    opt = TrainOptions().parse(["--model", "PG2", "--dataset_mode", "market", "--gpu_ids", "-1",
                                f"--checkpoints_dir={tmp_path}"], echo=False)
    assert (opt.lambda_mask_l1, opt.mask_recipe, opt.lr) == (10.0, "pg2", 2e-5)
    assert (opt.data_format, opt.flip_prob, opt.batch_size, opt.lambda_gan) == ("market", 0.5, 16, 1.0)


# --- the model -------------------------------------------------------------------------------------------

def make_batch(batch: int = 2, height: int = 128, width: int = 64, seed: int = 0) -> dict:
    """The benchmark's random batch plus keypoints."""
    keypoints = torch.randint(0, height // 2, (batch, 18, 2), generator=torch.Generator().manual_seed(seed))
    return {**random_batch(batch, height, width, seed), "source_keypoints": keypoints,
            "target_keypoints": keypoints.flip(0)}


def snapshot(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def stage1_run(parse):
    """A saved stage-1 run 'pg2' (ngf 4): returns the trained stage-1 model."""
    torch.manual_seed(0)
    model = PG2Model(parse("--name", "pg2", "--ngf", "4", "--stage", "1"), CPU)
    model.setup()
    model.set_input(make_batch())
    model.optimize_parameters()
    model.save_networks("latest")
    return model


def test_stage1_training_decreases_the_loss(parse):
    torch.manual_seed(0)
    model = PG2Model(parse("--ngf", "4", "--lr", "1e-4"), CPU)
    model.setup()
    assert model.model_names == ["G1"] and model.loss_names == ["G1_mask_l1"]
    batch = make_batch(seed=1)
    model.set_input(batch)
    assert model.get_image_paths() == [("s0.jpg", "t0.jpg"), ("s1.jpg", "t1.jpg")]
    losses = []
    for _ in range(4):
        model.optimize_parameters()
        losses.append(model.get_current_losses()["G1_mask_l1"])
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    # the logged value is L_mask(Ĝ1) of the step's forward
    first = PG2Model(parse("--ngf", "4"), CPU)
    first.netG1.load_state_dict(model.netG1.state_dict())
    first.set_input(batch)
    first.forward()
    expected = pose_mask_l1(first.fake_g1, first.target_image, first.target_mask).item()
    model.optimize_parameters()
    assert model.get_current_losses()["G1_mask_l1"] == pytest.approx(expected, rel=1e-6)
    assert set(model.get_current_visuals()) == {"source_image", "target_image", "fake_g1"}
    assert model.generated_images() is model.fake_g1


def test_stage2_keeps_g1_frozen(parse, stage1_run):
    torch.manual_seed(1)
    model = PG2Model(parse("--name", "pg2", "--ngf", "4", "--stage", "2"), CPU)
    model.setup()
    assert model.model_names == ["G1", "G2", "D"]
    assert same_weights(snapshot(model.netG1), snapshot(stage1_run.netG1))  # loaded from the stage-1 run
    g1_before, g2_before, d_before = snapshot(model.netG1), snapshot(model.netG2), snapshot(model.netD)
    assert all(not p.requires_grad for p in model.netG1.parameters())
    in_optimizers = {id(p) for o in model.optimizers for group in o.param_groups for p in group["params"]}
    assert not in_optimizers & {id(p) for p in model.netG1.parameters()}
    assert in_optimizers == {id(p) for p in [*model.netG2.parameters(), *model.netD.parameters()]}
    for o in model.optimizers:
        assert o.defaults["lr"] == 2e-5 and o.defaults["betas"] == (0.5, 0.999)
    for seed in range(2):
        model.set_input(make_batch(seed=seed))
        model.optimize_parameters()
    assert same_weights(snapshot(model.netG1), g1_before)
    assert all(p.grad is None for p in model.netG1.parameters())
    assert not same_weights(snapshot(model.netG2), g2_before) and not same_weights(snapshot(model.netD), d_before)
    losses = model.get_current_losses()
    assert list(losses) == ["G2_gan", "G2_mask_l1", "D_real", "D_fake", "D_condition"]
    assert all(math.isfinite(v) for v in losses.values())
    # the output is Ĝ2 = Ĝ1 + G2(I_A, Ĝ1), unclamped
    model.test()
    with torch.no_grad():
        coarse = model.netG1(model.source_image, model.target_pose)
        expected = coarse + model.netG2(model.source_image, coarse)
    assert torch.equal(model.fake_g1, coarse) and torch.equal(model.generated_images(), expected)


@pytest.mark.parametrize("batching", ["concat", "separate"])
def test_stage2_step_order_and_logged_terms(parse, stage1_run, batching):
    torch.manual_seed(2)
    model = PG2Model(parse("--name", "pg2", "--ngf", "4", "--stage", "2", "--d_batching", batching), CPU)
    model.setup()
    for seed in range(2):
        model.set_input(make_batch(seed=seed))
        d_grads = [None if p.grad is None else p.grad.clone() for p in model.netD.parameters()]
        d_weights = snapshot(model.netD)
        fakes = model.optimize_generator()
        # the G step leaves D's gradients and weights alone (D must not learn from it) and updates G2
        assert all((a is None and p.grad is None) or (a is not None and torch.equal(a, p.grad))
                   for a, p in zip(d_grads, model.netD.parameters()))
        assert all(p.requires_grad is False for p in model.netD.parameters())
        assert all(p.grad is not None for p in model.netG2.parameters())
        # logged G terms: BCE(D(Ĝ2), 1) and L_mask(Ĝ2), with D's weights of this step
        d = PG2Discriminator(128, 64, 4)
        d.load_state_dict(d_weights)
        fake = model.fake_g2.detach()
        images = (model.target_image, fake, model.source_image)
        with torch.no_grad():
            if batching == "concat":
                logits = d(torch.cat(images)).split(fake.shape[0])
            else:
                logits = d(*images)
        assert model.losses["G2_gan"].item() == pytest.approx(independent_bce(logits[1], 1.0), rel=1e-5)
        mask_l1 = pose_mask_l1(fake, model.target_image, model.target_mask).item()
        assert model.losses["G2_mask_l1"].item() == pytest.approx(mask_l1, rel=1e-6)
        model.optimize_discriminator(fakes)
        terms = [independent_bce(logits[0], 1.0), independent_bce(logits[1], 0.0), independent_bce(logits[2], 0.0)]
        assert [model.losses[k].item() for k in ("D_real", "D_fake", "D_condition")] == \
            pytest.approx(terms, rel=1e-5)
        assert all(p.grad is not None for p in model.netD.parameters())
        assert not same_weights(snapshot(model.netD), d_weights)


def test_stage2_without_stage1_weights_names_the_file(parse, tmp_path):
    with pytest.raises(InputError, match=r"nowhere[/\\]7_net_G1\.pth"):
        PG2Model(parse("--ngf", "4", "--stage", "2", "--stage1_name", "nowhere", "--stage1_epoch", "7"), CPU)


def test_save_and_load_round_trip(parse, stage1_run, tmp_path):
    torch.manual_seed(3)
    trained = PG2Model(parse("--name", "pg2", "--ngf", "4", "--stage", "2"), CPU)
    trained.set_input(make_batch())
    trained.optimize_parameters()
    trained.save_networks(5)
    assert sorted(p.name for p in (tmp_path / "pg2").glob("5_net_*.pth")) == \
        ["5_net_D.pth", "5_net_G1.pth", "5_net_G2.pth"]
    torch.manual_seed(4)
    tester = PG2Model(parse("--name", "pg2", "--ngf", "4", "--which_epoch", "5", train=False), CPU)
    assert tester.model_names == ["G1", "G2"] and tester.stage == 2
    assert not same_weights(snapshot(tester.netG2), snapshot(trained.netG2))
    tester.setup()  # testing: loads --which_epoch
    assert same_weights(snapshot(tester.netG1), snapshot(trained.netG1))
    assert same_weights(snapshot(tester.netG2), snapshot(trained.netG2))
    resumed = PG2Model(parse("--name", "pg2", "--ngf", "4", "--stage", "2"), CPU)
    resumed.load_networks(5, ["D"])
    assert same_weights(snapshot(resumed.netD), snapshot(trained.netD))
    # a stage-1 test run loads G1 alone and returns Ĝ1
    stage1 = PG2Model(parse("--name", "pg2", "--ngf", "4", "--stage", "1", train=False), CPU)
    stage1.setup()
    assert stage1.model_names == ["G1"] and same_weights(snapshot(stage1.netG1), snapshot(stage1_run.netG1))
    batch = make_batch(batch=1)
    del batch["target_mask"]  # not needed at test time
    stage1.set_input(batch)
    stage1.test()
    assert stage1.generated_images().shape == (1, 3, 128, 64)


def test_set_input_checks_the_frame(parse):
    model = PG2Model(parse("--ngf", "4"), CPU)
    with pytest.raises(InputError, match="built for 128x64"):
        model.set_input(make_batch(height=256, width=176))
    batch = make_batch()
    del batch["target_mask"]
    with pytest.raises(InputError, match="target_mask"):
        model.set_input(batch)


# --- DistributedDataParallel (two gloo processes on CPU) --------------------------------------------------

# Each rank runs this script (a light import: torch and the model only) with torchrun's environment variables.
DDP_WORKER = """
import argparse, sys
import torch
import torch.distributed as dist
sys.path.insert(0, sys.argv[1])
from models.pg2_model import PG2Model
from util.distributed import build_context

torch.set_num_threads(1)
ctx = build_context([])  # joins the gloo group from RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT
assert ctx.distributed and ctx.world_size == 2


def batch(seed):
    g = torch.Generator().manual_seed(seed)
    return {"source_image": torch.rand(2, 3, 128, 64, generator=g) * 2 - 1,
            "target_image": torch.rand(2, 3, 128, 64, generator=g) * 2 - 1,
            "target_pose": torch.rand(2, 18, 128, 64, generator=g),
            "target_mask": (torch.rand(2, 1, 128, 64, generator=g) > 0.7).float(),
            "source_name": ["a", "b"], "target_name": ["c", "d"]}


def agree(net):
    flat = torch.cat([p.detach().flatten() for p in net.parameters()])
    gathered = [torch.empty_like(flat) for _ in range(2)]
    dist.all_gather(gathered, flat)
    return torch.equal(gathered[0], gathered[1])


opt = argparse.Namespace(is_train=True, checkpoints_dir=sys.argv[2], name="ddp", verbose=False,
                         data_format="market", fashion_frame="pad256", ngf=4, lr=1e-3, beta1=0.5,
                         lr_policy="constant", mask_ratio=1.0, lambda_mask_l1=10.0, lambda_gan=1.0,
                         d_batching="concat", d_conv_bias=False, stage1_name="ddp", stage1_epoch="latest", stage=1,
                         g1_arch="standard", g2_arch="standard", init_type=None, lr_D=2e-5)
torch.manual_seed(0)  # the same initial weights on every rank, as train.py's seeding gives
stage1 = PG2Model(opt, ctx)
assert isinstance(stage1.netG1, torch.nn.parallel.DistributedDataParallel)
stage1.set_input(batch(ctx.rank))  # different data per rank
stage1.optimize_parameters()
assert agree(stage1.netG1)
if ctx.is_main:
    stage1.save_networks("latest")
dist.barrier()
for batching in ("concat", "separate"):
    opt.stage, opt.d_batching = 2, batching
    torch.manual_seed(1)
    model = PG2Model(opt, ctx)
    assert not isinstance(model.netG1, torch.nn.parallel.DistributedDataParallel)
    for step in range(2):
        model.set_input(batch(10 * step + ctx.rank))
        model.optimize_parameters()
    assert all(agree(net) for net in (model.netG1, model.netG2, model.netD)), batching  # grads were averaged
dist.barrier()  # nobody leaves while the other still talks (gloo aborts otherwise)
dist.destroy_process_group()
print("ok", ctx.rank, flush=True)
"""


@pytest.mark.slow
def test_ddp_two_gloo_processes(tmp_path):
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp_path / "ddp_worker.py"
    script.write_text(DDP_WORKER)
    repo = str(Path(__file__).resolve().parents[1])
    procs = []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port), OMP_NUM_THREADS="1")
        procs.append(subprocess.Popen([sys.executable, str(script), repo, str(tmp_path / "checkpoints")],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    for rank, (p, out) in enumerate(zip(procs, outputs)):
        assert p.returncode == 0 and f"ok {rank}" in out, out
