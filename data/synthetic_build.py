"""A tiny, learnable pose-transfer dataset in the official Market-1501 / DeepFashion file format.

People are drawn (data/synthetic_render.py) on real skeletons from `datasets/pose_bank`, so the poses are
real while the images need no download. `python -m datasets.make_synthetic` is the command line;
--dataset_mode synthetic (data/synthetic_dataset.py) builds one on first use.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.annotations import write_annotations, write_pairs
from data.pairs import FASHION_MIN_KEYPOINTS, fashion_pairs, market_pairs
from data.pose_bank import FASHION_VIEWS, fashion_view, load_pose_bank
from data.synthetic_render import Look, hsv_colour, jitter_colour, random_look, render_image
from util.io import InputError

FORMATS = ("market", "fashion")
DEFAULT_IMAGES_PER_PERSON = {"market": 6, "fashion": len(FASHION_VIEWS)}
JPEG_QUALITY = 90
FASHION_CATEGORIES = {
    "WOMEN": ("Blouses_Shirts", "Cardigans", "Dresses", "Graphic_Tees", "Pants", "Shorts", "Skirts",
              "Sweaters", "Tees_Tanks"),
    "MEN": ("Denim", "Pants", "Shirts_Polos", "Shorts", "Sweatshirts_Hoodies", "Tees_Tanks"),
}


def _file_names(fmt: str, split: str) -> tuple[str, str]:
    """(annotation CSV, pair CSV) names of one split, as the official releases spell them."""
    stem = "market" if fmt == "market" else "fasion-resize"  # sic: "fasion"
    return f"{stem}-annotation-{split}.csv", f"{stem}-pairs-{split}.csv"


@dataclass
class _Person:
    identity: str
    look: Look
    names: list[str]
    poses: list[int]  # bank rows, one per image
    bases: list[tuple[int, int, int]]  # background colour per image
    scenes: dict[int, tuple[int, int, int]] | None = None  # Market: background colour per camera (for query/)


def _plan_market(rng: np.random.Generator, people: int, k: int, bank: list[str]) -> list[_Person]:
    if k > len(bank):
        raise InputError(f"--images_per_person {k} exceeds the {len(bank)} poses of the market pose bank")
    ids = np.sort(rng.choice(np.arange(1, 1502), size=people, replace=False))
    # muted, mid-grey scenes per camera: they vary, but the person, not the background, dominates the L1
    cameras = {c: hsv_colour(rng.random(), rng.uniform(0.04, 0.18), rng.uniform(0.42, 0.62)) for c in range(1, 7)}
    persons, taken = [], set()
    for index, pid in enumerate(ids.tolist()):
        prng = np.random.default_rng([rng.integers(2**31), index])
        names, bases = [], []
        while len(names) < k:
            cam = int(prng.integers(1, 7))
            sequence, frame, box = prng.integers(1, 7), prng.integers(1, 200000), prng.integers(1, 9)
            name = f"{pid:04d}_c{cam}s{sequence}_{frame:06d}_{box:02d}.jpg"
            if name not in taken:
                taken.add(name)
                names.append(name)
                bases.append(jitter_colour(prng, cameras[cam], 6))
        poses = prng.choice(len(bank), size=k, replace=False).tolist()
        persons.append(_Person(f"{pid:04d}", random_look(prng), names, poses, bases, cameras))
    return persons


def _plan_fashion(rng: np.random.Generator, people: int, k: int, bank: list[str]) -> list[_Person]:
    if k > len(FASHION_VIEWS):
        raise InputError(f"--images_per_person {k} is too many for fashion: an identity has one image per view "
                         f"({', '.join(FASHION_VIEWS)})")
    by_view = {v: [i for i, n in enumerate(bank) if fashion_view(n) == v] for v in FASHION_VIEWS}
    items = rng.choice(np.arange(1, 100000), size=people, replace=False).tolist()
    persons = []
    for index, item in enumerate(items):
        prng = np.random.default_rng([rng.integers(2**31), index])
        gender = "WOMEN" if prng.random() < 0.7 else "MEN"
        category = str(prng.choice(FASHION_CATEGORIES[gender]))
        identity = f"fashion{gender}{category}id{item:08d}{prng.integers(1, 8):02d}"
        views = [FASHION_VIEWS[i] for i in np.sort(prng.choice(len(FASHION_VIEWS), size=k, replace=False))]
        studio = jitter_colour(prng, (244, 244, 244), 6)
        persons.append(_Person(identity, random_look(prng, category), [f"{identity}_{v}.jpg" for v in views],
                               [int(prng.choice(by_view[v])) for v in views], [studio] * k))
    return persons


def _write_market_query(folder: Path, seed: int, members: list[tuple[int, _Person]], bank_poses: np.ndarray,
                        taken: set[str]) -> int:
    """Market's query/: one or two more images of every test identity, each in a camera where the gallery
    also holds the person in another camera, so that every query has a match under the re-id junk rule.

    Drawn from streams of their own ([seed, index, "query"...]): the train/test files stay byte-identical.
    """
    folder.mkdir()
    count = 0
    for index, person in members:
        qrng = np.random.default_rng([seed, index, 0x51, 0])  # 0x51: "Q"; a stream no gallery image uses
        gallery_cams = {int(name.split("_c", 1)[1][0]) for name in person.names}
        for j in range(int(qrng.integers(1, 3))):
            cams = [c for c in range(1, 7) if gallery_cams - {c}]
            cam = int(qrng.choice(cams))
            while True:
                sequence, frame, box = qrng.integers(1, 7), qrng.integers(1, 200000), qrng.integers(1, 9)
                name = f"{person.identity}_c{cam}s{sequence}_{frame:06d}_{box:02d}.jpg"
                if name not in taken:
                    break
            taken.add(name)
            pose = int(qrng.integers(len(bank_poses)))
            base = jitter_colour(qrng, person.scenes[cam], 6)
            image, _ = render_image(np.random.default_rng([seed, index, 0x51, j + 1]), "market", bank_poses[pose],
                                    person.look, base)
            image.save(folder / name, "JPEG", quality=JPEG_QUALITY)
            count += 1
    return count


def _validate(fmt: str, people: int, seed: int, k: int, test_fraction: float) -> None:
    if fmt not in FORMATS:
        raise InputError(f"unknown --format {fmt!r}; available: {', '.join(FORMATS)}")
    if seed < 0:
        raise InputError(f"--seed must be >= 0, got {seed}")
    if k < 2:
        raise InputError(f"--images_per_person must be >= 2 (pairs need two images), got {k}")
    if not 0 < test_fraction < 1:
        raise InputError(f"--test_fraction must be in (0, 1), got {test_fraction}")
    n_test = max(1, round(people * test_fraction))
    if people < 2 or n_test >= people:
        raise InputError(f"--people {people} with --test_fraction {test_fraction} leaves no train or no test "
                         "identity; use more people")
    if fmt == "market" and people > 1501:
        raise InputError(f"--people {people}: Market identities have 4 digits and stop at 1501")


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(f"--out {out} exists and is not empty; pass --overwrite to replace it")


def _publish(tmp: Path, out: Path, overwrite: bool) -> None:
    """Move the finished temp folder to `out` in one rename (replacing `out` only when allowed)."""
    _check_out(out, overwrite)  # again: another run may have finished meanwhile
    old = None
    if out.is_dir() and any(out.iterdir()):
        old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
        os.replace(out, old / out.name)
    try:
        os.replace(tmp, out)  # also replaces an empty folder
    except OSError as err:
        if old is not None:
            os.replace(old / out.name, out)  # put the previous dataset back
            old.rmdir()
        raise InputError(f"could not move the new dataset to {out}: {err} (another run writing there?)") from None
    if old is not None:
        shutil.rmtree(old)


def make_synthetic_dataset(out: str | Path, fmt: str, people: int, seed: int, images_per_person: int | None = None,
                           test_fraction: float = 0.25, overwrite: bool = False) -> dict:
    """Write `out/{train,test}/` images and the official CSVs; same arguments -> byte-identical files.

    Train and test identities are disjoint. Market also gets `out/query/` (re-id queries of the test
    identities, Market naming, no CSV), drawn from its own random streams. Returns counts and the written paths.
    """
    out = Path(out)
    k = DEFAULT_IMAGES_PER_PERSON.get(fmt, 2) if images_per_person is None else images_per_person
    _validate(fmt, people, seed, k, test_fraction)
    _check_out(out, overwrite)
    bank_names, bank_poses = load_pose_bank(fmt)
    rng = np.random.default_rng(seed)
    persons = (_plan_market if fmt == "market" else _plan_fashion)(rng, people, k, bank_names)
    test_ids = set(rng.choice(people, size=max(1, round(people * test_fraction)), replace=False).tolist())
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    tmp.chmod(0o755)  # mkdtemp makes it private; the dataset it becomes should not be
    summary: dict = {"format": fmt, "out": str(out), "seed": seed, "images_per_person": k}
    try:
        for split in ("train", "test"):
            (tmp / split).mkdir()
            members = [(i, p) for i, p in enumerate(persons) if (i in test_ids) == (split == "test")]
            annotations = {}
            for index, person in members:
                for j, (name, pose, base) in enumerate(zip(person.names, person.poses, person.bases)):
                    irng = np.random.default_rng([seed, index, j])  # one stream per image
                    image, annotations[name] = render_image(irng, fmt, bank_poses[pose], person.look, base)
                    image.save(tmp / split / name, "JPEG", quality=JPEG_QUALITY)
            annotations = dict(sorted(annotations.items()))  # pairs follow the file's order, as the reference
            pairs = market_pairs(annotations) if fmt == "market" else fashion_pairs(annotations, FASHION_MIN_KEYPOINTS)
            ann_name, pair_name = _file_names(fmt, split)
            write_annotations(tmp / ann_name, annotations)
            write_pairs(tmp / pair_name, pairs)
            summary.update({f"{split}_identities": len(members), f"{split}_images": len(annotations),
                            f"{split}_pairs": len(pairs), f"{split}_dir": str(out / split),
                            f"{split}_annotation": str(out / ann_name), f"{split}_pairs_csv": str(out / pair_name)})
            if fmt == "market" and split == "test":
                taken = {name for person in persons for name in person.names}
                summary["query_images"] = _write_market_query(tmp / "query", seed, members, bank_poses, taken)
                summary["query_dir"] = str(out / "query")
        _publish(tmp, out, overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary

