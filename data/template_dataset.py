"""A template dataset mode: pose pairs in the field's CSV formats at any image size, to copy when adding one
(see docs/adding_a_model.md).

`--dataset_mode template --dataroot DIR` reads DIR/<phase>/ images, --annotation_file and --pairs_file
(names relative to DIR; `{phase}` is replaced) and --image_size H W. To add your mode `mydata`, copy this
file to data/mydata_dataset.py, rename the class MydataDataset, and fill in:
1. `modify_commandline_options`: your flags (the pose flags come from `add_pose_options`);
2. `derive_options`: set `opt.data_format` ('market', 'fashion' or your own name; models read it to pick
   their paper's settings);
3. `__init__`: where the files are; PairDataset validates them (one clear error per bad file or row) and
   serves the items every model reads: source/target image (3, H, W) in [-1, 1], pose maps (18, H, W),
   keypoints and names. Override `pose_maps` to read stored maps instead (see data/keypoint_dataset.py).
"""
from __future__ import annotations

import argparse

from data.base_dataset import PairDataset, add_pose_options, dataroot_path
from util.io import InputError

KNOWN_FORMATS = {(128, 64): "market", (256, 176): "fashion"}


class TemplateDataset(PairDataset):
    """Pairs of `--image_size` images in the official annotation / pair CSV formats."""

    @staticmethod
    def modify_commandline_options(parser: argparse.ArgumentParser, is_train: bool) -> argparse.ArgumentParser:
        parser = add_pose_options(parser, is_train)
        g = parser.add_argument_group("template data", "copy data/template_dataset.py to add a data format")
        g.add_argument("--annotation_file", type=str, default="annotation-{phase}.csv",
                       help="keypoint CSV (name:keypoints_y:keypoints_x), relative to --dataroot")
        g.add_argument("--pairs_file", type=str, default="pairs-{phase}.csv",
                       help="pair CSV (from,to), relative to --dataroot")
        g.add_argument("--image_size", type=int, nargs=2, default=[128, 64], metavar=("H", "W"),
                       help="size of every image (128 64 reads as Market, 256 176 as DeepFashion)")
        return parser

    @staticmethod
    def derive_options(opt) -> None:
        height, width = opt.image_size
        if height < 1 or width < 1:
            raise InputError(f"--image_size {height} {width}: both must be >= 1")
        opt.data_format = KNOWN_FORMATS.get((height, width), "custom")

    def __init__(self, opt) -> None:
        root = dataroot_path(opt, "template")
        annotation = root / opt.annotation_file.format(phase=opt.phase)
        pairs = root / opt.pairs_file.format(phase=opt.phase)
        super().__init__(opt, root, annotation, pairs, tuple(opt.image_size), "native")
