"""scripts/macs.py (MACs of forward passes) and the per-network figures of scripts/bench_train.py.

The PG2 networks are built at the paper's width on the meta device (shapes only, no arithmetic). The reference
figures, computed for the layer order of the official networks (budui/ and kevinleewy/Human-Pose-Transfer), count
G1's Up as those run it, nearest x2 then the 1x1 conv(s); ours runs the 1x1 convs first, on 4x fewer pixels (exactly equivalent, blocks.Up / blocks.DSUp), so
our networks execute fewer MACs and the official figure is ours plus 3x the MACs of those convs.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from models.networks.blocks import DSUp, Up
from models.networks.pg2_generator_stage1 import PG2GeneratorStage1
from models.networks.pg2_generator_stage2 import PG2GeneratorStage2
from models.pg2_options import GEOMETRIES
from scripts import bench_train
from scripts.macs import counted_macs, layer_macs, network_macs


class Tiny(nn.Module):
    """conv 3->8 k3, ReLU, depthwise 8 k3 s2, pointwise 8->4, nearest x2 (free), linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.depthwise = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8)
        self.pointwise = nn.Conv2d(8, 4, 1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.fc = nn.Linear(4 * 10 * 12, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, 10, 12) -> (B, 7)
        x = self.pointwise(self.depthwise(torch.relu(self.conv(x))))  # (B, 4, 5, 6)
        return self.fc(self.up(x).flatten(1))


# per image: out elements x Ci/groups x k x k; linear in x out
TINY = {"conv": 8 * 10 * 12 * 3 * 9, "depthwise": 8 * 5 * 6 * 1 * 9, "pointwise": 4 * 5 * 6 * 8,
        "fc": 480 * 7}


def test_hand_counted_macs_of_a_tiny_network():
    net, x = Tiny(), torch.randn(2, 3, 10, 12)
    assert TINY == {"conv": 25_920, "depthwise": 2_160, "pointwise": 960, "fc": 3_360}
    assert layer_macs(net, x) == {name: 2 * macs for name, macs in TINY.items()}  # batch 2
    # torch's counter agrees: 2 FLOPs per MAC, bias adds, ReLU and upsampling free
    assert counted_macs(lambda: net(x)) == 2 * sum(TINY.values())
    with torch.device("meta"):
        meta_net, meta_x = Tiny(), torch.empty(1, 3, 10, 12)
    assert layer_macs(meta_net, meta_x) == TINY


def test_network_macs_splits_by_network_and_sums_repeated_calls():
    tiny, other = Tiny(), nn.Linear(5, 3)
    x = torch.randn(1, 3, 10, 12)
    with network_macs({"T": tiny, "O": other, "idle": nn.Linear(2, 2)}) as macs:
        tiny(x)
        tiny(x)
        other(torch.randn(4, 5))
        assert macs == {}  # filled when the block ends
    assert macs == {"T": 2 * sum(TINY.values()), "O": 4 * 5 * 3}  # a network that did not run has no entry
    assert not tiny._forward_hooks and not tiny._forward_pre_hooks  # hooks removed


@pytest.mark.parametrize("groups", [1, 4, 8])
@pytest.mark.parametrize("transposed", [False, True])
def test_backward_of_grouped_convs_costs_what_the_forward_does(groups, transposed):
    """torch's own formula counts a grouped conv's weight gradient `groups` times over; ours does not."""
    conv = (nn.ConvTranspose2d(8, 8, 4, stride=2, padding=1, groups=groups) if transposed
            else nn.Conv2d(8, 8, 3, padding=1, groups=groups))
    x = torch.randn(2, 8, 6, 6)
    forward = sum(layer_macs(conv, x).values())
    assert counted_macs(lambda: conv(x).sum().backward()) == 2 * forward  # forward + grad_weight
    x.requires_grad_(True)
    assert counted_macs(lambda: conv(x).sum().backward()) == 3 * forward  # + grad_input
    counter = bench_train.counted_flops(lambda: conv(x).sum().backward())
    assert counter == 2 * 3 * forward  # what the benchmark's GFLOP/it uses


def test_bench_train_refuses_to_time_nothing(capsys):
    with pytest.raises(SystemExit):
        bench_train.main(["--model", "PG2", "--skip_training", "--skip_inference"])
    assert "nothing to time" in capsys.readouterr().err


def official_order_macs(net: nn.Module, *inputs: torch.Tensor) -> int:
    """MACs as the official code runs G1: the convs inside an Up / DSUp on the upsampled map (4x)."""
    per_layer = layer_macs(net, *inputs)
    ups = [name for name, m in net.named_modules() if isinstance(m, (Up, DSUp))]
    before_up = sum(macs for name, macs in per_layer.items() if any(name.startswith(u + ".") for u in ups))
    return sum(per_layer.values()) + 3 * before_up


# (geometry, arch, G1 official-order GMACs, G1 as we run it, G2, tolerance) per image; the reference figures
# are given to 2 decimals for Market, 1 for DeepFashion
FIGURES = [
    (("market", None), "standard", 37.38, 36.482, 10.20, 0.01),
    (("market", None), "mobile", 5.34, 4.446, 1.21, 0.01),
    (("fashion", "pad256"), "standard", 306.1, 298.666, 97.0, 0.05),
    (("fashion", "pad256"), "mobile", 43.9, 36.412, 11.5, 0.05),
    (("fashion", "native"), "standard", 205.6, 200.648, 66.7, 0.05),
    (("fashion", "native"), "mobile", 29.4, 24.451, 7.9, 0.05),
]


@pytest.mark.parametrize("key, arch, g1_official, g1_ours, g2, tol", FIGURES)
def test_pg2_gmacs_per_image_at_paper_width(key, arch, g1_official, g1_ours, g2, tol):
    geo = GEOMETRIES[key]
    with torch.device("meta"):
        g1 = PG2GeneratorStage1(geo.height, geo.width, geo.g1_depth, 128, arch=arch)
        net2 = PG2GeneratorStage2(geo.height, geo.width, geo.g2_depth, 128, geo.g2_skips, arch=arch)
        image, pose = torch.empty(1, 3, geo.height, geo.width), torch.empty(1, 18, geo.height, geo.width)
    ours = counted_macs(lambda: g1(image, pose))
    assert ours == sum(layer_macs(g1, image, pose).values())  # FlopCounterMode / 2 == the hook convention
    assert ours / 1e9 == pytest.approx(g1_ours, abs=1e-3)
    assert official_order_macs(g1, image, pose) / 1e9 == pytest.approx(g1_official, abs=tol)
    g2_macs = counted_macs(lambda: net2(image, image))
    assert g2_macs == sum(layer_macs(net2, image, image).values()) == official_order_macs(net2, image, image)
    assert g2_macs / 1e9 == pytest.approx(g2, abs=tol)  # G2 has no conv before an upsampling


def networks_rows(out: str) -> dict[tuple[str, str], tuple[int, int, str]]:
    """(variant, network) -> (parameters, trainable, GMACs/image text) from bench_train's networks table."""
    rows = {}
    table = out.split("\nnetworks:")[1].split("\n\n")[0].splitlines()[3:]
    for line in table:
        *label, net, params, trainable, gmacs = line.split()
        rows[(" ".join(label), net)] = (int(params.replace(",", "")), int(trainable.replace(",", "")), gmacs)
    return rows


@pytest.mark.slow
def test_bench_train_prints_parameters_and_gmacs_of_each_variant(capsys):
    argv = ["--model", "PG2", "--dataset_mode", "market", "--batch_size", "2", "--iters", "1", "--warmup", "0",
            "--skip_inference", "--extra", "--stage 2 --ngf 8", "--variant=--mobilenet"]
    assert bench_train.main(argv) == 0
    out = capsys.readouterr().out
    assert len([line for line in out.splitlines() if line.startswith("ours")]) == 2  # timing rows only
    rows = networks_rows(out)
    geo = GEOMETRIES[("market", None)]
    for label, arch in (("ours", "standard"), ("ours --mobilenet", "mobile")):
        g1 = PG2GeneratorStage1(geo.height, geo.width, geo.g1_depth, 8, arch=arch)
        g2 = PG2GeneratorStage2(geo.height, geo.width, geo.g2_depth, 8, geo.g2_skips, arch=arch)
        image, pose = torch.zeros(1, 3, geo.height, geo.width), torch.zeros(1, 18, geo.height, geo.width)
        coarse = g1(image, pose)
        for name, net, macs in (("G1", g1, counted_macs(lambda: g1(image, pose))),
                                ("G2", g2, counted_macs(lambda: g2(image, coarse)))):
            params, trainable, gmacs = rows[(label, name)]
            assert params == sum(p.numel() for p in net.parameters())
            assert trainable == (0 if name == "G1" else params)  # stage 2 freezes G1
            assert float(gmacs) == pytest.approx(macs / 1e9, abs=1e-3)
        assert rows[(label, "D")] == (4_323_777, 4_323_777, "-")  # D is not run by forward(); standard in both
