"""The latent GAN on PG2's GFVs (docs/models/lgan.md): network shapes and parameter counts (KLW's Market table and
the DeepFashion shapes), spectral norm along weight dim 0, self-attention, the WGAN-GP terms, the GFV dataset's
split hygiene, and train.py -> resume -> test.py on a tiny synthetic GFV store."""
from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
import re

import numpy as np
import pytest
import torch
from torch import nn

import test as test_script
import train as train_script
from data.gfv_dataset import GfvDataset
from models import create_model
from models.lgan_model import GFVScale
from models.networks.lgan_discriminator import LGANDiscriminator
from models.networks.lgan_generator import LGANGenerator, check_gfv_shape
from models.networks.lgan_losses import critic_terms, generator_term, gradient_penalty
from models.networks.sagan_attention import SelfAttention, spectral_normed
from options.test_options import TestOptions
from options.train_options import TrainOptions
from util.checkpoint import load_training_state
from util.distributed import RunContext
from util.gfv_store import GFVStore, GFVStoreWriter
from util.io import InputError

MARKET = (384, 32, 16)
SMALL = (8, 32, 16)  # a legal GFV shape with few channels: the tests' stores
CPU = RunContext(device=torch.device("cpu"))


def trainable(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def write_store(folder, phase: str, count: int, shape=SMALL, seed: int = 0, pack: str = "files"):
    """A GFV store of random non-negative arrays (like ReLU outputs), written by the project's writer."""
    rng = np.random.default_rng(seed)
    writer = GFVStoreWriter(folder, shape, "float32", count, pack, {"source": "g2_enc", "phase": phase},
                            overwrite=False)
    with contextlib.redirect_stdout(io.StringIO()):
        for i in range(count):
            writer.add(f"{i:04d}_c1s1_{phase}.jpg", f"{i:04d}_c2s1_{phase}.jpg",
                       rng.gamma(1.0, 0.5, shape).astype(np.float32))
        writer.close()
    return folder


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("gfv")
    return write_store(root / "train", "train", 6), write_store(root / "test", "test", 5, seed=1)


# --- networks (spec row 8) -----------------------------------------------------------------------------

def test_market_generator_and_critic_match_klw_shapes_and_counts():
    torch.manual_seed(0)
    g, d = LGANGenerator(MARKET, z_dim=1), LGANDiscriminator(MARKET)
    out = g(torch.randn(3, 1))
    assert out.shape == (3, *MARKET) and out.abs().max() < 1
    assert d(out).shape == (3,)
    # KLW's table per stage; G without the ConvTranspose1d(144, 128, 1) KLW builds and never calls
    assert [trainable(getattr(g, n)) for n in ("l1", "l2", "l3", "attn1", "last")] == [
        4864, 524672, 131264, 5201, 295296]
    assert trainable(g) == 961297
    assert trainable(g) + trainable(nn.ConvTranspose1d(144, 128, 1)) == 979857  # KLW's count with it
    assert [trainable(getattr(d, n)) for n in ("l1", "l2", "l3", "attn1", "last")] == [
        393280, 131200, 524544, 82241, 2049]
    assert trainable(d) == 1133314
    assert g.last[0].kernel_size == (4, 3) and g.last[0].stride == (2, 1) and d.last[0].kernel_size == (4, 2)
    assert not any("_u" in n or "_v" in n for n, _ in g.named_parameters())  # u, v are buffers


@pytest.mark.parametrize("shape,g_kernel,g_stride,d_kernel", [
    ((512, 32, 32), (4, 4), (2, 2), (4, 4)),  # DeepFashion pad256
    ((512, 32, 22), (4, 9), (2, 1), (4, 2)),  # DeepFashion native
])
def test_deepfashion_shapes_are_derived(shape, g_kernel, g_stride, d_kernel):
    g, d = LGANGenerator(shape, z_dim=2), LGANDiscriminator(shape)
    out = g(torch.randn(2, 2))
    assert out.shape == (2, *shape) and d(out).shape == (2,)
    assert (g.last[0].kernel_size, g.last[0].stride, d.last[0].kernel_size) == (g_kernel, g_stride, d_kernel)


@pytest.mark.parametrize("shape", [(64,), (384, 64, 32), (384, 25, 16), (384, 32, 40)])
def test_shapes_it_cannot_build_are_refused_by_name(shape):
    shown = str(tuple(shape)) if len(shape) != 3 else f"{shape[0]}@{shape[1]}x{shape[2]}"
    with pytest.raises(InputError, match=f"shape {re.escape(shown)}"):
        check_gfv_shape(shape)


def test_spectral_norm_of_conv_transpose_is_along_dim_0():
    layer = spectral_normed(nn.ConvTranspose2d(16, 8, 4, 2, 1))
    assert layer.parametrizations.weight[0]._u.shape == (16,)  # u lives in in_channels (dim 0)
    layer.train()
    for _ in range(100):  # each access in training mode runs one power iteration
        weight = layer.weight
    along_0 = torch.linalg.matrix_norm(weight.detach().reshape(16, -1), ord=2)
    along_1 = torch.linalg.matrix_norm(weight.detach().transpose(0, 1).reshape(8, -1), ord=2)
    assert along_0 == pytest.approx(1.0, abs=1e-4)
    assert abs(along_1 - 1.0) > 1e-2  # PyTorch's default for transposed convs (dim 1) would normalise this one


def test_self_attention_starts_as_identity_and_matches_the_formula():
    torch.manual_seed(0)
    layer, x = SelfAttention(16), torch.randn(2, 16, 4, 3)
    assert torch.equal(layer(x), x)
    with torch.no_grad():
        layer.gamma.fill_(0.7)
    q, k, v = (conv(x).flatten(2) for conv in (layer.query_conv, layer.key_conv, layer.value_conv))
    attention = torch.softmax(torch.einsum("bci,bcj->bij", q, k), dim=-1)  # over keys j, unscaled
    expected = 0.7 * torch.einsum("bcj,bij->bci", v, attention).reshape(x.shape) + x
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


# --- losses (spec row 9) -------------------------------------------------------------------------------

def test_gradient_penalty_is_zero_for_a_unit_gradient_linear_critic():
    torch.manual_seed(0)
    w = torch.randn(*SMALL)
    unit = w / w.norm()
    real, fake, alpha = torch.rand(4, *SMALL), torch.rand(4, *SMALL), torch.rand(4, 1, 1, 1)
    assert gradient_penalty(lambda x: (x * unit).sum((1, 2, 3)), real, fake, alpha).abs() < 1e-6
    assert gradient_penalty(lambda x: (x * 3 * unit).sum((1, 2, 3)), real, fake, alpha) == pytest.approx(4.0)
    # a non-linear critic: the penalty at x̂ from its own autograd, checked against a finite difference of D
    d = LGANDiscriminator(SMALL).double().eval()
    real, fake = real.double(), fake.double()
    penalty = gradient_penalty(d, real, fake, alpha.double())
    mixed = (alpha.double() * real + (1 - alpha.double()) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(d(mixed).sum(), mixed)
    assert penalty.item() == pytest.approx(((grad.flatten(1).norm(dim=1) - 1) ** 2).mean().item(), rel=1e-9)
    assert penalty.requires_grad  # create_graph: it trains D


def test_wasserstein_terms():
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([-2.0, 0.0])
    terms = critic_terms(real, fake)
    assert terms["D_real"].item() == -2.0 and terms["D_fake"].item() == -1.0
    assert generator_term(fake).item() == 1.0


def train_opt(store, tmp_path, *extra):
    argv = ["--model", "LGAN", "--dataset_mode", "gfv", "--gfv_dir", str(store), "--name", "lgan",
            "--checkpoints_dir", str(tmp_path / "ck"), "--gpu_ids", "-1", "--num_threads", "0", *extra]
    return TrainOptions().parse(argv, echo=False)


def test_one_wgan_gp_iteration_updates_both_networks_with_finite_losses(stores, tmp_path):
    opt = train_opt(stores[0], tmp_path, "--batch_size", "3", "--gfv_normalize", "standard")
    assert (opt.lr, opt.beta1, opt.beta2, opt.lambda_gp, opt.d_iters, opt.lgan_z_dim) == (1e-4, 0.5, 0.9, 10, 1, 1)
    torch.manual_seed(0)
    model = create_model(opt, CPU)
    model.setup()
    model.train()
    dataset = GfvDataset(opt)
    batch = {"gfv": torch.stack([dataset[i]["gfv"] for i in range(3)]), "index": torch.arange(3),
             "source_name": [r[0] for r in dataset.rows[:3]], "target_name": [r[1] for r in dataset.rows[:3]]}
    model.set_input(batch)
    stats = GFVStore(stores[0]).meta["stats"]
    expected = (batch["gfv"] - torch.tensor(stats["mean"]).view(-1, 1, 1)) / torch.tensor(stats["std"]).view(-1, 1, 1)
    torch.testing.assert_close(model.gfv, expected.float())
    before = {n: [p.detach().clone() for p in getattr(model, "net" + n).parameters()] for n in ("G", "D")}
    g, d, x = copy.deepcopy(model.netG), copy.deepcopy(model.netD), model.gfv.clone()
    torch.manual_seed(5)
    model.optimize_parameters()
    # the same iteration written out: Wasserstein D step, separate penalty D step, G step with a fresh z'
    torch.manual_seed(5)
    opt_g, opt_d = (torch.optim.Adam(n.parameters(), lr=1e-4, betas=(0.5, 0.9)) for n in (g, d))
    with torch.no_grad():
        fake = g(torch.randn(3, 1))
    opt_d.zero_grad()
    (-d(x).mean() + d(fake).mean()).backward()  # D(x) first: each call runs one power iteration
    opt_d.step()
    alpha = torch.rand(3, 1, 1, 1)
    mixed = (alpha * x + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(d(mixed).sum(), mixed, create_graph=True)
    opt_d.zero_grad()
    (10 * ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()).backward()
    opt_d.step()
    fake = g(torch.randn(3, 1))
    opt_g.zero_grad()
    (-d(fake).mean()).backward()
    opt_g.step()
    for mine, reference in ((model.netG, g), (model.netD, d)):
        for (key, a), b in zip(mine.state_dict().items(), reference.state_dict().values()):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=key)
    losses = model.get_current_losses()
    assert list(losses) == ["D_real", "D_fake", "D_gp", "G"] and all(np.isfinite(list(losses.values())))
    assert losses["D_gp"] > 0
    for name, old in before.items():
        assert any(not torch.equal(a, b) for a, b in zip(old, getattr(model, "net" + name).parameters())), name
    visuals = model.get_current_visuals()
    assert [tuple(v.shape) for v in visuals.values()] == [(1, 3, 32, 16)] * 2
    assert min(v.min() for v in visuals.values()) == -1 and max(v.max() for v in visuals.values()) == 1


def test_a_bf16_iteration_gives_finite_losses(stores, tmp_path):
    opt = train_opt(stores[0], tmp_path, "--batch_size", "2", "--amp", "bf16")
    model = create_model(opt, CPU)
    model.setup()
    model.train()
    items = [GfvDataset(opt)[i] for i in range(2)]
    model.set_input({"gfv": torch.stack([i["gfv"] for i in items]), "index": torch.arange(2),
                     "source_name": ["a", "b"], "target_name": ["c", "d"]})
    model.optimize_parameters()
    assert all(np.isfinite(list(model.get_current_losses().values())))


def test_the_default_output_folder_is_named_after_the_store_phase(stores, tmp_path):
    opt = TestOptions().parse(["--model", "LGAN", "--dataset_mode", "gfv", "--gfv_dir", str(stores[0]), "--name",
                               "x", "--checkpoints_dir", str(tmp_path), "--gpu_ids", "-1"], echo=False)
    assert opt.results_dir == "./results/x/gfv_lgan_train" and opt.gfv_arrays is False


def test_gfv_scale_maps_the_stored_range():
    stats = {"min": [0.0, 2.0], "max": [4.0, 3.0], "mean": [1.0, 2.5], "std": [2.0, 0.5]}
    x = torch.tensor([0.0, 4.0, 2.0, 3.0]).view(2, 2, 1)  # channel 0: min, max; channel 1: min, max
    minmax, standard = GFVScale(2, "minmax", stats), GFVScale(2, "standard", stats)
    assert minmax.normalize(x).flatten().tolist() == [-1.0, 1.0, -1.0, 1.0]
    assert standard.normalize(x).flatten().tolist() == [-0.5, 1.5, -1.0, 1.0]
    torch.testing.assert_close(standard.denormalize(standard.normalize(x)), x)
    assert torch.equal(GFVScale(2).normalize(x), x)
    with pytest.raises(InputError, match="stats.min must list 3"):
        GFVScale(3, "minmax", stats)


# --- options and data (spec row 7) ---------------------------------------------------------------------

def test_a_test_phase_store_is_refused_for_training_unless_allowed(stores, tmp_path):
    with pytest.raises(InputError, match="phase test.*--allow_test_gfv"):
        GfvDataset(train_opt(stores[1], tmp_path))
    dataset = GfvDataset(train_opt(stores[1], tmp_path, "--allow_test_gfv"))
    item = dataset[2]
    assert len(dataset) == 5 and item["gfv"].dtype == torch.float32 and item["gfv"].shape == SMALL
    np.testing.assert_array_equal(item["gfv"].numpy(), GFVStore(stores[1])[2])
    assert (item["source_name"], item["target_name"]) == GFVStore(stores[1]).rows[2][:2]


@pytest.mark.parametrize("extra,message", [
    (["--accum_steps", "2", "--batch_size", "2"], "--accum_steps must be 1"),
    (["--amp", "fp16"], "--amp fp16 is not supported"),
    (["--init_type", "normal"], "--init_type"),
    (["--d_iters", "0"], "--d_iters must be >= 1"),
])
def test_flags_it_cannot_honour_are_refused(stores, tmp_path, extra, message):
    with pytest.raises(InputError, match=message):
        train_opt(stores[0], tmp_path, *extra)


def test_torchrun_training_is_refused(stores, tmp_path):
    with pytest.raises(InputError, match="one process"):
        create_model(train_opt(stores[0], tmp_path), RunContext(device=torch.device("cpu"), world_size=2))


def test_other_dataset_modes_and_a_missing_folder_are_refused(tmp_path):
    with pytest.raises(InputError, match="--dataset_mode gfv"):
        TrainOptions().parse(["--model", "LGAN", "--dataset_mode", "synthetic", "--checkpoints_dir",
                              str(tmp_path)], echo=False)
    with pytest.raises(InputError, match="needs --gfv_dir"):
        TrainOptions().parse(["--model", "LGAN", "--dataset_mode", "gfv", "--checkpoints_dir", str(tmp_path)],
                             echo=False)


# --- train.py -> resume -> test.py -----------------------------------------------------------------------

def run(main, argv) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(argv) == 0
    return out.getvalue()


@pytest.mark.slow  # three short training runs and a test run
def test_train_resume_and_test_write_a_store_of_generated_gfvs(stores, tmp_path):
    train_store, test_store = stores
    common = ["--model", "LGAN", "--dataset_mode", "gfv", "--name", "lgan", "--checkpoints_dir", str(tmp_path),
              "--gpu_ids", "-1", "--num_threads", "0", "--seed", "3"]
    train = common + ["--gfv_dir", str(train_store), "--batch_size", "4", "--gfv_normalize", "minmax",
                      "--display_freq", "4", "--print_freq", "4"]
    run(train_script.main, train + ["--max_steps", "1"])
    run_dir = tmp_path / "lgan"
    assert {p.name for p in run_dir.glob("latest_net_*.pth")} == {"latest_net_G.pth", "latest_net_D.pth",
                                                                    "latest_net_S.pth"}
    assert "fake_gfv_mean.png" in (run_dir / "web" / "index.html").read_text()
    log = run(train_script.main, train + ["--max_steps", "3", "--continue_train"])  # from mid-epoch 1
    assert "1 iterations done" in log
    assert load_training_state(run_dir / "latest_train_state.pth")["progress"]["total_iters"] == 3
    straight = [a if a != "lgan" else "straight" for a in train]  # the same 3 iterations without a stop
    run(train_script.main, straight + ["--max_steps", "3"])
    for net in ("G", "D", "S"):
        resumed = torch.load(run_dir / f"latest_net_{net}.pth", weights_only=True)
        uninterrupted = torch.load(tmp_path / "straight" / f"latest_net_{net}.pth", weights_only=True)
        assert all(torch.equal(resumed[k], uninterrupted[k]) for k in uninterrupted), net  # an exact resume

    out = tmp_path / "generated"
    test = common + ["--gfv_dir", str(test_store), "--batch_size", "2", "--results_dir", str(out)]
    assert "wrote 5 generated GFVs" in run(test_script.main, test)
    written, source = GFVStore(out), GFVStore(test_store)
    assert [r[:2] for r in written.rows] == [r[:2] for r in source.rows] and written.shape == SMALL
    meta = json.loads((out / "gfv_meta.json").read_text())
    assert meta["source"] == "lgan" and meta["phase"] == "test" and meta["gfv_source"] == "g2_enc"
    provenance = meta["provenance"]
    assert provenance["lgan_checkpoint"]["G"]["path"] == str((run_dir / "latest_net_G.pth").resolve())
    assert len(provenance["lgan_checkpoint"]["G"]["sha256"]) == 64
    assert provenance["input_store"]["folder"] == str(test_store.resolve()) and provenance["gfv_normalize"] == "minmax"

    # rebuild every GFV: z of row i from the seeded generator, G in eval mode, de-normalised with the training
    # store's min/max (tanh's (-1, 1) -> each channel's [min, max])
    opt = TestOptions().parse(test, echo=False, check_folder=False)
    model = create_model(opt, CPU)
    model.setup()
    z = torch.randn(5, 1, generator=torch.Generator().manual_seed(3))
    stats = GFVStore(train_store).meta["stats"]
    low, high = (torch.tensor(stats[k]).view(-1, 1, 1) for k in ("min", "max"))
    with torch.no_grad():
        expected = (model.netG(z) + 1) / 2 * (high - low) + low
    got = torch.from_numpy(np.stack([written[i] for i in range(5)]))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert (got >= low - 1e-5).all() and (got <= high + 1e-5).all()

    with pytest.raises(InputError, match="already holds a GFV export"):  # a second run does not replace it
        test_script.main.__wrapped__(test)
    other = tmp_path / "other"
    with pytest.raises(InputError, match="trained with --lgan_z_dim 1, asked for 2"):
        test_script.main.__wrapped__(test + ["--lgan_z_dim", "2", "--results_dir", str(other)])
    assert not other.exists()
    with open(out / "manifest.csv", newline="") as f:
        assert sum(1 for _ in csv.reader(f)) == 6
