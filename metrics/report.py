"""The evaluator's report: a printed table, `<name>.json` (values and provenance), `<name>.csv` (values) and
`<name>_per_image.csv` (one row per scored pair). Every file is written atomically."""
from __future__ import annotations

import csv
import io
import json
import math
import platform
from importlib import metadata
from pathlib import Path

from util.io import InputError, atomic_write_text

PACKAGES = ("torch", "torchvision", "numpy", "scipy", "scikit-image", "numba", "lpips", "pytorch-fid", "pillow")

# what each metric name means, printed and stored with its value (docs/evaluation.md)
VARIANTS = {
    "ssim": "ssim-51: uniform 51x51 window, sample covariance, data_range 1, images in [0,1] (GFLA/DPTN 'ssim')",
    "ssim_256": "ssim-gauss: Gaussian sigma 1.5 (11x11), population covariance, data_range = generated image's "
                "max-min, images in 0..255 (PATN SSIM, DPTN 'ssim_256')",
    "psnr": "10*log10(1/MSE), images in [0,1]",
    "l1": "mean |generated - target|, images in [0,1] (GFLA 'l1'; PATN's L1 on [-1,1] is twice this)",
    "mae": "sum |generated - target| / sum (generated + target), images in [0,1] (GFLA 'mae')",
    "lpips": "lpips 0.1.4 LPIPS(net='alex', version='0.1'), images in [-1,1], never padded",
    "mask_ssim": "ssim-gauss of both uint8 images times the target-keypoint mask (PATN produce_ma_mask), "
                 "data_range from the masked generated image",
    "mask_lpips": "LPIPS of both [-1,1] images times the target-keypoint mask (DPTN --calculate_mask)",
    "fid": "Frechet Inception Distance to the real set",
    "is": "Inception Score, 1008 TF classes (pool3 x fc.weight, no bias), sorted order",
    "mask_is": "Inception Score of the masked generated images, sorted order",
}


NETWORK_METRICS = ("lpips", "mask_lpips", "fid", "is", "mask_is")  # the ones that random weights make meaningless
RANDOM_WEIGHTS = "MEANINGLESS: computed with random network weights (--random_weights, for tests only)"


def mark_random_weights(results: dict[str, dict]) -> None:
    """Label every network-based result of a --random_weights run meaningless (table, JSON and CSV say so)."""
    for metric, result in results.items():
        if metric in NETWORK_METRICS:
            result["meaningless"] = RANDOM_WEIGHTS


def legacy_fid_note(fake_used: int, fake_found: int, real_used: int, real_found: int, unit: int) -> str:
    """What legacy FID scored: whole batches of `unit` only, so up to unit-1 images of each set are dropped."""
    return (f"scored {fake_used} of {fake_found} generated and {real_used} of {real_found} real images: legacy FID "
            f"uses whole batches of {unit} only (--fid_batch_size), as GFLA/DPTN")


def versions() -> dict[str, str]:
    """Python and package versions, for the provenance record."""
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def output_prefix(name: str | None, generated_dir: str) -> Path:
    """`--name` as a path prefix; a folder gets `metrics` inside; no name: `<generated folder>_metrics`."""
    if name is None:
        folder = Path(generated_dir).resolve()
        return folder.with_name(folder.name + "_metrics")
    prefix = Path(name)
    return prefix / "metrics" if prefix.is_dir() or name.endswith(("/", "\\")) else prefix


REPORT_SUFFIXES = (".json", ".csv", "_per_image.csv")


def report_paths(prefix: Path) -> list[Path]:
    """`<prefix>.json`, `<prefix>.csv`, `<prefix>_per_image.csv`: the files one run writes."""
    return [prefix.with_name(prefix.name + suffix) for suffix in REPORT_SUFFIXES]


def check_report_paths(prefix: Path, overwrite: bool) -> None:
    """Before any work: InputError if a report exists (without `overwrite`) or cannot be written there."""
    for parent in (prefix.parent, *prefix.parent.parents):
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"--name {prefix}: {parent} is a file, not a folder; choose another --name")
            break
    for path in report_paths(prefix):
        if path.is_dir():
            raise InputError(f"--name {prefix}: {path} is a folder; choose another --name")
        if path.exists() and not overwrite:
            raise InputError(f"{path} exists (an earlier report); pass --overwrite to replace it, or another --name")


def _number(value: float) -> str:
    return "nan" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.6g}"


def format_table(results: dict[str, dict], protocol: str) -> str:
    """The console summary: one line per metric with value, spread, count and variant, then its notes (what a
    legacy FID dropped, random weights)."""
    lines = [f"protocol: {protocol}"]
    meaningless = [m for m, r in results.items() if "meaningless" in r]
    if meaningless:
        lines.append(f"WARNING: {', '.join(meaningless)} computed with RANDOM network weights (--random_weights): "
                     "these numbers are meaningless")
    lines.append(f"{'metric':<11} {'value':>12} {'std':>12} {'n':>7}  variant")
    for metric, result in results.items():
        spread = result.get("std", float("nan"))
        marker = "MEANINGLESS (random weights) " if "meaningless" in result else ""
        lines.append(f"{metric:<11} {_number(result['value']):>12} {_number(spread):>12} {result['n']:>7}  "
                     f"{marker}{result.get('variant', '')}")
        if "note" in result:
            lines.append(f"{'':<11} {result['note']}")
        if "excluded" in result:
            excluded = result["excluded"]
            lines.append(f"{'':<11} excluded {excluded['count']}: {excluded['reason']}; e.g. "
                         f"{', '.join(excluded['names'][:3])}")
    return "\n".join(lines)


def format_settings(provenance: dict) -> str:
    """The settings printed with every result: pairs and pair file, padding, resize, weights, versions."""
    generated = provenance["generated"]
    formats = ", ".join(f"{k} {v}" for k, v in generated["formats"].items())
    lines = [(f"pairs scored: {generated['pairs_scored']} of {generated['result_files']} files ({formats}); "
              f"layout {generated['layout']}")]
    for problem, found in generated["skipped"].items():
        lines.append(f"SKIPPED ({problem}): {found['count']}, e.g. {', '.join(found['first'][:3])}")
    if provenance["pair_file"]:
        pair_file = provenance["pair_file"]
        lines.append(f"pair file: {pair_file['path']} ({pair_file['rows']} rows, sha256 {pair_file['sha256']})")
    lines.append(f"padding: {provenance['padding']}")
    for metric in ("fid", "is", "mask_is"):
        if metric in provenance:
            info = provenance[metric]
            lines.append(f"{metric}: {info['network']} weights {info['file']} {info['sha256']}; {info['resize']}; "
                         f"input {info['preprocessing']}")
    if "fid" in provenance:
        fid, real = provenance["fid"], provenance["fid"]["real"]
        lines.append(f"fid sets: fake {fid['fake_images_used']} of {fid['fake_images_found']} ({fid['fake_order']}); "
                     f"real {real['images_used']} of {real['images_found']} in {real['path']} ({real['order']}); "
                     f"statistics cache {real['cache']}")
    if "lpips" in provenance:
        trunk = provenance["lpips"]["trunk"]
        heads = provenance["lpips"]["heads"]
        lines.append(f"lpips: AlexNet trunk {trunk['file']} {trunk['sha256']}; heads {heads['file']} {heads['sha256']}")
    found = provenance["versions"]
    lines.append(f"versions: torch {found['torch']}, torchvision {found['torchvision']}, scikit-image "
                 f"{found['scikit-image']}, numba {found['numba']}, lpips {found['lpips']}, pytorch-fid {found['pytorch-fid']}; "
                 f"device {provenance['device']}")
    return "\n".join(lines)


def _json_safe(value):
    """NaN and inf become strings; JSON has no spelling for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_reports(prefix: Path, results: dict[str, dict], provenance: dict, per_image: dict[str, list],
                  names: list[tuple[str, str]]) -> list[Path]:
    """Write `<prefix>.json`, `<prefix>.csv` and `<prefix>_per_image.csv`; returns their paths."""
    json_path, csv_path, per_image_path = report_paths(prefix)
    document = {"results": results, "provenance": provenance}
    if provenance.get("random_weights"):
        document = {"warning": "computed with random network weights (--random_weights): "
                               f"{', '.join(m for m in results if m in NETWORK_METRICS) or 'no network metric'} "
                               "meaningless", **document}
    atomic_write_text(json_path, json.dumps(_json_safe(document), indent=2, sort_keys=False) + "\n")

    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["metric", "value", "std", "n", "excluded", "protocol", "variant", "note"])
    for metric, result in results.items():
        note = "; ".join(n for n in (result.get("meaningless"), result.get("note")) if n)
        writer.writerow([metric, repr(result["value"]), repr(result.get("std", float("nan"))), result["n"],
                         result.get("excluded", {}).get("count", 0), provenance["protocol"], result.get("variant", ""),
                         note])
    atomic_write_text(csv_path, table.getvalue())

    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    metrics = list(per_image)
    writer.writerow(["generated", "target", *metrics])
    for i, (generated, target) in enumerate(names):
        writer.writerow([generated, target, *(repr(float(per_image[m][i])) for m in metrics)])
    atomic_write_text(per_image_path, rows.getvalue())
    return [json_path, csv_path, per_image_path]
