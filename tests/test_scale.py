"""Scale and speed options: torchrun/DDP (gloo on CPU), --amp, --accum_steps, --channels_last, --compile."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import torch._dynamo
from models import create_model
from models.base_model import unwrap
from scripts.bench_train import random_batch
from options.train_options import TrainOptions
from util.checkpoint import load_training_state
from util.distributed import RunContext

REPO = Path(__file__).resolve().parents[1]
CPU = RunContext(device=torch.device("cpu"))
DPTN = ["--model", "DPTN", "--vgg_random_init", "--dis_layers=3", "--lambda_g=5", "--lambda_rec", "2",
        "--t_s_ratio=0.8"]
PG2_STAGE1 = ["--model", "PG2", "--stage", "1", "--ngf", "8"]
# instance norm and no dropout: then micro-batches can equal the whole batch (batch statistics and dropout
# masks differ by construction); the image pools take the samples one by one, in the same order
PATN = ["--model", "PATN", "--vgg_random_init", "--norm", "instance", "--no_dropout", "--no_dropout_D"]
PNGAN = ["--model", "PNGAN", "--ngf", "8", "--ndf", "8", "--pngan_blocks", "2"]


def build(tmp_path: Path, model: list[str], *extra: str, seed: int = 0):
    opt = TrainOptions().parse(["--name", "m", "--dataset_mode", "market", "--gpu_ids", "-1",
                                "--checkpoints_dir", str(tmp_path), *model, *extra], echo=False)
    torch.manual_seed(seed)
    net = create_model(opt, CPU)
    net.setup()
    net.train()
    return net


def weights(model, leave_out: set[str] = frozenset()) -> dict[str, torch.Tensor]:
    return {f"{name}.{k}": v.detach().clone() for name, net in model.networks().items()
            for k, v in unwrap(net).state_dict().items() if f"{name}.{k}" not in leave_out}


def cancelled_biases(model) -> set[str]:
    """`<net>.<module>.bias` of every conv whose next module in its Sequential is an InstanceNorm."""
    found = set()
    for net_name, net in model.networks().items():
        for name, module in unwrap(net).named_modules():
            if isinstance(module, torch.nn.Sequential):
                children = list(module.named_children())
                for (child, layer), (_, following) in zip(children, children[1:]):
                    if getattr(layer, "bias", None) is not None and isinstance(following, torch.nn.InstanceNorm2d):
                        found.add(f"{net_name}.{name}.{child}.bias")
    return found


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def steps(model, count: int = 2, size: int = 4) -> None:
    for i in range(count):
        model.set_input(random_batch(size, 128, 64, seed=i))
        model.optimize_parameters()


# --- gradient accumulation and memory format ------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("model", [DPTN, PG2_STAGE1, PATN, PNGAN], ids=["DPTN", "PG2", "PATN", "PNGAN"])
def test_accumulated_micro_batches_equal_the_whole_batch(tmp_path, model):
    whole, split = build(tmp_path, model), build(tmp_path, model, "--batchSize", "4", "--accum_steps", "2")
    assert max_difference(weights(whole), weights(split)) == 0.0
    grads = {}
    for key, m in (("whole", whole), ("split", split)):  # the gradient each optimizer steps with
        for i, optimizer in enumerate(m.optimizers):
            def keep(o, args, kwargs, key=key, i=i):
                grads.setdefault((key, i), [p.grad.clone() for group in o.param_groups for p in group["params"]
                                            if p.grad is not None])
            optimizer.register_step_pre_hook(keep)
    steps(whole)
    steps(split)
    for i in range(len(whole.optimizers)):  # first steps: equal gradients (the mean over the whole batch)
        scale = max(a.abs().max().item() for a in grads["whole", i])
        for a, b in zip(grads["whole", i], grads["split", i], strict=True):
            torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4 * scale)
    # a conv bias right before an InstanceNorm is cancelled by it: its gradient is zero up to rounding noise,
    # which Adam's first steps scale up to +-lr, so such biases are left out of the weight comparison
    gauge = cancelled_biases(whole)
    moved = max_difference(weights(whole), weights(build(tmp_path, model)))
    assert moved > 1e-5  # the steps changed the weights, so the comparison below means something
    a, b = weights(whole, gauge), weights(split, gauge)
    if model is PATN:  # many of PATN's gradient entries are cancelling sums near Adam's eps, whose first updates
        # follow the rounding of the accumulation (the gradients matched above): compare 99% of them
        differences = torch.cat([(a[k].double() - b[k].double()).abs().flatten() for k in a])
        sample = differences[torch.randperm(len(differences), generator=torch.Generator().manual_seed(0))[:10**6]]
        assert torch.quantile(sample, 0.99) < 1e-2 * moved
    else:
        assert max_difference(a, b) < 1e-2 * moved
    losses_whole, losses_split = whole.get_current_losses(), split.get_current_losses()
    assert losses_whole.keys() == losses_split.keys()
    for name in losses_whole:
        assert losses_split[name] == pytest.approx(losses_whole[name], rel=1e-4, abs=1e-6), name


def test_accum_steps_must_divide_the_batch(tmp_path):
    from util.io import InputError

    with pytest.raises(InputError, match="--accum_steps must be >= 1 and divide --batchSize 3"):
        build(tmp_path, PG2_STAGE1, "--batchSize", "3", "--accum_steps", "2")


def test_channels_last_gives_the_same_step(tmp_path):
    plain, fast = build(tmp_path, PG2_STAGE1), build(tmp_path, PG2_STAGE1, "--channels_last")
    conv = next(p for p in unwrap(fast.netG1).parameters() if p.dim() == 4 and p.shape[-1] > 1)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    steps(plain)
    steps(fast)
    moved = max_difference(weights(plain), weights(build(tmp_path, PG2_STAGE1)))
    assert max_difference(weights(plain), weights(fast)) < 1e-2 * moved


# --- mixed precision ------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", [DPTN, PG2_STAGE1], ids=["DPTN", "PG2"])
def test_bf16_training_step_on_cpu_and_the_state_round_trip(tmp_path, model):
    amp = build(tmp_path, model, "--amp", "bf16")
    assert amp.amp_dtype == torch.bfloat16 and not amp.scaler.is_enabled()
    reference = build(tmp_path, model)
    steps(amp, count=1, size=2)
    steps(reference, count=1, size=2)
    losses, exact = amp.get_current_losses(), reference.get_current_losses()
    for name, value in losses.items():  # bf16 keeps about 3 significant digits
        assert torch.isfinite(torch.tensor(value)) and value == pytest.approx(exact[name], rel=0.05, abs=1e-2), name
    assert all(v.dtype == torch.float32 for v in weights(amp).values() if v.is_floating_point())  # fp32 masters
    state = amp.state_dict()
    assert state["amp"] == "bf16"
    again = build(tmp_path, model, "--amp", "bf16", seed=9)
    again.load_state_dict(state)
    assert max_difference(weights(amp), weights(again)) == 0.0


def test_fp16_scaler_state_is_saved_and_restored(tmp_path):
    model = build(tmp_path, PG2_STAGE1, "--amp", "fp16")
    assert model.scaler.is_enabled()
    steps(model, count=1, size=2)
    model.scaler.update(new_scale=1024.0)  # as after overflows: not the initial 65536
    state = model.state_dict()
    assert state["amp"] == "fp16" and state["scaler"]["scale"] == 1024.0
    fresh = build(tmp_path, PG2_STAGE1, "--amp", "fp16")
    fresh.load_state_dict(state)
    assert fresh.scaler.get_scale() == 1024.0


def test_gram_and_lsgan_stay_float32_under_autocast():
    from models.networks.losses import gram_matrix, lsgan_loss

    features = torch.rand(2, 8, 16, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        gram = gram_matrix(features.bfloat16())
        loss = lsgan_loss(torch.rand(2, 1, 4, 4).bfloat16(), True)
    assert gram.dtype == torch.float32 and loss.dtype == torch.float32
    torch.testing.assert_close(gram, gram_matrix(features.bfloat16().float()))


def test_sync_bn_on_cpu_is_refused_before_training(tmp_path):
    from util.io import InputError

    opt = TrainOptions().parse(["--name", "m", "--dataset_mode", "market", "--gpu_ids", "-1", "--checkpoints_dir",
                                str(tmp_path), *PG2_STAGE1, "--sync_bn"], echo=False)
    with pytest.raises(InputError, match="--sync_bn needs GPUs"):
        create_model(opt, RunContext(device=torch.device("cpu"), rank=0, world_size=2))


# --- torch.compile --------------------------------------------------------------------------------------

def test_compile_unavailable_falls_back_with_one_note(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch._dynamo, "is_dynamo_supported", lambda: False)
    model = build(tmp_path, PG2_STAGE1, "--compile")
    assert "--compile is not available here" in capsys.readouterr().out
    assert unwrap(model.netG1) is model.netG1  # eager
    steps(model, count=1, size=2)


# --- torchrun: 2 processes (gloo) against one process with the same global batch -----------------------

def train_argv(root: Path, ckpt: Path, name: str, batch_size: int, *extra: str, model: list[str] = DPTN) -> list[str]:
    return ["train.py", "--name", name, *model, "--dataset_mode", "market", "--dataroot", str(root),
            "--checkpoints_dir", str(ckpt), "--batchSize", str(batch_size), "--gpu_ids", "-1", "--num_threads", "0",
            "--seed", "5", "--niter", "2", "--niter_decay", "0", "--print_freq", "2", "--display_freq", "4",
            *extra]


def run(argv: list[str], processes: int = 1) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    result = subprocess.run(launcher + argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]


def run_weights(folder: Path, nets: tuple[str, ...] = ("G", "D")) -> dict[str, torch.Tensor]:
    return {f"{net}.{k}": v for net in nets
            for k, v in torch.load(folder / f"latest_net_{net}.pth", weights_only=True).items()}


def loss_lines(folder: Path) -> list[list[float]]:
    lines = [line for line in (folder / "loss_log.txt").read_text().splitlines() if line.startswith("(epoch")]
    return [[float(v) for v in line.split(")", 1)[1].split()[1::2]] for line in lines]


@pytest.mark.slow
def test_torchrun_gloo_matches_one_process_and_resumes_the_sampler(tiny_market_root, tmp_path):
    steps_wanted = 3
    run(train_argv(tiny_market_root, tmp_path, "single", 2, "--max_steps", str(steps_wanted)))
    run(train_argv(tiny_market_root, tmp_path, "ddp", 1, "--max_steps", str(steps_wanted)), processes=2)
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    # same global batch (2 = 2 ranks x 1), same seed: the logged losses (averaged over the ranks) and D agree;
    # G's deep weights start with gradients near Adam's eps, where float summation order alone moves them
    for a, b in zip(loss_lines(single), loss_lines(ddp), strict=True):
        assert b == pytest.approx(a, rel=2e-3, abs=2e-3)
    assert max_difference(run_weights(single, ("D",)), run_weights(ddp, ("D",))) < 1e-5
    # rank 0 alone writes: the same files as the single process
    assert sorted(p.name for p in ddp.iterdir()) == sorted(p.name for p in single.iterdir())
    # a distributed run stopped after 2 iterations and resumed gives the uninterrupted distributed run
    run(train_argv(tiny_market_root, tmp_path, "split", 1, "--max_steps", "2", "--save_latest_freq", "2"),
        processes=2)
    assert load_training_state(tmp_path / "split" / "latest_train_state.pth")["progress"]["epoch_iter"] == 2
    run(train_argv(tiny_market_root, tmp_path, "split", 1, "--max_steps", str(steps_wanted), "--continue_train"),
        processes=2)
    assert max_difference(run_weights(ddp), run_weights(tmp_path / "split")) == 0.0


@pytest.mark.slow
def test_torchrun_gloo_gives_the_one_process_weights(tiny_market_root, tmp_path):
    for name, batch_size, processes in (("single", 4, 1), ("ddp", 2, 2)):
        run(train_argv(tiny_market_root, tmp_path, name, batch_size, "--max_steps", "3", model=PG2_STAGE1),
            processes=processes)
    single, ddp = run_weights(tmp_path / "single", ("G1",)), run_weights(tmp_path / "ddp", ("G1",))
    assert max_difference(single, ddp) < 2e-6  # 3 Adam steps of lr 2e-5 move weights by about 6e-5


def test_speed_flags_through_train_py_and_test_py(tiny_market_root, tmp_path):
    import importlib.util

    import train as train_script

    spec = importlib.util.spec_from_file_location("pose_transfer_test_script_for_scale", REPO / "test.py")
    test_script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(test_script)
    common = ["--name", "fast", *PG2_STAGE1, "--dataset_mode", "market", "--dataroot", str(tiny_market_root),
              "--checkpoints_dir", str(tmp_path), "--gpu_ids", "-1", "--num_threads", "0", "--amp", "bf16",
              "--channels_last"]
    assert train_script.main(common + ["--batchSize", "4", "--accum_steps", "2", "--max_steps", "2"]) == 0
    state = load_training_state(tmp_path / "fast" / "latest_train_state.pth")
    assert state["model"]["amp"] == "bf16" and state["progress"]["total_iters"] == 2
    results = tmp_path / "results"
    assert test_script.main(common + ["--results_dir", str(results), "--how_many", "3", "--only_generated"]) == 0
    written = sorted(results.glob("*_vis.jpg"))
    assert len(written) == 3
    from PIL import Image

    assert Image.open(written[0]).size == (64, 128)
