"""Poses from outside the datasets: OpenPose JSON (COCO-18, BODY_25), COCO-17 keypoints, annotation-CSV rows.

Everything is converted to this project's OpenPose COCO-18 order (data/keypoints.py) as float64 (18, 2) arrays
of (y, x) in the pose's own pixel frame, -1 marking a missing point. Photos are read here too (EXIF rotation
applied); estimating a pose from a photo lives in data/keypoint_rcnn.py.

A pose is named by a spec string: `pose.json`, `poses.csv` (a one-row file), `poses.csv:<image name>` or
`poses.csv:<row number>` (rows counted from 1 after the header), or a photo (`.jpg`, `.png`, ...).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from data.annotations import MAX_COORDINATE, MISSING, NUM_KEYPOINTS, read_annotations
from util.image import read_rgb
from util.io import InputError
from util.text_files import read_text

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
POSE_SUFFIXES = (".json", ".csv")

# index in the source layout of each of our 18 keypoints (nose, neck, r-sho, r-elb, r-wri, l-sho, l-elb,
# l-wri, r-hip, r-knee, r-ank, l-hip, l-knee, l-ank, r-eye, l-eye, r-ear, l-ear)
FROM_COCO18 = tuple(range(NUM_KEYPOINTS))  # OpenPose's COCO model uses our order
# BODY_25 adds MidHip at 8 (shifting the legs and face by one) and six foot points at 19..24
FROM_BODY25 = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)
# COCO-17 (MS COCO, torchvision's Keypoint R-CNN) has no neck: -1 here, the shoulders' midpoint is used
FROM_COCO17 = (0, -1, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)
COCO17_SHOULDERS = (5, 6)  # left, right
LAYOUTS = {18: ("COCO-18", FROM_COCO18), 25: ("BODY_25", FROM_BODY25), 17: ("COCO-17", FROM_COCO17)}

EXPECTED_COUNTS = "expected 54 (COCO-18), 75 (BODY_25) or 51 (COCO-17): (x, y, confidence) per keypoint"
JSON_THRESHOLD = 0.05  # OpenPose's own rendering threshold; its missing points have confidence 0


@dataclass(frozen=True)
class Pose:
    """One person's 18 keypoints and what is known about the frame they live in.

    keypoints: float64 (18, 2) (y, x) in pixels of `origin`'s frame, -1 = missing.
    image_size: (H, W) of that frame when known (photos), else None.
    box: a detector's person box (top, left, bottom, right) in that frame, or None.
    dataset_frame: True for annotation-CSV rows, whose coordinates are in a dataset frame (128x64, 256x176).
    """

    keypoints: np.ndarray
    origin: str
    image_size: tuple[int, int] | None = None
    box: tuple[float, float, float, float] | None = None
    dataset_frame: bool = False

    @property
    def present(self) -> np.ndarray:
        """bool (18,): the keypoint is given (not -1)."""
        return (self.keypoints >= 0).all(axis=1)


def convert_keypoints(xyc: np.ndarray, threshold: float = JSON_THRESHOLD, origin: str = "pose") -> np.ndarray:
    """(N, 3) rows of (x, y, confidence) in COCO-18, BODY_25 or COCO-17 order (N = 18, 25, 17) -> (18, 2) (y, x).

    A point is kept when its confidence exceeds `threshold`; others become -1. COCO-17's neck is the midpoint
    of the shoulders when both are kept, else missing.
    """
    xyc = np.asarray(xyc, dtype=np.float64)
    if xyc.ndim != 2 or xyc.shape[1] != 3 or xyc.shape[0] not in LAYOUTS:
        raise InputError(f"{origin}: {xyc.size} keypoint values; {EXPECTED_COUNTS}")
    _, order = LAYOUTS[xyc.shape[0]]
    kept = (xyc[:, 2] > threshold) & np.isfinite(xyc).all(axis=1) & (xyc[:, :2] >= 0).all(axis=1)
    out = np.full((NUM_KEYPOINTS, 2), float(MISSING))
    for ours, theirs in enumerate(order):
        if theirs >= 0 and kept[theirs]:
            out[ours] = xyc[theirs, 1], xyc[theirs, 0]
    if xyc.shape[0] == 17 and kept[list(COCO17_SHOULDERS)].all():
        left, right = xyc[COCO17_SHOULDERS[0], :2], xyc[COCO17_SHOULDERS[1], :2]
        out[1] = (left[1] + right[1]) / 2.0, (left[0] + right[0]) / 2.0
    return out


def check_values(xyc: np.ndarray, origin: str) -> None:
    """Every (x, y, confidence) value is finite and every coordinate within +-MAX_COORDINATE pixels, so that
    no crop or map is ever sized from a broken file; InputError naming the keypoint otherwise."""
    bad = ~np.isfinite(xyc)
    bad[:, :2] |= np.abs(np.nan_to_num(xyc[:, :2])) > MAX_COORDINATE
    if bad.any():
        k, j = (int(v) for v in np.argwhere(bad)[0])
        what = ("x", "y", "confidence")[j]
        raise InputError(f"{origin}: keypoint {k} (in the file's order) {what} = {xyc[k, j]:g} is "
                         f"{'not a finite number' if not np.isfinite(xyc[k, j]) else 'out of range'} "
                         f"(coordinates are pixels, at most {MAX_COORDINATE})")


def _candidates(document, path: Path) -> list[list]:
    """Every person's flat keypoint list in an OpenPose or COCO-results JSON document."""
    if isinstance(document, dict) and "people" in document:  # OpenPose --write_json
        people = document["people"]
        if not isinstance(people, list):
            raise InputError(f"{path}: 'people' must be a list")
        found = []
        for i, person in enumerate(people):
            values = person.get("pose_keypoints_2d", person.get("pose_keypoints")) if isinstance(person, dict) else None
            if values is None:
                raise InputError(f"{path}: person {i} has no 'pose_keypoints_2d' list")
            found.append(values)
        return found
    if isinstance(document, dict) and "keypoints" in document:  # one COCO-style detection
        return [document["keypoints"]]
    if isinstance(document, list) and all(isinstance(d, dict) and "keypoints" in d for d in document):
        return [d["keypoints"] for d in document]  # COCO results file: [{"keypoints": [...], "score": ...}]
    raise InputError(f"{path}: not an OpenPose JSON (no 'people' list) nor COCO keypoints (no 'keypoints')")


def read_openpose_json(path: str | Path, threshold: float = JSON_THRESHOLD) -> Pose:
    """The most confident person of an OpenPose JSON (COCO-18 or BODY_25) or a COCO-17 keypoints JSON.

    The person with the largest summed confidence is kept (the datasets kept the highest-scoring person).
    Raises InputError naming the file for unreadable JSON, no person, or a wrong number of values.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"pose file {path} not found")
    text = read_text(path)  # BOM-tolerant; a non-UTF-8 byte is an InputError naming its line
    try:
        document = json.loads(text)
    except ValueError as exc:  # JSONDecodeError, or an integer of more than 4300 digits
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    people = _candidates(document, path)
    if not people:
        raise InputError(f"{path}: the JSON holds no person (empty 'people' list)")
    best, best_score = None, -np.inf
    for i, values in enumerate(people):
        try:
            flat = np.asarray(values, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise InputError(f"{path}: person {i}: keypoints must be a list of numbers") from None
        except OverflowError:  # an integer beyond float64
            raise InputError(f"{path}: person {i}: a keypoint value is out of range (coordinates are pixels, at "
                             f"most {MAX_COORDINATE})") from None
        if flat.size % 3:
            raise InputError(f"{path}: person {i}: {flat.size} keypoint values; {EXPECTED_COUNTS}")
        check_values(flat.reshape(-1, 3), f"{path}: person {i}")
        keypoints = convert_keypoints(flat.reshape(-1, 3), threshold, f"{path}: person {i}")
        score = float(np.nansum(flat.reshape(-1, 3)[:, 2]))
        if score > best_score:
            best, best_score = keypoints, score
    return Pose(best, str(path))


def split_spec(spec: str) -> tuple[Path, str | None]:
    """'poses.csv:NAME' -> (Path('poses.csv'), 'NAME'); anything else -> (Path(spec), None)."""
    match = re.fullmatch(r"(.+?\.csv):(.+)", str(spec), flags=re.IGNORECASE)
    if match and not Path(spec).is_file():
        return Path(match.group(1)), match.group(2)
    return Path(spec), None


def read_csv_pose(spec: str) -> Pose:
    """A row of an annotation CSV (`name: [ys]: [xs]`): `file.csv`, `file.csv:<name>` or `file.csv:<row>`."""
    path, selector = split_spec(spec)
    rows = read_annotations(path)  # names file and row on any malformed row, e.g. 17 values
    names = list(rows)
    if selector is None:
        if len(names) != 1:
            raise InputError(f"{path} has {len(names)} rows; pick one as {path}:<image name> or "
                             f"{path}:<row number 1..{len(names)}>")
        name = names[0]
    elif selector in rows:
        name = selector
    elif selector.isdigit() and 1 <= int(selector) <= len(names):
        name = names[int(selector) - 1]
    else:
        raise InputError(f"{path}: no row {selector!r} (give an image name of the file or a row number "
                         f"1..{len(names)})")
    return Pose(rows[name].astype(np.float64), f"{path}:{name}", dataset_frame=True)


def csv_specs(path: Path) -> list[str]:
    """One spec per row of an annotation CSV, in file order."""
    return [f"{path}:{name}" for name in read_annotations(path)]


def is_photo(spec: str | Path) -> bool:
    """True when `spec` names a photo (not a CSV row such as poses.csv:0001_c1s1.jpg)."""
    path, row = split_spec(str(spec))
    return row is None and path.suffix.lower() in PHOTO_SUFFIXES


def read_photo(path: str | Path) -> Image.Image:
    """An RGB PIL image, turned upright by its EXIF orientation (phone photos); InputError if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"image {path} not found")
    return read_rgb(path, upright=True)  # damaged data and unknown modes are refused, naming the file


def read_pose(spec: str, estimator: Callable[[Image.Image, str], Pose] | None = None,
              json_threshold: float = JSON_THRESHOLD) -> Pose:
    """The pose named by `spec`: a JSON, an annotation-CSV row, or a photo passed to `estimator`.

    estimator: called as estimator(image, origin) for photos (see data/keypoint_rcnn.py); None refuses photos.
    """
    path, _ = split_spec(spec)
    suffix = path.suffix.lower()
    if suffix == ".json":
        return read_openpose_json(path, json_threshold)
    if suffix == ".csv":
        return read_csv_pose(spec)
    if suffix in PHOTO_SUFFIXES:
        if estimator is None:
            raise InputError(f"{spec}: a pose from a photo needs the pose estimator")
        return estimator(read_photo(path), str(path))
    raise InputError(f"{spec}: unknown pose format {suffix or '(no extension)'!r}; give an OpenPose .json, an "
                     f"annotation .csv (row as file.csv:<name>) or a photo ({', '.join(PHOTO_SUFFIXES)})")


def _natural_key(path: Path) -> list:
    """Sort 'frame2' before 'frame10'."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def list_pose_folder(folder: str | Path) -> list[str]:
    """Specs of every pose in `folder`, in natural name order; an annotation CSV contributes all its rows."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"--target_dir {folder} is not a folder")
    specs = []
    for path in sorted(folder.iterdir(), key=_natural_key):
        suffix = path.suffix.lower()
        if not path.is_file() or path.name.startswith("."):
            continue
        if suffix == ".csv":
            specs += csv_specs(path)
        elif suffix == ".json" or suffix in PHOTO_SUFFIXES:
            specs.append(str(path))
    if not specs:
        raise InputError(f"--target_dir {folder} holds no poses: expected OpenPose .json files, annotation "
                         f".csv files or photos ({', '.join(PHOTO_SUFFIXES)})")
    return specs
