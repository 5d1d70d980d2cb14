"""Live monitoring: a real visdom server (started offline, on a free 127.0.0.1 port), TensorBoard event
files, the loss history across a resume, the log-scale loss plot, the snapshot cap and the page grid."""
from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from options.train_options import TrainOptions
from util import visdom_server
from util.io import InputError
from util.loss_plot import LINE_COLORS, render_loss_plot
from util.visualizer import PAGE_WIDTH, Visualizer, VisdomWarning
from tests.test_visualizer import LOSSES, cpu_ctx, free_port, make_visuals, parse_page, visdom_warnings


def make_opt(tmp_path: Path, **kwargs) -> argparse.Namespace:
    opt = argparse.Namespace(name="run", checkpoints_dir=str(tmp_path), display_id=0,
                             display_server="http://localhost", display_port=8097, display_env="run_env",
                             display_winsize=64, max_snapshots=50, tensorboard=False)
    for key, value in kwargs.items():
        setattr(opt, key, value)
    return opt


# --- visdom -----------------------------------------------------------------------------------------

def test_visdom_started_offline_receives_plots_and_images_then_loss_warns_once(tmp_path, monkeypatch, capsys):
    visdom = pytest.importorskip("visdom")
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the started server keeps its envs in ~/.visdom
    port = free_port()
    vis = Visualizer(make_opt(tmp_path, display_id=1, display_port=port), cpu_ctx(), plot_interval_s=0)
    proc = vis.server_proc
    try:
        assert proc is not None and proc.poll() is None  # nobody answered, so the run started a server
        line = capsys.readouterr().out
        assert f"visdom: http://localhost:{port}/env/run_env (environment run_env)" in line
        assert f"kill {proc.pid}" in line
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            vis.plot_current_losses(1, 0.25, LOSSES, step=1)
            vis.plot_current_losses(1, 0.5, {**LOSSES, "G_style": 1e-4}, step=2)
            vis.display_current_results(make_visuals(), 1, 2)
        assert not visdom_warnings(record)
        # the server's own state (its HTTP API, as the browser page reads it)
        client = visdom.Visdom(server="http://localhost", port=port, env="run_env", raise_exceptions=True,
                               use_incoming_socket=False)
        windows = json.loads(client.get_window_data(env="run_env"))
        assert set(windows) == {"1", "2"}
        lines = windows["1"]
        assert lines["type"] == "plot" and lines["content"]["layout"]["yaxis"]["type"] == "log"
        assert [trace["name"] for trace in lines["content"]["data"]] == [*LOSSES, "G_style"]
        assert lines["content"]["data"][0]["y"] == [LOSSES["G_GAN"]] * 2
        image = windows["2"]
        assert image["type"] == "image" and image["content"]["src"].startswith("data:image/")
        assert "step 2" in image["title"]
        check_page_in_chromium(f"http://127.0.0.1:{port}/env/run_env", image["title"])
        # the server dies mid-run: one warning, then nothing more is attempted
        proc.kill()
        proc.wait(timeout=10)
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            for i in range(3):
                vis.plot_current_losses(2, 0.1 * i, LOSSES, step=10 + i)
                vis.display_current_results(make_visuals(), 2, 10 + i)
        warned = visdom_warnings(record)
        assert len(warned) == 1 and "mid-run" in str(warned[0].message)
        assert vis.vis is None and (tmp_path / "run" / "web" / "index.html").is_file()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def check_page_in_chromium(url: str, image_title: str) -> None:
    """What a browser shows: headless Chromium runs visdom's page scripts and renders the plot and the image
    (skipped where Chromium or the page scripts, `python -m util.visdom_server --fetch_scripts`, are absent)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None or visdom_server.missing_page_scripts():
        return
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=8000",
                          "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    assert "js-plotly-plot" in dom and "G_style" in dom  # the loss plot, every term in its legend
    assert re.search(r'<img class="content-image[^>]*src="data:image/png;base64,', dom)
    assert image_title in dom


def test_visdom_server_refused_start_warns_once(tmp_path, monkeypatch):
    pytest.importorskip("visdom")

    def fail(port, env_path, log_path):
        raise RuntimeError("the visdom server did not start")

    monkeypatch.setattr(visdom_server, "launch", fail)
    port = free_port()
    with pytest.warns(VisdomWarning) as record:
        vis = Visualizer(make_opt(tmp_path, display_id=1, display_port=port), cpu_ctx())
        vis.plot_current_losses(1, 0.1, LOSSES)
    warned = visdom_warnings(record)
    assert len(warned) == 1 and f"python -m util.visdom_server -port {port}" in str(warned[0].message)
    assert vis.vis is None


def test_missing_page_scripts_are_reported(tmp_path, monkeypatch):
    shared_utils = pytest.importorskip("visdom.utils.shared_utils")
    monkeypatch.setattr(shared_utils, "get_visdom_path", lambda sub="": str(tmp_path / sub))
    assert visdom_server.missing_page_scripts() == list(visdom_server.PAGE_SCRIPTS)
    for name in visdom_server.PAGE_SCRIPTS:
        (tmp_path / "static" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "static" / name).write_text("//")
    assert visdom_server.missing_page_scripts() == []
    assert set(visdom_server.PAGE_SCRIPTS) <= {t for files in visdom_server.NPM_FILES.values() for t in files.values()}


def test_only_this_machine_counts_as_local():
    assert visdom_server.is_local("http://localhost") and visdom_server.is_local("http://127.0.0.1")
    assert not visdom_server.is_local("http://example.org") and not visdom_server.is_local("http://10.0.0.5")


# --- TensorBoard ------------------------------------------------------------------------------------

def test_tensorboard_event_file_holds_losses_rates_and_images(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    vis = Visualizer(make_opt(tmp_path, tensorboard=True), cpu_ctx())
    for step in (1, 2, 3):
        vis.plot_current_losses(1, step / 10, {"G_L1": 0.1 * step, "G_style": 1e-4 * step}, step=step)
        vis.log_scalars(step, {"G": 2e-4, "D": 1e-4}, group="lr")
        vis.log_scalars(step, {"img_per_s": 10.0 * step}, group="speed")
    vis.display_current_results(make_visuals(), 1, 3)
    vis.close()
    log_dir = tmp_path / "run" / "tensorboard"
    assert list(log_dir.glob("events.out.tfevents.*"))
    events = EventAccumulator(str(log_dir), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert {"loss/G_L1", "loss/G_style", "lr/G", "lr/D", "speed/img_per_s"} <= set(tags["scalars"])
    l1 = events.Scalars("loss/G_L1")
    assert [e.step for e in l1] == [1, 2, 3] and np.allclose([e.value for e in l1], [0.1, 0.2, 0.3])
    assert np.isclose(events.Scalars("loss/G_style")[-1].value, 3e-4)
    assert set(tags["images"]) == {f"visuals/{k}" for k in make_visuals()}
    image = events.Images("visuals/fake_p2")[0]
    assert image.step == 3 and (image.width, image.height) == (24, 32)


def test_tensorboard_missing_is_one_error_at_the_command_line(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(InputError, match="--tensorboard needs the tensorboard package"):
        TrainOptions().parse(["--tensorboard", "--checkpoints_dir", str(tmp_path), "--model", "PG2"], echo=False)


# --- loss history and plot --------------------------------------------------------------------------

def test_loss_history_is_rebuilt_from_loss_log_on_resume(tmp_path):
    first = Visualizer(make_opt(tmp_path), cpu_ctx(), plot_interval_s=0)
    for i, iters in enumerate((100, 200, 300, 400)):
        losses = {"G_L1": 1.0 - 0.1 * i, "G_style": 2e-4 / (i + 1)}
        first.print_current_losses(1, iters, losses, 0.1, 0.01)
        first.plot_current_losses(1, iters / 400, losses)
    first.close()
    resumed = Visualizer(make_opt(tmp_path), cpu_ctx(), plot_interval_s=0)  # a --continue_train session
    x, y = resumed.history.arrays()
    assert resumed.history.names == ["G_L1", "G_style"]
    assert np.allclose(x, [1.25, 1.5, 1.75, 2.0])
    assert np.allclose(y[:, 0], [1.0, 0.9, 0.8, 0.7]) and np.allclose(y[:, 1], [2e-4, 1e-4, 6.67e-5, 5e-5], rtol=1e-2)
    resumed.plot_current_losses(2, 0.5, {"G_L1": 0.5, "G_style": 1e-5})
    assert len(resumed.history) == 5  # the new point follows the earlier ones
    log = (tmp_path / "run" / "loss_log.txt").read_text()
    assert "G_style: 0.0002\n" in log and "G_style: 6.67e-05\n" in log  # not 0.000: small terms keep 3 digits


def _rows_of(image: np.ndarray, colour: tuple[int, int, int], right: int) -> np.ndarray:
    ys, xs = np.nonzero((image == colour).all(axis=2))
    return ys[xs < right]  # the plot area only, not the legend swatch


def test_log_axis_keeps_a_1e4_term_visible():
    x = np.linspace(1, 3, 50)
    y = np.stack([1.0 + 0.2 * np.sin(x * 3), 1e-4 * (1 + 0.8 * np.sin(x * 5))], axis=1)
    log_plot = render_loss_plot(x, y, ["G_GAN", "G_style"])
    linear = render_loss_plot(x, y, ["G_GAN", "G_style"], log_y=False)
    right = 650  # left of the legend
    style_log, style_lin = _rows_of(log_plot, LINE_COLORS[1], right), _rows_of(linear, LINE_COLORS[1], right)
    gan_log = _rows_of(log_plot, LINE_COLORS[0], right)
    assert style_lin.max() - style_lin.min() <= 3  # on a shared linear axis the term is a flat line
    assert style_log.max() - style_log.min() > 60  # on the log axis its variation spans many pixel rows
    assert style_log.min() > gan_log.max()  # below the GAN curve, not on top of it


# --- page -------------------------------------------------------------------------------------------

def test_snapshot_cap_keeps_the_newest_on_page_and_disk(tmp_path):
    vis = Visualizer(make_opt(tmp_path, max_snapshots=3), cpu_ctx())
    for step in range(1, 6):
        vis.display_current_results(make_visuals(), 1, step)
    images = tmp_path / "run" / "web" / "images"
    assert sorted({p.name.split("_")[1] for p in images.glob("epoch*.png")}) == \
        ["step00000003", "step00000004", "step00000005"]
    assert len(list(images.glob("epoch*.png"))) == 3 * len(make_visuals())
    page = parse_page(tmp_path / "run" / "web" / "index.html")
    assert [h for h in page.headers if h.startswith("epoch")] == ["epoch 1, step 5", "epoch 1, step 4",
                                                                 "epoch 1, step 3"]
    Visualizer(make_opt(tmp_path, max_snapshots=2), cpu_ctx()).display_current_results(make_visuals(), 2, 6)
    assert len(list(images.glob("epoch*.png"))) == 2 * len(make_visuals())  # a resume applies the cap too


def test_many_visuals_wrap_into_a_bounded_grid(tmp_path):
    visuals = {f"v{i:02d}": torch.rand(1, 3, 32, 24) * 2 - 1 for i in range(12)}  # DPTN shows many
    vis = Visualizer(make_opt(tmp_path, display_winsize=256), cpu_ctx())
    vis.display_current_results(visuals, 1, 1)
    html = (tmp_path / "run" / "web" / "index.html").read_text()
    assert f"max-width: {PAGE_WIDTH}px" in html and html.count('<div class="grid">') == 1
    widths = [int(w) for w in re.findall(r'<img[^>]*width="(\d+)"', html)]
    heights = [int(h) for h in re.findall(r'<img[^>]*height="(\d+)"', html)]
    # 12 visuals cannot share one 1,400 px row above 128 px: thumbnails of 128 px, 10 per row
    assert widths == [128] * 12 and heights == [round(128 * 32 / 24)] * 12
    per_row = vis.columns(256)
    assert per_row == 5 and per_row * (256 + 8) <= PAGE_WIDTH
    assert vis.columns(4000) == 1
    six = dict(list(visuals.items())[:6])  # DPTN's six at its --display_winsize 512: one row of 217 px
    wide = Visualizer(make_opt(tmp_path / "wide", display_winsize=512), cpu_ctx())
    wide.display_current_results(six, 1, 1)
    html = (tmp_path / "wide" / "run" / "web" / "index.html").read_text()
    assert set(re.findall(r'<img[^>]*width="(\d+)"', html)) == {str(PAGE_WIDTH // 6 - 16)}
    one = Visualizer(make_opt(tmp_path / "one", display_winsize=3000), cpu_ctx())
    one.display_current_results({"v": visuals["v00"]}, 1, 1)
    html = (tmp_path / "one" / "run" / "web" / "index.html").read_text()
    assert set(re.findall(r'<img[^>]*width="(\d+)"', html)) == {str(PAGE_WIDTH - 16)}  # the grid gap and margins


