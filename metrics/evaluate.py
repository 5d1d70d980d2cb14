"""The evaluator's passes: one batched pass over the pairs, one over the FID real set, then the summaries.

The pair pass decodes every generated image once and computes every requested per-pair value (SSIM
variants, PSNR, L1, MAE, LPIPS and their masked forms) together with the generated images' FID features and
IS predictions. Pixel metrics run in the loader workers on the CPU and on the device otherwise; the networks
run on the device. Per-pair values stay in pair order (sorted by generated name).
"""
from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from metrics import ssim as ssim_ops
from metrics import ssim_cpu
from metrics.fid import StatisticsCache, extract_features, legacy_subset, statistics
from metrics.image_folder import (FileDataset, PairDataset, batches, header_sizes, list_images, make_loader,
                                  pad_white_256)
from metrics.inception import InceptionPool
from metrics.inception_score import softmax_probabilities
from metrics.lpips_metric import LPIPSMetric
from metrics.pairing import Layout, Pair
from util.io import InputError, raise_problems

RECONSTRUCTION = ssim_ops.RECONSTRUCTION
PER_PAIR = RECONSTRUCTION + ("lpips", "mask_ssim", "mask_lpips")
MASKED = ("mask_ssim", "mask_lpips", "mask_is")


@dataclass
class Networks:
    """The networks a run needs (None where its metrics are not requested)."""

    lpips: LPIPSMetric | None = None
    fid: InceptionPool | None = None  # legacy: torchvision; clean: the TF port (then often the same as `is_`)
    is_: InceptionPool | None = None
    is_kind: str = "tf-is"  # the IS network's input preprocessing


@dataclass
class PairScores:
    """Everything the pair pass produced."""

    values: dict[str, np.ndarray] = field(default_factory=dict)  # metric -> float64 (N,) in pair order
    fid_features: np.ndarray | None = None  # float32 (N, 2048) in pair order
    is_probabilities: dict[str, np.ndarray] = field(default_factory=dict)  # 'is'/'mask_is' -> (N, 1008)
    modes: dict[str, int] = field(default_factory=dict)  # PIL modes seen (non-RGB ones are converted)


def reconstruction_metrics(gen: torch.Tensor, tgt: torch.Tensor, wanted, pad: bool) -> dict[str, torch.Tensor]:
    """Per-image SSIM variants, PSNR, L1, MAE of uint8 (B, 3, H, W) pairs, in float64 (see metrics.ssim)."""
    if pad:
        gen, tgt = pad_white_256(gen), pad_white_256(tgt)
    return ssim_ops.reconstruction_uint8(gen, tgt, wanted)


def pixel_metrics(batch: dict, wanted: frozenset, pad: bool) -> dict:
    """Add batch['pixel_values']: the SSIM/PSNR/L1/MAE/mask-SSIM values of a uint8 batch (B, H, W, 3).

    On the CPU this runs inside the loader, so the workers compute these in parallel with each other and
    with the networks in the main process.
    """
    gen, tgt = batch["generated"].permute(0, 3, 1, 2), batch["target"].permute(0, 3, 1, 2)
    values = reconstruction_metrics(gen, tgt, wanted, pad) if wanted & set(RECONSTRUCTION) else {}
    if "mask_ssim" in wanted:
        mask = batch["mask"][:, None]
        values["mask_ssim"] = ssim_ops.ssim_gaussian(gen * mask, tgt * mask, sigma=1.5)
    batch["pixel_values"] = values
    return batch


def score_pairs(pairs: list[Pair], layout: Layout, keypoints: dict | None, wanted: set[str], nets: Networks,
                pad: bool, device: torch.device, batch_size: int, workers: int,
                progress: Callable[[int], None] | None = None, fid_rows: np.ndarray | None = None) -> PairScores:
    """One batched pass over `pairs` computing every metric in `wanted` that is per pair or per generated image.

    `fid_rows` (bool (N,)) limits the FID features to those pairs (legacy FID drops a partial batch);
    `fid_features` then holds only their rows, in pair order.
    """
    dataset = PairDataset(pairs, layout, keypoints if wanted & set(MASKED) else None)
    pixel_wanted = frozenset(wanted & (set(RECONSTRUCTION) | {"mask_ssim"}))
    in_loader = device.type == "cpu" and bool(pixel_wanted)
    then = functools.partial(pixel_metrics, wanted=pixel_wanted, pad=pad) if in_loader else None
    if in_loader and workers > 0:
        ssim_cpu.compile_kernels()  # once here, not once per worker
    loader = make_loader(dataset, batch_size, workers, pin_memory=device.type == "cuda", then=then)
    collected: dict[str, list] = {}
    modes: dict[str, int] = {}
    share_tf = (nets.fid is not None and nets.fid is nets.is_ and nets.is_kind == nets.fid.kind and not pad
                and fid_rows is None)
    fid_rows = torch.from_numpy(np.asarray(fid_rows, dtype=bool)) if fid_rows is not None else None
    with torch.inference_mode():
        for batch in batches(loader):
            for mode in ",".join(batch["modes"]).split(","):
                modes[mode] = modes.get(mode, 0) + 1
            gen = batch["generated"].to(device, non_blocking=True).permute(0, 3, 1, 2)
            tgt = batch["target"].to(device, non_blocking=True).permute(0, 3, 1, 2)
            mask = batch["mask"].to(device)[:, None] if "mask" in batch else None
            if in_loader:
                out = dict(batch["pixel_values"])
            else:  # on the accelerator
                on_device = {"generated": gen.permute(0, 2, 3, 1), "target": tgt.permute(0, 2, 3, 1)}
                if mask is not None:
                    on_device["mask"] = mask[:, 0]
                out = pixel_metrics(on_device, pixel_wanted, pad)["pixel_values"]
            if "lpips" in wanted:
                out["lpips"] = nets.lpips(gen, tgt)
            if "mask_lpips" in wanted:
                out["mask_lpips"] = nets.lpips(gen, tgt, mask.float())
            pool = None
            if "fid" in wanted:
                keep = fid_rows[batch["index"]].to(device) if fid_rows is not None else None
                pool = nets.fid(gen if keep is None else gen[keep])
                out["fid_features"] = pool
            if "is" in wanted:
                is_input = pad_white_256(gen) if pad else gen  # PATN pads DeepFashion for IS too
                logits = nets.is_.class_logits(pool if share_tf else nets.is_(is_input, nets.is_kind))
                out["is"] = logits
            if "mask_is" in wanted:
                out["mask_is"] = nets.is_.class_logits(nets.is_(gen * mask, nets.is_kind))
            for key, value in out.items():
                collected.setdefault(key, []).append(value.cpu())
            if progress is not None:
                progress(len(gen))
    scores = PairScores(modes=modes)
    for key, chunks in collected.items():
        value = torch.cat(chunks)
        if key == "fid_features":
            scores.fid_features = value.float().numpy()
        elif key in ("is", "mask_is"):
            scores.is_probabilities[key] = softmax_probabilities(value)
        else:
            scores.values[key] = value.double().numpy()
    return scores


@dataclass
class RealSet:
    """FID statistics of the real set and how they were obtained."""

    mu: np.ndarray
    sigma: np.ndarray
    info: dict


def real_set_files(folder: str, legacy_unit: int | None) -> tuple[list[Path], list[Path]]:
    """(found, used) files of the FID real set: legacy = the first floor(N/unit)·unit in listing order; clean =
    all, sorted."""
    files = list_images(folder, "listing" if legacy_unit else "sorted")
    return files, (legacy_subset(files, legacy_unit, f"the real set {folder}") if legacy_unit else files)


def check_real_set(folder: str, used: list[Path], size: tuple[int, int]) -> None:
    """Before any computing: every used real image has a readable header and the generated images' size (H, W).

    Batches need one size, and a real set at another resolution (e.g. DeepFashion's high-res train folder)
    gives FID numbers no table compares with; without this check either showed only after the pair pass.
    """
    sizes, problems = header_sizes(used)
    raise_problems(problems)
    counts = Counter((h, w) for w, h in sizes.values())
    if set(counts) != {tuple(size)}:
        shown = ", ".join(f"{h}x{w}: {n}" for (h, w), n in counts.most_common())
        odd = [p.name for p, (w, h) in sizes.items() if (h, w) != tuple(size)][:3]
        raise InputError(f"FID real set {folder}: images must be {size[0]}x{size[1]} like the generated ones, "
                         f"found {shown} (e.g. {', '.join(odd)}); resize the real set to the generated size")


def real_statistics(folder: str, net: InceptionPool, legacy_unit: int | None, cache: StatisticsCache,
                    device: torch.device, batch_size: int, workers: int, make_progress: Callable) -> RealSet:
    """μ, Σ of the FID real set: legacy = the first floor(N/unit)·unit files in listing order; clean = all,
    sorted. Cached under a key of the used files and the settings."""
    files, used = real_set_files(folder, legacy_unit)
    settings = {"network": net.weights.network, "weights_sha256": net.weights.sha256 or net.weights.file,
                "preprocessing": net.kind, "images_used": len(used), "torch": torch.__version__}
    key = cache.key(used, settings)
    info = {"path": str(Path(folder).resolve()), "images_found": len(files), "images_used": len(used),
            "order": "directory listing (*.jpg then *.png)" if legacy_unit else "sorted by name",
            "cache": "off" if cache.folder is None else "miss", "cache_file": str(cache.path(key) or "")}
    cached = cache.load(key)
    if cached is not None:
        info["cache"] = "hit"
        return RealSet(*cached, info)
    loader = make_loader(FileDataset(used), batch_size, workers, pin_memory=device.type == "cuda")
    with make_progress(len(used), "FID real set") as bar:
        features = extract_features(batches(loader), net, "image", device, len(used), bar.update)
    mu, sigma = statistics(features)
    cache.save(key, mu, sigma, {**settings, "path": info["path"]})
    return RealSet(mu, sigma, info)


def summarise(values: np.ndarray, names: list[str]) -> dict:
    """Mean, std and var over the finite values; non-finite ones (constant or identical images) are listed."""
    finite = np.isfinite(values)
    kept = values[finite]
    excluded = [names[i] for i in np.flatnonzero(~finite)]
    summary = {"value": float(kept.mean()) if len(kept) else float("nan"),
               "std": float(kept.std()) if len(kept) else float("nan"),
               "var": float(kept.var()) if len(kept) else float("nan"),
               "n": int(finite.sum())}
    if excluded:
        summary["excluded"] = {"count": len(excluded), "names": excluded[:20]}
    return summary
