"""Derive PN-GAN's canonical poses from the training annotations: 8 real poses that cover the common views.

PN-GAN (Qian et al., ECCV 2018, arXiv 1712.02225) normalises every re-id image to 8 canonical poses found by
clustering the training poses; the poses and the exact recipe are unpublished (naiq/PN_GAN ships neither). This
is OUR deterministic recipe, not the paper's:
  1. keep the rows whose neck, shoulders, hips and ankles (1, 2, 5, 8, 11, 10, 13) lie inside the frame;
  2. features: joints 1..13 as (y / H, x / W) (a missing one takes the mean of its visible limb neighbours; a row
     where that fails is dropped), then the visibility bits of the nose, eyes and ears (0, 14, 15, 16, 17), so
     that front, side and back views separate;
  3. k-means, k = 8, n_init = 10, random_state = 0 (scikit-learn);
  4. each cluster's medoid: the real row nearest to its centroid (so each pose has a real visibility pattern);
  5. clusters sorted by size, largest first (ties: the medoid's file order).
Writes an annotation CSV (rows canon_1.jpg .. canon_8.jpg) and `<out stem>.sources.txt` (recipe, source rows,
cluster sizes).

    python -m datasets.make_canonical_poses --annotations market-annotation-train.csv \\
        --out datasets/canonical_poses/market-canonical-poses.csv
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from data.annotations import MISSING, read_annotations, write_annotations
from datasets.staging import check_out_path, check_positive
from util.io import InputError, atomic_write_text, report_input_errors
from util.pose_drawing import LIMBS

REQUIRED = (1, 2, 5, 8, 11, 10, 13)  # neck, r/l shoulder, r/l hip, r/l ankle
BODY = tuple(range(1, 14))  # the 13 body joints used as coordinates
HEAD = (0, 14, 15, 16, 17)  # nose, eyes, ears: visibility bits only
NEIGHBOURS = {j: tuple(b if a == j else a for a, b in LIMBS if j in (a, b)) for j in range(18)}


def pose_features(kps: np.ndarray, height: int, width: int) -> np.ndarray | None:
    """The feature vector of one (18, 2) row, or None when the row is not usable (step 1-2)."""
    inside = (kps != MISSING).all(axis=1) & (kps[:, 0] < height) & (kps[:, 1] < width)
    if not inside[list(REQUIRED)].all():
        return None
    scaled = kps.astype(np.float64) / np.array([height, width], dtype=np.float64)
    coords = []
    for j in BODY:
        if inside[j]:
            coords.append(scaled[j])
            continue
        near = [scaled[n] for n in NEIGHBOURS[j] if inside[n]]
        if not near:
            return None
        coords.append(np.mean(near, axis=0))
    bits = inside[list(HEAD)].astype(np.float64)
    return np.concatenate([np.concatenate(coords), bits])


def canonical_poses(annotations: dict[str, np.ndarray], height: int, width: int, k: int = 8,
                    seed: int = 0) -> list[tuple[str, np.ndarray, int]]:
    """[(source row name, (18, 2) keypoints, cluster size)], largest cluster first."""
    from sklearn.cluster import KMeans  # scikit-learn is needed only here

    names, rows = [], []
    for name, kps in annotations.items():
        feature = pose_features(kps, height, width)
        if feature is not None:
            names.append(name)
            rows.append(feature)
    if len(rows) < k:
        raise InputError(f"only {len(rows)} annotation rows have neck, shoulders, hips and ankles in the "
                         f"{height}x{width} frame; {k} clusters need at least {k}")
    features = np.stack(rows)
    kmeans = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(features)
    found = []
    for c in range(k):
        members = np.flatnonzero(kmeans.labels_ == c)
        distances = np.linalg.norm(features[members] - kmeans.cluster_centers_[c], axis=1)
        medoid = int(members[np.argmin(distances)])  # argmin: the first of equals in file order
        found.append((len(members), medoid))
    found.sort(key=lambda item: (-item[0], item[1]))
    return [(names[m], annotations[names[m]].copy(), size) for size, m in found]


def sources_text(source: Path, poses: list[tuple[str, np.ndarray, int]], used: int, height: int,
                 width: int) -> str:
    lines = ["# Canonical poses for PN-GAN's pose normalisation: OUR derivation, NOT the paper's poses",
             "# (Qian et al., ECCV 2018 never published theirs). Written by datasets/make_canonical_poses.py.",
             f"# source: {source.name}; frame {height}x{width}; {used} usable rows",
             "# recipe: rows with neck, shoulders, hips, ankles visible; features joints 1..13 / (H, W) (missing ->",
             "#   mean of visible limb neighbours) + visibility of 0, 14..17; KMeans(k=8, n_init=10,",
             "#   random_state=0); medoid of each cluster; sorted by cluster size, largest first",
             "# canonical row, source row name, cluster size"]
    lines += [f"canon_{i}.jpg {name} {size}" for i, (name, _, size) in enumerate(poses, start=1)]
    return "\n".join(lines) + "\n"


@report_input_errors
def main(argv: list[str] | None = None) -> int:
    """CLI: write the canonical-pose CSV and its sources file."""
    parser = argparse.ArgumentParser(prog="python -m datasets.make_canonical_poses",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--annotations", required=True, type=Path, help="training annotation CSV")
    parser.add_argument("--out", required=True, type=Path, help="canonical-pose CSV to write")
    parser.add_argument("--height", type=int, default=128, help="frame height of the annotations (Market: 128)")
    parser.add_argument("--width", type=int, default=64, help="frame width of the annotations (Market: 64)")
    parser.add_argument("--k", type=int, default=8, help="number of canonical poses (the paper: 8)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = parser.parse_args(argv)
    for option in ("k", "height", "width"):
        check_positive(getattr(args, option), f"--{option}")
    sources = args.out.with_suffix(".sources.txt")
    for path, option in ((args.out, "--out"), (sources, "--out (its .sources.txt)")):
        check_out_path(path, "file", option)
        if path.exists() and not args.overwrite:
            raise InputError(f"{path} exists; pass --overwrite to replace it")
    annotations = read_annotations(args.annotations)
    poses = canonical_poses(annotations, args.height, args.width, args.k)
    used = sum(pose_features(kps, args.height, args.width) is not None for kps in annotations.values())
    write_annotations(args.out, {f"canon_{i}.jpg": kps for i, (_, kps, _) in enumerate(poses, start=1)})
    atomic_write_text(sources,
                      sources_text(args.annotations, poses, used, args.height, args.width))
    print(f"wrote {len(poses)} canonical poses to {args.out} (cluster sizes {[s for _, _, s in poses]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
