"""The network frame versus the dataset frame (see docs/models/pg2.md, docs/models/dptn.md, docs/models/pngan.md).

Frames:
- 'native':     the network sees the dataset frame (Market 128x64; DeepFashion 256x176).
- 'pad256':     DeepFashion 256x176 padded with 40 white columns on each side to 256x256; keypoint x + 40
                (the 256x256 network of Ma et al., "Pose Guided Person Image Generation", NeurIPS 2017).
                Outputs are cropped back to columns [40, 216).
- 'stretch256': DeepFashion stretched to 256x256 as the official DPTN loader does (torchvision bilinear
                resize of the PIL image, PangzeCheung/Dual-task-Pose-Transformer-Network
                `data/fashion_dataset.py`); keypoints scaled in float and truncated (its `util/pose_utils.py`
                `cords_to_map`). Outputs are resized back, as its `models/base_model.py` `save_results` does
                with cv2 bilinear.
- 'double':     Market 128x64 enlarged to 256x128 with PIL bicubic, as the official PN-GAN loader does
                (naiq/PN_GAN `script/GAN/dataset.py`: `transforms.Resize((256, 128), interpolation=3)` on the PIL
                image); keypoints (y, x) -> (2y, 2x). Outputs are converted to uint8 and shrunk back with PIL
                bicubic before saving.
Sizes are (H, W).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from data.annotations import MISSING
from util.image import tensor_to_uint8

FRAMES = ("native", "pad256", "stretch256")  # DeepFashion's frames (--fashion_frame's choices)
MARKET_FRAMES = ("native", "double")  # Market's frames (chosen by the model: opt.market_frame)
ALL_FRAMES = ("native", "pad256", "stretch256", "double")
SQUARE = 256  # the side of the 256x256 frames


def _check_frame(frame: str) -> None:
    if frame not in ALL_FRAMES:
        raise ValueError(f"unknown frame {frame!r}; available: {', '.join(ALL_FRAMES)}")


def pad_columns(dataset_size: tuple[int, int]) -> int:
    """Columns of padding on each side under 'pad256' (40 for DeepFashion's 256x176)."""
    height, width = dataset_size
    if height != SQUARE or width > SQUARE or (SQUARE - width) % 2:
        raise ValueError(f"frame 'pad256' needs images {SQUARE} high and at most {SQUARE} wide with an even "
                         f"margin; got {height}x{width}")
    return (SQUARE - width) // 2


def network_size(dataset_size: tuple[int, int], frame: str) -> tuple[int, int]:
    """(H, W) of the tensors the networks see for a dataset of `dataset_size` under `frame`."""
    _check_frame(frame)
    if frame == "native":
        return tuple(dataset_size)
    if frame == "double":
        return 2 * dataset_size[0], 2 * dataset_size[1]
    if frame == "pad256":
        pad_columns(dataset_size)
    return SQUARE, SQUARE


def keypoints_to_network(keypoints: np.ndarray, dataset_size: tuple[int, int], frame: str,
                         keep_outside: bool = False) -> np.ndarray:
    """Map int64 (..., 18, 2) (y, x) keypoints from the dataset frame to the network frame.

    Points missing or outside the dataset frame stay / become -1, and so do points that land outside the
    network frame, unless `keep_outside` (then only -1 coordinates stay missing, and outside points are mapped
    like the others). 'stretch256' truncates after float scaling, as DPTN's cords_to_map does. 'double' maps
    pixel (y, x) to (2y, 2x), the top-left of the 2x2 block that pixel becomes (its exact centre, 2y + 0.5, is
    no pixel index; integer keypoints keep every map builder unchanged, a 0.5-pixel shift in 256x128).
    """
    kps = np.asarray(keypoints, dtype=np.int64)
    height, width = dataset_size
    net_h, net_w = network_size(dataset_size, frame)
    flat = kps.reshape(-1, 2)
    inside = (flat >= 0).all(axis=1) & (flat[:, 0] < height) & (flat[:, 1] < width)
    out = flat.copy()
    if frame == "pad256":
        out[:, 1] += pad_columns(dataset_size)
    elif frame == "double":
        out = flat * 2
    elif frame == "stretch256":
        # float64 scaling then int() truncation (values are >= 0, so astype truncates the same way)
        out[:, 0] = (flat[:, 0] / height * net_h).astype(np.int64)
        out[:, 1] = (flat[:, 1] / width * net_w).astype(np.int64)
    inside &= (out[:, 0] >= 0) & (out[:, 0] < net_h) & (out[:, 1] >= 0) & (out[:, 1] < net_w)
    if keep_outside:
        inside = (flat != MISSING).all(axis=1)
    out[~inside] = MISSING
    return out.reshape(kps.shape)


def image_to_network(image: Image.Image, frame: str) -> Image.Image:
    """An RGB PIL image in the dataset frame -> the PIL image the network sees."""
    _check_frame(frame)
    if frame == "native":
        return image
    width, height = image.size
    if frame == "double":  # PIL bicubic, what torchvision's Resize(interpolation=3) calls on a PIL image
        return image.resize((2 * width, 2 * height), Image.Resampling.BICUBIC)
    if frame == "pad256":
        pad = pad_columns((height, width))
        canvas = Image.new("RGB", (SQUARE, SQUARE), (255, 255, 255))  # white = +1 after normalisation
        canvas.paste(image, (pad, 0))
        return canvas
    from torchvision.transforms.functional import resize  # imported here: only this frame needs it

    return resize(image, [SQUARE, SQUARE])  # torchvision's default: bilinear on the PIL image (antialiased)


def pad_maps(maps: torch.Tensor, dataset_size: tuple[int, int], frame: str, fill: float) -> torch.Tensor:
    """Pose maps or masks (C, H, W) built in the dataset frame -> 'pad256' frame, padded with `fill`.

    Only 'pad256' pads maps (pose channels with 0, or -1 under tf_disc; masks with 0); other frames
    build their maps directly in the network frame, so calling this for them is a programming error.
    """
    if frame != "pad256":
        raise ValueError(f"pad_maps is for frame 'pad256', not {frame!r}")
    pad = pad_columns(dataset_size)
    out = maps.new_full((*maps.shape[:-1], maps.shape[-1] + 2 * pad), fill)  # faster than F.pad on CPU
    out[..., pad:pad + maps.shape[-1]] = maps
    return out


def _check_network_frame(size: tuple[int, int], dataset_size: tuple[int, int], frame: str) -> None:
    """Images handed back to the dataset frame must have the network frame's size."""
    _check_frame(frame)
    expected = network_size(dataset_size, frame)
    if size != tuple(expected):
        raise ValueError(f"images are {size}, expected the {frame} frame {expected}")


def images_to_dataset_frame(images: torch.Tensor, dataset_size: tuple[int, int], frame: str) -> torch.Tensor:
    """(B, 3, Hn, Wn) network outputs in [-1, 1] -> (B, 3, H, W) in the dataset frame, for saving and metrics.

    'pad256' crops the padding; 'stretch256' resizes back with bilinear interpolation (align_corners=False,
    no antialiasing, like DPTN's cv2 INTER_LINEAR); 'native' returns the input. 'double' is defined on uint8
    images (PN-GAN's saving): it returns the images `uint8_to_dataset_frame` saves, each value v as the centre
    (v + 0.5) / 127.5 - 1 of its bin in float32, so that util.image.tensor_to_uint8 gives exactly v back.
    """
    _check_network_frame(tuple(images.shape[-2:]), dataset_size, frame)
    height, width = dataset_size
    if frame == "native":
        return images
    if frame == "double":
        saved = torch.from_numpy(uint8_to_dataset_frame(tensor_to_uint8(images), dataset_size, frame))
        centres = (saved.permute(0, 3, 1, 2).to(torch.float32) + 0.5) / 127.5 - 1.0
        return centres.to(images.device)  # float32: half precision cannot hold the bin centres
    if frame == "pad256":
        pad = pad_columns(dataset_size)
        return images[..., pad:pad + width]
    return F.interpolate(images, size=(height, width), mode="bilinear", align_corners=False, antialias=False)


def uint8_to_dataset_frame(images: np.ndarray, dataset_size: tuple[int, int], frame: str) -> np.ndarray:
    """uint8 (B, Hn, Wn, 3) images in the network frame -> uint8 (B, H, W, 3) in the dataset frame.

    'stretch256' resizes with cv2.resize INTER_LINEAR on the uint8 image, exactly as the official DPTN test
    (tensor2im, then cv2.resize to old_size); 'double' resizes with PIL bicubic on the uint8 image (PN-GAN,
    the resize of its loader undone); 'pad256' crops; 'native' returns the input.
    """
    _check_network_frame(tuple(images.shape[1:3]), dataset_size, frame)
    height, width = dataset_size
    if frame == "native":
        return images
    if frame == "double":
        return np.stack([np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BICUBIC))
                         for image in images])
    if frame == "pad256":
        pad = pad_columns(dataset_size)
        return np.ascontiguousarray(images[:, :, pad:pad + width])
    import cv2  # imported here: only the official DPTN output path needs OpenCV

    return np.stack([cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR) for image in images])
