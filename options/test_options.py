"""Options for test.py."""
from __future__ import annotations

import argparse
import math

from options.base_options import BaseOptions, Options
from options.train_options import TrainOptions
from util.io import InputError

NO_VISDOM = "is a training option: test.py shows nothing in visdom (its pages are written in --results_dir)"


class TestOptions(BaseOptions):
    """Generate images for every test pair with a trained model."""

    is_train = False
    opt_file_name = "test_opt.txt"
    entry = "test.py"
    reads_run = True  # the run's train_opt.txt gives the options that shape its networks
    not_read = {"display_id": NO_VISDOM, "display_server": NO_VISDOM, "display_port": NO_VISDOM,
                "display_env": NO_VISDOM}

    def sibling_options(self) -> list[BaseOptions]:
        return [TrainOptions()]

    def initialize(self, parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser = super().initialize(parser)
        g = parser.add_argument_group("testing")
        g.add_argument("--which_epoch", "--epoch", dest="which_epoch", type=str, default="latest",
                       help="checkpoint to load: latest or an epoch number")
        g.add_argument("--results_dir", type=str, default=None,
                       help="where generated images go (directly inside, as the official DPTN test does); "
                            "default ./results/<name>/test_<which_epoch>")
        g.add_argument("--how_many", "--num_test", dest="how_many", type=float, default=math.inf,
                       help="generate for at most this many pairs (default: all)")
        g.add_argument("--image_format", type=str, default="jpg", choices=["jpg", "png"],
                       help="format of the generated images (jpg = JPEG quality 75, as published pipelines)")
        g.add_argument("--num_panels", type=int, default=200,
                       help="put the first this many pairs on the HTML page as panels (-1 = all)")
        g.add_argument("--page_size", type=int, default=100,
                       help="panels per HTML page: pages of a wrapping grid, an index.html linking them")
        g.add_argument("--overwrite", action="store_true",
                       help="allow writing into a --results_dir that holds another checkpoint's (or a larger) result set; "
                            "the whole old set is then replaced")
        g.add_argument("--only_generated", action="store_true",
                       help="write only the generated images at dataset resolution (no HTML page, no panels)")
        g.add_argument("--result_layout", type=str, default="single", choices=["single", "patn5"],
                       help="single: <source stem>_2_<target stem>_vis.<ext> generated images (DPTN, GFLA and "
                            "`metrics --layout single`); patn5: PATN's panels source | source pose | target | "
                            "target pose | generated as images/<source>___<target>_vis.jpg with an index.html "
                            "(the PATN-era evaluation scripts and `metrics --layout patn5`)")
        g = parser.add_argument_group("pose normalisation (PN-GAN, docs/models/pngan.md)")
        g.add_argument("--canonical_poses", type=str, default=None,
                       help="annotation CSV of canonical poses (name:keypoints_y:keypoints_x, dataset frame): "
                            "render every image of <dataroot>/<phase>/ (or --image_list) in each pose k (its "
                            "1-based row) as <stem>_2_canon<k>_vis.<ext>; no pair file is read")
        g.add_argument("--image_list", type=str, default=None,
                       help="with --canonical_poses: a text file of image names (one per line) in "
                            "<dataroot>/<phase>/ instead of every image there")
        g.add_argument("--legacy_names", action="store_true",
                       help="with --canonical_poses: name results as the official PN-GAN code, <stem>_to_<k>.png "
                            "(needs --image_format png)")
        return parser

    def written_folders(self, opt: Options) -> list[tuple[str, str]]:
        """test.py writes test_opt.txt into the run folder and its results into --results_dir (a subclass such as
        scripts.transfer writes elsewhere and checks its own outputs)."""
        if type(self) is not TestOptions:
            return []
        return [("--checkpoints_dir", opt.checkpoints_dir), ("--results_dir", opt.results_dir)]

    def refuse_unread_page_flags(self, opt: Options) -> None:
        """--num_panels and --page_size shape the HTML panels: typed where no panels are written, they would be
        accepted and ignored."""
        typed = [f"--{dest}" for dest in ("num_panels", "page_size") if dest in getattr(self, "explicit", set())]
        if opt.only_generated and typed:
            raise InputError(f"{typed[0]} shapes the HTML panels, which --only_generated does not write")
        if opt.result_layout == "patn5" and "--num_panels" in typed:
            raise InputError("--num_panels picks the pairs shown as panels; --result_layout patn5 writes a panel for "
                             "every pair (use --how_many to write fewer)")

    def derive(self, opt: Options) -> None:
        super().derive(opt)
        if opt.results_dir is None:
            opt.results_dir = f"./results/{opt.name}/test_{opt.which_epoch}"

    def validate(self, opt: Options) -> None:
        super().validate(opt)
        if not opt.how_many >= 1:  # also refuses nan
            raise InputError(f"--how_many must be >= 1, got {opt.how_many}")
        if opt.page_size < 1:
            raise InputError(f"--page_size must be >= 1, got {opt.page_size}")
        if opt.num_panels < -1:
            raise InputError(f"--num_panels must be >= 0, or -1 for all, got {opt.num_panels}")
        self.refuse_unread_page_flags(opt)
        if opt.result_layout == "patn5" and (opt.only_generated or opt.image_format != "jpg"):
            raise InputError("--result_layout patn5 writes PATN's JPEG panels and their page; it contradicts "
                             "--only_generated and --image_format png")
        if opt.canonical_poses is None and (opt.image_list is not None or opt.legacy_names):
            raise InputError("--image_list and --legacy_names belong to the --canonical_poses mode")
        if opt.canonical_poses is not None:
            if type(self) is not TestOptions:
                raise InputError("--canonical_poses is a mode of test.py")
            if opt.result_layout != "single":
                raise InputError("--canonical_poses writes single images; it contradicts --result_layout patn5")
            if opt.legacy_names and opt.image_format != "png":
                raise InputError("--legacy_names writes the official <stem>_to_<k>.png names: pass --image_format "
                                 "png")
