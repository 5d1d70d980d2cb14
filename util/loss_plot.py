"""Loss curves for the HTML page: bounded-memory history and a PIL-only line plot (no matplotlib)."""
from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# colour-blind-friendly first (Okabe-Ito), then extra distinct colours; all readable on white
LINE_COLORS = ((0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (230, 159, 0),
               (86, 180, 233), (0, 0, 0), (120, 60, 160), (150, 100, 30), (200, 30, 30))


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


# pix2pix's loss line: "(epoch: 3, iters: 400, time: 0.123, data: 0.010) G_GAN: 0.693 G_L1: 0.250"
_LOG_LINE = re.compile(r"^\(epoch: (\d+), iters: (\d+),[^)]*\)\s*(.*)$")
_LOG_VALUE = re.compile(r"([^\s:]+): (\S+)")


def read_loss_log(path: str | os.PathLike, epoch_samples: int | None = None) -> list[tuple[float, dict[str, float]]]:
    """The (x, losses) points of a loss_log.txt, oldest first, so a resumed run's plot keeps them.

    x = epoch + iters / epoch_samples, as train.py plots them; the line has no epoch length, so without
    `epoch_samples` the largest position logged stands in for it. Header and unreadable lines are skipped.
    """
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = _LOG_LINE.match(line.strip())
        if not m:
            continue
        losses = {}
        for name, value in _LOG_VALUE.findall(m[3]):
            try:
                losses[name] = float(value)
            except ValueError:
                pass
        if losses:
            rows.append((int(m[1]), int(m[2]), losses))
    epoch_length = epoch_samples or max((iters for _, iters, _ in rows), default=0) or 1
    return [(epoch + iters / epoch_length, losses) for epoch, iters, losses in rows]


def format_loss(value: float) -> str:
    """pix2pix's 3 decimals, but 3 significant digits below 0.01 so small terms (1e-4) stay readable."""
    value = float(value)
    return f"{value:.3f}" if value == 0 or not math.isfinite(value) or abs(value) >= 0.01 else f"{value:.3g}"


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


def _log_ticks(lo: float, hi: float) -> tuple[list[float], list[str]]:
    """Ticks (in log10 units) at powers of ten, or at 1-2-5 steps when the range is under two decades."""
    first, last = math.floor(lo), math.ceil(hi)
    mantissas = (1.0,) if last - first >= 2 else (1.0, 2.0, 5.0)
    ticks = [k + math.log10(m) for k in range(first, last + 1) for m in mantissas]
    ticks = [t for t in ticks if lo - 1e-9 <= t <= hi + 1e-9] or [lo]
    return ticks, [f"{10.0 ** t:.0e}".replace("e-0", "e-").replace("e+00", "") for t in ticks]


def render_loss_plot(x: np.ndarray, y: np.ndarray, names: list[str], title: str = "losses",
                     size: tuple[int, int] = (900, 500), log_y: bool | None = None) -> np.ndarray:
    """Line plot of y (N, K) against x (N,) with axes, ticks, grid and a legend; uint8 (H, W, 3).

    PIL only, so the plot needs no matplotlib; NaN values leave gaps in their line. log_y (default:
    when every value is > 0) puts the y axis on a log scale, so a 1e-4 style term next to a GAN
    term of 1 keeps its own visible curve instead of a flat line at the bottom.
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
    if log_y is None:
        log_y = bool((finite > 0).all())
    legend_values = y
    if log_y:
        y = np.where(y > 0, np.log10(np.where(y > 0, y, 1.0)), np.nan)  # non-positive values leave gaps
        finite = y[np.isfinite(y)]
    lo, hi = float(finite.min()), float(finite.max())
    if log_y:
        span = max(hi - lo, 0.3)
        y0, y1 = lo - 0.05 * span, hi + 0.05 * span
        yticks, ylabels = _log_ticks(y0, y1)
    else:
        span = hi - lo if hi - lo > 1e-12 else max(abs(hi), 1.0) * 0.1
        y0, y1 = lo - 0.05 * span, hi + 0.05 * span
        if lo >= 0:
            y0 = max(y0, 0.0)  # losses are usually >= 0; don't show a meaningless negative range
        yticks, ystep = _nice_ticks(y0, y1, 6)
        ylabels = [_tick_label(t, ystep) for t in yticks]
    xticks, xstep = _nice_ticks(x0, x1, 8)

    legend = []
    for k, name in enumerate(names):
        column = legend_values[:, k]
        last = column[np.isfinite(column)]
        legend.append(f"{name} ({last[-1]:.3g})" if last.size else name)
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
    draw.text((left, top - 20), "loss (log scale)" if log_y else "loss", fill="black", font=font)

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
