"""Training progress: an offline HTML page (always), loss_log.txt, a PIL loss plot, visdom and TensorBoard.

Only rank 0 writes or connects anything; other ranks get no-ops. visdom is imported only when
`--display_id > 0`; when no server answers on this machine one is started (util/visdom_server.py, no
network needed) and keeps running after training. Any visdom failure (not installed, no server, lost
mid-run) costs one warning and leaves the HTML page running. `--tensorboard` writes event files to
`<run>/tensorboard/`. The page keeps the newest `--max_snapshots` visual rows (older PNGs are deleted)
and its loss plot starts from the whole loss_log.txt, so a resumed run keeps its earlier curve.
"""
from __future__ import annotations

import contextlib
import io
import logging
import re
import time
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from util.distributed import RunContext
from util.html import HTML
from util.image import save_image, tensor_to_uint8
from util.io import append_line
from util import visdom_server
from util.loss_plot import LossHistory, format_loss, read_loss_log, render_loss_plot
from util.pose_drawing import heatmaps_to_image

LOSS_PLOT_NAME = "loss_curves.png"
CONNECT_TIMEOUT_S = 1.0  # a local server answers in milliseconds; don't stall training start
PAGE_WIDTH = 1400  # px: visuals wrap into rows no wider than this (util/html.py's grid has the same cap)
MIN_THUMBNAIL = 128  # px: narrower visuals on the page wrap instead
_IMAGE_NAME = re.compile(r"^epoch(\d+)_step(\d+)_(.+)\.png$")


class VisdomWarning(UserWarning):
    """visdom is unavailable or stopped answering; training continues with the HTML page."""


def visual_to_uint8(visual: torch.Tensor | np.ndarray) -> np.ndarray:
    """First batch element of a (B, C, H, W) or (C, H, W) visual as uint8 (H, W, 3), by channel count.

    C=3: image in [-1, 1]; C=1: mask in [0, 1] as grey; other C (18 pose maps): heatmaps_to_image.
    A uint8 (H, W, 3) array (an image drawn already, e.g. a skeleton) passes through.
    """
    if isinstance(visual, np.ndarray) and visual.dtype == np.uint8 and visual.ndim == 3 and visual.shape[2] == 3:
        return visual
    t = torch.as_tensor(visual).detach()
    if t.ndim == 4:
        t = t[0]
    if t.ndim != 3:
        raise ValueError(f"a visual must be (B, C, H, W) or (C, H, W), got shape {tuple(t.shape)}")
    if t.shape[0] == 3:
        return tensor_to_uint8(t)
    if t.shape[0] == 1:
        grey = (t[0].float().clamp(0.0, 1.0) * 255.0).to(torch.uint8).cpu().numpy()
        return np.repeat(grey[..., None], 3, axis=2)
    return heatmaps_to_image(t)


def _safe_label(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", label) or "visual"


@contextlib.contextmanager
def _quiet_visdom():
    """visdom prints 'waiting' lines and logs a warning per session; our one warning is enough."""
    logger = logging.getLogger("visdom")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


# --- the visualizer ----------------------------------------------------------------------------------

class Visualizer:
    """HTML page + loss_log.txt + PIL loss plot on rank 0, and visdom when `--display_id > 0`.

    plot_interval_s: the loss PNG is re-rendered at most this often from plot_current_losses (it is
    also written by display_current_results and close()), so frequent loss plotting stays cheap.
    """

    def __init__(self, opt, ctx: RunContext, plot_interval_s: float = 30.0, max_points: int = 1000) -> None:
        self.opt = opt
        self.max_snapshots = int(getattr(opt, "max_snapshots", 50) or 50)
        self.env = getattr(opt, "display_env", None) or opt.name
        self.tb = None
        self.server_proc = None  # the visdom server this run started, if any (it outlives the run)
        self.is_main = ctx.is_main
        self.name = opt.name
        self.display_id = int(getattr(opt, "display_id", 0) or 0)
        self.win_size = int(getattr(opt, "display_winsize", 256) or 256)
        self.run_dir = Path(opt.checkpoints_dir) / opt.name
        self.web_dir = self.run_dir / "web"
        self.image_dir = self.web_dir / "images"
        self.log_path = self.run_dir / "loss_log.txt"
        self.loss_plot_path = self.image_dir / LOSS_PLOT_NAME
        self.history = LossHistory(max_points)
        self.plot_interval_s = plot_interval_s
        self._plot_written_at: float | None = None
        self._plot_dirty = False
        self._entries: dict[tuple[int, int], list[tuple[str, str]]] = {}  # (epoch, step) -> [(label, file)]
        self.vis = None
        if not self.is_main:
            return
        self.image_dir.mkdir(parents=True, exist_ok=True)
        self._entries = self._scan_images()  # a resumed run keeps the rows of earlier sessions
        self.restore_history()  # ... and its loss curve, read before this run's header is appended
        append_line(self.log_path, f"================ Training Loss "
                                   f"({datetime.now().strftime('%Y-%m-%d %H:%M:%S')}) ================")
        if self.display_id > 0:
            self.vis = self._connect_visdom()
        if getattr(opt, "tensorboard", False):
            from util.tensorboard_writer import TensorBoardWriter

            self.tb = TensorBoardWriter(self.run_dir / "tensorboard")
            tqdm.write(f"TensorBoard: event files in {self.tb.log_dir} (tensorboard --logdir {self.tb.log_dir})")

    # --- visdom ---

    @property
    def index_path(self) -> Path:
        return self.web_dir / "index.html"

    def _server(self) -> str:
        return f"{self.opt.display_server}:{self.opt.display_port}"

    def _connect_visdom(self):
        try:
            import visdom
        except ImportError:
            warnings.warn(f"--display_id {self.display_id} asks for visdom, which is not installed "
                          f"(pip install visdom); continuing with the HTML page only: {self.index_path}",
                          VisdomWarning, stacklevel=3)
            return None
        port, server = self.opt.display_port, self.opt.display_server
        started = ""
        if visdom_server.is_local(server) and not visdom_server.answers(server, port, CONNECT_TIMEOUT_S):
            try:
                self.server_proc = visdom_server.launch(port, Path.home() / ".visdom",
                                                        self.run_dir / "visdom_server.log")
                started = (f"; started it (pid {self.server_proc.pid}, log {self.run_dir / 'visdom_server.log'}), "
                           f"it keeps running after training: stop it with `kill {self.server_proc.pid}`")
            except (RuntimeError, OSError) as e:
                warnings.warn(f"no visdom server at {self._server()} and starting one failed ({e}); start one "
                              f"with `python -m util.visdom_server -port {port}` or use --display_id 0; "
                              f"continuing with the HTML page only: {self.index_path}", VisdomWarning, stacklevel=3)
                return None
        try:
            with _quiet_visdom():
                # raise_exceptions=True: failures reach us as exceptions instead of printed tracebacks
                vis = visdom.Visdom(server=server, port=port, env=self.env,
                                    raise_exceptions=True, use_incoming_socket=False)
                connected = vis.check_connection(timeout_seconds=CONNECT_TIMEOUT_S)
            reason = "no answer"
        except Exception as e:  # any failure to connect just means no live plots
            connected, reason = False, f"{type(e).__name__}: {e}"
        if not connected:
            warnings.warn(f"no visdom server at {self._server()} ({reason}); start one with "
                          f"`python -m util.visdom_server -port {port}` (needs no network) or use "
                          f"--display_id 0; continuing with the HTML page only: {self.index_path}",
                          VisdomWarning, stacklevel=3)
            return None
        note = ""
        if self.server_proc is not None and visdom_server.missing_page_scripts():
            note = ("; its page stays blank until visdom's browser scripts are installed once, with network: "
                    "`python -m util.visdom_server --fetch_scripts` (the data is on the server already)")
        tqdm.write(f"visdom: {server}:{port}/env/{self.env} (environment {self.env}){started}{note}")
        return vis

    def _visdom_call(self, method: str, **kwargs) -> None:
        """Call vis.<method>; a False result or a connection error warns once and turns visdom off."""
        if self.vis is None:
            return
        try:
            result, reason = getattr(self.vis, method)(**kwargs), "it returned False"
        except OSError as e:  # ConnectionError and requests' errors are OSErrors
            result, reason = False, f"{type(e).__name__}: {e}"
        if result is False:
            self.vis = None
            warnings.warn(f"lost the visdom server at {self._server()} mid-run ({method}: {reason}); "
                          f"no more visdom updates in this run, the HTML page goes on: {self.index_path}",
                          VisdomWarning, stacklevel=3)

    # --- images and page ---

    def display_current_results(self, visuals: dict[str, torch.Tensor], epoch: int, step: int) -> None:
        """Save each visual's first batch element, rebuild index.html (newest first), send to visdom and
        TensorBoard; rows beyond the newest --max_snapshots leave the page and the disk."""
        if not self.is_main:
            return
        images = {label: visual_to_uint8(v) for label, v in visuals.items()}
        files = []
        for label, image in images.items():
            filename = f"epoch{epoch:03d}_step{step:08d}_{_safe_label(label)}.png"
            save_image(image, self.image_dir / filename)
            files.append((label, filename))
        if files:  # a model without visuals (DPIG stage II) adds no row
            self._entries[(epoch, step)] = files
        self._drop_old_snapshots()
        if self._plot_dirty:
            self._write_loss_plot()
        self._write_page()
        if self.vis is not None and images:
            self._send_images(images, epoch, step)
        if self.tb is not None:
            self.tb.images(step, images)
            self.tb.flush()

    def _drop_old_snapshots(self) -> None:
        for key in sorted(self._entries)[:max(len(self._entries) - self.max_snapshots, 0)]:
            for _, filename in self._entries.pop(key):
                (self.image_dir / filename).unlink(missing_ok=True)

    def columns(self, image_width: int) -> int:
        """Visuals per row so that a row stays within PAGE_WIDTH px (DPTN's many visuals wrap)."""
        return max(1, PAGE_WIDTH // (min(int(image_width), PAGE_WIDTH) + 8))

    def _send_images(self, images: dict[str, np.ndarray], epoch: int, step: int) -> None:
        h, w = next(iter(images.values())).shape[:2]
        same_size = [im if im.shape[:2] == (h, w) else np.asarray(Image.fromarray(im).resize((w, h)))
                     for im in images.values()]
        grid = np.stack(same_size).transpose(0, 3, 1, 2).astype(np.float32) / 255.0  # (N, 3, H, W)
        self._visdom_call("images", tensor=grid, nrow=min(len(same_size), self.columns(w)), padding=2, win=self.display_id + 1,
                          opts={"title": f"{self.name} epoch {epoch} step {step}",
                                "caption": " | ".join(images)})

    def _scan_images(self) -> dict[tuple[int, int], list[tuple[str, str]]]:
        entries: dict[tuple[int, int], list[tuple[str, str]]] = {}
        for path in sorted(self.image_dir.glob("epoch*_step*_*.png")):
            m = _IMAGE_NAME.match(path.name)
            if m:
                entries.setdefault((int(m[1]), int(m[2])), []).append((m[3], path.name))
        return entries

    def _write_page(self) -> None:
        page = HTML(self.web_dir, f"Experiment name = {self.name}")
        page.add_header(f"Experiment: {self.name}", level=2)
        if self.loss_plot_path.is_file():
            page.add_header("Loss curves")
            rel = f"images/{LOSS_PLOT_NAME}"
            with Image.open(self.loss_plot_path) as plot:
                plot_width = plot.width
            page.add_images([rel], ["losses (averaged over calls once the run is long)"], [rel], width=plot_width)
        for epoch, step in sorted(self._entries, reverse=True):
            row = self._entries[(epoch, step)]
            # a snapshot fits on one row where it can (thumbnails link to the full PNGs): DPTN's six visuals at
            # --display_winsize 512 would otherwise make each snapshot three screens tall
            width = min(self.win_size, PAGE_WIDTH, max(MIN_THUMBNAIL, PAGE_WIDTH // len(row) - 16))
            page.add_header(f"epoch {epoch}, step {step}")
            links = [f"images/{f}" for _, f in row]
            try:
                with Image.open(self.image_dir / row[0][1]) as first:  # reads the header only
                    height = round(width * first.height / max(first.width, 1))
            except OSError:  # deleted by hand: the browser shows a broken image, the page is still written
                height = width
            page.add_grid(links, [label for label, _ in row], links, width=width, height=height)
        page.save()

    # --- losses ---

    def print_current_losses(self, epoch: int, epoch_iter: int, losses: dict[str, float],
                             t_comp: float, t_data: float) -> str:
        """pix2pix's loss line; printed (tqdm-safe) and appended to loss_log.txt on rank 0."""
        message = f"(epoch: {epoch}, iters: {epoch_iter}, time: {t_comp:.3f}, data: {t_data:.3f}) "
        message += " ".join(f"{name}: {format_loss(value)}" for name, value in losses.items())
        if self.is_main:
            tqdm.write(message)
            append_line(self.log_path, message)
        return message

    def plot_current_losses(self, epoch: int, counter_ratio: float, losses: dict[str, float],
                            step: int | None = None) -> None:
        """Add a point at epoch + counter_ratio; update visdom, (throttled) loss_curves.png and, given the
        iteration `step`, TensorBoard (tags loss/<name>)."""
        if not self.is_main:
            return
        if step is not None and self.tb is not None:
            self.tb.scalars(step, losses, "loss")
        self.history.add(epoch + counter_ratio, {k: float(v) for k, v in losses.items()})
        self._plot_dirty = True
        now = time.monotonic()
        if self._plot_written_at is None or now - self._plot_written_at >= self.plot_interval_s:
            self._write_loss_plot()
        if self.vis is not None:
            x, y = self.history.arrays()
            names = self.history.names
            xs = np.repeat(x[:, None], len(names), axis=1)
            if len(names) == 1:
                xs, y = xs[:, 0], y[:, 0]
            self._visdom_call("line", X=xs, Y=y, win=self.display_id,
                              opts={"title": f"{self.name} loss over time", "legend": list(names),
                                    "xlabel": "epoch", "ylabel": "loss", "ytype": "log"})

    def restore_history(self, epoch_samples: int | None = None) -> None:
        """Rebuild the loss curve from loss_log.txt; train.py passes the samples of an epoch so the earlier
        points sit where this run's own points go (epoch + samples / epoch_samples)."""
        if not self.is_main:
            return
        self.history = LossHistory(self.history.max_points)
        for x, losses in read_loss_log(self.log_path, epoch_samples):
            self.history.add(x, losses)
        self._plot_dirty = len(self.history) > 0

    def log_scalars(self, step: int, values: dict[str, float], group: str = "train") -> None:
        """Other per-step numbers (learning rates, img_per_s) for TensorBoard as <group>/<name>."""
        if self.is_main and self.tb is not None:
            self.tb.scalars(step, values, group)

    def _write_loss_plot(self) -> None:
        first = not self.loss_plot_path.is_file()
        x, y = self.history.arrays()
        save_image(render_loss_plot(x, y, self.history.names, f"{self.name}: losses"), self.loss_plot_path)
        self._plot_written_at = time.monotonic()
        self._plot_dirty = False
        if first:
            self._write_page()  # the page shows the curve from its first version on

    def close(self) -> None:
        """Write the final loss plot and page (call at the end of training)."""
        if self.is_main:
            if self._plot_dirty:
                self._write_loss_plot()
            self._write_page()
            if self.tb is not None:
                self.tb.close()
