"""Visualizer, HTML page and pose drawing: files written, their content, and visdom's failure modes.

No visdom server is started here (tests/test_monitoring.py runs a real one): the unreachable case uses
an address that is not this machine, the other visdom tests put a recording stand-in module into
sys.modules and make starting a server fail.
"""
from __future__ import annotations

import argparse
import re
import socket
import sys
import time
import types
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
import torch
from PIL import Image

from util.distributed import RunContext
from util.html import HTML
from util.pose_drawing import KEYPOINT_COLORS, LIMB_COLORS, LIMBS, draw_skeleton, heatmaps_to_image
from util.loss_plot import LINE_COLORS, LossHistory
from util.visualizer import Visualizer, VisdomWarning

H, W = 32, 24


def make_opt(tmp_path: Path, display_id: int = 0, port: int = 8097) -> argparse.Namespace:
    return argparse.Namespace(name="run", checkpoints_dir=str(tmp_path), display_id=display_id,
                              display_server="http://localhost", display_port=port, display_env="run_env",
                              display_winsize=64)


def cpu_ctx(rank: int = 0, world_size: int = 1) -> RunContext:
    return RunContext(device=torch.device("cpu"), rank=rank, world_size=world_size)


def make_visuals() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    pose = torch.zeros(2, 18, H, W)
    pose[:, 3, 10, 7] = 1.0
    return {"input_P1": torch.rand(2, 3, H, W, generator=g) * 2 - 1, "input_BP2": pose,
            "mask": torch.rand(2, 1, H, W, generator=g), "fake_p2": torch.rand(2, 3, H, W, generator=g) * 2 - 1}


LOSSES = {"G_GAN": 0.693, "G_L1": 0.25, "D_real": 0.5}


def visdom_warnings(record) -> list:
    return [w for w in record if issubclass(w.category, VisdomWarning)]


class PageParser(HTMLParser):
    """Collects headings, img sources, link targets and paragraph text, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.headers, self.srcs, self.hrefs, self.texts, self._tag = [], [], [], [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self._tag = tag
        if tag == "img":
            self.srcs.append(attrs["src"])
        if tag == "a":
            self.hrefs.append(attrs["href"])

    def handle_data(self, data):
        if self._tag in ("h2", "h3") and data.strip():
            self.headers.append(data.strip())
        if self._tag in ("p", "figcaption") and data.strip():
            self.texts.append(data.strip())


def parse_page(path: Path) -> PageParser:
    parser = PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


# --- HTML page --------------------------------------------------------------------------------------

def test_html_page_relative_links_newest_first(tmp_path):
    vis = Visualizer(make_opt(tmp_path), cpu_ctx(), plot_interval_s=0)
    vis.plot_current_losses(1, 0.5, LOSSES)
    vis.display_current_results(make_visuals(), epoch=1, step=400)
    vis.display_current_results(make_visuals(), epoch=2, step=800)
    web = tmp_path / "run" / "web"
    page = parse_page(web / "index.html")
    html_text = (web / "index.html").read_text()
    assert "http://" not in html_text and "https://" not in html_text
    assert len(page.srcs) == 1 + 2 * 4
    for link in page.srcs + page.hrefs:
        assert not link.startswith("/") and ":" not in link
        assert (web / unquote(link)).is_file(), link
    assert page.srcs[0] == "images/loss_curves.png"  # the curve sits at the top
    assert page.srcs[1] == "images/epoch002_step00000800_input_P1.png"  # newest step first
    steps = [h for h in page.headers if h.startswith("epoch")]
    assert steps == ["epoch 2, step 800", "epoch 1, step 400"]
    assert page.texts.count("input_BP2") == 2 and page.texts.count("mask") == 2
    # the channel count picks the conversion: pose maps are coloured, masks are grey, images are RGB
    pose = np.asarray(Image.open(web / "images" / "epoch001_step00000400_input_BP2.png"))
    assert pose.shape == (H, W, 3) and tuple(pose[10, 7]) == tuple(KEYPOINT_COLORS[3]) and pose.sum() == \
        int(KEYPOINT_COLORS[3].astype(int).sum())
    mask = np.asarray(Image.open(web / "images" / "epoch001_step00000400_mask.png"))
    assert (mask[..., 0] == mask[..., 1]).all() and (mask[..., 0] == mask[..., 2]).all()
    image = np.asarray(Image.open(web / "images" / "epoch001_step00000400_input_P1.png"))
    expected = ((make_visuals()["input_P1"][0].clamp(-1, 1) + 1) / 2 * 255).to(torch.uint8).permute(1, 2, 0)
    assert np.array_equal(image, expected.numpy())


def test_resumed_run_keeps_earlier_rows(tmp_path):
    Visualizer(make_opt(tmp_path), cpu_ctx()).display_current_results(make_visuals(), 1, 400)
    Visualizer(make_opt(tmp_path), cpu_ctx()).display_current_results(make_visuals(), 2, 800)
    page = parse_page(tmp_path / "run" / "web" / "index.html")
    assert [h for h in page.headers if h.startswith("epoch")] == ["epoch 2, step 800", "epoch 1, step 400"]


def test_html_rejects_external_links(tmp_path):
    page = HTML(tmp_path, "t")
    with pytest.raises(ValueError, match="local files"):
        page.add_images(["https://example.com/a.png"], ["a"], ["a.png"])
    with pytest.raises(ValueError, match="outside"):
        page.add_images([str(tmp_path.parent / "x.png")], ["a"], ["x.png"])
    page.add_images([tmp_path / "images" / "a b#.png"], ["a"], ["images/a b#.png"], width=10)
    page.add_table([[1, 0.5]], header=["epoch", "SSIM"])
    path = page.save()
    assert path == tmp_path / "index.html"
    assert parse_page(path).srcs == ["images/a%20b%23.png"]
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temporary file


# --- loss log and plot ------------------------------------------------------------------------------

def test_loss_log_lines_appended(tmp_path, capsys):
    vis = Visualizer(make_opt(tmp_path), cpu_ctx())
    line = vis.print_current_losses(3, 400, {"G_GAN": 0.6931, "G_L1": torch.tensor(0.25)}, 0.1234, 0.0101)
    assert line == "(epoch: 3, iters: 400, time: 0.123, data: 0.010) G_GAN: 0.693 G_L1: 0.250"
    assert line in capsys.readouterr().out
    Visualizer(make_opt(tmp_path), cpu_ctx()).print_current_losses(4, 8, {"G_GAN": 1.0}, 1.0, 2.0)
    lines = (tmp_path / "run" / "loss_log.txt").read_text().splitlines()
    assert len(lines) == 4
    for header in (lines[0], lines[2]):  # one dated header per run start, earlier lines kept
        assert re.fullmatch(r"=+ Training Loss \(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\) =+", header)
    assert lines[1] == line
    assert lines[3] == "(epoch: 4, iters: 8, time: 1.000, data: 2.000) G_GAN: 1.000"


def test_loss_curves_png_readable_and_history_bounded(tmp_path):
    vis = Visualizer(make_opt(tmp_path), cpu_ctx(), plot_interval_s=3600, max_points=64)
    path = tmp_path / "run" / "web" / "images" / "loss_curves.png"
    for i in range(2000):
        epoch, ratio = 1 + i // 100, (i % 100) / 100
        vis.plot_current_losses(epoch, ratio, {"G_GAN": 0.7 + 0.1 * np.sin(i / 50), "G_L1": 1.0 / (1 + i / 100),
                                               "D_real": float("nan") if i == 5 else 0.5})
        if i == 0:
            first_version = path.read_bytes()  # the first call writes at once
    assert path.read_bytes() == first_version  # then at most once per plot_interval_s
    vis.close()
    assert path.read_bytes() != first_version
    assert len(vis.history) <= 64 and vis.history.calls == 2000
    x, y = vis.history.arrays()
    assert x[0] < 1.5 and x[-1] > 20.5 and np.isfinite(y).all()  # the whole run, NaN left out
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and 400 <= im.width <= 2000 and 250 <= im.height <= 1200
        pixels = np.asarray(im.convert("RGB")).reshape(-1, 3)
    for colour in LINE_COLORS[:3]:  # every loss has its line (and legend swatch)
        assert (pixels == colour).all(axis=1).sum() > 50
    assert (pixels == 0).all(axis=1).sum() > 500  # axes, ticks and text are drawn


def test_loss_history_merges_evenly():
    history = LossHistory(max_points=4)
    for i in range(16):
        history.add(i, {"a": i})
    x, y = history.arrays()
    assert len(history) <= 4 and np.allclose(x, y[:, 0])  # averaging keeps x and values in step
    assert np.isclose(x.mean(), 7.5)


# --- pose drawing -----------------------------------------------------------------------------------

def test_draw_skeleton_colours_limbs_between_visible_joints_only():
    kp = np.full((18, 2), -1)
    kp[1] = (20, 20)   # neck
    kp[2] = (20, 60)   # right shoulder, visible
    kp[8] = (70, 20)   # right hip, visible
    # right elbow (3) missing: limb (2,3) must not appear
    out = draw_skeleton(kp, 100, 80)
    assert out.shape == (100, 80, 3) and out.dtype == np.uint8
    assert tuple(out[20, 40]) == tuple(LIMB_COLORS[LIMBS.index((1, 2))])  # midpoint of neck-shoulder
    assert tuple(out[45, 20]) == tuple(LIMB_COLORS[LIMBS.index((1, 8))])
    assert tuple(out[20, 60]) == tuple(KEYPOINT_COLORS[2])  # joint drawn over limb
    assert len({tuple(c) for c in LIMB_COLORS}) == len(LIMBS) == 19
    # nothing far from the three joints and their two limbs (a limb toward (-1,-1) would cross here)
    drawn = out.any(axis=2)
    assert not drawn[:15].any() and not drawn[26:, 26:].any() and not drawn[76:].any()
    assert not draw_skeleton(np.full((18, 2), -1), 100, 80).any()


def test_draw_skeleton_on_background_and_bad_shape():
    background = np.full((50, 40, 3), 7, dtype=np.uint8)
    kp = np.full((18, 2), -1)
    kp[0] = (25, 20)
    out = draw_skeleton(torch.tensor(kp), 50, 40, background=background)
    assert tuple(out[25, 20]) == tuple(KEYPOINT_COLORS[0]) and tuple(out[0, 0]) == (7, 7, 7)
    assert (background == 7).all()  # drawn on a copy
    with pytest.raises(ValueError, match=r"\(18, 2\)"):
        draw_skeleton(np.zeros((17, 2)), 50, 40)


def test_heatmaps_to_image_peak_colour():
    maps = torch.zeros(18, 40, 30)
    yy, xx = torch.meshgrid(torch.arange(40.0), torch.arange(30.0), indexing="ij")
    maps[5] = torch.exp(-((yy - 12) ** 2 + (xx - 9) ** 2) / (2 * 2.0 ** 2))
    maps[11] = torch.exp(-((yy - 30) ** 2 + (xx - 20) ** 2) / (2 * 2.0 ** 2))
    out = heatmaps_to_image(maps)
    assert out.shape == (40, 30, 3) and out.dtype == np.uint8
    assert tuple(out[12, 9]) == tuple(KEYPOINT_COLORS[5]) and tuple(out[30, 20]) == tuple(KEYPOINT_COLORS[11])
    assert not out[0, 29].any()
    both = maps.clone()
    both[11] = both[5]  # same place: max-composite, not a sum that saturates
    assert tuple(heatmaps_to_image(both.numpy())[12, 9]) == tuple(np.maximum(KEYPOINT_COLORS[5],
                                                                              KEYPOINT_COLORS[11]))


# --- visdom -----------------------------------------------------------------------------------------

class FakeVisdom:
    """Stand-in for visdom.Visdom that records calls; `fail` switches it to 'return False' or 'raise'."""

    instances: list["FakeVisdom"] = []

    def __init__(self, **kwargs) -> None:
        self.kwargs, self.calls, self.fail = kwargs, [], None
        FakeVisdom.instances.append(self)

    def check_connection(self, timeout_seconds=0):
        return True

    def _record(self, name, kwargs):
        if self.fail == "raise":
            raise ConnectionError("Error connecting to Visdom server")
        self.calls.append((name, kwargs))
        return False if self.fail == "false" else "win"

    def images(self, tensor, **kwargs):
        return self._record("images", dict(kwargs, tensor=tensor))

    def line(self, Y, X=None, **kwargs):
        return self._record("line", dict(kwargs, X=X, Y=Y))


def refuse_to_start(port, env_path, log_path):
    raise RuntimeError("starting is disabled in this test")


@pytest.fixture
def fake_visdom(monkeypatch):
    monkeypatch.setattr("util.visdom_server.launch", refuse_to_start)
    monkeypatch.setattr("util.visdom_server.answers", lambda server, port, timeout_s=1.0: True)
    FakeVisdom.instances = []
    module = types.ModuleType("visdom")
    module.Visdom = FakeVisdom
    monkeypatch.setitem(sys.modules, "visdom", module)
    return FakeVisdom


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_visdom_unreachable_warns_once_and_training_goes_on(tmp_path, monkeypatch):
    pytest.importorskip("visdom")
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    port = free_port()
    opt = make_opt(tmp_path, display_id=1, port=port)
    opt.display_server = "http://127.0.0.2"  # not "this machine" for us (no server is started), and nobody answers
    start = time.monotonic()
    with pytest.warns(VisdomWarning) as record:
        vis = Visualizer(opt, cpu_ctx(), plot_interval_s=0)
        vis.display_current_results(make_visuals(), 1, 100)
        vis.plot_current_losses(1, 0.1, LOSSES)
        vis.print_current_losses(1, 100, LOSSES, 0.1, 0.01)
    assert time.monotonic() - start < 10
    warned = visdom_warnings(record)
    assert len(warned) == 1 and f"python -m util.visdom_server -port {port}" in str(warned[0].message)
    assert vis.vis is None and vis.server_proc is None and (tmp_path / "run" / "web" / "index.html").is_file()


def test_visdom_receives_images_and_lines(tmp_path, fake_visdom, recwarn):
    vis = Visualizer(make_opt(tmp_path, display_id=3, port=1234), cpu_ctx())
    (client,) = fake_visdom.instances
    assert client.kwargs["server"] == "http://localhost" and client.kwargs["port"] == 1234
    assert client.kwargs["env"] == "run_env"
    vis.display_current_results(make_visuals(), 1, 100)
    vis.plot_current_losses(1, 0.5, LOSSES)
    vis.plot_current_losses(1, 0.75, LOSSES)
    names = [name for name, _ in client.calls]
    assert names == ["images", "line", "line"]
    grid = client.calls[0][1]
    assert grid["tensor"].shape == (4, 3, H, W) and grid["nrow"] == 4 and grid["tensor"].max() <= 1.0
    line = client.calls[2][1]
    assert line["Y"].shape == (2, 3) and line["X"].shape == (2, 3) and line["opts"]["legend"] == list(LOSSES)
    assert np.allclose(line["X"][:, 0], [1.5, 1.75]) and np.allclose(line["Y"][-1], list(LOSSES.values()))
    assert not visdom_warnings(recwarn)


@pytest.mark.parametrize("failure", ["false", "raise"])
def test_visdom_lost_mid_run_warns_once_and_stops_calling(tmp_path, fake_visdom, recwarn, failure):
    vis = Visualizer(make_opt(tmp_path, display_id=1), cpu_ctx())
    (client,) = fake_visdom.instances
    vis.plot_current_losses(1, 0.1, LOSSES)
    client.fail = failure
    vis.display_current_results(make_visuals(), 1, 200)  # fails here
    attempted = len(client.calls)
    client.fail = None
    vis.plot_current_losses(1, 0.2, LOSSES)
    vis.display_current_results(make_visuals(), 1, 300)
    assert len(client.calls) == attempted  # nothing more was attempted
    warned = visdom_warnings(recwarn)
    assert len(warned) == 1 and "mid-run" in str(warned[0].message)
    page = parse_page(tmp_path / "run" / "web" / "index.html")
    assert [h for h in page.headers if h.startswith("epoch")] == ["epoch 1, step 300", "epoch 1, step 200"]


def test_visdom_check_connection_false_warns_once(tmp_path, fake_visdom, recwarn, monkeypatch):
    monkeypatch.setattr(FakeVisdom, "check_connection", lambda self, timeout_seconds=0: False)
    vis = Visualizer(make_opt(tmp_path, display_id=1, port=4321), cpu_ctx())
    vis.plot_current_losses(1, 0.1, LOSSES)
    warned = visdom_warnings(recwarn)
    assert len(warned) == 1 and "python -m util.visdom_server -port 4321" in str(warned[0].message)
    assert fake_visdom.instances[0].calls == []


def test_visdom_not_installed_warns_once_html_still_works(tmp_path, monkeypatch, recwarn):
    monkeypatch.setitem(sys.modules, "visdom", None)  # makes `import visdom` fail
    monkeypatch.setattr("util.visdom_server.launch", refuse_to_start)
    vis = Visualizer(make_opt(tmp_path, display_id=1), cpu_ctx())
    vis.display_current_results(make_visuals(), 1, 100)
    vis.plot_current_losses(1, 0.1, LOSSES)
    warned = visdom_warnings(recwarn)
    assert len(warned) == 1 and "not installed" in str(warned[0].message)
    assert parse_page(tmp_path / "run" / "web" / "index.html").srcs


def test_visdom_off_by_default_is_not_imported(tmp_path, fake_visdom, recwarn):
    vis = Visualizer(make_opt(tmp_path, display_id=0), cpu_ctx())
    vis.plot_current_losses(1, 0.1, LOSSES)
    assert fake_visdom.instances == [] and vis.vis is None and not visdom_warnings(recwarn)


# --- ranks ------------------------------------------------------------------------------------------

def test_non_main_rank_writes_nothing(tmp_path, fake_visdom, capsys):
    vis = Visualizer(make_opt(tmp_path, display_id=1), cpu_ctx(rank=1, world_size=2), plot_interval_s=0)
    vis.display_current_results(make_visuals(), 1, 100)
    vis.plot_current_losses(1, 0.1, LOSSES)
    line = vis.print_current_losses(1, 100, LOSSES, 0.1, 0.01)
    vis.close()
    assert line.startswith("(epoch: 1, iters: 100,")  # the message is still returned
    assert list(tmp_path.iterdir()) == [] and fake_visdom.instances == []
    assert capsys.readouterr().out == ""
