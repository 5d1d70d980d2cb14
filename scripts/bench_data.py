"""Data-loading throughput (samples/s) of the market and fashion readers on synthetic data.

    python -m scripts.bench_data [--people 24] [--batch_size 8] [--batches 10] [--workers 0,2]

Builds the synthetic datasets (data/synthetic_build.py) in a temporary folder, then times the real
DataLoader (data.create_dataloader) over the train split with flips on, with and without the body mask,
for Market and for each DeepFashion frame. A benchmark that prints a table, not a test.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from data import create_dataloader, find_dataset_class
from data.synthetic_dataset import ensure_synthetic
from util.distributed import RunContext
from util.io import InputError, report_input_errors

CASES = (("market", "native"), ("fashion", "native"), ("fashion", "pad256"), ("fashion", "stretch256"))


def dataset_options(root: Path, fmt: str, frame: str, mask: str, workers: int, batch_size: int,
                    people: int) -> argparse.Namespace:
    """Training options for `--dataset_mode synthetic` as the mode's own hooks build them."""
    cls = find_dataset_class("synthetic")
    opt = cls.modify_commandline_options(argparse.ArgumentParser(), True).parse_args([])
    values = dict(dataroot=str(root), phase="train", is_train=True, max_dataset_size=math.inf, seed=0,
                  batch_size=batch_size, num_threads=workers, serial_batches=False, dataset_mode="synthetic",
                  synthetic_format=fmt, synthetic_people=people, fashion_frame=frame, mask_recipe=mask,
                  flip_prob=0.5)
    for key, value in values.items():
        setattr(opt, key, value)
    cls.derive_options(opt)
    return opt


def samples_per_second(opt, batches: int, repeats: int) -> float:
    """Median over `repeats` timed runs of `batches` batches, after a warm-up that starts the workers."""
    loader = create_dataloader(opt, RunContext(device=torch.device("cpu")))
    epoch, iterator = 0, None

    def next_batch():
        nonlocal epoch, iterator
        while True:
            if iterator is None:
                loader.sampler.set_epoch(epoch)
                iterator, epoch = iter(loader), epoch + 1
            try:
                return next(iterator)
            except StopIteration:
                iterator = None

    for _ in range(2 + opt.num_threads):
        next_batch()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(batches):
            next_batch()
        rates.append(batches * opt.batch_size / (time.perf_counter() - start))
    iterator = None  # stops the persistent workers
    return statistics.median(rates)


def parse_workers(text: str) -> list[int]:
    """`--workers 0,2` -> [0, 2]; InputError for anything but a comma list of counts >= 0."""
    try:
        workers = [int(w) for w in text.split(",")]
    except ValueError:
        workers = []
    if not workers or min(workers) < 0:
        raise InputError(f"--workers {text!r}: expected a comma list of counts >= 0, e.g. 0,2")
    return workers


@report_input_errors
def main(argv: list[str] | None = None) -> int:
    """Build the synthetic data, time every case, print the table."""
    parser = argparse.ArgumentParser(prog="python -m scripts.bench_data", description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=24, help="synthetic identities per format")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--batches", type=int, default=10, help="batches per timed run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the median is reported")
    parser.add_argument("--workers", type=str, default="0,2", help="comma list of num_workers to compare")
    args = parser.parse_args(argv)
    for option in ("people", "batch_size", "batches", "repeats"):
        if getattr(args, option) < 1:
            raise InputError(f"--{option} must be >= 1, got {getattr(args, option)}")
    workers = parse_workers(args.workers)
    torch.set_num_threads(1)  # like a DataLoader worker; keeps the 0-worker figure comparable
    print(f"device cpu | torch {torch.__version__} | batch {args.batch_size} | train split, flip_prob 0.5 | "
          f"median of {args.repeats} x {args.batches} batches")
    header = f"{'dataset':<8} {'frame':<11} {'mask':<5}" + "".join(f" {f'w={w} smp/s':>12}" for w in workers)
    header += "".join(f" {f'w={w}/w={workers[0]}':>9}" for w in workers[1:])
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        for fmt, frame in CASES:
            root = ensure_synthetic(Path(tmp) / f"{fmt}_p{args.people}", fmt, args.people, 0)
            for mask in ("none", "pg2"):
                rates = [samples_per_second(dataset_options(root, fmt, frame, mask, w, args.batch_size, args.people),
                                            args.batches, args.repeats) for w in workers]
                row = f"{fmt:<8} {frame:<11} {mask:<5}" + "".join(f" {r:>12.1f}" for r in rates)
                row += "".join(f" {r / rates[0]:>8.2f}x" for r in rates[1:])
                print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
