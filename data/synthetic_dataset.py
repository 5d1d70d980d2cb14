"""A tiny dataset built once, deterministically from --seed, in the official Market or DeepFashion layout.

It is written by data/synthetic_build.py (the builder behind `python -m datasets.make_synthetic`) and then
read by the real Market/Fashion readers, so every run on it exercises the same parsing and validation as
real data.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

from data.base_dataset import PairDataset, dataroot_path
from data.fashion_dataset import FashionDataset
from data.market_dataset import MarketDataset, add_market_frame_default
from util.io import InputError, atomic_write_text
from util.run_options import mark_run_shaping

MARKER = ".synthetic_complete.json"  # written last: its presence means the folder is complete
READERS = {"market": MarketDataset, "fashion": FashionDataset}


def default_root(fmt: str, people: int, seed: int) -> str:
    """Where --dataset_mode synthetic keeps its data unless --dataroot says otherwise."""
    return f"./datasets/synthetic/{fmt}_p{people}_s{seed}"


def ensure_synthetic(root: Path, fmt: str, people: int, seed: int) -> Path:
    """Build the synthetic dataset at `root` unless a complete one is there; safe under concurrent starts.

    Each process builds into its own temporary folder next to `root` and renames it into place; a process
    that loses the race finds the winner's marker and discards its copy.
    """
    root = Path(root)
    if (root / MARKER).is_file():
        return root
    if root.is_dir() and any(root.iterdir()):
        raise InputError(f"--dataroot {root} holds files but no {MARKER}: it is not a complete synthetic "
                         "dataset (an interrupted build, or real data); delete it, pick another --dataroot, "
                         "or read it with --dataset_mode market/fashion")
    from data.synthetic_build import make_synthetic_dataset  # only needed when building (and a test replaces it)

    root.parent.mkdir(parents=True, exist_ok=True)
    holder = Path(tempfile.mkdtemp(prefix=f".{root.name}.building-", dir=root.parent))
    try:
        staging = holder / root.name
        staging.mkdir()
        info = make_synthetic_dataset(staging, fmt, people, seed)
        # the builder's summary names the staging folder; record where the files end up instead
        info = {k: v.replace(str(staging), str(root)) if isinstance(v, str) else v for k, v in dict(info).items()}
        record = {"format": fmt, "people": people, "seed": seed, "builder": info}
        atomic_write_text(staging / MARKER, json.dumps(record, indent=1, default=str) + "\n")
        try:
            os.rename(staging, root)  # atomic; replaces an empty folder, fails on a complete one
        except OSError:
            if not (root / MARKER).is_file():
                raise
    finally:
        shutil.rmtree(holder, ignore_errors=True)
    return root


class SyntheticDataset(PairDataset):
    """`--synthetic_format market|fashion`, built on first use, read with the real reader of that format."""

    @staticmethod
    def modify_commandline_options(parser: argparse.ArgumentParser, is_train: bool) -> argparse.ArgumentParser:
        parser = FashionDataset.modify_commandline_options(parser, is_train)  # pose flags + --fashion_frame
        parser = add_market_frame_default(parser)  # opt.market_frame, read under --synthetic_format market
        g = parser.add_argument_group("synthetic data")
        g.add_argument("--synthetic_format", type=str, default="market", choices=tuple(READERS),
                       help="file layout and image size of the synthetic data: market 128x64 or fashion 256x176")
        g.add_argument("--synthetic_people", type=int, default=24,
                       help="number of synthetic identities to render")
        mark_run_shaping(g, "synthetic_format")  # a run trained on one flavour tests on it unless told
        return parser

    @staticmethod
    def derive_options(opt) -> None:
        if opt.synthetic_people < 1:
            raise InputError(f"--synthetic_people must be >= 1, got {opt.synthetic_people}")
        opt.data_format = opt.synthetic_format
        if opt.dataroot is None:
            opt.dataroot = default_root(opt.synthetic_format, opt.synthetic_people, opt.seed)

    def __init__(self, opt) -> None:
        if opt.dataroot is None:
            raise InputError("--dataset_mode synthetic needs --dataroot (set by its derive_options)")
        ensure_synthetic(Path(opt.dataroot), opt.synthetic_format, opt.synthetic_people, opt.seed)
        reader = READERS[opt.synthetic_format]
        root = dataroot_path(opt, "synthetic")
        annotation_path, pairs_path = reader.locate(root, opt.phase)
        super().__init__(opt, root, annotation_path, pairs_path, reader.image_size, reader.frame_for(opt))
