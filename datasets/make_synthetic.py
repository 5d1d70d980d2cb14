"""A tiny, learnable pose-transfer dataset in the official Market-1501 / DeepFashion file format.

People are drawn as shapes (limbs, torso, head) on real skeletons from `datasets/pose_bank`, so the poses are
real while the images need no download. Every identity keeps its clothes (colours, stripes, sleeves, bag)
across its images; the head shows a face only from the front and a chest badge marks the front, and the
cross-body bag hangs from one fixed shoulder, so the target pose really decides the target image.

    python -m datasets.make_synthetic --format market --out data/synthetic_market --people 24 --seed 0

The builder is data/synthetic_build.py (the renderer data/synthetic_render.py); this is its command line.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data.synthetic_build import DEFAULT_IMAGES_PER_PERSON, FORMATS, make_synthetic_dataset
from datasets.staging import check_out_path, check_positive
from util.io import report_input_errors


@report_input_errors
def main(argv: list[str] | None = None) -> int:
    """CLI: write a synthetic dataset and print its summary."""
    parser = argparse.ArgumentParser(prog="python -m datasets.make_synthetic", description=__doc__.split("\n")[0])
    parser.add_argument("--format", required=True, choices=FORMATS, dest="fmt")
    parser.add_argument("--out", required=True, type=Path, help="dataset folder to create")
    parser.add_argument("--people", type=int, default=24, help="identities in train and test together")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images_per_person", type=int, default=None,
                        help=f"default {DEFAULT_IMAGES_PER_PERSON['market']} (market), "
                             f"{DEFAULT_IMAGES_PER_PERSON['fashion']} (fashion: one per view)")
    parser.add_argument("--test_fraction", type=float, default=0.25, help="share of identities in test")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    args = parser.parse_args(argv)
    check_positive(args.people, "--people")
    check_positive(args.images_per_person, "--images_per_person")
    check_out_path(args.out, "folder")
    # the builder writes into a temp folder beside --out and renames it into place when complete
    summary = make_synthetic_dataset(args.out, args.fmt, args.people, args.seed, args.images_per_person,
                                     args.test_fraction, args.overwrite)
    print(f"{args.fmt} synthetic dataset in {args.out}: "
          f"train {summary['train_images']} images / {summary['train_identities']} identities / "
          f"{summary['train_pairs']} pairs; test {summary['test_images']} images / "
          f"{summary['test_identities']} identities / {summary['test_pairs']} pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
