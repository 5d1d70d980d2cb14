"""Write a sequence of uint8 (H, W, 3) frames as an animated GIF (Pillow) or an MP4 (imageio + ffmpeg, optional).

Both are written atomically. MP4 needs `imageio` with its ffmpeg plugin (`pip install imageio imageio-ffmpeg`),
which this project does not require; `check_animation_path` says so before any work is done.
"""
from __future__ import annotations

import importlib.util
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from util.io import InputError, atomic_write

ANIMATION_SUFFIXES = (".gif", ".mp4")


def mp4_writer_available() -> bool:
    """True when imageio and its ffmpeg plugin (imageio-ffmpeg) can be imported."""
    return all(importlib.util.find_spec(name) is not None for name in ("imageio", "imageio_ffmpeg"))


def check_animation_path(path: str | os.PathLike, flag: str = "--animation") -> Path:
    """`path` as a Path if it ends in .gif, or in .mp4 with a writer installed; else one InputError."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in ANIMATION_SUFFIXES:
        raise InputError(f"{flag} {path}: expected a .gif or .mp4 file name")
    if suffix == ".mp4" and not mp4_writer_available():
        raise InputError(f"{flag} {path}: writing MP4 needs imageio with an ffmpeg writer, which is not installed "
                         "(pip install imageio imageio-ffmpeg; not a requirement of this project); "
                         "or write a .gif")
    return path


def write_gif(frames: list[np.ndarray], path: str | os.PathLike, fps: float) -> None:
    """An endlessly looping GIF; Pillow merges identical consecutive frames into one longer frame."""
    images = [Image.fromarray(np.ascontiguousarray(f)) for f in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:],
                   duration=max(int(round(1000.0 / fps)), 20), loop=0, disposal=1)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def write_mp4(frames: list[np.ndarray], path: str | os.PathLike, fps: float) -> None:
    """An H.264 MP4 through imageio-ffmpeg, written to a temporary name and moved into place."""
    import imageio.v2 as imageio  # optional dependency, imported only here

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.mp4")  # ffmpeg picks the container by extension
    try:
        # macro_block_size=1: keep the frame size (the dataset sizes are even, as yuv420p needs)
        with imageio.get_writer(tmp, format="FFMPEG", mode="I", fps=fps, macro_block_size=1) as writer:
            for frame in frames:
                writer.append_data(np.ascontiguousarray(frame))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_animation(frames: list[np.ndarray], path: str | os.PathLike, fps: float) -> None:
    """GIF or MP4 by the file's extension (checked by `check_animation_path`)."""
    if not frames:
        raise ValueError("no frames to write")
    path = check_animation_path(path)
    if path.suffix.lower() == ".gif":
        write_gif(frames, path, fps)
    else:
        write_mp4(frames, path, fps)
