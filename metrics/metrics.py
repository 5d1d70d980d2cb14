"""Evaluate generated person images: SSIM (two variants), mask-SSIM, PSNR, L1, MAE, LPIPS, FID and IS.

The official DPTN command works verbatim:
    python -m metrics.metrics --gt_path=./dataset/market/test --distorated_path=./results/DPTN_market \
        --fid_real_path=./dataset/market/train --name=./market --market
Protocols (docs/evaluation.md):
- legacy (default): what the GFLA/DPTN script computes and prints (ssim = ssim-51, ssim_256 = ssim-gauss,
  psnr, l1, mae, lpips, fid with torchvision Inception and its quirks), DeepFashion white-padded 176 -> 256
  for SSIM/PSNR/L1/MAE (and IS, as PATN); PATN-era IS, mask-SSIM and mask-IS on request (--metrics).
  The scripts: RenYurui/Global-Flow-Local-Attention `script/metrics.py`,
  PangzeCheung/Dual-task-Pose-Transformer-Network `metrics/metrics.py`; tengteng95/Pose-Transfer
  `tool/getMetrics_market.py`, `tool/getMetrics_fashion.py`, `tool/inception_score.py`.
- clean: the same per-pair metrics unpadded, FID with pytorch-fid's TF-Inception weights on every image
  (sorted), IS with pytorch-fid's input handling. Numbers are not comparable with legacy FID/IS.
The DeepFashion frame is said as in train.py/test.py: --fashion_frame pad256 (white-padded) or native
(unpadded); --pad_fashion_256 / --no_pad_fashion_256 are aliases. Targets: docs in metrics/pairing.py.
Writes <name>.json (values + provenance), <name>.csv and <name>_per_image.csv, each atomically, and never over
an earlier run's without --overwrite. Reads image folders and CSVs only; never imports models/.
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from data.annotations import read_annotations, read_pairs
from data.geometry import FRAMES
from metrics.evaluate import (MASKED, PER_PAIR, Networks, check_real_set, real_set_files, real_statistics,
                              score_pairs, summarise)
from metrics.fid import DEFAULT_CACHE_DIR, StatisticsCache, frechet_distance, legacy_subset, statistics
from metrics.image_folder import FASHION_SIZE, check_pair_sizes
from metrics.inception import legacy_inception, tf_inception
from metrics.inception_score import inception_score
from metrics.lpips_metric import LPIPSMetric
from metrics.pairing import LAYOUTS, Matching, match
from metrics.report import (VARIANTS, check_report_paths, format_settings, format_table, legacy_fid_note,
                            mark_random_weights, output_prefix, versions, write_reports)
from util.io import InputError, report_input_errors
from metrics.weights import needed_weights
from util.weights import ensure_weights, file_sha256

METRICS = ("ssim", "ssim_256", "psnr", "l1", "mae", "lpips", "fid", "is", "mask_ssim", "mask_lpips", "mask_is")
ALIASES = {"ssim_51": "ssim", "ssim-51": "ssim", "ssim_gauss": "ssim_256", "ssim-gauss": "ssim_256"}
DEFAULT_METRICS = ("ssim", "ssim_256", "psnr", "l1", "mae", "lpips", "fid")  # what the DPTN script prints
RESIZE = "bilinear to 299x299 (align_corners=False, no antialias)"
TF1_RESIZE = "TF1 legacy bilinear to 299x299 (no half-pixel centres)"
EXCLUSION_REASONS = {"ssim_256": "constant generated image (data range 0; the reference gives NaN)",
                     "mask_ssim": "constant masked generated image, e.g. an empty mask (data range 0)",
                     "psnr": "generated image identical to its target (PSNR inf)"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m metrics.metrics", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    io_group = parser.add_argument_group("inputs (the official DPTN flags)")
    io_group.add_argument("--gt_path", help="ground-truth test images (targets looked up by name)")
    io_group.add_argument("--distorated_path", "--distorted_path", "--generated_path", dest="distorated_path",
                          required=True, help="generated images (DPTN spells it 'distorated')")
    io_group.add_argument("--fid_real_path", help="FID real set: the train image folder")
    io_group.add_argument("--name", help="output prefix: writes <name>.json, <name>.csv, <name>_per_image.csv "
                                         "(default: <generated folder>_metrics)")
    io_group.add_argument("--overwrite", action="store_true",
                          help="replace the reports of an earlier run with the same --name (refused otherwise)")
    io_group.add_argument("--market", action="store_true", help="Market-1501: never padded")
    io_group.add_argument("--calculate_mask", action="store_true",
                          help="also mask_ssim and mask_lpips (needs --annotation)")
    group = parser.add_argument_group("protocol")
    group.add_argument("--protocol", choices=("legacy", "clean"), default="legacy",
                       help="legacy: the GFLA/DPTN script's numbers, quirks included; clean: unpadded, FID and IS "
                            "with pytorch-fid's TF-Inception on every image (not comparable with legacy)")
    group.add_argument("--metrics", help=f"comma-separated subset of {', '.join(METRICS)} "
                                         f"(default: {', '.join(DEFAULT_METRICS)}; fid only with --fid_real_path)")
    group.add_argument("--layout", choices=tuple(LAYOUTS), default="single",
                       help="result files: single images (test.py, DPTN), PATN 5-tile or HPT 3-tile panels")
    group.add_argument("--annotation",
                       help="annotation CSV of the targets (mask metrics), e.g. market-annotation-test.csv")
    group.add_argument("--pairs", help="pair CSV: every row must have a generated image and vice versa")
    group.add_argument("--allow_missing", action="store_true",
                       help="skip (and report) generated images without a target instead of failing")
    group.add_argument("--fashion_frame", choices=FRAMES, default=None,
                       help="DeepFashion frame the 256x176 images are scored in, the vocabulary of train.py/test.py: "
                            "pad256 = white-padded to 256x256 for SSIM/PSNR/L1/MAE/IS (DPTN pad_256, PATN "
                            "addBounding), native = unpadded (GFLA, CFLD); stretch256 is a network frame only "
                            "(default: legacy without --market pads, clean never)")
    group.add_argument("--pad_fashion_256", dest="fashion_frame", action="store_const", const="pad256",
                       help="alias of --fashion_frame pad256")
    group.add_argument("--no_pad_fashion_256", dest="fashion_frame", action="store_const", const="native",
                       help="alias of --fashion_frame native (GFLA's and CFLD's DeepFashion numbers)")
    group.add_argument("--fid_batch_size", type=int, default=64,
                       help="legacy FID scores whole batches of this many images only, as GFLA/DPTN (64)")
    group.add_argument("--is_splits", type=int, default=10,
                       help="the Inception Score is the mean (and std) over this many equal splits of the images")
    run = parser.add_argument_group("execution")
    run.add_argument("--batch_size", type=int, default=32, help="images per batch through the metrics and networks")
    run.add_argument("--num_workers", "--num_threads", "--nThreads", dest="num_workers", type=int,
                     default=min(4, os.cpu_count() or 1),
                     help="image loader processes; on the CPU they also compute the pixel metrics (--num_threads "
                          "means loader workers here too, as in train.py and test.py; torch threads: "
                          "--torch_threads)")
    run.add_argument("--device", default="auto", help="auto (cuda when present), cpu, cuda, cuda:1, ...")
    run.add_argument("--torch_threads", type=int, default=0,
                     help="torch CPU threads for the networks (0: torch's default; 1 is faster on a busy machine)")
    run.add_argument("--weights_dir", help="folder with the weight files (default: the torch hub cache)")
    run.add_argument("--no_download", action="store_true",
                     help="never download missing weights into the hub cache (also HPT_NO_DOWNLOAD=1)")
    run.add_argument("--random_weights", action="store_true",
                     help="TESTS ONLY: random Inception/AlexNet weights; the numbers are meaningless")
    run.add_argument("--cache_dir", default=str(DEFAULT_CACHE_DIR), help="FID real-set statistics cache")
    run.add_argument("--no_cache", action="store_true", help="neither read nor write the statistics cache")
    return parser


def chosen_metrics(args) -> list[str]:
    """The metrics to compute, in canonical order; InputError for unknown names and missing inputs."""
    if args.metrics:
        names = [ALIASES.get(n.strip().lower(), n.strip().lower()) for n in args.metrics.split(",") if n.strip()]
        unknown = [n for n in names if n not in METRICS]
        if unknown:
            raise InputError(f"unknown --metrics {', '.join(unknown)}; available: {', '.join(METRICS)}")
    else:
        names = [m for m in DEFAULT_METRICS if m != "fid" or args.fid_real_path]
    if args.calculate_mask:
        names += ["mask_ssim", "mask_lpips"]
    wanted = [m for m in METRICS if m in names]
    if "fid" in wanted and not args.fid_real_path:
        raise InputError("fid needs --fid_real_path (the train image folder)")
    if set(wanted) & set(MASKED) and not args.annotation:
        raise InputError(f"{', '.join(m for m in wanted if m in MASKED)} need --annotation (the targets' keypoints, "
                         "e.g. market-annotation-test.csv)")
    return wanted


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name}: no CUDA device is available here")
    return device


def resolve_padding(args, size: tuple[int, int], wanted: list[str]) -> bool:
    """Whether SSIM/PSNR/L1/MAE (and IS) see DeepFashion white-padded to 256x256 (DPTN pad_256, PATN addBounding)."""
    frame = args.fashion_frame
    if frame == "stretch256":
        raise InputError("--fashion_frame stretch256 is a network frame: metrics score the 256x176 results either "
                         "white-padded (pad256) or as they are (native)")
    if args.market and frame == "pad256":
        raise InputError("--market images are never padded; drop --fashion_frame pad256 (--pad_fashion_256)")
    pad = frame == "pad256" if frame is not None else (args.protocol == "legacy" and not args.market)
    if pad and tuple(size) != FASHION_SIZE:
        hint = " (Market-1501? pass --market)" if tuple(size) == (128, 64) else ""
        raise InputError(f"DeepFashion padding needs 256x176 images, these are {size[0]}x{size[1]}{hint}; "
                         "or pass --fashion_frame native (--no_pad_fashion_256)")
    if pad and set(wanted) & set(MASKED):
        raise InputError("mask metrics are for Market (unpadded); pass --market")
    return pad


def read_keypoints(path: str, pairs) -> dict[str, np.ndarray]:
    """Target name -> keypoints for every pair; InputError listing targets the annotation lacks."""
    annotations = read_annotations(path)
    missing = sorted({p.target_name for p in pairs if p.target_name not in annotations})
    if missing:
        raise InputError(f"{len(missing)} targets are not in {path}: {', '.join(missing[:5])}")
    return {p.target_name: annotations[p.target_name] for p in pairs}


def build_networks(args, wanted: list[str], device: torch.device) -> Networks:
    """Load every network the chosen metrics need (before any computing, so missing weights fail first)."""
    nets = Networks()
    kwargs = {"weights_dir": args.weights_dir, "random_weights": args.random_weights, "download": not args.no_download}
    if not args.random_weights:  # every file at once: one download pass, or one error naming all missing ones
        ensure_weights(needed_weights(wanted, args.protocol == "legacy"), not args.no_download, args.weights_dir)
    if {"lpips", "mask_lpips"} & set(wanted):
        nets.lpips = LPIPSMetric(**kwargs).to(device)
    legacy = args.protocol == "legacy"
    if "fid" in wanted:
        nets.fid = (legacy_inception(**kwargs) if legacy else tf_inception("clean-fid", **kwargs)).to(device)
    if {"is", "mask_is"} & set(wanted):
        nets.is_kind = "tf-is" if legacy else "clean-fid"
        shared = nets.fid is not None and not legacy  # clean: one TF network gives FID features and IS logits
        nets.is_ = nets.fid if shared else tf_inception(nets.is_kind, **kwargs).to(device)
    return nets


def _weights(record) -> dict:
    return {"network": record.network, "file": record.file, "sha256": record.sha256}


def _file_record(path: str | None) -> dict | None:
    return None if not path else {"path": str(Path(path).resolve()), "sha256": file_sha256(path, 16)}


@report_input_errors
def main(argv: list[str] | None = None) -> int:
    """Parse, validate every input, compute, print and write the reports; 0 on success, 2 on bad input."""
    args = build_parser().parse_args(argv)
    threads = torch.get_num_threads()
    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    try:
        return evaluate(args, argv)
    finally:
        torch.set_num_threads(threads)


@dataclass
class Plan:
    """Everything a run needs, resolved and validated before any computing."""

    wanted: list[str]
    device: torch.device
    matching: Matching
    size: tuple[int, int]
    pad: bool
    keypoints: dict | None
    legacy_unit: int | None  # legacy FID: whole batches of this many images only
    fake_used: list[int]  # pair indices in the FID fake set
    nets: Networks
    pair_rows: list | None


def plan_run(args: argparse.Namespace) -> Plan:
    """Validate names, sizes, annotation rows, the real set and the weights; InputError on the first problem."""
    wanted = chosen_metrics(args)
    if args.batch_size < 1 or args.fid_batch_size < 1 or args.num_workers < 0 or args.is_splits < 1:
        raise InputError("--batch_size, --fid_batch_size and --is_splits must be >= 1, --num_workers >= 0")
    if args.torch_threads < 0:
        raise InputError(f"--torch_threads must be >= 0, got {args.torch_threads}")
    device = resolve_device(args.device)
    pair_rows = read_pairs(args.pairs) if args.pairs else None
    matching = match(args.distorated_path, args.gt_path, args.layout, pair_rows, args.allow_missing)
    pairs = matching.pairs
    size = check_pair_sizes(pairs, matching.layout)
    pad = resolve_padding(args, size, wanted)
    keypoints = read_keypoints(args.annotation, pairs) if set(wanted) & set(MASKED) else None
    legacy_unit = args.fid_batch_size if args.protocol == "legacy" else None
    fake_used = list(range(len(pairs)))
    if "fid" in wanted:  # the real set's headers and sizes now, not after minutes of pair metrics
        check_real_set(args.fid_real_path, real_set_files(args.fid_real_path, legacy_unit)[1], size)
        if legacy_unit:  # GFLA/DPTN: the first whole batches in directory-listing order
            by_listing = sorted(fake_used, key=lambda i: pairs[i].listing_rank)
            fake_used = legacy_subset(by_listing, legacy_unit, "the generated set")
    if {"is", "mask_is"} & set(wanted) and len(pairs) < args.is_splits:
        raise InputError(f"IS needs at least --is_splits={args.is_splits} images, got {len(pairs)}")
    return Plan(wanted, device, matching, size, pad, keypoints, legacy_unit, fake_used,
                build_networks(args, wanted, device), pair_rows)


def provenance_record(args: argparse.Namespace, argv: list[str] | None, plan: Plan, modes: dict) -> dict:
    """Where every number came from: inputs, counts, padding, weights, versions (docs/evaluation.md)."""
    matching, layout = plan.matching, plan.matching.layout
    pairs = matching.pairs
    if layout.tiles == 1:
        target = ("file in --gt_path named after the text after the last '_2_', cut at '_vis' (official rule; "
                  "with several '_2_' the one reading whose file exists; a --pairs row names it exactly)")
    else:
        target = f"tile {layout.target_tile} of {layout.tiles} in each panel (generated: tile {layout.generated_tile})"
    padded = "ssim, ssim_256, psnr, l1, mae" + (", is" if "is" in plan.wanted else "")
    record = {
        "protocol": args.protocol, "command": list(sys.argv[:1]) + list(argv if argv is not None else sys.argv[1:]),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "generated": {"path": str(Path(args.distorated_path).resolve()), "layout": layout.name,
                      "result_files": matching.result_files, "pairs_scored": len(pairs),
                      "skipped": {k: {"count": len(v), "first": v[:20]} for k, v in matching.skipped().items()},
                      "formats": dict(Counter(p.generated.suffix.lower() for p in pairs)),
                      "pil_modes": modes, "order": "sorted by generated file name"},
        "ground_truth": {"path": str(Path(args.gt_path).resolve()) if args.gt_path else None, "target": target},
        "pair_file": {**_file_record(args.pairs), "rows": len(plan.pair_rows)} if args.pairs else None,
        "annotation": _file_record(args.annotation) if plan.keypoints is not None else None,
        "image_size": list(plan.size),
        "padding": f"white 256x176 -> 256x256 at columns [40, 216) for {padded}" if plan.pad else "none",
        "ssim_psnr": ("numba streaming kernels (metrics/ssim_cpu.py)" if plan.device.type == "cpu" else
                      "batched torch") + ", float64 from the uint8 pixels, equal to scikit-image per image",
        "device": str(plan.device), "batch_size": args.batch_size, "num_workers": args.num_workers,
        "versions": versions(),
    }
    if plan.nets.lpips is not None:
        record["lpips"] = {k: _weights(v) for k, v in plan.nets.lpips.weights.items()}
    return record


def evaluate(args: argparse.Namespace, argv: list[str] | None) -> int:
    """The run behind main(): plan (validate), one pass over the pairs, the real set, summaries, reports."""
    prefix = output_prefix(args.name, args.distorated_path)
    check_report_paths(prefix, args.overwrite)  # before minutes of work, not after
    plan = plan_run(args)
    pairs, nets, wanted = plan.matching.pairs, plan.nets, plan.wanted
    print(f"{len(pairs)} pairs from {plan.matching.result_files} files in {args.distorated_path} "
          f"(--layout {plan.matching.layout.name}); {plan.size[0]}x{plan.size[1]}; "
          f"padding: {'white 176->256' if plan.pad else 'none'}; device {plan.device}")

    def progress(total: int, desc: str):
        return tqdm(total=total, desc=desc, unit="img", dynamic_ncols=True)

    fid_rows = None
    if "fid" in wanted and plan.legacy_unit:
        fid_rows = np.zeros(len(pairs), dtype=bool)
        fid_rows[plan.fake_used] = True
    with progress(len(pairs), "pairs") as bar:
        scores = score_pairs(pairs, plan.matching.layout, plan.keypoints, set(wanted), nets, plan.pad, plan.device,
                             args.batch_size, args.num_workers, bar.update, fid_rows)
    generated_names = [p.generated.name for p in pairs]
    results: dict[str, dict] = {}
    for metric in (m for m in METRICS if m in PER_PAIR and m in scores.values):
        result = summarise(scores.values[metric], generated_names)
        if "excluded" in result:
            result["excluded"]["reason"] = EXCLUSION_REASONS.get(metric, "non-finite value")
        results[metric] = {**result, "variant": VARIANTS[metric]}
    provenance = provenance_record(args, argv, plan, scores.modes)
    if "fid" in wanted:
        cache = StatisticsCache(None if args.no_cache else args.cache_dir)
        real = real_statistics(args.fid_real_path, nets.fid, plan.legacy_unit, cache, plan.device, args.batch_size,
                               args.num_workers, progress)
        mu, sigma = statistics(scores.fid_features)
        results["fid"] = {"value": frechet_distance(mu, sigma, real.mu, real.sigma), "n": len(plan.fake_used),
                          "variant": f"{VARIANTS['fid']} ({args.protocol}: {nets.fid.weights.network})"}
        legacy = plan.legacy_unit is not None
        if legacy:  # in the table itself: legacy FID drops the images after the last whole batch
            results["fid"]["note"] = legacy_fid_note(len(plan.fake_used), len(pairs), real.info["images_used"],
                                                     real.info["images_found"], plan.legacy_unit)
        provenance["fid"] = {
            **_weights(nets.fid.weights), "preprocessing": nets.fid.kind, "resize": RESIZE,
            "normalisation": ("x*(std/0.5)+(mean-0.5)/0.5 on [0,1] (torchvision transform_input on unnormalised "
                              "input, as GFLA/DPTN)") if legacy else "2x-1 (pytorch-fid)",
            "fake_images_found": len(pairs), "fake_images_used": len(plan.fake_used),
            "fake_order": f"directory listing, whole batches of {plan.legacy_unit}" if legacy else "all, sorted",
            "real": real.info, "padding": "none", "statistics": "float64 mean and np.cov(rowvar=False)",
            "distance": "trace of sqrt via eigh of sigma1^1/2 sigma2 sigma1^1/2 (equals the scipy sqrtm formula)"}
    for metric in ("is", "mask_is"):
        if metric in wanted:
            mean, std, splits = inception_score(scores.is_probabilities[metric], args.is_splits)
            results[metric] = {"value": mean, "std": std, "n": len(pairs), "splits": splits,
                               "variant": VARIANTS[metric]}
            provenance[metric] = {**_weights(nets.is_.weights), "preprocessing": nets.is_kind,
                                  "resize": TF1_RESIZE if nets.is_kind == "tf-is" else RESIZE,
                                  "splits": args.is_splits, "order": "sorted by generated file name",
                                  "padding": "white 176->256" if plan.pad and metric == "is" else "none"}
            print(f"{metric}: {args.is_splits} splits over the images in sorted name order "
                  "(the reference used unsorted directory order)")
    provenance["random_weights"] = bool(args.random_weights)
    if args.random_weights:
        mark_random_weights(results)
    print(format_table(results, args.protocol))
    print(format_settings(provenance))
    per_image = {m: scores.values[m] for m in METRICS if m in scores.values}
    written = write_reports(prefix, results, provenance, per_image,
                            [(p.generated.name, p.target_name) for p in pairs])
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
