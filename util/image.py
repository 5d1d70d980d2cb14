"""Reading input images strictly (read_rgb) and tensor <-> image conversion with the field's conventions
(clamp, then truncate to uint8)."""
from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from util.io import InputError, atomic_write

JPEG_QUALITY = 75  # PIL's default; PATN and DPTN results are JPEG q75
PLAIN_MODES = ("RGB", "RGBX", "L", "1", "P", "CMYK", "YCbCr", "HSV")  # PIL's own conversion to RGB is right
ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")  # composited on white
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
SUPPORTED_MODES = PLAIN_MODES + ALPHA_MODES + SIXTEEN_BIT_MODES + ("I", "F")
# libjpeg warnings that do not touch the pixels (the only ones accepted): an odd JFIF version, a sequential
# scan with progressive-looking parameters, a bad ICC profile
HARMLESS_JPEG_WARNINGS = ("unknown JFIF revision", "Invalid SOS parameters for sequential JPEG", "bad ICC marker")


def read_rgb(path: str | os.PathLike, upright: bool = False) -> Image.Image:
    """The image file at `path` fully decoded and converted to RGB; InputError naming the file otherwise.

    Damage is refused, never decoded into garbage: a truncated file (PIL's check, with LOAD_TRUNCATED_IMAGES
    off), a broken data stream, and for JPEGs every libjpeg warning ("Corrupt JPEG data", "Premature end of
    JPEG file"), which PIL's decoder silences while it fills the rest with grey. Bytes after a JPEG's end
    marker are accepted (PIL decodes such a file exactly). Modes: see to_rgb. `upright`: apply the EXIF
    orientation (phone photos). The original mode is kept in `image.info["source_mode"]`.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the image ({exc.strerror or exc})") from None
    try:
        with Image.open(io.BytesIO(data)) as image, _strict_pil():
            image.load()
            if image.format in ("JPEG", "MPO") and (warning := libjpeg_warning(data)):
                raise InputError(f"{path}: damaged JPEG data ({warning}); copy or export the image again")
            mode = image.mode
            rgb = to_rgb(ImageOps.exif_transpose(image) if upright else image, str(path))
    except InputError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError, EOFError) as exc:
        reason = f"{type(exc).__name__}: {exc}" if not isinstance(exc, UnidentifiedImageError) else "unknown format"
        raise InputError(f"{path}: not a readable image ({reason}); copy or export it again") from None
    rgb.info["source_mode"] = mode
    return rgb


@contextlib.contextmanager
def _strict_pil():
    """PIL refuses truncated files while inside (the switch is global: restored afterwards)."""
    saved = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = saved


def libjpeg_warning(data: bytes) -> str:
    """libjpeg's warning on decoding the JPEG `data` ('' when clean or only a harmless one).

    PIL's decoder discards libjpeg's warnings, the only sign of corrupt or missing scan data, so the scan is
    decoded a second time by OpenCV's libjpeg (to grey, which still decodes every coefficient), whose
    warnings go to stderr: that descriptor is pointed at a pipe meanwhile. libjpeg prints a decode's first
    warning only.
    """
    import cv2  # a requirement already (DPTN's resize); imported here to keep `import util.image` light

    if sys.stderr is not None:
        sys.stderr.flush()  # what Python still holds for stderr must not land in the pipe
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)  # never block on a full pipe: a longer message is cut, not waited for
    saved = os.dup(2)
    try:
        os.dup2(write_end, 2)
        flags = cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        text = pipe.read().decode("utf-8", "replace").strip()
    if decoded is None:
        return text or "libjpeg cannot decode it"
    if any(ok in text for ok in HARMLESS_JPEG_WARNINGS):
        return ""
    return " ".join(text.split())


def to_rgb(image: Image.Image, origin: str = "image") -> Image.Image:
    """`image` as RGB, every pixel value kept on its scale; InputError naming `origin` for other modes.

    8-bit modes (L, P, 1, CMYK, YCbCr, HSV, RGBX) use PIL's conversion. Alpha (RGBA, LA, PA, transparent P)
    is composited on white, what a viewer shows on a white page and the DeepFashion background. 16-bit
    (I;16*) and 32-bit integer (I) images with values in 0..65535 are scaled by 255/65535 (rounded), so a
    16-bit mid-grey stays mid-grey; float (F) images must lie in [0, 1] and are scaled by 255. Anything else
    (LAB, a float outside [0, 1], 32-bit values beyond 16 bits) is refused rather than guessed.
    """
    mode = image.mode
    if mode == "RGB":
        return image.copy()  # a copy outlives the closing of the file it was read from
    if mode in ALPHA_MODES or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode in PLAIN_MODES:
        return image.convert("RGB")
    if mode in SIXTEEN_BIT_MODES or mode in ("I", "F"):
        return Image.fromarray(_scaled_to_uint8(np.asarray(image), mode, origin)).convert("RGB")
    raise InputError(f"{origin}: image mode {mode} is not supported (expected one of "
                     f"{', '.join(SUPPORTED_MODES)}); convert it to 8-bit RGB")


def _scaled_to_uint8(values: np.ndarray, mode: str, origin: str) -> np.ndarray:
    """A single-channel 16-bit, 32-bit integer or float array scaled by its bit depth to uint8."""
    values = values.astype(np.float64)
    if mode == "F":
        top, what = 1.0, "a float (mode F) image must hold values in [0, 1]"
    else:
        top, what = 65535.0, f"a mode-{mode} image must hold values in 0..65535 (16 bits)"
    finite = np.isfinite(values).all()
    low, high = (float(values.min()), float(values.max())) if finite and values.size else (0.0, 0.0)
    if not finite or low < 0.0 or high > top:
        found = "non-finite values" if not finite else f"values {low:g}..{high:g}"
        raise InputError(f"{origin}: {what}, found {found}; convert it to 8-bit RGB")
    return np.rint(values * (255.0 / top)).astype(np.uint8)


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
