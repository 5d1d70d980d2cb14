"""Compare generated test images with the copy-the-source baseline (mean L1 to the target, in [-1,1] units).

A pose-transfer model that has learned anything must beat simply returning the source image:
    python -m scripts.copy_baseline --results_dir results/quickstart --dataroot datasets/synthetic/quickstart
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from data.annotations import read_pairs
from util.io import InputError, report_input_errors


def load(path: Path) -> np.ndarray:
    """An image as float64 in [-1, 1]; InputError naming a missing or undecodable file."""
    if not path.is_file():
        raise InputError(f"image {path} not found")
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.float64) / 127.5 - 1.0
    except (OSError, SyntaxError, ValueError) as err:  # UnidentifiedImageError is an OSError
        raise InputError(f"{path}: unreadable image ({err})") from None


def l1_scores(results_dir: Path, image_dir: Path, pairs: list[tuple[str, str]]) -> tuple[float, float, int]:
    """Mean L1 of (generated, target) and of (source, target) over the pairs that have a generated image."""
    generated, copied = [], []
    for source, target in pairs:
        fake = next(results_dir.glob(f"{Path(source).stem}_2_{Path(target).stem}_vis.*"), None)
        if fake is None:
            continue
        truth, made = load(image_dir / target), load(fake)
        if made.shape != truth.shape:
            raise InputError(f"{fake}: {made.shape[0]}x{made.shape[1]}, but its target {target} is "
                             f"{truth.shape[0]}x{truth.shape[1]}")
        generated.append(np.abs(made - truth).mean())
        copied.append(np.abs(load(image_dir / source) - truth).mean())
    if not generated:
        raise InputError(f"no generated images of the listed pairs in {results_dir}")
    return float(np.mean(generated)), float(np.mean(copied)), len(generated)


@report_input_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results_dir", required=True, help="folder of <source>_2_<target>_vis.* images")
    parser.add_argument("--dataroot", required=True, help="dataset folder with test/ and the pair CSV")
    parser.add_argument("--pairs", default="market-pairs-test.csv", help="pair CSV inside --dataroot")
    parser.add_argument("--phase", default="test", help="image folder inside --dataroot")
    args = parser.parse_args(argv)
    root = Path(args.dataroot)
    for folder, option in ((Path(args.results_dir), "--results_dir"), (root / args.phase, "--dataroot/--phase")):
        if not folder.is_dir():
            raise InputError(f"{option}: {folder} is not a folder")
    if not (root / args.pairs).is_file():
        raise InputError(f"--pairs: {root / args.pairs} not found (a pair CSV inside --dataroot)")
    model, copy, count = l1_scores(Path(args.results_dir), root / args.phase, read_pairs(root / args.pairs))
    verdict = "better" if model < copy else "NOT better"
    print(f"{count} test pairs: mean L1 to the target  model {model:.4f}  |  copy the source {copy:.4f}  "
          f"-> model is {verdict} ({copy / model:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
