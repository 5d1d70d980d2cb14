"""A few hundred real poses (excerpts of the shared annotation files) that the synthetic data is drawn on.

Rebuild the CSVs beside this file from the full files with
`python -m datasets.pose_bank --shared ../shared/data/annotations`; the selection is deterministic.
data/pose_bank.py reads them.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from data.annotations import read_annotations, write_annotations
from data.pose_bank import BANK_DIR, BANK_FILES, FASHION_VIEWS, FRAMES, fashion_view
from util.io import InputError, report_input_errors

SOURCE_FILES = {"market": "market-annotation-train.csv", "fashion": "fasion-annotation-test.csv"}
FASHION_CROP = 40  # the 256x256 older split becomes 256x176 by dropping 40 columns each side
MARKET_ROWS = 300
FASHION_ROWS_PER_VIEW = 60
MIN_MARKET_KEYPOINTS = 12
MIN_FASHION_KEYPOINTS = 8  # above make_pairs' fashion minimum (6), so a shifted pose still gets paired
BODY = (1, 2, 5, 8, 11)  # neck, shoulders, hips: the synthetic body is drawn around them
SELECTION_SEED = 0


def _visible(keypoints: np.ndarray) -> np.ndarray:
    return (keypoints >= 0).all(axis=-1)


def to_fashion_176(keypoints: np.ndarray) -> np.ndarray:
    """256x256 older-split keypoints -> the 256x176 frame (x - 40); points falling outside become -1."""
    out = np.array(keypoints, dtype=np.int64, copy=True)
    vis = _visible(out)
    out[vis, 1] -= FASHION_CROP
    outside = vis & ((out[:, 1] < 0) | (out[:, 1] >= FRAMES["fashion"][1]))
    out[outside] = -1
    return out


def _one_per_identity(names: list[str], identity) -> list[str]:
    """The first image of each identity, so that the bank is not a few people's poses repeated."""
    seen: set[str] = set()
    kept = []
    for name in names:
        if identity(name) not in seen:
            seen.add(identity(name))
            kept.append(name)
    return kept


def _pick(names: list[str], count: int, rng: np.random.Generator) -> list[str]:
    """`count` names drawn without replacement, kept in file order."""
    if len(names) <= count:
        return list(names)
    chosen = set(rng.choice(len(names), size=count, replace=False).tolist())
    return [n for i, n in enumerate(names) if i in chosen]


def select_market(annotations: dict[str, np.ndarray], rows: int = MARKET_ROWS) -> dict[str, np.ndarray]:
    """Full-body pedestrians: >= 12 visible keypoints incl. neck, shoulders and hips, one per identity."""
    ok = [n for n, k in annotations.items()
          if not n.startswith(("-1", "0000")) and _visible(k).sum() >= MIN_MARKET_KEYPOINTS
          and _visible(k)[list(BODY)].all()]
    ok = _one_per_identity(ok, lambda n: n.split("_", 1)[0])
    picked = _pick(ok, rows, np.random.default_rng(SELECTION_SEED))
    return {n: annotations[n] for n in picked}


def select_fashion(annotations: dict[str, np.ndarray], per_view: int = FASHION_ROWS_PER_VIEW) -> dict[str, np.ndarray]:
    """Per person view, poses (converted to 256x176) with >= 8 visible incl. neck, shoulders and hips."""
    rng = np.random.default_rng(SELECTION_SEED)
    converted = {n: to_fashion_176(k) for n, k in annotations.items()}
    bank: dict[str, np.ndarray] = {}
    for view in FASHION_VIEWS:
        ok = [n for n, k in converted.items() if fashion_view(n) == view and _visible(k)[list(BODY)].all()
              and _visible(k).sum() >= MIN_FASHION_KEYPOINTS]
        ok = _one_per_identity(ok, lambda n: n.rsplit("_", 1)[0])
        for name in _pick(ok, per_view, rng):
            bank[name] = converted[name]
    order = {name: i for i, name in enumerate(converted)}
    return dict(sorted(bank.items(), key=lambda item: order[item[0]]))  # file order, as the market bank


def build_pose_bank(shared: str | Path, out_dir: str | Path = BANK_DIR) -> dict[str, int]:
    """Rebuild both bank CSVs from the full shared annotation files; returns rows written per format."""
    shared, out_dir = Path(shared), Path(out_dir)
    for fmt, source in SOURCE_FILES.items():
        if not (shared / source).is_file():
            raise InputError(f"{shared / source} not found: --shared must hold the official annotation CSVs")
    market = select_market(read_annotations(shared / SOURCE_FILES["market"]))
    fashion = select_fashion(read_annotations(shared / SOURCE_FILES["fashion"]))
    write_annotations(out_dir / BANK_FILES["market"], market)
    write_annotations(out_dir / BANK_FILES["fashion"], fashion)
    return {"market": len(market), "fashion": len(fashion)}


@report_input_errors
def main(argv: list[str] | None = None) -> int:
    """CLI: rebuild the pose bank CSVs from the full annotation files."""
    parser = argparse.ArgumentParser(prog="python -m datasets.pose_bank", description=__doc__.split("\n")[0])
    parser.add_argument("--shared", required=True, type=Path, help="folder with the official annotation CSVs")
    parser.add_argument("--out_dir", type=Path, default=BANK_DIR, help="where to write the bank CSVs")
    args = parser.parse_args(argv)
    counts = build_pose_bank(args.shared, args.out_dir)
    print(f"wrote {counts['market']} market and {counts['fashion']} fashion poses to {args.out_dir}")
    return 0
