"""Training progress: an offline HTML page (always), loss_log.txt, a PIL loss plot, visdom (optional).

Only rank 0 writes or connects anything; other ranks get no-ops. visdom is imported only when
`--display_id > 0`, is never launched, and any failure (not installed, no server, lost mid-run)
costs one warning and leaves the HTML page running.
"""
from __future__ import annotations

import contextlib
import io
import logging
import math
import re
import time
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from util.distributed import RunContext
from util.html import HTML
from util.image import save_image, tensor_to_uint8
from util.io import append_line
from util.pose_drawing import heatmaps_to_image

LOSS_PLOT_NAME = "loss_curves.png"
CONNECT_TIMEOUT_S = 1.0  # a local server answers in milliseconds; don't stall training start
_IMAGE_NAME = re.compile(r"^epoch(\d+)_step(\d+)_(.+)\.png$")
# colour-blind-friendly first (Okabe-Ito), then extra distinct colours; all readable on white
LINE_COLORS = ((0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (230, 159, 0),
               (86, 180, 233), (0, 0, 0), (120, 60, 160), (150, 100, 30), (200, 30, 30))


class VisdomWarning(UserWarning):
    """visdom is unavailable or stopped answering; training continues with the HTML page."""


# --- loss history ------------------------------------------------------------------------------------

class LossHistory:
    """Loss curves in O(max_points) memory: full resolution first, then neighbouring points are averaged.

    Each stored point is a bucket of raw calls; when there are too many points, pairs merge and the
    bucket size doubles, so a 100k-call run keeps the curve's shape in at most `max_points` points.
    Non-finite values are left out of the averages (they would blank the whole curve).
    """

    def __init__(self, max_points: int = 1000) -> None:
        self.max_points = max(2, int(max_points))
        self.names: list[str] = []
        self.bucket = 1  # raw calls per stored point
        self._points: list[tuple[int, float, dict[str, list[float]]]] = []  # (calls, sum x, name->[sum, n])
        self._pending: tuple[int, float, dict[str, list[float]]] | None = None
        self.calls = 0

    def add(self, x: float, losses: dict[str, float]) -> None:
        """Record one call: x (epoch + fraction) and its loss values."""
        self.calls += 1
        calls, sx, sums = self._pending or (0, 0.0, {})
        for name, value in losses.items():
            if name not in self.names:
                self.names.append(name)
            value = float(value)
            if math.isfinite(value):
                s = sums.setdefault(name, [0.0, 0])
                s[0] += value
                s[1] += 1
        self._pending = (calls + 1, sx + float(x), sums)
        if calls + 1 >= self.bucket:
            self._points.append(self._pending)
            self._pending = None
            if len(self._points) > self.max_points:
                self._halve()

    def _halve(self) -> None:
        merged = []
        for a, b in zip(self._points[0::2], self._points[1::2]):
            sums = {k: list(v) for k, v in a[2].items()}
            for k, (s, n) in b[2].items():
                t = sums.setdefault(k, [0.0, 0])
                t[0] += s
                t[1] += n
            merged.append((a[0] + b[0], a[1] + b[1], sums))
        leftover = self._points[-1] if len(self._points) % 2 else None
        self._points = merged
        self.bucket *= 2
        self._pending = leftover  # half a new bucket; it fills up with the next calls

    def __len__(self) -> int:
        return len(self._points) + (self._pending is not None)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """x (N,) and y (N, K) in the order of `names`; NaN where a loss has no value in a point."""
        points = self._points + ([self._pending] if self._pending is not None else [])
        x = np.array([sx / calls for calls, sx, _ in points], dtype=np.float64)
        y = np.full((len(points), len(self.names)), np.nan)
        for i, (_, _, sums) in enumerate(points):
            for k, name in enumerate(self.names):
                if name in sums and sums[name][1] > 0:
                    y[i, k] = sums[name][0] / sums[name][1]
        return x, y


# --- PIL loss plot -----------------------------------------------------------------------------------

def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # scalable on Pillow >= 10.1 with FreeType
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _nice_ticks(lo: float, hi: float, target: int) -> tuple[list[float], float]:
    """About `target` round tick values (1, 2, 2.5, 5 x 10^k steps) inside [lo, hi], and the step."""
    raw = (hi - lo) / max(target, 1)
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * mag >= raw * (1 - 1e-9))
    first = math.ceil(lo / step - 1e-9)
    ticks = [i * step for i in range(first, math.floor(hi / step + 1e-9) + 1)]
    return ticks, step


def _tick_label(value: float, step: float) -> str:
    return f"{round(value / step) * step:.6g}"


def render_loss_plot(x: np.ndarray, y: np.ndarray, names: list[str], title: str = "losses",
                     size: tuple[int, int] = (900, 500)) -> np.ndarray:
    """Line plot of y (N, K) against x (N,) with axes, ticks, grid and a legend; uint8 (H, W, 3).

    PIL only, so the plot needs no matplotlib; NaN values leave gaps in their line.
    """
    width, height = size
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font, title_font = _font(13), _font(16)

    def text_size(text: str, f=font) -> tuple[int, int]:
        l, t, r, b = draw.textbbox((0, 0), text, font=f)
        return r - l, b - t

    tw, _ = text_size(title, title_font)
    draw.text(((width - tw) // 2, 8), title, fill="black", font=title_font)
    finite = y[np.isfinite(y)] if y.size else y
    if finite.size == 0 or x.size == 0:
        draw.text((20, height // 2), "no loss values yet", fill="black", font=font)
        return np.asarray(img, dtype=np.uint8).copy()

    x0, x1 = float(np.min(x)), float(np.max(x))
    if x1 - x0 < 1e-12:
        x0, x1 = x0 - 0.5, x1 + 0.5
    lo, hi = float(finite.min()), float(finite.max())
    span = hi - lo if hi - lo > 1e-12 else max(abs(hi), 1.0) * 0.1
    y0, y1 = lo - 0.05 * span, hi + 0.05 * span
    if lo >= 0:
        y0 = max(y0, 0.0)  # losses are usually >= 0; don't show a meaningless negative range
    yticks, ystep = _nice_ticks(y0, y1, 6)
    xticks, xstep = _nice_ticks(x0, x1, 8)

    legend = []
    for k, name in enumerate(names):
        column = y[:, k]
        last = column[np.isfinite(column)]
        legend.append(f"{name} ({last[-1]:.3g})" if last.size else name)
    ylabels = [_tick_label(t, ystep) for t in yticks]
    left = 14 + max((text_size(s)[0] for s in ylabels), default=0)
    legend_width = max(text_size(s)[0] for s in legend) + 42
    right, top, bottom = width - legend_width - 12, 42, height - 46

    def px(v: float) -> float:
        return left + (v - x0) / (x1 - x0) * (right - left)

    def py(v: float) -> float:
        return bottom - (v - y0) / (y1 - y0) * (bottom - top)

    for t, label in zip(yticks, ylabels):
        draw.line([(left, py(t)), (right, py(t))], fill=(225, 225, 225))
        lw, lh = text_size(label)
        draw.text((left - 6 - lw, py(t) - lh / 2 - 2), label, fill="black", font=font)
    for t in xticks:
        draw.line([(px(t), top), (px(t), bottom)], fill=(225, 225, 225))
        label = _tick_label(t, xstep)
        draw.text((px(t) - text_size(label)[0] / 2, bottom + 5), label, fill="black", font=font)
    draw.rectangle([left, top, right, bottom], outline="black")
    ew, _ = text_size("epoch")
    draw.text(((left + right - ew) / 2, bottom + 24), "epoch", fill="black", font=font)
    draw.text((left, top - 20), "loss", fill="black", font=font)

    for k in range(y.shape[1]):
        colour = LINE_COLORS[k % len(LINE_COLORS)]
        ok = np.isfinite(y[:, k])
        run: list[tuple[float, float]] = []
        for i in range(len(x) + 1):  # split at NaN so missing values leave gaps
            if i < len(x) and ok[i]:
                run.append((px(x[i]), py(y[i, k])))
                continue
            if len(run) > 1:
                draw.line(run, fill=colour, width=2, joint="curve")
            elif run:
                (cx, cy), = run
                draw.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], fill=colour)
            run = []
        ly = top + 6 + 18 * k
        draw.line([(right + 12, ly + 7), (right + 34, ly + 7)], fill=colour, width=3)
        draw.text((right + 38, ly), legend[k], fill="black", font=font)
    return np.asarray(img, dtype=np.uint8).copy()


# --- visuals -----------------------------------------------------------------------------------------

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
        append_line(self.log_path, f"================ Training Loss "
                                   f"({datetime.now().strftime('%Y-%m-%d %H:%M:%S')}) ================")
        if self.display_id > 0:
            self.vis = self._connect_visdom()

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
        port = self.opt.display_port
        try:
            with _quiet_visdom():
                # raise_exceptions=True: failures reach us as exceptions instead of printed tracebacks
                vis = visdom.Visdom(server=self.opt.display_server, port=port,
                                    env=getattr(self.opt, "display_env", None) or self.name,
                                    raise_exceptions=True, use_incoming_socket=False)
                connected = vis.check_connection(timeout_seconds=CONNECT_TIMEOUT_S)
            reason = "no answer"
        except Exception as e:  # any failure to connect just means no live plots
            connected, reason = False, f"{type(e).__name__}: {e}"
        if not connected:
            warnings.warn(f"no visdom server at {self._server()} ({reason}); start one with "
                          f"`python -m visdom.server -p {port}` (it is never started for you) or use "
                          f"--display_id 0; continuing with the HTML page only: {self.index_path}",
                          VisdomWarning, stacklevel=3)
            return None
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
        """Save each visual's first batch element, rebuild index.html (newest first), send to visdom."""
        if not self.is_main:
            return
        images = {label: visual_to_uint8(v) for label, v in visuals.items()}
        files = []
        for label, image in images.items():
            filename = f"epoch{epoch:03d}_step{step:08d}_{_safe_label(label)}.png"
            save_image(image, self.image_dir / filename)
            files.append((label, filename))
        self._entries[(epoch, step)] = files
        if self._plot_dirty:
            self._write_loss_plot()
        self._write_page()
        if self.vis is not None and images:
            self._send_images(images, epoch, step)

    def _send_images(self, images: dict[str, np.ndarray], epoch: int, step: int) -> None:
        h, w = next(iter(images.values())).shape[:2]
        same_size = [im if im.shape[:2] == (h, w) else np.asarray(Image.fromarray(im).resize((w, h)))
                     for im in images.values()]
        grid = np.stack(same_size).transpose(0, 3, 1, 2).astype(np.float32) / 255.0  # (N, 3, H, W)
        self._visdom_call("images", tensor=grid, nrow=len(same_size), padding=2, win=self.display_id + 1,
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
            page.add_header(f"epoch {epoch}, step {step}")
            links = [f"images/{f}" for _, f in row]
            page.add_images(links, [label for label, _ in row], links, width=self.win_size)
        page.save()

    # --- losses ---

    def print_current_losses(self, epoch: int, epoch_iter: int, losses: dict[str, float],
                             t_comp: float, t_data: float) -> str:
        """pix2pix's loss line; printed (tqdm-safe) and appended to loss_log.txt on rank 0."""
        message = f"(epoch: {epoch}, iters: {epoch_iter}, time: {t_comp:.3f}, data: {t_data:.3f}) "
        message += " ".join(f"{name}: {float(value):.3f}" for name, value in losses.items())
        if self.is_main:
            tqdm.write(message)
            append_line(self.log_path, message)
        return message

    def plot_current_losses(self, epoch: int, counter_ratio: float, losses: dict[str, float]) -> None:
        """Add a point at epoch + counter_ratio; update visdom and (throttled) loss_curves.png."""
        if not self.is_main:
            return
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
                                    "xlabel": "epoch", "ylabel": "loss"})

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
