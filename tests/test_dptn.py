"""DPTN (Zhang et al., "Exploring Dual-task Correlation for Pose Guided Person Image Generation", CVPR 2022):
network sizes, state_dict layout, official checkpoints, forward, losses, init, schedule.

The networks are the real ones (G 9.79M parameters); forward passes run at 128x64 and 256x256 on tiny batches.
Golden values were produced by the official code (PangzeCheung/Dual-task-Pose-Transformer-Network @ 59a7590,
torch 2.14.1 CPU) for the seeds and inputs built here; see `official_*` below.
"""
from __future__ import annotations

import ast
import copy
import math
import re
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from models.base_model import unwrap
from models.dptn_model import DPTNModel
from models.networks.dptn_discriminator import DPTNDiscriminator
from models.networks.dptn_generator import DPTNGenerator
from models.networks.losses import gram_matrix, hinge_loss, lsgan_loss
from options.test_options import TestOptions
from options.train_options import TrainOptions
from util.checkpoint import load_weights, save_weights
from util.distributed import RunContext
from util.io import InputError

CPU = RunContext(device=torch.device("cpu"))
# state_dict listings of the official model; the repository keeps copies, checked against ../shared when present
SHARED_LISTINGS = Path(__file__).resolve().parents[1].parent / "shared" / "specs"
REPO_LISTINGS = Path(__file__).resolve().parent / "data"
MARKET_README = ["--dis_layers=3", "--lambda_g=5", "--lambda_rec", "2", "--t_s_ratio=0.8"]


# --- listings -------------------------------------------------------------------------------------------

def listing_dir(where: str) -> Path:
    folder = SHARED_LISTINGS if where == "shared" else REPO_LISTINGS
    if not (folder / "dptn_G_state_dict.txt").is_file():
        pytest.skip(f"no listing files in {folder}")
    return folder


def read_listing(path: Path, section: str | None = None) -> list[tuple[str, tuple[int, ...]]]:
    """[(key, shape)] in file order; `section` picks '## market' / '## fashion' of the D file."""
    entries, current = [], None
    for line in path.read_text().splitlines():
        if line.startswith("## "):
            current = line[3:].split()[0]
        elif line.strip() and not line.startswith("#") and (section is None or current == section):
            key, shape = line.split(" ", 1)
            entries.append((key, ast.literal_eval(shape)))
    return entries


def listed_aliases(path: Path) -> dict[str, str]:
    """alias key -> first key, from the header lines `#   a.{weight,bias} == b.{weight,bias}`."""
    aliases = {}
    for first, second in re.findall(r"#\s+(\S+)\.\{weight,bias\} == (\S+)\.\{weight,bias\}", path.read_text()):
        for leaf in ("weight", "bias"):
            aliases[f"{second}.{leaf}"] = f"{first}.{leaf}"
    return aliases


@pytest.fixture(scope="module")
def generator() -> DPTNGenerator:
    torch.manual_seed(0)
    return DPTNGenerator()


def count(net: torch.nn.Module, prefix: str = "") -> int:
    return sum(p.numel() for name, p in net.named_parameters() if name.startswith(prefix))


def test_parameter_counts(generator):
    assert count(generator) == 9_794_371
    parts = {"block0.": 77_056, "encoder0.": 279_168, "encoder1.": 1_115_392, "mblock0.": 1_246_976,
             "mblock1.": 1_246_976, "mblock2.": 1_246_976, "PTM.": 2_110_976, "source_encoder.": 1_434_752,
             "decoder0.": 738_432, "decoder1.": 184_896, "decoder2.": 111_040, "outconv.": 1_731}
    assert {k: count(generator, k) for k in parts} == parts
    assert count(DPTNDiscriminator(layers=3)) == 238_209
    assert count(DPTNDiscriminator(layers=4)) == 664_577
    assert count(DPTNDiscriminator(layers=3), "encoder1.") == 176_448


@pytest.mark.parametrize("where", ["shared", "repo"])
def test_generator_state_dict_equals_listing(generator, where):
    path = listing_dir(where) / "dptn_G_state_dict.txt"
    state = generator.state_dict()
    assert [(k, tuple(v.shape)) for k, v in state.items()] == read_listing(path)
    assert sum(v.numel() for v in state.values()) == 13_533_958 and len(state) == 188
    assert not list(generator.buffers())
    aliases = listed_aliases(path)
    assert len(aliases) == 20
    for second, first in aliases.items():  # one tensor under two names
        assert state[second].data_ptr() == state[first].data_ptr()


@pytest.mark.parametrize("where", ["shared", "repo"])
@pytest.mark.parametrize("layers,section,entries,elements", [(3, "market", 40, 241_952), (4, "fashion", 52, 672_032)])
def test_discriminator_state_dict_equals_listing(where, layers, section, entries, elements):
    path = listing_dir(where) / "dptn_D_state_dict.txt"
    state = DPTNDiscriminator(layers=layers).state_dict()
    assert [(k, tuple(v.shape)) for k, v in state.items()] == read_listing(path, section)
    assert (len(state), sum(v.numel() for v in state.values())) == (entries, elements)


def test_repo_listings_equal_the_shared_ones():
    if not (SHARED_LISTINGS / "dptn_G_state_dict.txt").is_file():
        pytest.skip("../shared is absent")
    for name in ("dptn_G_state_dict.txt", "dptn_D_state_dict.txt"):
        assert (REPO_LISTINGS / name).read_text() == (SHARED_LISTINGS / name).read_text()


# --- checkpoints in the official layout -----------------------------------------------------------------

def official_layout_checkpoint(listing: Path, section: str | None, prefix: str, seed: int = 3) -> "OrderedDict":
    """Random values under the listed keys (aliases share one value, as in a real official file)."""
    g = torch.Generator().manual_seed(seed)
    aliases = listed_aliases(listing)
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    values = {}
    for key, shape in read_listing(listing, section):
        source = aliases.get(key, key)
        if source not in values:
            values[source] = torch.randn(shape, generator=g)
        state[prefix + key] = values[source].clone()
    return state


@pytest.mark.parametrize("prefix", ["", "module.", "_orig_mod.", "module._orig_mod."])
def test_official_generator_checkpoint_loads_strictly_and_round_trips(tmp_path, prefix):
    listing = REPO_LISTINGS / "dptn_G_state_dict.txt"
    official = official_layout_checkpoint(listing, None, prefix)
    torch.save(official, tmp_path / "latest_net_G.pth")
    net = DPTNGenerator()
    load_weights(net, tmp_path / "latest_net_G.pth")
    loaded = net.state_dict()
    assert all(torch.equal(loaded[k[len(prefix):]], v) for k, v in official.items())
    save_weights(net, tmp_path / "again.pth")
    again = torch.load(tmp_path / "again.pth", weights_only=True)
    assert list(again) == [k for k, _ in read_listing(listing)]
    assert all(torch.equal(again[k[len(prefix):]], v) for k, v in official.items())


@pytest.mark.parametrize("layers,section", [(3, "market"), (4, "fashion")])
def test_official_discriminator_checkpoint_round_trips(tmp_path, layers, section):
    official = official_layout_checkpoint(REPO_LISTINGS / "dptn_D_state_dict.txt", section, "module.")
    torch.save(official, tmp_path / "d.pth")
    net = DPTNDiscriminator(layers=layers)
    load_weights(net, tmp_path / "d.pth")
    save_weights(net, tmp_path / "again.pth")
    again = torch.load(tmp_path / "again.pth", weights_only=True)
    assert list(again) == [k[len("module."):] for k in official]
    assert all(torch.equal(again[k[len("module."):]], v) for k, v in official.items())


def test_partial_checkpoint_is_refused_with_the_keys_named(tmp_path):
    official = official_layout_checkpoint(REPO_LISTINGS / "dptn_G_state_dict.txt", None, "module.")
    del official["module.PTM.decoder.norm.weight"]
    del official["module.outconv.conv1.bias"]
    official["module.transformer.norm.weight"] = torch.ones(256)  # an older official module name
    torch.save(official, tmp_path / "partial.pth")
    net = DPTNGenerator()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(InputError) as info:
        load_weights(net, tmp_path / "partial.pth")
    message = str(info.value)
    assert "PTM.decoder.norm.weight" in message and "outconv.conv1.bias" in message
    assert "2 missing" in message and "transformer.norm.weight" in message and "unexpected" in message
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # nothing half-loaded


def test_test_mode_model_loads_the_released_layout(tmp_path):
    opt = TestOptions().parse(["--model", "DPTN", "--dataset_mode", "market", "--gpu_ids", "-1", "--name",
                               "DPTN_market", f"--checkpoints_dir={tmp_path}"], echo=False)
    official = official_layout_checkpoint(REPO_LISTINGS / "dptn_G_state_dict.txt", None, "module.")
    (tmp_path / "DPTN_market").mkdir()
    torch.save(official, tmp_path / "DPTN_market" / "latest_net_G.pth")
    model = DPTNModel(opt, CPU)
    model.setup()
    assert model.model_names == ["G"] and not model.netG.training
    assert torch.equal(model.netG.state_dict()["PTM.decoder.norm.bias"], official["module.PTM.decoder.norm.bias"])
    with pytest.raises(InputError, match="--which_epoch 7"):
        model.load_networks("7")


# --- forward --------------------------------------------------------------------------------------------

def inputs(batch: int, height: int, width: int, seed: int = 1) -> dict[str, torch.Tensor]:
    """Images uniform in [-1, 1], pose maps uniform in [0, 1] (the batches of the golden values)."""
    g = torch.Generator().manual_seed(seed)
    return {"source_image": torch.rand(batch, 3, height, width, generator=g) * 2 - 1,
            "target_image": torch.rand(batch, 3, height, width, generator=g) * 2 - 1,
            "source_pose": torch.rand(batch, 18, height, width, generator=g),
            "target_pose": torch.rand(batch, 18, height, width, generator=g),
            "source_name": [f"s{i}.jpg" for i in range(batch)], "target_name": [f"t{i}.jpg" for i in range(batch)]}


@pytest.fixture(scope="module")
def busy_generator() -> DPTNGenerator:
    """A generator with larger random weights than the official init, so that outputs are not ~0."""
    torch.manual_seed(1)
    net = DPTNGenerator()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.05)
    return net


@pytest.mark.parametrize("size", [(128, 64), (256, 256), (256, 176)])
def test_forward_outputs_and_shapes(busy_generator, size):
    batch = 2 if size == (128, 64) else 1
    x = inputs(batch, *size)
    net = busy_generator.set_fast(False)
    with torch.no_grad():
        out_t, out_s = net(x["source_image"], x["source_pose"], x["target_pose"])
        eval_t, eval_s = net(x["source_image"], x["source_pose"], x["target_pose"], False)
        fast_t, fast_s = busy_generator.set_fast(True)(x["source_image"], x["source_pose"], x["target_pose"])
        other_t, other_s = net.set_fast(False)(x["source_image"], x["source_pose"], x["source_pose"])
    assert out_t.shape == out_s.shape == (batch, 3, *size)
    assert eval_s is None and torch.equal(eval_t, out_t)  # no source-to-source output at test time
    assert out_t.abs().max() <= 1 and out_t.std() > 0.05
    torch.testing.assert_close(fast_t, out_t, rtol=0, atol=1e-4)
    torch.testing.assert_close(fast_s, out_s, rtol=0, atol=1e-4)
    # the source-to-source branch decodes F_ss directly: the target pose does not reach it
    assert torch.equal(other_s, out_s) and not torch.allclose(other_t, out_t)
    with torch.no_grad():
        direct_s = net.decode(net.encode(torch.cat((x["source_image"], x["source_pose"], x["source_pose"]), 1)))
    assert torch.equal(direct_s, out_s)


@pytest.mark.parametrize("layers,size,logits", [(3, (128, 64), (16, 8)), (4, (256, 256), (16, 16)),
                                                (4, (256, 176), (16, 11))])
def test_discriminator_output_shapes(layers, size, logits):
    d = DPTNDiscriminator(layers=layers)
    assert d(torch.rand(2, 3, *size)).shape == (2, 1, *logits)


def test_use_spect_d_flag_keeps_spectral_norm_on_the_last_conv_only():
    keys = DPTNDiscriminator(layers=3, use_spect=False).state_dict().keys()
    assert "block0.model.0.weight" in keys and "block0.model.0.weight_orig" not in keys
    assert "conv.weight_orig" in keys and "conv.weight_u" in keys


# --- golden values of the official code ------------------------------------------------------------------

VGG_CONVS = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)
VGG_WIDTHS = (64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512)


def vgg_state(seed: int = 7) -> dict[str, torch.Tensor]:
    """Deterministic VGG19 `features.*` weights in torchvision's layout (the golden runs used these)."""
    g = torch.Generator().manual_seed(seed)
    state, cin = {}, 3
    for index, cout in zip(VGG_CONVS, VGG_WIDTHS):
        state[f"features.{index}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * math.sqrt(2.0 / (cin * 9))
        state[f"features.{index}.bias"] = torch.randn(cout, generator=g) * 0.01
        cin = cout
    return state


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("vgg") / "vgg19-dcbb9e9d.pth"
    torch.save(vgg_state(), path)
    return path


def train_model(tmp_path, vgg_file, *argv, dataset="market", seed=0) -> DPTNModel:
    readme = MARKET_README if dataset == "market" else []
    opt = TrainOptions().parse(["--model", "DPTN", "--dataset_mode", dataset, "--gpu_ids", "-1", "--name", "t",
                                f"--checkpoints_dir={tmp_path}", "--vgg_path", str(vgg_file), *readme, *argv],
                               echo=False)
    torch.manual_seed(seed)
    model = DPTNModel(opt, CPU)
    model.setup()
    model.train()
    return model


# official DPTNModel built after torch.manual_seed(0) with the README flags, VGG19 = vgg_state(7), batch inputs()
OFFICIAL_G_INIT = (6279.720767750468, 55379.65927687808)  # sum and sum of |.| over G's parameters
OFFICIAL_D_INIT_ABS = {"market": 327.82195357493123, "fashion": 611.966841127667}
OFFICIAL_OUT = {  # G(train mode) outputs: (sum, sum |.|) of out_t and out_s
    "market": ((0.5403136309877623, 3.7769017601671213), (0.5226051862919858, 3.785616346086022)),
    "fashion": ((2.169023483345926, 15.311972521669048), (2.15183120396844, 15.30306625156119)),
}
OFFICIAL_MARKET_LOSSES = {  # one official optimize_parameters() on inputs(2, 128, 64)
    "app_gen_s": 0.9998080134391785, "content_gen_s": 1.4533952474594116, "style_gen_s": 2.926236867904663,
    "app_gen_t": 0.9925463795661926, "ad_gen_t": 4.994067668914795, "dis_img_gen_t": 0.4644727110862732,
    "content_gen_t": 1.440739631652832, "style_gen_t": 2.8765289783477783}


def sums(t: torch.Tensor) -> tuple[float, float]:
    return t.double().sum().item(), t.double().abs().sum().item()


@pytest.mark.parametrize("dataset,size,batch", [("market", (128, 64), 2), ("fashion", (256, 256), 1)])
def test_seeded_model_matches_the_official_init_and_outputs(tmp_path, vgg_file, dataset, size, batch):
    model = train_model(tmp_path, vgg_file, "--official_ops", dataset=dataset)
    g_sum = sum(p.double().sum().item() for p in model.netG.parameters())
    g_abs = sum(p.double().abs().sum().item() for p in model.netG.parameters())
    assert (g_sum, g_abs) == pytest.approx(OFFICIAL_G_INIT, rel=1e-7)
    d_abs = sum(v.double().abs().sum().item() for v in model.netD.state_dict().values())
    assert d_abs == pytest.approx(OFFICIAL_D_INIT_ABS[dataset], rel=1e-7)
    model.set_input(inputs(batch, *size))
    with torch.no_grad():
        model.forward()
    out_t, out_s = OFFICIAL_OUT[dataset]
    assert sums(model.fake_image_t) == pytest.approx(out_t, rel=1e-5)
    assert sums(model.fake_image_s) == pytest.approx(out_s, rel=1e-5)


@pytest.mark.parametrize("variant", ["--official_ops", "--batched"])
def test_training_step_losses_match_the_official_ones(tmp_path, vgg_file, variant):
    model = train_model(tmp_path, vgg_file, *([variant] if variant == "--official_ops" else []))
    model.set_input(inputs(2, 128, 64))
    model.optimize_parameters()
    losses = model.get_current_losses()
    assert list(losses) == list(OFFICIAL_MARKET_LOSSES)
    for name, value in OFFICIAL_MARKET_LOSSES.items():
        assert losses[name] == pytest.approx(value, rel=1e-5), name


# --- losses against a direct computation of the official ones (`models/DPTN_model.py`, `models/external_function.py`)

class ReferenceVGG:
    """torchvision's own vgg19().features with the same weights, tapped at the official ReLU indices."""

    CONTENT = (1, 6, 11, 20, 29)  # relu1_1, relu2_1, relu3_1, relu4_1, relu5_1
    STYLE = (8, 17, 26, 31)  # relu2_2, relu3_4, relu4_4, relu5_2

    def __init__(self) -> None:
        from torchvision.models import vgg

        self.features = vgg.make_layers(vgg.cfgs["E"])[:32].eval()  # torchvision's vgg19().features
        self.features.load_state_dict({k[len("features."):]: v for k, v in vgg_state().items()
                                       if int(k.split(".")[1]) < 32})

    def __call__(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        out = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            out[i] = x.clone()
        return out


@pytest.fixture(scope="module")
def reference_vgg() -> ReferenceVGG:
    return ReferenceVGG()


def reference_terms(vgg: ReferenceVGG, fake: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(content, style): sum of mean |phi(x) - phi(y)|; sum of mean |G(phi(x)) - G(phi(y))|, G = f f^T / (CHW)."""
    fx, fy = vgg(fake), vgg(real)
    content = sum((fx[i] - fy[i]).abs().mean() for i in ReferenceVGG.CONTENT)

    def gram(f):
        b, c, h, w = f.shape
        return torch.einsum("bchw,bdhw->bcd", f, f) / (c * h * w)
    style = sum((gram(fx[i]) - gram(fy[i])).abs().mean() for i in ReferenceVGG.STYLE)
    return content, style


def discriminator_from(state: dict, layers: int) -> DPTNDiscriminator:
    """A fresh D with these weights and spectral-norm vectors (u, v), in training mode."""
    net = DPTNDiscriminator(layers=layers)
    net.load_state_dict(state)
    return net


@pytest.mark.parametrize("variant", ["batched", "official_ops"])
def test_every_loss_term_equals_the_formula(tmp_path, vgg_file, reference_vgg, variant):
    model = train_model(tmp_path, vgg_file, *(["--official_ops"] if variant == "official_ops" else []),
                        "--lambda_style", "300", "--lambda_content", "0.7")
    opt = model.opt
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():  # larger weights than the official init, so that every term moves G noticeably
        for p in unwrap(model.netG).parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.05, generator=g)
    x = inputs(2, 128, 64, seed=5)
    model.set_input(x)
    model.forward()
    layers = opt.dis_layers
    d_before = discriminator_from(unwrap(model.netD).state_dict(), layers)
    model.optimize_discriminator()
    d_after = {k: v.clone() for k, v in unwrap(model.netD).state_dict().items()}  # what the G step sees
    g_before = copy.deepcopy(unwrap(model.netG)).set_fast(False)
    grads = {}
    model.optimizer_G.register_step_pre_hook(lambda o, a, k: grads.update(
        {id(p): p.grad.clone() for group in o.param_groups for p in group["params"] if p.grad is not None}))
    model.optimize_generator()
    losses = model.get_current_losses()
    fake_t, fake_s = model.fake_image_t.detach(), model.fake_image_s.detach()
    xs, xt = x["source_image"], x["target_image"]
    vgg = reference_vgg
    with torch.no_grad():
        d_real, d_fake = d_before(xt), d_before(fake_t)  # the same two power iterations, in the same order
        expected_d = 0.5 * (((d_real - 1) ** 2).mean() + (d_fake ** 2).mean())
        expected_ad = opt.lambda_g * ((discriminator_from(d_after, layers)(fake_t) - 1) ** 2).mean()
        content_t, style_t = reference_terms(vgg, fake_t, xt)
        content_s, style_s = reference_terms(vgg, fake_s, xs)
    expected = {
        "app_gen_s": opt.lambda_rec * (fake_s - xs).abs().mean(), "content_gen_s": opt.lambda_content * content_s,
        "style_gen_s": opt.lambda_style * style_s, "app_gen_t": opt.lambda_rec * (fake_t - xt).abs().mean(),
        "ad_gen_t": expected_ad, "dis_img_gen_t": expected_d, "content_gen_t": opt.lambda_content * content_t,
        "style_gen_t": opt.lambda_style * style_t}
    assert (opt.lambda_rec, opt.lambda_g, opt.t_s_ratio) == (2.0, 5.0, 0.8)
    for name, value in expected.items():
        assert losses[name] == pytest.approx(value.item(), rel=2e-5), name

    # the total r * L_t + (1 - r) * L_s + lambda_g * GAN, read off G's gradient: fit it as a combination of the
    # gradients of the three groups of terms computed here, and check the coefficients (r, 1 - r, 1)
    out_t, out_s = g_before(xs, x["source_pose"], x["target_pose"])
    c_t, s_t = reference_terms(vgg, out_t, xt)
    c_s, s_s = reference_terms(vgg, out_s, xs)
    groups = [opt.lambda_rec * (out_t - xt).abs().mean() + opt.lambda_style * s_t + opt.lambda_content * c_t,
              opt.lambda_rec * (out_s - xs).abs().mean() + opt.lambda_style * s_s + opt.lambda_content * c_s,
              opt.lambda_g * ((discriminator_from(d_after, layers)(out_t) - 1) ** 2).mean()]
    params = list(g_before.parameters())
    basis = []
    for loss in groups:
        parts = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        basis.append(torch.cat([(q if q is not None else torch.zeros_like(p)).flatten()
                                for q, p in zip(parts, params)]).double())
    got = torch.cat([grads[id(p)].flatten() for p in unwrap(model.netG).parameters()]).double()
    a = torch.stack(basis, 1)  # (N, 3)
    coefficients = torch.linalg.solve(a.T @ a, a.T @ got)
    residual = (a @ coefficients - got).norm() / got.norm()
    assert coefficients.tolist() == pytest.approx([opt.t_s_ratio, 1 - opt.t_s_ratio, 1.0], abs=1e-2)
    assert residual.item() < 1e-2


def test_gan_losses_and_gram():
    pred = torch.tensor([[-0.5, 0.25], [1.5, 2.0]])
    assert lsgan_loss(pred, True).item() == pytest.approx(((pred - 1) ** 2).mean().item())
    assert lsgan_loss(pred, False).item() == pytest.approx((pred ** 2).mean().item())
    assert hinge_loss(pred, True, True).item() == pytest.approx((1.5 + 0.75 + 0 + 0) / 4)
    assert hinge_loss(pred, False, True).item() == pytest.approx((0.5 + 1.25 + 2.5 + 3.0) / 4)
    assert hinge_loss(pred, True, False).item() == pytest.approx(-pred.mean().item())
    f = torch.randn(2, 5, 4, 3)
    expected = torch.einsum("bchw,bdhw->bcd", f, f) / (5 * 4 * 3)
    torch.testing.assert_close(gram_matrix(f), expected)
    torch.testing.assert_close(gram_matrix(f.contiguous(memory_format=torch.channels_last)), expected)


# --- initialisation, optimizers, schedule (official `models/base_function.py` init_weights, get_scheduler) --

def singular_values(weight: torch.Tensor) -> torch.Tensor:
    return torch.linalg.svdvals(weight.detach().reshape(weight.shape[0], -1))


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")
def test_initialisation_optimizers_and_schedule(tmp_path, vgg_file):
    model = train_model(tmp_path, vgg_file)
    g, d = model.netG, model.netD
    for name, module in g.named_modules():
        kind = type(module).__name__
        if ("Conv" in kind or "Linear" in kind) and min(module.weight.shape[0], module.weight[0].numel()) > 1:
            sv = singular_values(module.weight)
            torch.testing.assert_close(sv, torch.full_like(sv, 0.02), rtol=1e-4, atol=1e-6, msg=name)
            assert module.bias.abs().max() == 0, name
        if kind == "InstanceNorm2d":
            assert torch.equal(module.weight, torch.ones_like(module.weight)) and module.bias.abs().max() == 0
    in_proj = g.PTM.encoder.layers[0].self_attn.in_proj_weight
    bound = math.sqrt(6.0 / (256 + 768))  # xavier_uniform, kept by the official init
    assert in_proj.abs().max() <= bound and in_proj.std() > 0.5 * bound / math.sqrt(3)
    assert g.PTM.encoder.layers[0].self_attn.in_proj_bias.abs().max() == 0
    sv = singular_values(g.PTM.encoder.layers[0].self_attn.out_proj.weight)
    torch.testing.assert_close(sv, torch.full_like(sv, 0.02), rtol=1e-4, atol=1e-6)
    sv = singular_values(d.block0.model[2].weight_orig)  # D: orthogonal through spectral norm's weight_orig
    torch.testing.assert_close(sv, torch.full_like(sv, 0.02), rtol=1e-4, atol=1e-6)

    opt_g, opt_d = model.optimizers
    assert {id(p) for p in opt_g.param_groups[0]["params"]} == {id(p) for p in g.parameters()}
    assert {id(p) for p in opt_d.param_groups[0]["params"]} == {id(p) for p in d.parameters()}
    for optimizer, lr in ((opt_g, 2e-4), (opt_d, 2e-5)):
        group = optimizer.param_groups[0]
        assert isinstance(optimizer, torch.optim.Adam)
        assert (group["lr"], group["betas"], group["eps"], group["weight_decay"]) == (lr, (0.5, 0.999), 1e-8, 0)
    rates = {}
    for epoch in range(1, 201):  # the rate used during epoch e, stepped once per epoch
        rates[epoch] = (opt_g.param_groups[0]["lr"], opt_d.param_groups[0]["lr"])
        model.update_learning_rate()
    expected = {1: 2e-4, 100: 2e-4, 101: 1.9802e-4, 150: 1.0099e-4, 190: 2.178e-5, 200: 1.98e-6}
    for epoch, lr in expected.items():
        assert rates[epoch][0] == pytest.approx(lr, rel=1e-3) and rates[epoch][1] == pytest.approx(lr / 10, rel=1e-3)
    assert rates[101][0] == pytest.approx(2e-4 * (1 - 1 / 101))


# --- VGG19 weights ---------------------------------------------------------------------------------------

def test_vgg_weights_missing_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_hub"))
    with pytest.raises(InputError) as info:
        DPTNModel(TrainOptions().parse(["--model", "DPTN", "--dataset_mode", "market", "--gpu_ids", "-1",
                                        f"--checkpoints_dir={tmp_path}"], echo=False), CPU)
    message = str(info.value)
    assert "vgg19-dcbb9e9d.pth" in message and "--vgg_path" in message and str(tmp_path / "empty_hub") in message


def test_vgg_path_loads_torchvision_weights_and_random_init_warns(tmp_path, vgg_file):
    model = train_model(tmp_path, vgg_file)
    state = vgg_state()
    for index in (0, 30):
        assert torch.equal(model.vgg.features[index].weight, state[f"features.{index}.weight"])
    assert len(model.vgg.features) == 32 and not any(p.requires_grad for p in model.vgg.parameters())
    with pytest.warns(UserWarning, match="RANDOM"):
        opt = TrainOptions().parse(["--model", "DPTN", "--dataset_mode", "market", "--gpu_ids", "-1",
                                    "--vgg_random_init", f"--checkpoints_dir={tmp_path}"], echo=False)
        DPTNModel(opt, CPU)
    bad = tmp_path / "not_vgg.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(InputError, match="not torchvision's VGG19"):
        train_model(tmp_path, bad)
