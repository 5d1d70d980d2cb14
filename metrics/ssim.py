"""Batched SSIM variants, PSNR, L1 and MAE in torch, equal to scikit-image's per-image functions.

The variants of the official evaluators: ssim-gauss as tengteng95/Pose-Transfer `tool/getMetrics_market.py`
computes it (DPTN's "ssim_256"), ssim-51, PSNR, L1 and MAE as RenYurui/Global-Flow-Local-Attention
`script/metrics.py` and PangzeCheung/Dual-task-Pose-Transformer-Network `metrics/metrics.py` do (settings in
docs/evaluation.md). Images are (B, C, H, W) tensors; every function returns one float64 value per image,
shape (B,).

scikit-image filters the whole image (mode 'reflect') and then crops (win - 1) // 2 pixels from every side of
the SSIM map. The filter radius equals that crop, so the kept pixels never see the padding: filtering only
the 'valid' interior gives the same numbers without any padding.

On an accelerator the work is done in chunks of a few images, and both SSIM variants of the evaluator share
one set of window moments E[x], E[y], E[x²+y²], E[xy] (only vx + vy enters the formula, so E[x²] and E[y²]
are filtered as one sum). CPU tensors go to the streaming kernels of `metrics.ssim_cpu` (same formulas,
float64, about 5x faster than this code on a CPU).
"""
from __future__ import annotations

import numpy as np
import torch

from metrics import ssim_cpu
from metrics.ssim_window import K1, K2, gaussian_taps, ssim_window

CHUNK_ELEMENTS = 1 << 17  # pixels·channels per chunk; 4 float64 moments of it is about 4 MB


def _weighted_valid(x: torch.Tensor, taps: list[float], dim: int) -> torch.Tensor:
    """Correlate along `dim` with `taps`, keeping only outputs whose window lies inside the input."""
    out_len = x.shape[dim] - len(taps) + 1
    out = torch.mul(x.narrow(dim, 0, out_len), taps[0])
    for k in range(1, len(taps)):
        out.add_(x.narrow(dim, k, out_len), alpha=taps[k])
    return out


def _box_valid(x: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """Mean over windows of `size` along `dim`, valid outputs only (running sums: O(1) per pixel)."""
    sums = x.cumsum(dim)
    out_len = x.shape[dim] - size + 1
    out = sums.narrow(dim, size - 1, out_len).clone()
    out.narrow(dim, 1, out_len - 1).sub_(sums.narrow(dim, 0, out_len - 1))
    return out.div_(size)


def gaussian_moments(moments: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian window averages (valid part) of stacked moments (..., H, W)."""
    taps = gaussian_taps(sigma)
    return _weighted_valid(_weighted_valid(moments, taps, -2), taps, -1)


def uniform_moments(moments: torch.Tensor, win_size: int) -> torch.Tensor:
    """Uniform window averages (valid part) of stacked moments (..., H, W)."""
    return _box_valid(_box_valid(moments, win_size, -2), win_size, -1)


def _moments(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(4, B, C, H, W): x, y, x² + y², xy."""
    out = x.new_empty((4, *x.shape))
    out[0], out[1] = x, y
    torch.mul(x, x, out=out[2]).addcmul_(y, y)
    torch.mul(x, y, out=out[3])
    return out


def _ssim_mean(filtered: torch.Tensor, data_range: torch.Tensor, cov_norm: float) -> torch.Tensor:
    """(B,) SSIM from window moments (4, B, C, h, w): per-pixel S, mean over pixels, then over channels.

    scikit-image's arithmetic: vx + vy = cov_norm (E[x²+y²] - ux² - uy²), vxy = cov_norm (E[xy] - ux uy),
    S = (2 ux uy + C1)(2 vxy + C2) / ((ux² + uy² + C1)(vx + vy + C2)). `filtered` is consumed.
    """
    ux, uy, uss, uxy = filtered
    data_range = data_range.to(filtered.device)
    r = data_range.reshape(-1, 1, 1, 1)
    c1, c2 = (K1 * r) ** 2, (K2 * r) ** 2
    ux_uy = ux * uy
    squares = torch.addcmul(ux * ux, uy, uy)
    contrast = uss.sub_(squares).mul_(cov_norm).add_(c2)
    structure = uxy.sub_(ux_uy).mul_(2 * cov_norm).add_(c2)
    numerator = ux_uy.mul_(2).add_(c1).mul_(structure)
    return numerator.div_(squares.add_(c1).mul_(contrast)).mean(dim=(-2, -1)).mean(dim=-1)


def _undefined_as_nan(scores: torch.Tensor, data_range: torch.Tensor) -> torch.Tensor:
    """R = 0 (a constant generated image in ssim-gauss) leaves SSIM undefined: the reference's NaN/inf, or
    rounding noise here; NaN either way, so that callers report the image instead of averaging it."""
    return scores.masked_fill(data_range.to(scores.device) == 0, float("nan"))


def _chunks(batch: int, per_image: int):
    step = max(1, CHUNK_ELEMENTS // per_image)
    return ((start, min(batch, start + step)) for start in range(0, batch, step))


def _check_pair(gen: torch.Tensor, ref: torch.Tensor, win_size: int) -> None:
    if gen.shape != ref.shape or gen.dim() != 4:
        raise ValueError(f"expected two (B, C, H, W) tensors of one shape, got {tuple(gen.shape)} and "
                         f"{tuple(ref.shape)}")
    if min(gen.shape[-2:]) < win_size:
        raise ValueError(f"win_size {win_size} exceeds the image extent {tuple(gen.shape[-2:])}")


def image_range(images: torch.Tensor) -> torch.Tensor:
    """(B,) max - min of each image over all pixels and channels (float64)."""
    flat = images.flatten(1)
    return (flat.amax(dim=1) - flat.amin(dim=1)).double()


def _ranges(data_range: float | torch.Tensor | None, gen: torch.Tensor) -> torch.Tensor:
    if data_range is None:
        return image_range(gen)
    if isinstance(data_range, torch.Tensor):
        return data_range.to(torch.float64).reshape(-1).expand(gen.shape[0])
    return torch.full((gen.shape[0],), float(data_range), dtype=torch.float64, device=gen.device)


def streaming_kernels(images: torch.Tensor) -> bool:
    """Whether `images` go to the CPU kernels of metrics.ssim_cpu (CPU tensors) or to the batched torch code."""
    return images.device.type == "cpu"


def _as_numpy(images: torch.Tensor) -> np.ndarray:
    """A CPU tensor as an array the kernels take: uint8, float32 and float64 as they are, others as float64."""
    if images.dtype not in (torch.uint8, torch.float32, torch.float64):
        images = images.double()
    return images.numpy()


def _ssim(gen, ref, data_range, cov_norm: float, smooth, cpu_kernel) -> torch.Tensor:
    """`smooth` filters stacked moments on a GPU; `cpu_kernel(gen, ref, ranges)` does the whole job on a CPU.

    A metric, not a loss: inputs are detached."""
    gen, ref = gen.detach(), ref.detach()
    ranges = _ranges(data_range, gen)
    if streaming_kernels(gen):
        scores = torch.from_numpy(cpu_kernel(_as_numpy(gen), _as_numpy(ref), ranges.numpy()))
    else:
        scores = []
        for start, stop in _chunks(gen.shape[0], gen[0].numel()):
            x, y = gen[start:stop].double(), ref[start:stop].double()
            scores.append(_ssim_mean(smooth(_moments(x, y)), ranges[start:stop], cov_norm))
        scores = torch.cat(scores)
    return _undefined_as_nan(scores, ranges)


def ssim_gaussian(gen: torch.Tensor, ref: torch.Tensor, sigma: float = 1.5,
                  data_range: float | torch.Tensor | None = None,
                  sample_covariance: bool = False) -> torch.Tensor:
    """(B,) SSIM with a Gaussian window (`ssim-gauss`: the PATN SSIM, DPTN's "ssim_256").

    Equals `structural_similarity(g, r, channel_axis=-1, gaussian_weights=True, sigma=sigma,
    use_sample_covariance=sample_covariance, data_range=R)` per image, computed in float64. R defaults to
    each generated image's own max - min (as the PATN script does); a constant generated image then has
    R = 0 and gives NaN, as the reference does (callers report such images separately).
    """
    win = ssim_window(sigma)
    _check_pair(gen, ref, win)
    cov_norm = win * win / (win * win - 1) if sample_covariance else 1.0
    return _ssim(gen, ref, data_range, cov_norm, lambda m: gaussian_moments(m, sigma),
                 lambda g, r, ranges: ssim_cpu.ssim_gaussian(g, r, gaussian_taps(sigma), ranges, cov_norm, K1, K2))


def ssim_uniform(gen: torch.Tensor, ref: torch.Tensor, win_size: int = 51,
                 data_range: float | torch.Tensor | None = 1.0,
                 sample_covariance: bool = True) -> torch.Tensor:
    """(B,) SSIM with a uniform window (`ssim-51`: GFLA's and DPTN's "ssim", win_size=51, data_range=1).

    Equals `structural_similarity(g, r, channel_axis=-1, win_size=win_size, data_range=data_range)`.
    """
    if win_size % 2 != 1:
        raise ValueError(f"win_size must be odd, got {win_size}")
    _check_pair(gen, ref, win_size)
    n = win_size * win_size
    cov_norm = n / (n - 1) if sample_covariance else 1.0
    return _ssim(gen, ref, data_range, cov_norm, lambda m: uniform_moments(m, win_size),
                 lambda g, r, ranges: ssim_cpu.ssim_uniform(g, r, win_size, ranges, cov_norm, K1, K2))


def psnr(gen: torch.Tensor, ref: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """(B,) PSNR 10·log10(R² / MSE) over all pixels and channels of each image; inf where identical."""
    mse = (gen.double() - ref.double()).pow_(2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(data_range ** 2 / mse)


def l1(gen: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """(B,) mean absolute difference (GFLA "l1" on [0,1] input; PATN's L1 on [-1,1] is twice this)."""
    return (gen.double() - ref.double()).abs_().flatten(1).mean(dim=1)


def mae(gen: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """(B,) GFLA "mae": sum|a - b| / sum(a + b) per image."""
    gen, ref = gen.double(), ref.double()
    return (gen - ref).abs_().flatten(1).sum(dim=1) / (gen + ref).flatten(1).sum(dim=1)


RECONSTRUCTION = ("ssim", "ssim_256", "psnr", "l1", "mae")


def reconstruction_uint8(gen: torch.Tensor, ref: torch.Tensor, wanted=RECONSTRUCTION) -> dict[str, torch.Tensor]:
    """The evaluator's per-pair metrics of uint8 (B, 3, H, W) images in one pass, float64.

    ssim:     ssim-51 on x/255 with data_range 1 (computed as the same SSIM on 0..255 with range 255: SSIM
              is unchanged when images and range scale together);
    ssim_256: ssim-gauss on 0..255 with the generated image's range; psnr, l1, mae on x/255.
    """
    wanted = [m for m in RECONSTRUCTION if m in wanted]
    if {"ssim", "ssim_256"} & set(wanted):
        _check_pair(gen, ref, 51 if "ssim" in wanted else ssim_window(1.5))
    ranges = image_range(gen) if "ssim_256" in wanted else None
    if streaming_kernels(gen):
        out = _reconstruction_cpu(_as_numpy(gen), _as_numpy(ref), wanted, ranges)
    else:
        out = _reconstruction_chunked(gen, ref, wanted, ranges)
    if "ssim_256" in out:
        out["ssim_256"] = _undefined_as_nan(out["ssim_256"], ranges)
    return out


def _reconstruction_cpu(gen: np.ndarray, ref: np.ndarray, wanted: list[str], ranges) -> dict[str, torch.Tensor]:
    out = {}
    if "ssim" in wanted:
        out["ssim"] = ssim_cpu.ssim_uniform(gen, ref, 51, np.full(len(gen), 255.0), 2601 / 2600, K1, K2)
    if "ssim_256" in wanted:
        out["ssim_256"] = ssim_cpu.ssim_gaussian(gen, ref, gaussian_taps(1.5), ranges.numpy(), 1.0, K1, K2)
    if {"psnr", "l1", "mae"} & set(wanted):
        squared, absolute, both = ssim_cpu.error_sums(gen, ref).T
        pixels = gen[0].size
        with np.errstate(divide="ignore", invalid="ignore"):  # identical images: PSNR inf; black ones: MAE NaN
            if "psnr" in wanted:
                out["psnr"] = 10.0 * np.log10(255.0 ** 2 / (squared / pixels))
            if "l1" in wanted:
                out["l1"] = absolute / (pixels * 255.0)
            if "mae" in wanted:
                out["mae"] = absolute / both
    return {m: torch.from_numpy(np.asarray(out[m], dtype=np.float64)) for m in wanted}


def _reconstruction_chunked(gen: torch.Tensor, ref: torch.Tensor, wanted: list[str], ranges) -> dict:
    out: dict[str, list] = {m: [] for m in wanted}
    for start, stop in _chunks(gen.shape[0], gen[0].numel()):
        x, y = gen[start:stop].double(), ref[start:stop].double()
        if "ssim" in wanted or "ssim_256" in wanted:
            moments = _moments(x, y)
            if "ssim" in wanted:
                full = x.new_full((stop - start,), 255.0)
                out["ssim"].append(_ssim_mean(uniform_moments(moments, 51), full, 2601 / 2600))
            if "ssim_256" in wanted:
                out["ssim_256"].append(_ssim_mean(gaussian_moments(moments, 1.5), ranges[start:stop], 1.0))
        diff = (x - y).flatten(1)
        if "psnr" in wanted:
            out["psnr"].append(10.0 * torch.log10(255.0 ** 2 / diff.square().mean(dim=1)))
        if "l1" in wanted or "mae" in wanted:
            total = diff.abs_().sum(dim=1)
            if "l1" in wanted:
                out["l1"].append(total / (diff.shape[1] * 255.0))
            if "mae" in wanted:
                out["mae"].append(total / (x + y).flatten(1).sum(dim=1))
    return {m: torch.cat(v) for m, v in out.items()}
