"""Run a trained model on your own photos: one command from a photo and a target pose to the result.

    python -m scripts.transfer --name <run> --model PG2 --dataset_mode market --which_epoch latest \\
        --source photo.jpg --target <photo.jpg | pose.json | poses.csv:<name>> --out result.png [--panel]
    python -m scripts.transfer ... --source photo.jpg --target_dir poses/ --animation walk.gif [--out frames/]

The model's flags are those of test.py (same registries; `--dataset_mode` picks the geometry, no dataroot is
read). Poses come from OpenPose JSON (COCO-18 or BODY_25), annotation-CSV rows, or photos through Keypoint
R-CNN (data/keypoint_rcnn.py). The person is cropped to the dataset's aspect ratio, padded and resized
(data/framing.py), and every item is built by the datasets' own PairDataset.make_item, so the model sees
what test.py would give it; the output goes back to the dataset frame as test.py does.

A pose whose keypoints mostly miss its photo or the frame (the pose of another image) is refused, naming the
file, rather than feeding the model a flat fill; a --out frame folder holding frames this run would not replace
(another sequence) is refused rather than mixed.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import default_collate

from data.base_dataset import PairDataset
from data.fashion_dataset import FashionDataset
from data.framing import (BOX_MARGIN, Box, Framing, fit_box, identity_framing, keypoint_box, union_box,
                          whole_image_framing)
from data.market_dataset import MarketDataset
from data.pose_formats import JSON_THRESHOLD, Pose, is_photo, list_pose_folder, read_photo, read_pose, split_spec
from models import create_model, find_model_class
from options.base_options import Options
from options.test_options import TestOptions
from util.animation import check_animation_path, write_animation
from util.cpu_memory import set_cpu_memory_policy
from util.distributed import build_context
from util.image import save_image
from util.io import InputError, report_input_errors
from data.keypoint_rcnn import KEYPOINT_THRESHOLD, PERSON_THRESHOLD, KeypointRCNNEstimator
from util.pose_drawing import draw_skeleton
from util.results_dir import check_output_file, check_results_path

READERS = {"market": MarketDataset, "fashion": FashionDataset}  # opt.data_format -> geometry
FILLS = {"white": (255, 255, 255), "black": (0, 0, 0), "grey": (128, 128, 128)}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
PLACEHOLDER = (128, 128, 128)  # target image when the target is no photo (models read it only for losses)
MIN_LANDED = 2  # keypoints that must land on the photo and in the frame (as keypoint_box needs to place a person)
FRAME_PATTERN = "[0-9][0-9][0-9][0-9]_*.png"  # the frames written into --out with --target_dir


def add_pose_input_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Flags for reading poses (files and the photo estimator); shared with scripts/draw_pose.py."""
    g = parser.add_argument_group("pose inputs")
    g.add_argument("--json_threshold", type=float, default=JSON_THRESHOLD,
                   help="OpenPose JSON: keypoints with confidence at or below this are missing")
    g.add_argument("--pose_weights", type=str, default=None,
                   help="Keypoint R-CNN weights keypointrcnn_resnet50_fpn_coco-fc266e95.pth (a file or a folder "
                        "holding it); default: the torch hub cache. Only needed for poses from photos")
    g.add_argument("--pose_random_weights", action="store_true",
                   help="TESTS ONLY: build Keypoint R-CNN with random weights (meaningless poses)")
    g.add_argument("--pose_threshold", type=float, default=KEYPOINT_THRESHOLD,
                   help="Keypoint R-CNN: keypoints scoring at or below this (a heatmap logit) are missing")
    g.add_argument("--person_threshold", type=float, default=PERSON_THRESHOLD,
                   help="Keypoint R-CNN: least person score; below it a photo has no person")
    g.add_argument("--pose_size", type=int, default=800,
                   help="Keypoint R-CNN resizes the photo's shorter side to this (torchvision's default 800)")
    return parser


class TransferOptions(TestOptions):
    """Generate a person from your own photo in a target pose, or in a sequence of poses."""

    opt_file_name = "transfer_opt.txt"
    # test.py's result and data-loading flags: transfer reads no dataset's pairs and writes only --out/--animation
    not_read = {
        **TestOptions.not_read,
        **dict.fromkeys(("results_dir", "overwrite"),
                        "is a test.py option: scripts.transfer writes to --out (and --animation)"),
        "how_many": "is a test.py option (pairs of a dataset): scripts.transfer generates one image per --target "
                    "or per pose of --target_dir",
        "image_format": "is a test.py option: scripts.transfer writes the format of --out's suffix (.png or .jpg)",
        **dict.fromkeys(("num_panels", "page_size", "result_layout", "only_generated"),
                        "is a test.py option (its HTML pages): scripts.transfer writes the image alone or, with "
                        "--panel, source | target pose | result"),
        **dict.fromkeys(("image_list", "legacy_names"),
                        "is an option of test.py --canonical_poses: scripts.transfer renders --source in the poses "
                        "of --target or --target_dir"),
        **dict.fromkeys(("num_threads", "serial_batches", "max_dataset_size"),
                        "is a test.py option (its DataLoader over a dataset): scripts.transfer reads --source and "
                        "the target poses itself"),
    }

    def initialize(self, parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser = super().initialize(parser)
        g = parser.add_argument_group("transfer")
        g.add_argument("--source", type=str, default=None, help="photo of the person (any size)")
        g.add_argument("--source_pose", type=str, default=None,
                       help="pose of --source as a file (.json or .csv[:row]) instead of estimating it")
        g.add_argument("--target", type=str, default=None,
                       help="target pose: a photo, an OpenPose .json, or an annotation .csv row (file.csv:<image "
                            "name> or file.csv:<row number>)")
        g.add_argument("--target_dir", type=str, default=None,
                       help="a pose sequence: folder of .json files, photos and/or annotation .csv files "
                            "(every row), in natural name order")
        g.add_argument("--out", type=str, default=None,
                       help="with --target: the result image (.png or .jpg); with --target_dir: a folder for "
                            "one image per pose")
        g.add_argument("--animation", type=str, default=None,
                       help="with --target_dir: animated .gif (or .mp4 when imageio-ffmpeg is installed)")
        g.add_argument("--fps", type=float, default=8.0, help="animation frames per second")
        g.add_argument("--panel", action="store_true",
                       help="write source | target pose | result side by side instead of the result alone")
        g.add_argument("--display_scale", type=int, default=1,
                       help="enlarge written images by this integer factor (nearest neighbour) for viewing")
        g.add_argument("--framing", type=str, default="auto", choices=["auto", "box", "keypoints", "full"],
                       help="how to crop --source: the detector's person box, the keypoints' extent, or the "
                            "whole photo; auto = full for photos already of the dataset's size, box when "
                            "Keypoint R-CNN found the pose, else keypoints")
        g.add_argument("--target_placement", type=str, default="auto",
                       choices=["auto", "fit", "source", "as_is"],
                       help="fit: rescale and centre the target person in the frame (one common framing for a "
                            "sequence); source: target keypoints are in --source's pixel coordinates and get "
                            "its crop (absolute placement); as_is: already in the dataset frame; auto = as_is "
                            "for annotation-CSV rows and poses of the dataset's size, else fit")
        g.add_argument("--box_margin", type=float, default=BOX_MARGIN,
                       help="room around a detector box, as a fraction of its height on each side")
        g.add_argument("--pad_fill", type=str, default="auto", choices=["auto", "edge", *FILLS],
                       help="fill where the crop leaves the photo; auto = white for DeepFashion, edge for Market")
        return add_pose_input_options(parser)

    def validate(self, opt: Options) -> None:
        super().validate(opt)
        if opt.source is None:
            raise InputError("--source is required: a photo of the person")
        modes = [f"--{dest}" for dest in find_model_class(opt.model).test_mode_options if getattr(opt, dest, None)]
        if modes:
            raise InputError(f"{', '.join(modes)} is a mode of test.py over a dataset's pairs; scripts.transfer "
                             "writes generated images only")
        if (opt.target is None) == (opt.target_dir is None):
            raise InputError("give exactly one of --target (one pose) and --target_dir (a pose sequence)")
        if opt.target is not None:
            if opt.animation is not None:
                raise InputError("--animation needs a pose sequence: use --target_dir instead of --target")
            if opt.out is None or Path(opt.out).suffix.lower() not in IMAGE_SUFFIXES:
                raise InputError(f"--out must name the result image (.png or .jpg), got {opt.out!r}")
            check_output_file(opt.out, "--out")
        else:
            if opt.out is None and opt.animation is None:
                raise InputError("with --target_dir give --animation out.gif and/or --out <folder>")
            if opt.out is not None and Path(opt.out).suffix.lower() in IMAGE_SUFFIXES:
                raise InputError(f"with --target_dir, --out is a folder for the frames, got the image name {opt.out}")
            if opt.out is not None:
                check_results_path(opt.out, "--out")
            if opt.animation is not None:
                check_animation_path(opt.animation)
                check_output_file(opt.animation, "--animation")
        if opt.fps <= 0:
            raise InputError(f"--fps must be > 0, got {opt.fps}")
        if opt.display_scale < 1:
            raise InputError(f"--display_scale must be >= 1, got {opt.display_scale}")
        if opt.box_margin < 0:
            raise InputError(f"--box_margin must be >= 0, got {opt.box_margin}")
        if opt.pose_sigma <= 0:
            raise InputError(f"--pose_sigma must be > 0, got {opt.pose_sigma}")
        if opt.pose_size < 32:
            raise InputError(f"--pose_size must be >= 32, got {opt.pose_size}")


class LazyEstimator:
    """Builds Keypoint R-CNN on first use, so that pose files alone never need its weights."""

    def __init__(self, opt, device: torch.device) -> None:
        self.opt, self.device, self.net = opt, device, None

    def __call__(self, image: Image.Image, origin: str) -> Pose:
        if self.net is None:
            opt = self.opt
            self.net = KeypointRCNNEstimator(opt.pose_weights, opt.pose_random_weights, opt.pose_threshold,
                                             opt.person_threshold, opt.pose_size, max(opt.pose_size * 5 // 3, 32),
                                             self.device, opt.seed, download=not opt.no_download)
        return self.net(image, origin)


@dataclass
class Placed:
    """A photo or pose in the dataset frame: image (PIL HxW), int64 (18, 2) keypoints, its name."""

    image: Image.Image
    keypoints: np.ndarray
    name: str


def load_pose_input(spec: str, opt, estimator: LazyEstimator) -> tuple[Pose, Image.Image | None]:
    """(pose, photo or None) for a spec: photos go through the estimator."""
    if is_photo(spec):
        photo = read_photo(spec)
        return estimator(photo, spec), photo
    return read_pose(spec, json_threshold=opt.json_threshold), None


def person_box(pose: Pose, opt, use_detector: bool = True) -> Box:
    """The person's box with room around it: the detector's (plus --box_margin) or from the keypoints."""
    if use_detector and pose.box is not None:
        top, left, bottom, right = pose.box
        room = opt.box_margin * (bottom - top)
        return top - room, left - room, bottom + room, right + room
    return keypoint_box(pose.keypoints, pose.origin)


def source_framing(opt, pose: Pose, photo: Image.Image, size: tuple[int, int]) -> Framing:
    """The crop of --source per --framing (see its help)."""
    height, width = size
    mode = opt.framing
    if mode == "auto":
        mode = "full" if (photo.height, photo.width) == size else "box" if pose.box is not None else "keypoints"
    if mode == "full":
        return whole_image_framing((photo.height, photo.width), height, width)
    if mode == "box" and pose.box is None:
        raise InputError("--framing box needs a person box from Keypoint R-CNN; a pose given as a file has "
                         "none: use --framing keypoints or full")
    return fit_box(person_box(pose, opt, use_detector=mode == "box"), height, width)


def target_framings(opt, poses: list[Pose], photos: list, source: Framing, size: tuple[int, int]) -> list[Framing]:
    """One framing per target pose per --target_placement; all 'fit' targets share one (their union box)."""
    height, width = size
    modes = []
    for pose, photo in zip(poses, photos):
        mode = opt.target_placement
        if mode == "auto":
            own_size = (photo.height, photo.width) if photo is not None else pose.image_size
            mode = "as_is" if pose.dataset_frame or own_size == size else "fit"
        if mode == "as_is" and photo is not None and (photo.height, photo.width) != size:
            raise InputError(f"{pose.origin}: --target_placement as_is needs a {height}x{width} photo (the dataset "
                             f"frame), this one is {photo.height}x{photo.width}; use fit or source")
        modes.append(mode)
    fitted = [p for p, m in zip(poses, modes) if m == "fit"]
    common = (fit_box(union_box([person_box(p, opt, opt.framing != "keypoints") for p in fitted]), height, width)
              if fitted else None)
    by_mode = {"fit": common, "source": source, "as_is": identity_framing(height, width)}
    return [by_mode[m] for m in modes]


def pose_name(spec: str) -> str:
    """'poses.csv:0001_c1.jpg' -> '0001_c1.jpg'; 'dir/frame3.json' -> 'frame3.json'."""
    path, row = split_spec(spec)
    return row if row is not None else path.name


def check_landed(pose: Pose, placed: np.ndarray, photo_size: tuple[int, int] | None, where: str) -> None:
    """Refuse a pose whose keypoints (mostly) miss its photo or the frame: some fall outside and fewer than
    MIN_LANDED land inside, or more fall outside than inside (the pose of another image, or in other
    coordinates). The model would see a flat fill or an empty pose instead of the person. A pose without
    keypoints is not judged here (the framing needs some, a detector box none).

    placed: int (18, 2) keypoints in the frame (-1 = missing or outside); photo_size: (H, W) of the photo the
    pose must lie on, or None.
    """
    present = pose.present
    landed = present & (placed >= 0).all(axis=1)
    if photo_size is not None:
        height, width = photo_size
        landed &= (pose.keypoints[:, 0] < height) & (pose.keypoints[:, 1] < width)
    inside, outside = int(landed.sum()), int((present & ~landed).sum())
    if outside and (inside < MIN_LANDED or outside > inside):
        raise InputError(f"{pose.origin}: {outside} of its {inside + outside} visible keypoints fall outside "
                         f"{where} (at most half may, and at least {MIN_LANDED} must lie inside); give the pose "
                         "of this person in these coordinates")


def place_targets(specs: list[str], opt, estimator, source: Framing, size, fill) -> list[Placed]:
    """Read every target pose and map it into the dataset frame."""
    loaded = [load_pose_input(spec, opt, estimator) for spec in specs]
    poses, photos = [p for p, _ in loaded], [ph for _, ph in loaded]
    framings = target_framings(opt, poses, photos, source, size)
    placed = []
    where = f"the {size[0]}x{size[1]} frame (--target_placement {opt.target_placement})"
    for spec, pose, photo, framing in zip(specs, poses, photos, framings):
        image = framing.crop(photo, fill) if photo is not None else Image.new("RGB", size[::-1], PLACEHOLDER)
        keypoints = framing.keypoints_to_frame(pose.keypoints)
        check_landed(pose, keypoints, None if photo is None else (photo.height, photo.width), where)
        placed.append(Placed(image, keypoints, pose_name(spec)))
    return placed


def frame_names(targets: list[Placed]) -> list[str]:
    """The file names of the frames written into --out with --target_dir, in sequence order."""
    return [f"{i:04d}_{Path(t.name).stem}.png" for i, t in enumerate(targets)]


def check_frame_folder(folder: Path, names: list[str]) -> None:
    """Refuse a frame folder holding frames this run would not replace (another, longer or other sequence):
    the folder would show two sequences as one."""
    stale = sorted(p.name for p in folder.glob(FRAME_PATTERN) if p.is_file() and p.name not in set(names))
    if stale:
        shown = ", ".join(stale[:3]) + (f" ... (+{len(stale) - 3} more)" if len(stale) > 3 else "")
        raise InputError(f"--out {folder} holds {len(stale)} frames of another sequence that this run of "
                         f"{len(names)} poses would not replace ({shown}); choose another --out or delete them")


def generate(model, dataset: PairDataset, source: Placed, targets: list[Placed], batch_size: int) -> list[np.ndarray]:
    """uint8 (H, W, 3) results in the dataset frame, one per target, batched as --batchSize."""
    results = []
    for start in range(0, len(targets), batch_size):
        items = [dataset.make_item(source.image, source.keypoints, t.image, t.keypoints, source.name, t.name)
                 for t in targets[start:start + batch_size]]
        model.set_input(default_collate(items))
        model.test()
        results += list(dataset.output_to_uint8(model.generated_images()))  # as test.py saves them
    return results


def compose(opt, source: Placed, target: Placed, result: np.ndarray) -> np.ndarray:
    """The image written for one pose: the result, or the panel source | target pose | result; scaled."""
    if opt.panel:
        height, width = result.shape[:2]
        skeleton = draw_skeleton(target.keypoints, height, width)
        result = np.concatenate([np.asarray(source.image), skeleton, result], axis=1)
    k = opt.display_scale
    return result if k == 1 else result.repeat(k, axis=0).repeat(k, axis=1)


def load_model(opt, ctx):
    """create_model + setup (weights of --which_epoch); a mismatch hints at the training options."""
    model = create_model(opt, ctx)
    try:
        model.setup()
    except InputError as exc:
        record = Path(opt.checkpoints_dir) / opt.name / "train_opt.txt"
        hint = f"give the same --dataset_mode and model flags as in training: see {record}"
        raise InputError(f"{exc}\n({hint})") from None
    return model


@report_input_errors
def main(argv: list[str] | None = None) -> int:
    """Parse, read the photos and poses, generate, write; returns the exit status (2 for bad input)."""
    opt = TransferOptions().parse(argv, echo=False, check_folder=False)
    set_cpu_memory_policy(opt.cpu_memory)
    ctx = build_context(opt.gpu_ids)
    reader = READERS[opt.data_format]
    size, frame = tuple(reader.image_size), reader.frame_for(opt)
    fill = opt.pad_fill if opt.pad_fill != "auto" else ("white" if opt.data_format == "fashion" else "edge")
    fill = FILLS.get(fill, fill)
    estimator = LazyEstimator(opt, ctx.device)

    photo = read_photo(opt.source)
    if opt.source_pose is not None:
        if is_photo(opt.source_pose):
            raise InputError(f"--source_pose {opt.source_pose}: give a pose file (.json or .csv); the pose of a "
                             "photo is estimated from --source itself")
        pose = read_pose(opt.source_pose, json_threshold=opt.json_threshold)
    else:
        pose = estimator(photo, opt.source)
    framing = source_framing(opt, pose, photo, size)
    keypoints = framing.keypoints_to_frame(pose.keypoints)
    on_photo = f"the photo {opt.source} ({photo.height}x{photo.width})"
    check_landed(pose, keypoints, (photo.height, photo.width), on_photo)
    source = Placed(framing.crop(photo, fill), keypoints, Path(opt.source).name)
    specs = [opt.target] if opt.target is not None else list_pose_folder(opt.target_dir)
    targets = place_targets(specs, opt, estimator, framing, size, fill)
    if opt.target_dir is not None and opt.out is not None:
        check_frame_folder(Path(opt.out), frame_names(targets))

    model = load_model(opt, ctx)
    dataset = PairDataset.in_memory(opt, size, frame)
    results = generate(model, dataset, source, targets, opt.batch_size)
    frames = [compose(opt, source, t, r) for t, r in zip(targets, results)]

    if opt.target is not None:
        save_image(frames[0], opt.out)
        print(f"wrote {opt.out}")
        return 0
    if opt.out is not None:
        folder = Path(opt.out)
        for name, image in zip(frame_names(targets), frames):
            save_image(image, folder / name)
        print(f"wrote {len(frames)} frames to {folder}")
    if opt.animation is not None:
        write_animation(frames, opt.animation, opt.fps)
        print(f"wrote {opt.animation} ({len(frames)} frames at {opt.fps:g} fps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
