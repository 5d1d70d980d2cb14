"""Mobile PG2 (`--mobilenet`; kevinleewy/Human-Pose-Transfer `implementations/PG2/mobile/`): depthwise-separable
G1 and G2, the standard D. Parameter counts, structure, state-dict layout, output shapes, initialisation, the
flags and their defaults, refusal of checkpoints of the other kind, training, kill -9 resume, test.py.

Full-width networks are built on the meta device for counts, names and shapes (or on the CPU where their values
are checked); training runs at --ngf 8, which is not the paper's width.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import train as train_script
from data.annotations import read_pairs
from models.networks.blocks import DSConv, DSUp, PlainConvs, SeparableConvs, Up, conv_factory
from models.networks.pg2_discriminator import PG2Discriminator
from models.networks.pg2_generator_stage1 import PG2GeneratorStage1
from models.networks.pg2_generator_stage2 import PG2GeneratorStage2
from models.pg2_model import PG2Model, load_generator
from models.pg2_options import GEOMETRIES
from options.test_options import TestOptions
from options.train_options import TrainOptions
from scripts.bench_train import random_batch
from test_dptn_train import test_script
from test_reliability import kill_then_resume, run_args, same_weights, train_process
from util.checkpoint import load_training_state, save_weights
from util.distributed import RunContext
from util.io import InputError

CPU = RunContext(device=torch.device("cpu"))
MARKET, PAD256, NATIVE = GEOMETRIES[("market", None)], GEOMETRIES[("fashion", "pad256")], \
    GEOMETRIES[("fashion", "native")]


def count(net: nn.Module, prefix: str = "") -> int:
    return sum(p.numel() for name, p in net.named_parameters() if name.startswith(prefix))


def g1(geo, arch: str = "mobile", ngf: int = 128, **kw) -> PG2GeneratorStage1:
    return PG2GeneratorStage1(geo.height, geo.width, geo.g1_depth, ngf, arch=arch, **kw)


def g2(geo, arch: str = "mobile", ngf: int = 128) -> PG2GeneratorStage2:
    return PG2GeneratorStage2(geo.height, geo.width, geo.g2_depth, ngf, geo.g2_skips, arch=arch)


# --- sizes (KLW's mobile/model.py rebuilt: counts computed by building both variants) --------------------------

# geometry, mobile G1, mobile G2, D (unchanged), total with both generators mobile
COUNTS = [(MARKET, 10_338_837, 710_335, 4_323_777, 15_372_949),
          (PAD256, 18_708_117, 1_472_319, 10_894_785, 31_075_221),
          (NATIVE, 17_435_157, 1_472_319, 10_886_593, 29_794_069)]


@pytest.mark.parametrize("geo,n1,n2,nd,total", COUNTS, ids=["market", "fashion-pad256", "fashion-native"])
def test_parameter_counts(geo, n1, n2, nd, total):
    with torch.device("meta"):
        nets = [g1(geo), g2(geo), PG2Discriminator(geo.height, geo.width, geo.d_convs)]
        standard_g1 = g1(geo, "standard")
    assert [count(n) for n in nets] == [n1, n2, nd]
    assert sum(count(n) for n in nets) == total
    # the fc bottleneck is unchanged
    assert count(nets[0], "down_fc") + count(nets[0], "up_fc") == \
        count(standard_g1, "down_fc") + count(standard_g1, "up_fc")


def test_klw_generation_pipeline_count():
    with torch.device("meta"):  # mobile G1 + standard G2 (KLW's generate.py after 73c0bb6)
        assert count(g1(MARKET)) + count(g2(MARKET, "standard")) == 16_397_720


def test_per_stage_counts():
    with torch.device("meta"):
        market1, market2, pad1, fashion2, native1 = g1(MARKET), g2(MARKET), g1(PAD256), g2(PAD256), g1(NATIVE)
    table = {"start_conv": 3_026, "encoder.0.": 69_888, "encoder.1.": 237_952, "encoder.2.": 504_320,
             "encoder.3.": 868_992, "encoder.4.": 833_280, "down_fc": 1_310_784, "up_fc": 266_240,
             "decoder.0.": 1_591_808, "decoder.1.": 2_515_328, "decoder.2.": 1_394_944, "decoder.3.": 602_240,
             "decoder.4.": 136_704, "end_conv": 3_331}
    assert {k: count(market1, k) for k in table} == table
    # the "depthwise 1x1" of the Up block: slightly more than the standard 1x1 conv (393,728)
    assert count(market1, "decoder.0.conv") == 395_264
    table = {"start_conv": 956, "encoder.0.": 53_376, "encoder.1.": 171_008, "encoder.2.": 252_928,
             "decoder.0.": 123_904, "decoder.1.": 70_912, "decoder.2.": 35_584, "end_conv": 1_667}
    assert {k: count(market2, k) for k in table} == table
    encoder = [69_888, 237_952, 504_320, 868_992, 1_331_968, 1_196_544]
    decoder = [2_201_216, 3_963_392, 2_515_328, 1_394_944, 602_240, 136_704]
    table = {"start_conv": 3_026, "down_fc": 3_145_792, "up_fc": 532_480, "end_conv": 3_331,
             **{f"encoder.{i}.": v for i, v in enumerate(encoder)},
             **{f"decoder.{i}.": v for i, v in enumerate(decoder)}}
    assert {k: count(pad1, k) for k in table} == table
    table = {"start_conv": 956, "end_conv": 1_667,
             **{f"encoder.{i}.": v for i, v in enumerate([53_376, 171_008, 404_608, 468_736])},
             **{f"decoder.{i}.": v for i, v in enumerate([159_232, 88_576, 70_912, 53_248])}}
    assert {k: count(fashion2, k) for k in table} == table
    assert (count(native1, "down_fc"), count(native1, "up_fc")) == (7_209_024, 1_464_320)
    assert count(native1) - count(native1, "down_fc") - count(native1, "up_fc") == \
        count(market1) - count(market1, "down_fc") - count(market1, "up_fc")


def test_structure_every_conv_is_depthwise_or_pointwise():
    with torch.device("meta"):
        nets = {"G1": (g1(MARKET), g1(MARKET, "standard")), "G2": (g2(MARKET), g2(MARKET, "standard"))}
    for name, (mobile, standard) in nets.items():
        convs = [m for m in mobile.modules() if isinstance(m, nn.Conv2d)]
        plain = [m for m in standard.modules() if isinstance(m, nn.Conv2d)]
        assert len(convs) == 2 * len(plain), name  # each conv became a depthwise + a pointwise conv
        for m in convs:
            if m.groups == 1:
                assert m.kernel_size == (1, 1), (name, m)  # pointwise
            else:
                assert m.groups == m.in_channels == m.out_channels, (name, m)  # depthwise
        # same kernel sizes and strides as the standard network, in the same order
        assert [(m.kernel_size, m.stride) for m in convs if m.groups > 1] == \
            [(m.kernel_size, m.stride) for m in plain], name
        assert mobile.arch == "mobile" and standard.arch == "standard"
    mobile, standard = nets["G1"]
    for fc in ("down_fc", "up_fc"):
        assert getattr(mobile, fc).weight.shape == getattr(standard, fc).weight.shape


def gmacs(net: nn.Module, height: int, width: int, upsample_first: bool = False) -> float:
    """Multiply-accumulates of one image's forward (conv: output elements x Ci/groups x k x k; linear: in x out).
    `upsample_first` counts G1's Up convs at the upsampled size, in KLW's order (ours runs them before)."""
    up_convs = {id(c) for m in net.modules() if isinstance(m, (Up, DSUp)) for c in m.modules()
                if isinstance(c, nn.Conv2d)}
    total = []

    def hook(m, inputs, out):
        if isinstance(m, nn.Conv2d):
            scale = 4 if upsample_first and id(m) in up_convs else 1
            total.append(scale * out.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1])
        else:
            total.append(m.in_features * m.out_features)

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    image = torch.empty(1, 3, height, width, device="meta")
    second = torch.empty(1, 18, height, width, device="meta") if isinstance(net, PG2GeneratorStage1) else image
    net(image, second)
    for h in handles:
        h.remove()
    return sum(total) / 1e9


# (geometry, G1 standard / mobile in KLW's order, G2 standard / mobile, decimals)
MACS = [(MARKET, 37.38, 5.34, 10.20, 1.21, 2), (PAD256, 306.1, 43.9, 97.0, 11.5, 1),
        (NATIVE, 205.6, 29.4, 66.7, 7.9, 1)]


@pytest.mark.parametrize("geo,g1_std,g1_mob,g2_std,g2_mob,digits", MACS, ids=["market", "fashion-pad256",
                                                                               "fashion-native"])
def test_multiply_accumulates(geo, g1_std, g1_mob, g2_std, g2_mob, digits):
    with torch.device("meta"):
        nets = {arch: (g1(geo, arch), g2(geo, arch)) for arch in ("standard", "mobile")}
    to_digits = 10 ** -digits  # within one unit of the last digit given
    klw = [gmacs(nets[a][0], geo.height, geo.width, upsample_first=True) for a in nets]
    assert klw == pytest.approx([g1_std, g1_mob], abs=to_digits)
    g2_macs = [gmacs(nets[a][1], geo.height, geo.width) for a in nets]
    assert g2_macs == pytest.approx([g2_std, g2_mob], abs=to_digits)
    # our Up runs its 1x1 convs before the upsampling: the same outputs for fewer MACs (0.9 G on Market's G1)
    ours = [gmacs(nets[a][0], geo.height, geo.width) for a in nets]
    assert all(o < k for o, k in zip(ours, klw))
    if geo is MARKET:
        assert ours == pytest.approx([36.48, 4.45], abs=0.005)


# --- blocks ------------------------------------------------------------------------------------------------

def test_dsconv_block():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 8, 6)
    block = DSConv(4, 7, 3, stride=2)
    assert [type(m) for m in block.main] == [nn.Conv2d, nn.ReLU, nn.Conv2d, nn.ReLU]
    depthwise, pointwise = block.main[0], block.main[2]
    assert (depthwise.groups, depthwise.stride, depthwise.padding) == (4, (2, 2), (1, 1))
    assert depthwise.bias is not None and pointwise.bias is not None
    assert count(block) == 4 * 9 + 4 + 4 * 7 + 7  # Ci k k + Ci + Ci Co + Co
    expected = F.relu(pointwise(F.relu(depthwise(x))))
    assert torch.equal(block(x), expected) and block(x).shape == (2, 7, 4, 3)
    linear = DSConv(4, 3, relu=False)  # no activation at all: indices 0 and 1
    assert [type(m) for m in linear.main] == [nn.Conv2d, nn.Conv2d]
    assert torch.equal(linear(x), linear.main[1](linear.main[0](x)))
    assert (linear(x) < 0).any()
    up = DSUp(4, 5)  # convs before the nearest x2: equals KLW's order (upsample first) up to float rounding
    klw_order = F.relu(up.main[2](F.relu(up.main[0](F.interpolate(x, scale_factor=2, mode="nearest")))))
    assert up(x).shape == (2, 5, 16, 12) and torch.allclose(up(x), klw_order, atol=1e-6)
    assert conv_factory("mobile") is SeparableConvs and conv_factory("standard") is PlainConvs
    assert conv_factory(SeparableConvs) is SeparableConvs
    with pytest.raises(ValueError, match="available: standard, mobile"):
        conv_factory("tiny")


# --- state-dict layout (KLW's names) ----------------------------------------------------------------------

def ds_keys(prefix: str, relu: bool = True) -> set[str]:
    return {f"{prefix}.main.{i}.{p}" for i in ((0, 2) if relu else (0, 1)) for p in ("weight", "bias")}


def mobile_g1_keys(depth: int) -> set[str]:
    keys = ds_keys("start_conv") | ds_keys("end_conv", relu=False)
    keys |= {f"{fc}.{p}" for fc in ("down_fc", "up_fc") for p in ("weight", "bias")}
    for part in ("encoder", "decoder"):
        for i in range(depth):
            keys |= ds_keys(f"{part}.{i}.res.main.0") | ds_keys(f"{part}.{i}.res.main.1")
            if i < depth - 1:
                keys |= ds_keys(f"{part}.{i}.conv")
    return keys


def mobile_g2_keys(depth: int) -> set[str]:
    keys = ds_keys("start_conv") | ds_keys("end_conv", relu=False)
    for i in range(depth):
        keys |= ds_keys(f"encoder.{i}.main.0") | ds_keys(f"encoder.{i}.main.1")
        keys |= ds_keys(f"decoder.{i}.main.0") | ds_keys(f"decoder.{i}.main.1")
        if i < depth - 1:
            keys |= ds_keys(f"encoder.{i}.conv")
    return keys


def test_state_dict_keys_and_shapes():
    with torch.device("meta"):
        s1, s2 = g1(MARKET).state_dict(), g2(MARKET).state_dict()
        standard1, standard2 = g1(MARKET, "standard").state_dict(), g2(MARKET, "standard").state_dict()
        pad1, pad2 = g1(PAD256).state_dict(), g2(PAD256).state_dict()
    assert (len(s1), len(standard1), len(s2), len(standard2)) == (124, 64, 64, 32)
    assert set(s1) == mobile_g1_keys(5) and set(pad1) == mobile_g1_keys(6)
    assert set(s2) == mobile_g2_keys(3) and set(pad2) == mobile_g2_keys(4)
    shapes = {
        "start_conv.main.0.weight": (21, 1, 3, 3), "start_conv.main.0.bias": (21,),
        "start_conv.main.2.weight": (128, 21, 1, 1), "start_conv.main.2.bias": (128,),
        "encoder.0.res.main.0.main.0.weight": (128, 1, 3, 3), "encoder.0.res.main.1.main.2.weight": (128, 128, 1, 1),
        "encoder.0.conv.main.0.weight": (128, 1, 3, 3), "encoder.0.conv.main.2.weight": (256, 128, 1, 1),
        "down_fc.weight": (64, 20480), "up_fc.weight": (4096, 64),
        "decoder.0.res.main.0.main.0.weight": (768, 1, 3, 3), "decoder.0.res.main.0.main.2.weight": (768, 768, 1, 1),
        "decoder.0.conv.main.0.weight": (768, 1, 1, 1), "decoder.0.conv.main.2.weight": (512, 768, 1, 1),
        "end_conv.main.0.weight": (256, 1, 3, 3), "end_conv.main.1.weight": (3, 256, 1, 1),
    }
    assert {k: tuple(s1[k].shape) for k in shapes} == shapes
    shapes = {"start_conv.main.0.weight": (6, 1, 3, 3), "start_conv.main.2.weight": (128, 6, 1, 1),
              "encoder.1.conv.main.0.weight": (256, 1, 3, 3), "encoder.1.conv.main.2.weight": (256, 256, 1, 1),
              "decoder.0.main.0.main.0.weight": (768, 1, 3, 3), "decoder.0.main.0.main.2.weight": (128, 768, 1, 1),
              "decoder.2.main.0.main.0.weight": (128, 1, 3, 3),  # Dec3 has no skip
              "end_conv.main.0.weight": (128, 1, 3, 3), "end_conv.main.1.weight": (3, 128, 1, 1)}
    assert {k: tuple(s2[k].shape) for k in shapes} == shapes


@pytest.mark.parametrize("name", ["G1", "G2"])
def test_a_checkpoint_of_the_other_kind_is_refused_naming_the_flag(name, tmp_path):
    torch.manual_seed(0)
    build = g1 if name == "G1" else g2
    flag = "--g1_arch" if name == "G1" else "--g2_arch"
    standard_file, mobile_file = tmp_path / "standard.pth", tmp_path / "mobile.pth"
    save_weights(build(MARKET, "standard", ngf=4), standard_file)
    save_weights(build(MARKET, "mobile", ngf=4), mobile_file)
    with pytest.raises(InputError) as info:
        load_generator(build(MARKET, "mobile", ngf=4), name, standard_file)
    message = str(info.value)
    assert str(standard_file) in message and f"{flag} standard (no --mobilenet)" in message
    assert f"holds a standard {name}" in message and "missing" not in message  # not a key dump
    with pytest.raises(InputError) as info:
        load_generator(build(MARKET, "standard", ngf=4), name, mobile_file)
    message = str(info.value)
    assert str(mobile_file) in message and f"--mobilenet or {flag} mobile" in message
    # the same kind still loads; a width mismatch keeps the plain key report
    load_generator(build(MARKET, "mobile", ngf=4), name, mobile_file)
    with pytest.raises(InputError, match="wrong shape"):
        load_generator(build(MARKET, "mobile", ngf=8), name, mobile_file)


# --- shapes and the G2 interface ------------------------------------------------------------------------------

@pytest.mark.parametrize("geo,gfv", [(MARKET, (384, 32, 16)), (PAD256, (512, 32, 32)), (NATIVE, (512, 32, 22))],
                         ids=["market", "fashion-pad256", "fashion-native"])
def test_output_shapes_at_the_paper_width(geo, gfv):
    with torch.device("meta"):  # full width, shapes only
        gen1, gen2 = g1(geo), g2(geo)
        image = torch.empty(2, 3, geo.height, geo.width)
        z, skips = gen1.encode(image, torch.empty(2, 18, geo.height, geo.width))
        coarse = gen1.decode(z, skips)
        code, features = gen2.encode(image, coarse)
        out = gen2.decode(code, features)
    assert z.shape == (2, 64) and coarse.shape == out.shape == (2, 3, geo.height, geo.width)
    assert code.shape == (2, *gfv)


def test_forward_values_and_gfv_interface():
    torch.manual_seed(0)
    gen1, gen2 = g1(MARKET, ngf=4), g2(MARKET, ngf=4)
    image, pose = torch.rand(2, 3, 128, 64) * 2 - 1, torch.rand(2, 18, 128, 64)
    coarse = gen1(image, pose)
    z, skips = gen1.encode(image, pose)
    assert torch.equal(gen1.decode(z, skips), coarse) and torch.isfinite(coarse).all()
    diff = gen2(image, coarse)
    code, features = gen2.encode(image, coarse)
    assert code.shape == (2, 12, 32, 16) and code is features[-1]
    assert torch.equal(gen2.decode(code, features), diff) and torch.isfinite(diff).all()
    assert torch.equal(gen2.decode(code, features, skip_mode="replace"), diff)  # the same GFV: the same output
    other = torch.randn_like(code)
    assert not torch.equal(gen2.decode(other, features, "keep"), gen2.decode(other, features, "replace"))


# --- initialisation -----------------------------------------------------------------------------------------

def test_initialisation():
    torch.manual_seed(0)
    gen2 = g2(MARKET)  # full width: KLW's weights_init_xavier reaches the inner depthwise and pointwise convs
    depthwise = [m for m in gen2.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert depthwise
    for m in depthwise:
        channels = m.weight.shape[0]
        bound = math.sqrt(6.0 / (9 + 9 * channels))  # fan_in 9, fan_out 9C
        assert m.weight.abs().max() <= bound and m.weight.abs().max() > 0.9 * bound, m
    assert math.sqrt(6.0 / (9 + 9 * 128)) == pytest.approx(0.0719, abs=1e-4)
    assert math.sqrt(6.0 / (9 + 9 * 768)) == pytest.approx(0.0294, abs=1e-4)
    assert gen2.decoder[0].main[0].main[0].weight.shape[0] == 768  # the C = 768 case is there
    assert all(torch.count_nonzero(p) == 0 for name, p in gen2.named_parameters() if name.endswith("bias"))
    xavier, default = g1(MARKET, ngf=8), g1(MARKET, ngf=8, init="torch")
    assert all(torch.count_nonzero(p) == 0 for name, p in xavier.named_parameters() if name.endswith("bias"))
    w = default.start_conv.main[0].weight  # PyTorch's default: U(+-1/sqrt(fan_in)) = 1/3 for a 3x3 depthwise
    assert w.abs().max() <= 1 / 3 and w.abs().max() > 0.3
    assert torch.count_nonzero(default.start_conv.main[0].bias) > 0
    with pytest.raises(ValueError, match="xavier or torch"):
        g1(MARKET, ngf=4, init="normal")


# --- options ------------------------------------------------------------------------------------------------

@pytest.fixture
def parse(tmp_path):
    def run(*argv: str, train: bool = True):
        options = TrainOptions() if train else TestOptions()
        return options.parse(["--model", "PG2", "--dataset_mode", "market", "--gpu_ids", "-1",
                              f"--checkpoints_dir={tmp_path}", *argv], echo=False)
    return run


def archs(opt) -> tuple[str, str]:
    return opt.g1_arch, opt.g2_arch


def test_flags_and_mobile_defaults(parse):
    standard = parse()
    assert archs(standard) == ("standard", "standard") and not standard.mobilenet
    assert (standard.lr, standard.lr_D, standard.niter, standard.max_steps) == (2e-5, 2e-5, 100, 22000)
    assert archs(parse("--mobilenet")) == ("mobile", "mobile")
    assert archs(parse("--g1_arch", "mobile", "--g2_arch", "standard")) == ("mobile", "standard")
    assert archs(parse("--mobilenet", "--g2_arch", "standard")) == ("mobile", "standard")
    assert archs(parse("--mobilenet", train=False)) == ("mobile", "mobile")
    # KLW's mobile/stage1.toml: 6 epochs at 1e-4; stage2.toml: 5 epochs, G2 1e-4, D 2e-5; the length is epochs
    s1 = parse("--mobilenet")
    assert (s1.lr, s1.niter, s1.max_steps, s1.niter_stage1, s1.niter_decay) == (1e-4, 6, 0, None, 0)
    s2 = parse("--mobilenet", "--stage", "2")
    assert (s2.lr, s2.lr_D, s2.niter, s2.max_steps, s2.niter_stage2) == (1e-4, 2e-5, 5, 0, None)
    assert (s2.batch_size, s2.lambda_mask_l1, s2.lambda_gan, s2.beta1) == (16, 10.0, 1.0, 0.5)
    # the defaults follow the network the stage trains: a standard G2 on a mobile G1 keeps PG2's
    klw = parse("--g1_arch", "mobile", "--stage", "2")
    assert (klw.lr, klw.lr_D, klw.max_steps) == (2e-5, 2e-5, 14000)
    assert parse("--g1_arch", "mobile").lr == 1e-4
    # explicit flags win, also when they repeat PG2's value
    typed = parse("--mobilenet", "--stage", "2", "--lr", "2e-5", "--lr_D", "3e-4", "--niter", "2")
    assert (typed.lr, typed.lr_D, typed.niter) == (2e-5, 3e-4, 2) and type(typed.lr) is float
    assert parse("--mobilenet", "--niter_stage1", "50").max_steps == 50
    assert parse("--mobilenet", "--max_steps", "7").max_steps == 7
    assert parse("--stage", "2", "--lr", "1e-3").lr_D == 1e-3  # standard: D follows --lr
    assert type(parse().niter) is int and type(parse().lr) is float
    assert parse("--init_type", "torch").init_type == "torch"
    with pytest.raises(InputError, match="--init_type and --init_gain do not apply to --model PG2"):
        parse("--init_type", "xavier")
    with pytest.raises(InputError, match="stage-1 training"):
        parse("--init_type", "torch", "--stage", "2")
    with pytest.raises(InputError, match="--init_type is a training option"):
        parse("--init_type", "torch", train=False)
    with pytest.raises(InputError, match="--g2_arch"):
        parse("--g2_arch", "tiny")
    with pytest.raises(InputError, match="--lr_D must be > 0"):
        parse("--lr_D", "0")


def test_model_builds_what_the_flags_say(parse):
    torch.manual_seed(0)
    opt = parse("--name", "m", "--ngf", "4", "--mobilenet", "--stage", "2")
    PG2Model.prepare_benchmark(opt)  # a fresh mobile stage-1 G1 where stage 2 reads it
    model = PG2Model(opt, CPU)
    assert (model.netG1.arch, model.netG2.arch, type(model.netD)) == ("mobile", "mobile", PG2Discriminator)
    assert [o.defaults["lr"] for o in model.optimizers] == [1e-4, 2e-5]  # G2, D
    klw = PG2Model(parse("--name", "m", "--ngf", "4", "--g1_arch", "mobile", "--g2_arch", "standard",
                         "--stage", "2"), CPU)
    assert (klw.netG1.arch, klw.netG2.arch) == ("mobile", "standard")
    refused = r"m[/\\]latest_net_G1\.pth holds a mobile G1.*--mobilenet or --g1_arch mobile"
    with pytest.raises(InputError, match=refused):
        PG2Model(parse("--name", "m", "--ngf", "4", "--stage", "2"), CPU)  # standard stage 2 on a mobile G1
    default = PG2Model(parse("--ngf", "4", "--mobilenet", "--init_type", "torch"), CPU)
    assert torch.count_nonzero(default.netG1.start_conv.main[0].bias) > 0
    xavier = PG2Model(parse("--ngf", "4", "--mobilenet"), CPU)
    assert torch.count_nonzero(xavier.netG1.start_conv.main[0].bias) == 0


def test_training_steps_are_finite_and_move_the_weights(parse):
    torch.manual_seed(0)
    stage1 = PG2Model(parse("--name", "t", "--ngf", "4", "--mobilenet"), CPU)
    stage1.setup()
    before = {k: v.clone() for k, v in stage1.netG1.state_dict().items()}
    losses = []
    for _ in range(2):
        stage1.set_input(random_batch(2, 128, 64, seed=0))
        stage1.optimize_parameters()
        losses.append(stage1.get_current_losses()["G1_mask_l1"])
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    assert not torch.equal(before["start_conv.main.0.weight"], stage1.netG1.state_dict()["start_conv.main.0.weight"])
    stage1.save_networks("latest")
    stage2 = PG2Model(parse("--name", "t", "--ngf", "4", "--mobilenet", "--stage", "2"), CPU)
    stage2.setup()
    assert all(torch.equal(v, stage1.netG1.state_dict()[k]) for k, v in stage2.netG1.state_dict().items())
    d_before = stage2.netD.state_dict()["fc.weight"].clone()
    stage2.set_input(random_batch(2, 128, 64, seed=1))
    stage2.optimize_parameters()
    assert not torch.equal(d_before, stage2.netD.state_dict()["fc.weight"])
    losses = stage2.get_current_losses()
    assert list(losses) == ["G2_gan", "G2_mask_l1", "D_real", "D_fake", "D_condition"]
    assert all(math.isfinite(v) for v in losses.values())


# --- train.py / test.py on the tiny synthetic datasets ----------------------------------------------------------

COMMON = ["--gpu_ids", "-1", "--num_threads", "0", "--ngf", "4", "--seed", "3"]


def cli(root: Path, ckpt: Path, name: str, mode: str = "market", *extra: str) -> list[str]:
    return ["--name", name, "--model", "PG2", "--dataset_mode", mode, "--dataroot", str(root),
            "--checkpoints_dir", str(ckpt), *COMMON, *extra]


def train_args(root, ckpt, name, *extra, mode="market"):
    return cli(root, ckpt, name, mode, "--batchSize", "2", "--print_freq", "2", "--display_freq", "100", *extra)


def saved_options(run: Path) -> dict[str, str]:
    from options.base_options import read_option_file
    return read_option_file((run / "train_opt.txt").read_text())


@pytest.fixture(scope="module")
def mobile_runs(tiny_market_root, tmp_path_factory):
    """A mobile stage-1 run 's1' (2 steps) and, from it, a mobile stage-2 run 's2' and KLW's pipeline 'klw'
    (1 step each)."""
    ckpt = tmp_path_factory.mktemp("mobile_ckpt")
    assert train_script.main(train_args(tiny_market_root, ckpt, "s1", "--mobilenet", "--max_steps", "2")) == 0
    assert train_script.main(train_args(tiny_market_root, ckpt, "s2", "--mobilenet", "--stage", "2",
                                        "--stage1_name", "s1", "--max_steps", "1")) == 0
    assert train_script.main(train_args(tiny_market_root, ckpt, "klw", "--g1_arch", "mobile", "--g2_arch",
                                        "standard", "--stage", "2", "--stage1_name", "s1", "--max_steps", "1")) == 0
    return ckpt


def test_train_opt_records_the_architectures(mobile_runs):
    s1, s2, klw = (saved_options(mobile_runs / name) for name in ("s1", "s2", "klw"))
    assert (s1["mobilenet"], s1["g1_arch"], s1["g2_arch"], s1["lr"], s1["niter"]) == \
        ("True", "mobile", "mobile", "0.0001", "6")
    assert (s2["g1_arch"], s2["g2_arch"], s2["lr"], s2["lr_D"], s2["niter"]) == \
        ("mobile", "mobile", "0.0001", "2e-05", "5")
    assert (klw["mobilenet"], klw["g1_arch"], klw["g2_arch"], klw["lr"]) == ("False", "mobile", "standard", "2e-05")
    g2_keys = torch.load(mobile_runs / "s2" / "latest_net_G2.pth", weights_only=True)
    assert len(g2_keys) == 64 and "start_conv.main.0.weight" in g2_keys
    assert "start_conv.0.weight" in torch.load(mobile_runs / "klw" / "latest_net_G2.pth", weights_only=True)
    state = load_training_state(mobile_runs / "s2" / "latest_train_state.pth")
    assert state["options"]["g2_arch"] == "mobile" and state["progress"]["total_iters"] == 1
    g1_s1 = torch.load(mobile_runs / "s1" / "latest_net_G1.pth", weights_only=True)
    g1_s2 = torch.load(mobile_runs / "s2" / "latest_net_G1.pth", weights_only=True)
    assert len(g1_s1) == 124 and all(torch.equal(g1_s1[k], g1_s2[k]) for k in g1_s1)  # frozen in stage 2


@pytest.mark.parametrize("name,flags", [("s2", ["--mobilenet"]),
                                        ("klw", ["--g1_arch", "mobile", "--g2_arch", "standard"])])
def test_test_py_rebuilds_the_mobile_networks(mobile_runs, tiny_market_root, tmp_path, name, flags):
    results = tmp_path / "results"
    argv = cli(tiny_market_root, mobile_runs, name, "market", "--results_dir", str(results), "--how_many", "4",
               "--batchSize", "4", "--only_generated")
    assert test_script.main(argv + flags) == 0
    first = read_pairs(tiny_market_root / "market-pairs-test.csv")[:4]
    assert {p.name for p in results.glob("*_vis.jpg")} == {f"{Path(a).stem}_2_{Path(b).stem}_vis.jpg" for a, b in first}
    options = (mobile_runs / name / "test_opt.txt").read_text()
    assert "g1_arch: mobile" in options


def test_wrong_flags_at_test_and_resume_give_one_clear_error(mobile_runs, tiny_market_root, tmp_path, capsys):
    argv = cli(tiny_market_root, mobile_runs, "s2", "market", "--results_dir", str(tmp_path / "r"))
    capsys.readouterr()
    assert test_script.main(argv + ["--g1_arch", "standard"]) == 2  # trained mobile, asked for the standard G1
    err = capsys.readouterr().err
    assert "was trained with --g1_arch mobile, asked for standard" in err
    assert err.count("\n") == 1 and not (tmp_path / "r").exists()
    assert test_script.main(argv) == 0  # without the flags: the architectures come from the run's train_opt.txt
    assert "--g1_arch mobile" in capsys.readouterr().out and any((tmp_path / "r").glob("*_vis.jpg"))
    resume = train_args(tiny_market_root, mobile_runs, "s2", "--stage", "2", "--stage1_name", "s1",
                        "--g1_arch", "mobile", "--g2_arch", "standard", "--max_steps", "4", "--continue_train")
    before = (mobile_runs / "s2" / "latest_train_state.pth").read_bytes()
    assert train_script.main(resume) == 2
    err = capsys.readouterr().err
    assert "was trained with --g2_arch mobile, asked for standard" in err
    assert (mobile_runs / "s2" / "latest_train_state.pth").read_bytes() == before  # nothing replaced


@pytest.mark.slow
def test_kill_minus_9_then_resume_stage2_gives_the_uninterrupted_weights(tiny_market_root, tmp_path):
    """tests/test_reliability.py's pattern on a mobile stage 2 (mobile G1 frozen, mobile G2 and D trained)."""
    model = ("--model", "PG2", "--mobilenet", "--ngf", "8")
    stage1 = run_args(tiny_market_root, tmp_path, "s1", "--max_steps", "2", model=model)
    assert train_process(stage1).wait() == 0
    model += ("--stage", "2", "--stage1_name", "s1")
    steps = 10  # 9 iterations per epoch: the run crosses an epoch boundary
    straight = run_args(tiny_market_root, tmp_path, "straight", "--max_steps", str(steps), model=model)
    assert train_process(straight).wait() == 0
    kill_then_resume(tiny_market_root, tmp_path, model, steps)
    for net in ("G1", "G2", "D"):
        assert same_weights(tmp_path / "straight" / f"latest_net_{net}.pth",
                            tmp_path / "victim" / f"latest_net_{net}.pth"), net


@pytest.mark.slow
def test_deepfashion_mobile_train_and_test(tiny_fashion_root, tmp_path):
    for stage in ("1", "2"):
        argv = train_args(tiny_fashion_root, tmp_path, f"fash{stage}", "--mobilenet", "--stage", stage,
                          "--stage1_name", "fash1", "--max_steps", "1", mode="fashion")
        assert train_script.main(argv) == 0
    results = tmp_path / "res"
    argv = cli(tiny_fashion_root, tmp_path, "fash2", "fashion", "--mobilenet", "--results_dir", str(results),
               "--how_many", "2", "--only_generated")
    assert test_script.main(argv) == 0
    from PIL import Image
    images = sorted(results.glob("*_vis.jpg"))
    assert len(images) == 2 and all(Image.open(p).size == (176, 256) for p in images)  # pad256, cropped back
    g2_state = torch.load(tmp_path / "fash2" / "latest_net_G2.pth", weights_only=True)
    assert len(g2_state) == 84
    assert g2_state["decoder.0.main.0.main.0.weight"].shape == (32, 1, 3, 3)  # cat(e4, e4) at n = 4
