"""Crashes and failures: kill -9 then resume, a kill while a checkpoint is written, corrupt states,
non-finite losses, visdom unreachable or lost mid-run."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import types
import warnings
from pathlib import Path

import pytest
import torch

import train as train_script
from util.checkpoint import load_training_state

REPO = Path(__file__).resolve().parents[1]


PG2_STAGE1 = ("--model", "PG2", "--stage", "1", "--ngf", "8")
# the real DPTN (9.79M parameters) with the Market README flags; random VGG19 weights (no download here);
# epochs of 8 random pairs (4 iterations), so that a short run crosses an epoch boundary
DPTN_MARKET = ("--model", "DPTN", "--vgg_random_init", "--dis_layers=3", "--lambda_g=5", "--lambda_rec", "2",
               "--t_s_ratio=0.8", "--pairs_per_epoch", "8")
# PATN (narrow, so that saving every iteration stays cheap) with Market's image pools, which must resume too;
# epochs of 18 random pairs
PATN_MARKET = ("--model", "PATN", "--vgg_random_init", "--ngf", "8", "--ndf", "8", "--pairs_per_epoch", "18")
# PN-GAN, narrow (the mechanism, not the size, is tested)
PNGAN_MARKET = ("--model", "PNGAN", "--ngf", "8", "--ndf", "8", "--pngan_blocks", "2")


def run_args(root: Path, ckpt: Path, name: str, *extra: str, model: tuple[str, ...] = PG2_STAGE1) -> list[str]:
    return ["--name", name, *model, "--dataset_mode", "market", "--dataroot", str(root),
            "--checkpoints_dir", str(ckpt), "--batchSize", "2", "--gpu_ids", "-1", "--num_threads", "0",
            "--seed", "5", "--niter", "3", "--niter_decay", "0", *extra]


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def train_process(argv: list[str]) -> subprocess.Popen:
    """train.py in a fresh process with one torch thread, so every run of the comparison computes alike."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "train.py", *argv], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def kill_then_resume(root: Path, tmp_path: Path, model: tuple, steps: int) -> None:
    """Run `victim` for `steps` iterations, saving 'latest' every iteration (2 samples), kill -9 it at a random
    iteration, resume it with --continue_train and check that it finished; the caller compares the weights."""
    argv = run_args(root, tmp_path, "victim", "--max_steps", str(steps), "--save_latest_freq", "2", model=model)
    proc = train_process(argv)
    kill_after = random.Random(os.getpid()).randint(2, steps - 3)
    state = tmp_path / "victim" / "latest_train_state.pth"
    deadline = time.time() + 300
    try:
        while time.time() < deadline:
            if state.is_file() and load_training_state(state)["progress"]["total_iters"] >= kill_after:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert kill_after <= load_training_state(state)["progress"]["total_iters"] < steps
    assert train_process(argv + ["--continue_train"]).wait() == 0
    assert load_training_state(state)["progress"]["total_iters"] == steps


@pytest.mark.parametrize("model,weights,steps", [(PG2_STAGE1, ("G1",), 12), (DPTN_MARKET, ("G", "D"), 6),
                                                 (PATN_MARKET, ("netG", "netD_PB", "netD_PP"), 12),
                                                 (PNGAN_MARKET, ("G", "D"), 12)],
                         ids=["PG2", "DPTN", "PATN", "PNGAN"])
@pytest.mark.slow
def test_kill_minus_9_then_resume_gives_the_uninterrupted_weights(tiny_market_root, tmp_path, model, weights, steps):
    """Every run crosses an epoch boundary (9 iterations per epoch; DPTN's epochs: 4)."""
    straight = run_args(tiny_market_root, tmp_path, "straight", "--max_steps", str(steps), model=model)
    assert train_process(straight).wait() == 0
    kill_then_resume(tiny_market_root, tmp_path, model, steps)
    for net in weights:  # D's spectral-norm vectors included (they are buffers of its state_dict)
        assert same_weights(tmp_path / "straight" / f"latest_net_{net}.pth",
                            tmp_path / "victim" / f"latest_net_{net}.pth")


def test_a_kill_while_writing_leaves_the_previous_checkpoint_loadable(tmp_path):
    target = tmp_path / "latest_net_G.pth"
    script = textwrap.dedent(f"""
        import os, signal, torch
        from util.io import atomic_torch_save
        atomic_torch_save({{"w": torch.ones(3)}}, {str(target)!r})
        real_save = torch.save
        def dying_save(obj, f):
            f.write(b"half a checkpoint")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        torch.save = dying_save
        atomic_torch_save({{"w": torch.zeros(3)}}, {str(target)!r})
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO)
    assert result.returncode == -signal.SIGKILL
    assert torch.equal(torch.load(target, weights_only=True)["w"], torch.ones(3))


def test_a_corrupt_latest_state_names_the_newest_intact_one(tiny_market_root, tmp_path, capsys):
    argv = run_args(tiny_market_root, tmp_path, "run", "--max_steps", "10", "--save_epoch_freq", "1")
    assert train_script.main(argv) == 0
    state = tmp_path / "run" / "latest_train_state.pth"
    state.write_bytes(state.read_bytes()[:1000])  # truncated, as by a full disk
    capsys.readouterr()
    assert train_script.main(argv + ["--continue_train"]) == 2
    err = capsys.readouterr().err
    assert "latest_train_state.pth is unreadable" in err and "resume with --which_epoch 1" in err


def test_nan_policy_skip_counts_and_finishes(tiny_market_root, tmp_path, capsys):
    argv = run_args(tiny_market_root, tmp_path, "skip", "--max_steps", "4", "--lr", "1e30", "--nan_policy", "skip")
    assert train_script.main(argv) == 0
    out = capsys.readouterr().out
    assert "--nan_policy skip:" in out and "optimizer update(s) were skipped" in out


class FakeVisdom:
    """Stand-in visdom client: connected, then every call fails after `fail_after` calls."""

    calls = 0
    fail_after = 3

    def __init__(self, *args, **kwargs):
        pass

    def check_connection(self, *args, **kwargs):
        return True

    def _call(self, *args, **kwargs):
        FakeVisdom.calls += 1
        if FakeVisdom.calls > FakeVisdom.fail_after:
            raise ConnectionError("server went away")
        return "win"

    images = line = text = image = _call


@pytest.mark.parametrize("situation", ["unreachable", "lost mid-run"])
def test_visdom_trouble_costs_one_warning_and_training_finishes(tiny_market_root, tmp_path, monkeypatch, situation):
    """127.0.0.2 is this machine's loopback but not a name the run starts a server for (localhost, 127.0.0.1)."""
    if situation == "lost mid-run":
        FakeVisdom.calls = 0
        monkeypatch.setitem(sys.modules, "visdom", types.SimpleNamespace(Visdom=FakeVisdom))
        port = "8097"
    else:
        import socket

        with socket.socket() as s:  # a port nobody listens on
            s.bind(("127.0.0.1", 0))
            port = str(s.getsockname()[1])
    argv = run_args(tiny_market_root, tmp_path, "vis", "--max_steps", "9", "--display_id", "1",
                    "--display_port", port, "--display_server", "http://127.0.0.2", "--print_freq", "2",
                    "--display_freq", "2")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert train_script.main(argv) == 0
    visdom_warnings = [w for w in caught if "visdom" in str(w.message).lower()]
    assert len(visdom_warnings) == 1, [str(w.message) for w in caught]
    assert (tmp_path / "vis" / "web" / "index.html").is_file() and (tmp_path / "vis" / "latest_net_G1.pth").is_file()
    if situation == "lost mid-run":
        assert FakeVisdom.calls == FakeVisdom.fail_after + 1  # no call after the failure
