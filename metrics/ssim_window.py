"""SSIM's constants and Gaussian window, shared by the torch code (metrics.ssim) and the CPU kernels
(metrics.ssim_cpu), so that neither imports the other for them."""
from __future__ import annotations

import torch

K1, K2 = 0.01, 0.03
GAUSS_TRUNCATE = 3.5  # scikit-image's choice: sigma 1.5 gives an 11-tap window, as in Wang et al. 2004


def gaussian_radius(sigma: float, truncate: float = GAUSS_TRUNCATE) -> int:
    """scipy.ndimage's radius for a Gaussian filter: int(truncate * sigma + 0.5)."""
    return int(truncate * sigma + 0.5)


def ssim_window(sigma: float) -> int:
    """Window side of the Gaussian variant (11 for sigma 1.5, 9 for sigma 1.2)."""
    return 2 * gaussian_radius(sigma) + 1


def gaussian_taps(sigma: float, truncate: float = GAUSS_TRUNCATE) -> list[float]:
    """The normalised 1-D Gaussian of scipy.ndimage.gaussian_filter1d, 2r+1 taps."""
    # computed in torch, not numpy: the two differ in the last bit for some sigmas, and the scores are
    # compared against references to ~1e-13
    radius = gaussian_radius(sigma, truncate)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * (x / sigma) ** 2)
    return (taps / taps.sum()).tolist()
