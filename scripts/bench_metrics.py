"""SSIM + PSNR throughput: the batched evaluator vs the official per-image scikit-image loop, same images.

    python -m scripts.bench_metrics [--pairs 128] [--frames fashion,market] [--batch_size 32] [--workers 2]

Writes a synthetic result set in the official layout (JPEG q75 targets and generated images named
`<from>_2_<to>_vis.jpg`) to a temporary folder, then times, on the same files:
- loop: what the DPTN/GFLA script does per image: read both files, white-pad DeepFashion to 256x256,
  img/255 cast to float64 (as the old scikit-image cast it), structural_similarity with win_size=51 (ssim),
  Gaussian sigma 1.5 on x255 with the generated range (ssim_256), peak_signal_noise_ratio, l1, mae;
- ours: metrics.evaluate.score_pairs, the evaluator's own pass (float64 CPU kernels of metrics.ssim_cpu,
  worker loading).
Both end to end (files -> numbers) and compute only (decoded arrays -> numbers). Each timing is the median
of --repeats runs after one warm-up, loop and ours alternating; the ratio is ours/loop images per second.
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from metrics import ssim_cpu
from metrics.evaluate import Networks, reconstruction_metrics, score_pairs
from metrics.pairing import match
from util.io import InputError, report_input_errors

FRAMES = {"fashion": ((256, 176), True), "market": ((128, 64), False)}  # (H, W), padded as DPTN does
METRICS = ("ssim", "ssim_256", "psnr", "l1", "mae")


def write_set(root: Path, pairs: int, size: tuple[int, int], seed: int = 0) -> tuple[Path, Path]:
    """Targets: smooth shapes plus texture; generated: the target blurred, shifted and noised (JPEG q75)."""
    rng = np.random.default_rng(seed)
    gt, gen = root / "gt", root / "gen"
    gt.mkdir(parents=True)
    gen.mkdir()
    people = max(2, int(np.ceil(np.sqrt(pairs))) + 1)
    names = [f"{p:04d}_c1s1_{p * 10:06d}_01" for p in range(1, people + 1)]
    height, width = size
    yy, xx = np.mgrid[0:height, 0:width]
    targets = {}
    for name in names:
        base = rng.uniform(60, 200, size=3)
        blob = np.exp(-(((yy - rng.uniform(0, height)) / (0.3 * height)) ** 2
                        + ((xx - rng.uniform(0, width)) / (0.3 * width)) ** 2))
        image = base + 80 * blob[..., None] * rng.uniform(-1, 1, size=3) + rng.normal(0, 12, (height, width, 3))
        targets[name] = np.clip(image, 0, 255).astype(np.uint8)
        Image.fromarray(targets[name]).save(gt / f"{name}.jpg", quality=75)
    for source, target in itertools.islice(itertools.permutations(names, 2), pairs):
        image = np.roll(targets[target].astype(np.float64), rng.integers(-3, 4), axis=1)
        image = 0.7 * image + 0.3 * image.mean(axis=(0, 1)) + rng.normal(0, 8, image.shape)
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(
            gen / f"{source}_2_{target}_vis.jpg", quality=75)
    return gt, gen


def pad_256(image: np.ndarray) -> np.ndarray:
    """DPTN's pad_256 on a uint8 array: the 176-wide image at columns [40, 216) of a white 256x256 canvas."""
    canvas = np.full((256, 256, 3), 255, dtype=image.dtype)
    canvas[:, 40:216] = image
    return canvas


def loop_scores(gt: np.ndarray, pred: np.ndarray, float32_input: bool = False) -> dict[str, float]:
    """One pair, the official script's calls on float64 input (the old scikit-image it ran on cast to float64).

    `float32_input` reproduces DPTN's img/255 in float32 before the cast (moves PSNR by ~1e-6, SSIM ~1e-8).
    """
    dtype = np.float32 if float32_input else np.float64
    gt01 = (gt.astype(dtype) / 255.0).astype(np.float64)
    pred01 = (pred.astype(dtype) / 255.0).astype(np.float64)
    gt255 = (gt.astype(dtype) / 255.0 * 255.0).astype(np.float64)
    pred255 = (pred.astype(dtype) / 255.0 * 255.0).astype(np.float64)
    return {
        "ssim": structural_similarity(gt01, pred01, data_range=1, win_size=51, channel_axis=-1),
        "ssim_256": structural_similarity(gt255, pred255, gaussian_weights=True, sigma=1.5,
                                          use_sample_covariance=False, channel_axis=-1,
                                          data_range=pred255.max() - pred255.min()),
        "psnr": peak_signal_noise_ratio(gt01, pred01, data_range=1),
        "l1": float(np.mean(np.abs(gt01 - pred01))),
        "mae": float(np.sum(np.abs(gt01 - pred01)) / np.sum(gt01 + pred01)),
    }


def run_loop(gen_dir: Path, gt_dir: Path, pad: bool, arrays: list | None = None) -> dict[str, np.ndarray]:
    """The per-image loop over the generated files (sorted), reading files unless `arrays` are given."""
    values = {m: [] for m in METRICS}
    files = sorted(gen_dir.glob("*.jpg"))
    for i, path in enumerate(files):
        if arrays is None:
            target = gt_dir / (path.name.split("_2_")[-1].split("_vis")[0] + ".jpg")
            pred, gt = np.array(Image.open(path).convert("RGB")), np.array(Image.open(target).convert("RGB"))
        else:
            pred, gt = arrays[i]
        if pad:
            pred, gt = pad_256(pred), pad_256(gt)
        for metric, value in loop_scores(gt, pred).items():
            values[metric].append(value)
    return {m: np.asarray(v) for m, v in values.items()}


def run_ours(matching, pad: bool, batch_size: int, workers: int, tensors=None) -> dict[str, np.ndarray]:
    """The evaluator's pass from files, or its batched functions on decoded (gen, gt) uint8 tensors."""
    if tensors is None:
        scores = score_pairs(matching.pairs, matching.layout, None, set(METRICS), Networks(), pad,
                             torch.device("cpu"), batch_size, workers)
        return scores.values
    out = {m: [] for m in METRICS}
    gen_all, gt_all = tensors
    for start in range(0, len(gen_all), batch_size):
        stop = start + batch_size
        part = reconstruction_metrics(gen_all[start:stop], gt_all[start:stop], set(METRICS), pad)
        for metric in METRICS:
            out[metric].append(part[metric])
    return {m: torch.cat(v).numpy() for m, v in out.items()}


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def bench_frame(frame: str, args) -> list[tuple]:
    size, pad = FRAMES[frame]
    with tempfile.TemporaryDirectory() as tmp:
        gt_dir, gen_dir = write_set(Path(tmp), args.pairs, size)
        matching = match(gen_dir, gt_dir, "single")
        pairs = matching.pairs
        n = len(pairs)
        arrays = [(np.array(Image.open(p.generated)), np.array(Image.open(p.target))) for p in pairs]
        tensors = (torch.stack([torch.from_numpy(g) for g, _ in arrays]).permute(0, 3, 1, 2).contiguous(),
                   torch.stack([torch.from_numpy(t) for _, t in arrays]).permute(0, 3, 1, 2).contiguous())
        rows = []
        for label, loop_fn, ours_fn in (
                ("end to end", lambda: run_loop(gen_dir, gt_dir, pad),
                 lambda: run_ours(matching, pad, args.batch_size, args.workers)),
                ("compute only", lambda: run_loop(gen_dir, gt_dir, pad, arrays),
                 lambda: run_ours(matching, pad, args.batch_size, 0, tensors))):
            loop_fn(), ours_fn()  # warm-up
            loop_times, ours_times = [], []
            for _ in range(args.repeats):  # alternate, so that machine load hits both alike
                t, loop_values = timed(loop_fn)
                loop_times.append(t)
                t, ours_values = timed(ours_fn)
                ours_times.append(t)
            loop_rate, ours_rate = n / statistics.median(loop_times), n / statistics.median(ours_times)
            diff = max(float(np.max(np.abs(np.asarray(loop_values[m]) - np.asarray(ours_values[m])))) for m in METRICS)
            rows.append((frame, f"{size[0]}x{size[1]}" + (" pad 256" if pad else ""), label, n, loop_rate,
                         ours_rate, ours_rate / loop_rate, diff))
        return rows


def check_options(args) -> list[str]:
    """The frames to time; InputError for an unknown frame or a count out of range (before any work)."""
    for option in ("pairs", "batch_size", "repeats"):
        if getattr(args, option) < 1:
            raise InputError(f"--{option} must be >= 1, got {getattr(args, option)}")
    if args.workers < 0 or args.threads < 0:
        raise InputError(f"--workers and --threads must be >= 0, got {args.workers} and {args.threads}")
    frames = [f.strip() for f in args.frames.split(",") if f.strip()]
    unknown = [f for f in frames if f not in FRAMES]
    if unknown or not frames:
        raise InputError(f"unknown --frames {', '.join(unknown) or repr(args.frames)}; available: {', '.join(FRAMES)}")
    return frames


@report_input_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench_metrics", description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=128, help="generated/target pairs per frame")
    parser.add_argument("--frames", default="fashion,market", help=f"comma list of {', '.join(FRAMES)}")
    parser.add_argument("--batch_size", type=int, default=32, help="pairs per batch of our evaluator")
    parser.add_argument("--workers", type=int, default=2, help="loader workers of our evaluator")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the median is reported")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads in this process (0: torch's default); the loop is single-threaded, "
                             "and loader workers always run one thread each")
    args = parser.parse_args(argv)
    frames = check_options(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    ssim_cpu.compile_kernels()  # compiling is paid once per process, not per evaluation: keep it out of the timings
    print(f"device cpu | torch {torch.__version__} | threads {torch.get_num_threads()} | dtype float64 | "
          f"batch {args.batch_size} | workers {args.workers} | metrics {', '.join(METRICS)}")
    header = f"{'frame':<8} {'size':<16} {'timing':<13} {'pairs':>5} {'loop img/s':>11} {'ours img/s':>11} " \
             f"{'ratio':>7} {'max |diff|':>11}"
    print(header)
    for frame in frames:
        for row in bench_frame(frame, args):
            print(f"{row[0]:<8} {row[1]:<16} {row[2]:<13} {row[3]:>5} {row[4]:>11.1f} {row[5]:>11.1f} "
                  f"{row[6]:>6.2f}x {row[7]:>11.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
