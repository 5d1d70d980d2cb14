"""SSIM (both windows), PSNR, L1 and MAE on the CPU as compiled streaming kernels (numba).

Why: the batched torch version in `metrics.ssim` makes some ninety float64 passes over every image and is
bound by memory traffic on a CPU. These kernels stream one image row at a time: the row's moments x, y,
x² + y², xy are filtered horizontally into a ring of the last window rows, filtered vertically from the
ring, and turned into SSIM values at once, so every intermediate stays in the L1/L2 cache and each image
is read once. The arithmetic is float64 throughout and the formulas are scikit-image's (see metrics.ssim):
values equal scikit-image's within ~1e-13. On uint8 input the uniform window's running sums are sums of
integers, hence exact.

Only the 'valid' interior is filtered: scikit-image crops (win - 1) // 2 pixels from each side of the SSIM
map, exactly the filter radius, so the kept pixels never see its reflect padding.
"""
from __future__ import annotations

import functools

import numpy as np
from numba import njit

from metrics.ssim_window import K1, K2, gaussian_taps


@njit(cache=True, nogil=True, error_model="numpy")
def _row_moments(x, y, i, out):
    """out[:, j] = x, y, x² + y², xy of row i, in float64."""
    for j in range(x.shape[1]):
        a = np.float64(x[i, j])
        b = np.float64(y[i, j])
        out[0, j] = a
        out[1, j] = b
        out[2, j] = a * a + b * b
        out[3, j] = a * b


@njit(cache=True, nogil=True, error_model="numpy")
def _ssim_row_sum(u, n, c1, c2, cov_norm):
    """Sum over one output row of S from the window means u = (ux, uy, E[x²+y²], E[xy]); u[0] is overwritten."""
    for j in range(n):
        ux = u[0, j]
        uy = u[1, j]
        ux_uy = ux * uy
        squares = ux * ux + uy * uy
        numerator = (2.0 * ux_uy + c1) * (2.0 * cov_norm * (u[3, j] - ux_uy) + c2)
        u[0, j] = numerator / ((squares + c1) * (cov_norm * (u[2, j] - squares) + c2))
    return _sum4(u[0, :n])


@njit(cache=True, nogil=True, error_model="numpy")
def _sum4(values):
    """Sum in four interleaved partial sums (independent additions overlap; the order is immaterial here)."""
    partial = np.zeros(4)
    n4 = values.size - values.size % 4
    for j in range(0, n4, 4):
        for k in range(4):
            partial[k] += values[j + k]
    for j in range(n4, values.size):
        partial[0] += values[j]
    return (partial[0] + partial[1]) + (partial[2] + partial[3])


@functools.lru_cache(maxsize=None)
def gaussian_plane_kernel(taps: tuple[float, ...]):
    """A kernel `(x, y, c1, c2, cov_norm) -> mean SSIM of one plane` for this symmetric Gaussian window.

    The taps are compile-time constants, so the tap loops unroll and the pixel loops vectorise.
    """
    size = len(taps)
    radius = size // 2

    @njit(nogil=True, error_model="numpy")
    def horizontal(row, out, n):
        for m in range(4):
            for j in range(n):
                acc = taps[radius] * row[m, j + radius]
                for k in range(radius):
                    acc += taps[k] * (row[m, j + k] + row[m, j + size - 1 - k])
                out[m, j] = acc

    @njit(nogil=True, error_model="numpy")
    def vertical(ring, first, out, n):
        for m in range(4):
            for j in range(n):
                acc = taps[radius] * ring[(first + radius) % size, m, j]
                for k in range(radius):
                    acc += taps[k] * (ring[(first + k) % size, m, j] + ring[(first + size - 1 - k) % size, m, j])
                out[m, j] = acc

    @njit(nogil=True, error_model="numpy")
    def plane(x, y, c1, c2, cov_norm):
        height, width = x.shape
        out_h, out_w = height - size + 1, width - size + 1
        ring = np.empty((size, 4, out_w))
        row = np.empty((4, width))
        means = np.empty((4, out_w))
        total = 0.0
        for i in range(height):
            _row_moments(x, y, i, row)
            horizontal(row, ring[i % size], out_w)
            if i >= size - 1:
                vertical(ring, i - size + 1, means, out_w)
                total += _ssim_row_sum(means, out_w, c1, c2, cov_norm)
        return total / (out_h * out_w)

    return plane


@njit(cache=True, nogil=True, error_model="numpy")
def _slide_columns(x, y, new, old, columns):
    """Column sums of the moments: add row `new`, drop row `old`."""
    for j in range(x.shape[1]):
        a = np.float64(x[new, j])
        b = np.float64(y[new, j])
        c = np.float64(x[old, j])
        d = np.float64(y[old, j])
        columns[0, j] += a - c
        columns[1, j] += b - d
        columns[2, j] += (a * a + b * b) - (c * c + d * d)
        columns[3, j] += a * b - c * d


@njit(cache=True, nogil=True, error_model="numpy")
def uniform_plane(x, y, win, c1, c2, cov_norm):
    """Mean SSIM of one plane with a win x win uniform window: running column sums, then running row sums."""
    height, width = x.shape
    out_h, out_w = height - win + 1, width - win + 1
    columns = np.zeros((4, width))
    row = np.empty((4, width))
    means = np.empty((4, out_w))
    area = np.float64(win * win)
    total = 0.0
    for i in range(height):
        if i < win:
            _row_moments(x, y, i, row)
            columns += row
        else:
            _slide_columns(x, y, i, i - win, columns)
        if i >= win - 1:
            s0 = s1 = s2 = s3 = 0.0
            for j in range(win):
                s0 += columns[0, j]
                s1 += columns[1, j]
                s2 += columns[2, j]
                s3 += columns[3, j]
            for j in range(out_w):
                if j > 0:  # four independent running sums, so that their additions overlap
                    s0 += columns[0, j + win - 1] - columns[0, j - 1]
                    s1 += columns[1, j + win - 1] - columns[1, j - 1]
                    s2 += columns[2, j + win - 1] - columns[2, j - 1]
                    s3 += columns[3, j + win - 1] - columns[3, j - 1]
                means[0, j] = s0
                means[1, j] = s1
                means[2, j] = s2
                means[3, j] = s3
            means /= area  # apart from the running sums, so that the divisions vectorise
            total += _ssim_row_sum(means, out_w, c1, c2, cov_norm)
    return total / (out_h * out_w)


@njit(cache=True, nogil=True, error_model="numpy")
def _error_sums(x, y):
    """(sum (x - y)², sum |x - y|, sum (x + y)) over a whole array, float64."""
    flat_x = x.ravel()
    flat_y = y.ravel()
    squared = absolute = both = 0.0
    for j in range(flat_x.size):
        a = np.float64(flat_x[j])
        b = np.float64(flat_y[j])
        d = a - b
        squared += d * d
        absolute += abs(d)
        both += a + b
    return squared, absolute, both


def _planes(images: np.ndarray) -> np.ndarray:
    if images.ndim != 4:
        raise ValueError(f"expected (B, C, H, W) arrays, got shape {images.shape}")
    return np.ascontiguousarray(images)


def ssim_gaussian(gen: np.ndarray, ref: np.ndarray, taps: tuple[float, ...], ranges: np.ndarray,
                  cov_norm: float, k1: float, k2: float) -> np.ndarray:
    """(B,) mean over channels of the Gaussian-window SSIM of (B, C, H, W) arrays; `ranges` (B,) data ranges."""
    plane = gaussian_plane_kernel(tuple(float(t) for t in taps))
    return _per_image(gen, ref, ranges, k1, k2, lambda x, y, c1, c2: plane(x, y, c1, c2, cov_norm))


def ssim_uniform(gen: np.ndarray, ref: np.ndarray, win: int, ranges: np.ndarray, cov_norm: float,
                 k1: float, k2: float) -> np.ndarray:
    """(B,) mean over channels of the uniform-window SSIM of (B, C, H, W) arrays."""
    return _per_image(gen, ref, ranges, k1, k2, lambda x, y, c1, c2: uniform_plane(x, y, win, c1, c2, cov_norm))


def _per_image(gen, ref, ranges, k1, k2, plane) -> np.ndarray:
    gen, ref = _planes(gen), _planes(ref)
    out = np.empty(gen.shape[0])
    for b in range(gen.shape[0]):
        c1, c2 = (k1 * float(ranges[b])) ** 2, (k2 * float(ranges[b])) ** 2
        out[b] = sum(plane(gen[b, c], ref[b, c], c1, c2) for c in range(gen.shape[1])) / gen.shape[1]
    return out


def error_sums(gen: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(B, 3): per image sum (x - y)², sum |x - y|, sum (x + y), over all pixels and channels."""
    gen, ref = _planes(gen), _planes(ref)
    return np.array([_error_sums(gen[b], ref[b]) for b in range(gen.shape[0])], dtype=np.float64).reshape(-1, 3)


def compile_kernels() -> None:
    """Compile the evaluator's kernels for uint8 images now, e.g. before loader workers fork and inherit them."""
    image = np.zeros((1, 1, 51, 51), dtype=np.uint8)
    ssim_uniform(image, image, 51, np.ones(1), 1.0, K1, K2)
    ssim_gaussian(image, image, gaussian_taps(1.5), np.ones(1), 1.0, K1, K2)
    error_sums(image, image)
