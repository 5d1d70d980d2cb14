"""(source, target) pair lists built from annotations, as the reference builds them.

Market follows the reference, tengteng95/Pose-Transfer `tool/create_pairs_dataset.py`, exactly (except that
train pairs come from the train annotation file: the script as shipped reads the test file for them), so that
`market-pairs-train.csv` (263,632 pairs, not shipped) can be rebuilt and `market-pairs-test.csv` reproduced
row for row. DeepFashion pairs were not built by that script; ours use the same rule with the DeepFashion
identity (item id + photo set) and a minimum number of visible keypoints. The command line is
`python -m datasets.make_pairs`.
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from data.annotations import read_annotations
from util.io import InputError

FORMATS = ("market", "fashion")
TORSO = (2, 5, 8, 11)  # r-shoulder, l-shoulder, r-hip, l-hip: the reference keeps rows with all four
MARKET_JUNK_PREFIXES = ("-1", "0000")  # junk boxes and distractors of Market's test folder
MARKET_TEST_SAMPLE = 12000
# the fewest visible keypoints of any image in the shared fasion-pairs-test.csv
FASHION_MIN_KEYPOINTS = 6

Pair = tuple[str, str]


def num_visible(keypoints: np.ndarray) -> int:
    """Visible keypoints of one (18, 2) array; -1 marks a missing one."""
    return int((np.asarray(keypoints) >= 0).all(axis=1).sum())


def has_torso(keypoints: np.ndarray) -> bool:
    """True when both shoulders and both hips are visible (the reference's validity test)."""
    return bool((np.asarray(keypoints)[list(TORSO)] >= 0).all())


def market_identity(name: str) -> str:
    """`0002_c1s1_000451_03.jpg` -> `0002`: Market's person id is the prefix before the first `_`."""
    return name.split("_", 1)[0]


def fashion_identity(name: str) -> str:
    """`fashionWOMENDressesid0000553705_4full.jpg` -> `fashionWOMENDressesid0000553705`.

    Everything before the trailing `_<view>.jpg`: item id plus photo set, i.e. one model in one outfit.
    """
    stem = name[:-4] if name.lower().endswith(".jpg") else name
    return stem.rsplit("_", 1)[0]


def is_market_junk(name: str) -> bool:
    """Junk (`-1_...`) and distractor (`0000_...`) boxes, which the reference never pairs."""
    return name.startswith(MARKET_JUNK_PREFIXES)


def group_by_identity(names: Iterable[str], identity: Callable[[str], str]) -> dict[str, list[str]]:
    """Identities in order of first appearance, names in input order within each."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(identity(name), []).append(name)
    return groups


def permutation_pairs(groups: dict[str, list[str]]) -> list[Pair]:
    """All ordered 2-permutations within each identity, identities in the dict's order."""
    pairs: list[Pair] = []
    for names in groups.values():
        pairs.extend(itertools.permutations(names, 2))
    return pairs


def market_pairs(annotations: dict[str, np.ndarray], min_keypoints: int = 0) -> list[Pair]:
    """The reference Market construction: torso visible, no junk/distractors, all permutations per id.

    `min_keypoints` > 0 adds a filter the reference does not have (off by default).
    """
    names = [n for n, k in annotations.items()
             if has_torso(k) and not is_market_junk(n) and num_visible(k) >= min_keypoints]
    return permutation_pairs(group_by_identity(names, market_identity))


def fashion_pairs(annotations: dict[str, np.ndarray], min_keypoints: int = FASHION_MIN_KEYPOINTS) -> list[Pair]:
    """All permutations within each DeepFashion identity, skipping poses with < min_keypoints visible."""
    names = [n for n, k in annotations.items() if num_visible(k) >= min_keypoints]
    return permutation_pairs(group_by_identity(names, fashion_identity))


def sample_pairs(pairs: Sequence[Pair], n: int, seed: int = 0) -> list[Pair]:
    """The reference test subset: `DataFrame.sample(n, replace=False, random_state=seed)` over index 0..N-1."""
    if n > len(pairs):
        raise InputError(f"cannot sample {n} pairs: only {len(pairs)} candidate pairs")
    table = pd.DataFrame(list(pairs), columns=["from", "to"])  # default RangeIndex, as the reference
    picked = table.sample(n=n, replace=False, random_state=seed)
    return list(zip(picked["from"].tolist(), picked["to"].tolist()))


def make_pairs(annotation: str | Path, fmt: str, test_sample: int | None = None,
               min_keypoints: int | None = None, seed: int = 0) -> list[Pair]:
    """Pairs of one split from its annotation file; `test_sample` draws the reference random subset."""
    if fmt not in FORMATS:
        raise InputError(f"unknown --format {fmt!r}; available: {', '.join(FORMATS)}")
    annotations = read_annotations(annotation)
    if fmt == "market":
        pairs = market_pairs(annotations, min_keypoints or 0)
    else:
        pairs = fashion_pairs(annotations, FASHION_MIN_KEYPOINTS if min_keypoints is None else min_keypoints)
    if not pairs:
        raise InputError(f"{Path(annotation).name}: no pairs (no identity has two usable images)")
    if test_sample is not None:
        pairs = sample_pairs(pairs, test_sample, seed)
    return pairs
