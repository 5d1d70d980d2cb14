"""Draw a pose as a coloured COCO-18 skeleton, to check inputs before a transfer or to illustrate HTML pages.

    python -m scripts.draw_pose --pose pose.json --out skeleton.png                   # in the pose's own frame
    python -m scripts.draw_pose --pose photo.jpg --out check.png --background photo.jpg   # Keypoint R-CNN
    python -m scripts.draw_pose --pose pose.json --out framed.png --frame market        # as transfer frames it
    python -m scripts.draw_pose --pose market-annotation-test.csv --out skeletons/      # every row of a CSV

The canvas is, in order of preference: --background's size, --height/--width, the photo the pose came from,
or just large enough for the keypoints. With --frame market|fashion the pose is framed like a target of
scripts.transfer (--target_placement fit; CSV rows as_is) and drawn at 128x64 or 256x176.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from data.fashion_dataset import FASHION_SIZE
from data.framing import fit_box, identity_framing, keypoint_box
from data.market_dataset import MARKET_SIZE
from data.pose_formats import Pose, csv_specs, is_photo, read_photo, read_pose, split_spec
from datasets.staging import check_out_path
from options.base_options import HelpfulParser
from scripts.transfer import LazyEstimator, add_pose_input_options
from util.image import save_image
from util.io import InputError, report_input_errors
from util.pose_drawing import draw_skeleton

FRAMES = {"market": MARKET_SIZE, "fashion": FASHION_SIZE}


def build_parser() -> argparse.ArgumentParser:
    parser = HelpfulParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--pose", type=str, required=True,
                        help="a photo, an OpenPose .json, an annotation .csv row (file.csv:<name>), or a whole "
                             ".csv (every row; --out is then a folder)")
    parser.add_argument("--out", type=str, required=True, help="the image to write (.png or .jpg), or a folder")
    parser.add_argument("--background", type=str, default=None, help="draw over this image instead of black")
    parser.add_argument("--height", type=int, default=None, help="canvas height (default: see above)")
    parser.add_argument("--width", type=int, default=None, help="canvas width")
    parser.add_argument("--frame", type=str, default="none", choices=["none", *FRAMES],
                        help="draw in the pose's own coordinates, or framed into a dataset frame")
    parser.add_argument("--scale", type=int, default=1, help="enlarge the image by this factor (nearest)")
    parser.add_argument("--seed", type=int, default=0, help="seed of --pose_random_weights")
    parser.add_argument("--no_download", action="store_true", help="never download the Keypoint R-CNN weights")
    return add_pose_input_options(parser)


def canvas_size(opt, pose: Pose, background: np.ndarray | None) -> tuple[int, int]:
    """(H, W) of the drawing in the pose's own frame."""
    if background is not None:
        return background.shape[:2]
    if opt.height is not None and opt.width is not None:
        return opt.height, opt.width
    if pose.image_size is not None:
        return pose.image_size
    present = pose.keypoints[pose.present]
    if len(present) == 0:
        raise InputError(f"{pose.origin}: no visible keypoint, so no canvas size: give --height and --width")
    extent = np.ceil(present.max(axis=0) + 1).astype(int)
    return int(-(-extent[0] // 8) * 8), int(-(-extent[1] // 8) * 8)  # rounded up to multiples of 8


def render(opt, spec: str, estimator) -> np.ndarray:
    """uint8 (H, W, 3): the skeleton of `spec` per the options."""
    photo = read_photo(spec) if is_photo(spec) else None
    pose = estimator(photo, spec) if photo is not None else read_pose(spec, json_threshold=opt.json_threshold)
    background = None
    if opt.background is not None:
        background = np.asarray(read_photo(opt.background))
    if opt.frame == "none":
        height, width = canvas_size(opt, pose, background)
        keypoints = np.rint(pose.keypoints).astype(np.int64)
        inside = (keypoints >= 0).all(1) & (keypoints[:, 0] < height) & (keypoints[:, 1] < width)
        keypoints[~inside] = -1
    else:
        height, width = FRAMES[opt.frame]
        framing = (identity_framing(height, width) if pose.dataset_frame
                   else fit_box(keypoint_box(pose.keypoints, pose.origin), height, width))
        keypoints = framing.keypoints_to_frame(pose.keypoints)
        if background is not None:
            background = np.asarray(framing.crop(read_photo(opt.background)))
    if background is not None and background.shape[:2] != (height, width):
        raise InputError(f"--background {opt.background} is {background.shape[0]}x{background.shape[1]}, the "
                         f"canvas {height}x{width}")
    image = draw_skeleton(keypoints, height, width, background)
    return image.repeat(opt.scale, axis=0).repeat(opt.scale, axis=1) if opt.scale > 1 else image


@report_input_errors
def main(argv: list[str] | None = None) -> int:
    """Draw one pose to --out, or every row of a CSV into the folder --out."""
    opt = build_parser().parse_args(argv)
    if opt.scale < 1:
        raise InputError(f"--scale must be >= 1, got {opt.scale}")
    if (opt.height is None) != (opt.width is None):
        raise InputError("give both --height and --width, or neither")
    if opt.height is not None and min(opt.height, opt.width) < 1:
        raise InputError(f"--height and --width must be >= 1, got {opt.height} and {opt.width}")
    estimator = LazyEstimator(opt, torch.device("cpu"))
    path, row = split_spec(opt.pose)
    out = Path(opt.out)
    if path.suffix.lower() == ".csv" and row is None and out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        check_out_path(out, "folder")
        specs = csv_specs(path)
        for spec in specs:
            save_image(render(opt, spec, estimator), out / f"{Path(split_spec(spec)[1]).stem}.png")
        print(f"wrote {len(specs)} skeletons to {out}")
        return 0
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise InputError(f"--out {out}: expected a .png or .jpg file (a folder only for a whole .csv)")
    check_out_path(out, "file")
    save_image(render(opt, opt.pose, estimator), out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
