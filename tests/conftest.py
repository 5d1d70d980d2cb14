"""Shared test fixtures: tiny datasets in the official Market / DeepFashion layouts, and dataset options.

Fixtures others may reuse:
- `tiny_market_root`, `tiny_fashion_root` (session): folders with `train/` and `test/` images and the
  annotation and pair CSVs under their official names; 3 people x 3 views per phase, 18 pairs per phase.
  Poses are real rows of ../shared/data/annotations when that folder exists, else hand-made standing poses.
- `make_pose_dataset` (session): the writer itself, `make_pose_dataset(root, fmt, **kw) -> Path`, for tests
  that need a variant (e.g. to break one file).
- `standing_pose`: `standing_pose(fmt, shift=0)` -> a hand-made int64 (18, 2) pose (ears missing).
- `dataset_opt`: `dataset_opt(mode, is_train=False, **overrides)` -> an options namespace built by the mode's
  own hooks, as parse() would build it (without a model).
"""
from __future__ import annotations

import argparse
import functools
import itertools
import math
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data.annotations import NUM_KEYPOINTS, read_annotations, write_annotations, write_pairs

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
os.environ["HPT_NO_DOWNLOAD"] = "1"  # the suite never downloads weights (util/weights.py; subprocesses inherit it)


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "slow: a test that takes more than ~8 s on 2 cores (deselect with "
                                       "-m 'not slow' for a quick run; CI runs every test)")
SHARED_ANNOTATIONS = SHARED / "data" / "annotations"
SIZES = {"market": (128, 64), "fashion": (256, 176)}  # (H, W)
TORSO = (1, 2, 5, 8, 11)  # neck, shoulders, hips: the drawn body needs them


def hand_made_pose(fmt: str, shift: int = 0) -> np.ndarray:
    """A standing person (y, x) in the format's frame, shifted `shift` columns; ears left out."""
    # fractions of the frame: nose, neck, r-sho, r-elb, r-wri, l-sho, l-elb, l-wri, r-hip, r-knee, r-ank,
    # l-hip, l-knee, l-ank, r-eye, l-eye, r-ear, l-ear
    fy = [.12, .20, .21, .33, .44, .21, .33, .44, .50, .68, .86, .50, .68, .86, .10, .10, -1, -1]
    fx = [.50, .50, .35, .30, .28, .65, .70, .72, .40, .40, .40, .60, .60, .60, .46, .54, -1, -1]
    height, width = SIZES[fmt]
    pose = np.full((NUM_KEYPOINTS, 2), -1, dtype=np.int64)
    for k in range(NUM_KEYPOINTS):
        if fy[k] >= 0:
            pose[k] = int(fy[k] * height), min(max(int(fx[k] * width) + shift, 0), width - 1)
    return pose


@functools.lru_cache(maxsize=2)
def _read_shared(path: Path) -> dict[str, np.ndarray]:
    return read_annotations(path)


def pose_bank(fmt: str, count: int) -> list[np.ndarray]:
    """`count` real poses from ../shared (torso visible, in the format's frame), else hand-made ones."""
    height, width = SIZES[fmt]
    source = SHARED_ANNOTATIONS / ("market-annotation-test.csv" if fmt == "market" else "fasion-annotation-test.csv")
    poses = []
    if source.is_file():
        for name, kps in _read_shared(source).items():
            kps = kps.copy()
            if fmt == "fashion":  # the shared file is the older 256x256 split: x_176 = x_256 - 40
                kps[kps[:, 1] >= 0, 1] -= 40
            inside = (kps >= 0).all(1) & (kps[:, 0] < height) & (kps[:, 1] >= 0) & (kps[:, 1] < width)
            kps[~inside] = -1
            if inside[list(TORSO)].all() and inside.sum() >= 14 and not name.startswith(("-1", "0000")):
                poses.append(kps)
            if len(poses) == count:
                return poses
    return [hand_made_pose(fmt, shift=(i % 5 - 2) * 2) for i in range(count)]


def draw_person(pose: np.ndarray, size: tuple[int, int], colour, rng: np.random.Generator) -> np.ndarray:
    """uint8 (H, W, 3): a noisy grey background with the body mask filled in `colour`."""
    from data.keypoints import evaluation_mask

    image = rng.integers(90, 140, size=(*size, 3)).astype(np.uint8)
    image[evaluation_mask(pose, *size)] = colour
    return image


def image_name(fmt: str, person: int, view: int) -> str:
    if fmt == "market":
        return f"{person + 1:04d}_c{view + 1}s1_{1000 * (view + 1):06d}_01.jpg"
    return f"fashionWOMENDressesid{person + 1:010d}_{view + 1}{('front', 'side', 'back')[view % 3]}.jpg"


def csv_names(fmt: str, phase: str) -> tuple[str, str]:
    """(annotation, pairs) file names under their official spelling."""
    if fmt == "market":
        return f"market-annotation-{phase}.csv", f"market-pairs-{phase}.csv"
    return f"fasion-resize-annotation-{phase}.csv", f"fasion-resize-pairs-{phase}.csv"


def write_pose_dataset(root: Path, fmt: str, phases=("train", "test"), people: int = 3, views: int = 3,
                       seed: int = 0) -> Path:
    """Write `people` x `views` JPEGs per phase, their annotations, and all ordered pairs per identity."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    size = SIZES[fmt]
    bank = pose_bank(fmt, people * views * len(phases))
    for p, phase in enumerate(phases):
        (root / phase).mkdir(parents=True, exist_ok=True)
        annotations, pairs = {}, []
        for person in range(people):
            colour = rng.integers(0, 256, size=3).astype(np.uint8)
            names = []
            for view in range(views):
                name = image_name(fmt, person + 100 * p, view)
                pose = bank[(p * people + person) * views + view]
                Image.fromarray(draw_person(pose, size, colour, rng)).save(root / phase / name, quality=95)
                annotations[name] = pose
                names.append(name)
            pairs += list(itertools.permutations(names, 2))
        annotation_file, pairs_file = csv_names(fmt, phase)
        write_annotations(root / annotation_file, annotations)
        write_pairs(root / pairs_file, pairs)
    return root


def build_dataset_opt(mode: str, is_train: bool = False, **overrides) -> argparse.Namespace:
    """Options for `--dataset_mode mode` from the mode's own hooks, plus the base fields datasets read."""
    from data import find_dataset_class

    cls = find_dataset_class(mode)
    parser = cls.modify_commandline_options(argparse.ArgumentParser(), is_train)
    opt = parser.parse_args([])
    base = dict(dataroot=None, phase="train" if is_train else "test", is_train=is_train,
                max_dataset_size=math.inf, seed=0, batch_size=2, num_threads=0, serial_batches=False,
                dataset_mode=mode)
    for key, value in {**base, **overrides}.items():
        setattr(opt, key, value)
    cls.derive_options(opt)
    return opt


@pytest.fixture(scope="session")
def make_pose_dataset():
    return write_pose_dataset


@pytest.fixture(scope="session")
def tiny_market_root(tmp_path_factory) -> Path:
    return write_pose_dataset(tmp_path_factory.mktemp("tiny_market"), "market")


@pytest.fixture(scope="session")
def tiny_fashion_root(tmp_path_factory) -> Path:
    return write_pose_dataset(tmp_path_factory.mktemp("tiny_fashion"), "fashion")


@pytest.fixture
def standing_pose():
    return hand_made_pose


@pytest.fixture
def dataset_opt():
    return build_dataset_opt


@pytest.fixture
def no_downloads(monkeypatch, tmp_path):
    """An empty torch hub cache under tmp_path; any download attempt fails the test."""
    import torch

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def refuse(*args, **kwargs):
        raise AssertionError(f"download attempted: {args[:1]}")
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
