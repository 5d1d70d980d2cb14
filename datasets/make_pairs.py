"""Build (source, target) pair lists from an annotation CSV.

Market follows the reference, tengteng95/Pose-Transfer `tool/create_pairs_dataset.py`, exactly, so that
`market-pairs-train.csv` (263,632 pairs, not shipped) can be rebuilt and `market-pairs-test.csv` reproduced
row for row. DeepFashion pairs were not built by that script; ours use the same rule with the DeepFashion
identity (item id + photo set) and a minimum number of visible keypoints.

    python -m datasets.make_pairs --annotation market-annotation-train.csv --out market-pairs-train.csv --format market
    python -m datasets.make_pairs --annotation market-annotation-test.csv --out market-pairs-test.csv \
        --format market --test_sample 12000
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data.annotations import write_pairs
from data.pairs import FASHION_MIN_KEYPOINTS, FORMATS, MARKET_TEST_SAMPLE, make_pairs
from datasets.staging import check_out_path, check_positive
from util.io import InputError, report_input_errors


@report_input_errors
def main(argv: list[str] | None = None) -> int:
    """CLI: write a `from,to` pair CSV built from an annotation CSV."""
    parser = argparse.ArgumentParser(prog="python -m datasets.make_pairs", description=__doc__.split("\n")[0])
    parser.add_argument("--annotation", required=True, type=Path, help="annotation CSV of one split")
    parser.add_argument("--out", required=True, type=Path, help="pair CSV to write")
    parser.add_argument("--format", required=True, choices=FORMATS, dest="fmt")
    parser.add_argument("--test_sample", type=int, default=None,
                        help=f"keep a random subset of this many pairs (Market test: {MARKET_TEST_SAMPLE})")
    parser.add_argument("--min_keypoints", type=int, default=None,
                        help=f"skip poses with fewer visible keypoints (fashion default {FASHION_MIN_KEYPOINTS}; "
                             "market default: the reference filter only)")
    parser.add_argument("--seed", type=int, default=0, help="random_state of the subset (the reference uses 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = parser.parse_args(argv)
    check_positive(args.test_sample, "--test_sample")
    if args.min_keypoints is not None and not 0 <= args.min_keypoints <= 18:
        raise InputError(f"--min_keypoints must be in 0..18, got {args.min_keypoints}")
    if args.seed < 0:
        raise InputError(f"--seed must be >= 0, got {args.seed}")
    check_out_path(args.out, "file")
    if args.out.exists() and not args.overwrite:
        raise InputError(f"{args.out} exists; pass --overwrite to replace it")
    pairs = make_pairs(args.annotation, args.fmt, args.test_sample, args.min_keypoints, args.seed)
    write_pairs(args.out, pairs)  # atomic: a temp file beside --out, renamed when complete
    print(f"wrote {len(pairs)} pairs to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
