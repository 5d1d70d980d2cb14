"""Base machinery: schedules, initialisation, the resumable sampler, atomic writes, strict weight loading."""
from __future__ import annotations

import argparse
import os

import pytest
import torch
from torch import nn

from data.sampler import ResumableSampler
from models.networks.init import init_weights
from models.networks.schedulers import get_scheduler
from util.checkpoint import load_weights, save_weights, strip_wrapper_prefixes
from util.io import InputError, atomic_torch_save, atomic_write_text
from util.weights import VGG19, local_weights


def schedule_opt(policy: str, niter: int = 3, niter_decay: int = 4) -> argparse.Namespace:
    return argparse.Namespace(lr_policy=policy, epoch_count=1, niter=niter, niter_decay=niter_decay,
                              lr_decay_iters=2)


def rates(policy: str, epochs: int, **kw) -> list[float]:
    optimizer = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = get_scheduler(optimizer, schedule_opt(policy, **kw))
    values = []
    for _ in range(epochs):
        values.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return values


def test_linear_schedule_is_constant_then_decays_linearly():
    # epochs 1-3 at the base rate, then 1 - (e - 3) / 5 for e = 4..7 (DPTN's and pix2pix's rule)
    assert rates("linear", 7) == pytest.approx([1, 1, 1, 0.8, 0.6, 0.4, 0.2])
    assert rates("lambda", 7) == rates("linear", 7)
    assert rates("step", 5) == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    assert rates("constant", 4) == [1, 1, 1, 1]


def test_dptn_schedule_figures():
    # the official LambdaLR (`models/base_function.py` get_scheduler, iter_start 1): epochs 1-100 at 2e-4;
    # 101 -> 1.9802e-4; 150 -> 1.0099e-4; 200 -> 1.98e-6
    lr = [2e-4 * r for r in rates("linear", 200, niter=100, niter_decay=100)]
    assert lr[99] == pytest.approx(2e-4) and lr[100] == pytest.approx(1.9802e-4, rel=1e-4)
    assert lr[149] == pytest.approx(1.0099e-4, rel=1e-3) and lr[199] == pytest.approx(1.98e-6, rel=1e-2)


@pytest.mark.parametrize("init_type", ["normal", "xavier", "kaiming", "orthogonal"])
def test_init_weights(init_type):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(16, 32, 3), nn.BatchNorm2d(32), nn.Linear(64, 64))
    init_weights(net, init_type, gain=0.02)
    conv, bn, fc = net
    assert torch.count_nonzero(conv.bias) == 0 and torch.count_nonzero(fc.bias) == 0
    assert abs(bn.weight.mean().item() - 1.0) < 0.02
    if init_type == "normal":
        assert conv.weight.std().item() == pytest.approx(0.02, rel=0.1)
    if init_type == "orthogonal":
        w = fc.weight / 0.02
        assert torch.allclose(w @ w.T, torch.eye(64), atol=1e-4)
    if init_type == "kaiming":
        assert conv.weight.std().item() == pytest.approx((2 / (16 * 9)) ** 0.5, rel=0.1)
    with pytest.raises(ValueError, match="unknown init_type"):
        init_weights(net, "zeros")


def test_sampler_is_reproducible_and_resumes_mid_epoch():
    sampler = ResumableSampler(10, shuffle=True, seed=1)
    sampler.set_epoch(3)
    order = list(sampler)
    assert sorted(i for i, _ in order) == list(range(10)) and {e for _, e in order} == {3}
    sampler.set_epoch(3, skip=4)
    assert list(sampler) == order[4:] and len(sampler) == 6
    sampler.set_epoch(4)
    assert list(sampler) != order
    serial = ResumableSampler(5, shuffle=False, seed=1)
    assert [i for i, _ in serial] == [0, 1, 2, 3, 4]


def test_sampler_splits_between_ranks():
    ranks = [ResumableSampler(11, shuffle=True, seed=0, num_replicas=3, rank=r) for r in range(3)]
    for r in ranks:
        r.set_epoch(2)
    shares = [[i for i, _ in r] for r in ranks]
    assert all(len(s) == 4 for s in shares)
    assert set(sum(shares, [])) == set(range(11))  # padded by repeating, nothing lost


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "state.pth"
    atomic_torch_save({"a": 1}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_torch_save({"b": Unpicklable()}, path)
    assert torch.load(path) == {"a": 1}
    assert os.listdir(tmp_path) == ["state.pth"]  # no temp file left behind
    atomic_write_text(tmp_path / "x.txt", "hello")
    assert (tmp_path / "x.txt").read_text() == "hello"


def test_weights_round_trip_and_wrapper_prefixes(tmp_path):
    net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    save_weights(net, tmp_path / "w.pth")
    other = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    load_weights(other, tmp_path / "w.pth")
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), other.state_dict().values()))
    wrapped = {f"module._orig_mod.{k}": v for k, v in net.state_dict().items()}
    assert strip_wrapper_prefixes(wrapped).keys() == net.state_dict().keys()
    torch.save(wrapped, tmp_path / "wrapped.pth")
    load_weights(other, tmp_path / "wrapped.pth")


def test_partial_or_wrong_checkpoints_are_refused_by_name(tmp_path):
    net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    partial = {k: v for k, v in net.state_dict().items() if not k.startswith("1.")}
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(InputError, match=r"2 missing: 1\.weight, 1\.bias"):
        load_weights(net, tmp_path / "partial.pth")
    (tmp_path / "broken.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="broken.pth is unreadable"):
        load_weights(net, tmp_path / "broken.pth")
    with pytest.raises(InputError, match="absent.pth not found"):
        load_weights(net, tmp_path / "absent.pth")


def test_missing_pretrained_weights_name_the_file_and_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(InputError) as info:
        local_weights(VGG19)  # the suite runs with HPT_NO_DOWNLOAD=1 (tests/conftest.py)
    message = str(info.value)
    assert "vgg19-dcbb9e9d.pth" in message and str(tmp_path / "torch" / "hub" / "checkpoints") in message
    assert "--vgg_path" in message and "--vgg_random_init" in message and VGG19.url in message
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "vgg19-dcbb9e9d.pth").write_bytes(b"x")
    assert local_weights(VGG19, tmp_path / "w").name == "vgg19-dcbb9e9d.pth"
