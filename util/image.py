"""Tensor <-> image conversion with the field's conventions (clamp, then truncate to uint8)."""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from util.io import atomic_write

JPEG_QUALITY = 75  # PIL's default; PATN and DPTN results are JPEG q75


def tensor_to_uint8(images: torch.Tensor) -> np.ndarray:
    """Convert (B,3,H,W) or (3,H,W) images in [-1,1] to uint8 (B,H,W,3) / (H,W,3).

    Clamps first, maps with (x+1)/2*255 and truncates, as PATN and DPTN do; never min-max rescales.
    """
    x = images.detach().float().clamp(-1.0, 1.0)
    x = ((x + 1.0) / 2.0 * 255.0).to(torch.uint8)  # float -> uint8 truncates
    x = x.movedim(-3, -1)
    return x.cpu().numpy()


def uint8_to_tensor(image: np.ndarray) -> torch.Tensor:
    """Convert a uint8 (H,W,3) array to a (3,H,W) float tensor in [-1,1] (ToTensor, then (x-0.5)/0.5)."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    return x.sub_(0.5).div_(0.5)


def save_image(image: np.ndarray, path: str | os.PathLike) -> None:
    """Atomically save a uint8 (H,W,3) array; .jpg/.jpeg uses quality 75, anything else is lossless."""
    path = Path(path)
    ext = path.suffix.lower()
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}.get(ext)
    if fmt is None:
        raise ValueError(f"cannot save {path}: unsupported image extension {ext!r} (use .jpg or .png)")
    buffer = io.BytesIO()
    kwargs = {"quality": JPEG_QUALITY} if fmt == "JPEG" else {}
    Image.fromarray(image).save(buffer, format=fmt, **kwargs)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))
