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

from util.io import atomic_write_text

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


def _number(value: float) -> str:
    return "nan" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.6g}"


def format_table(results: dict[str, dict], protocol: str) -> str:
    """The console summary: one line per metric with value, spread, count and variant."""
    lines = [f"protocol: {protocol}", f"{'metric':<11} {'value':>12} {'std':>12} {'n':>7}  variant"]
    for metric, result in results.items():
        spread = result.get("std", float("nan"))
        lines.append(f"{metric:<11} {_number(result['value']):>12} {_number(spread):>12} {result['n']:>7}  "
                     f"{result.get('variant', '')}")
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
    json_path = prefix.with_name(prefix.name + ".json")
    csv_path = prefix.with_name(prefix.name + ".csv")
    per_image_path = prefix.with_name(prefix.name + "_per_image.csv")
    document = {"results": results, "provenance": provenance}
    atomic_write_text(json_path, json.dumps(_json_safe(document), indent=2, sort_keys=False) + "\n")

    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["metric", "value", "std", "n", "excluded", "protocol", "variant"])
    for metric, result in results.items():
        writer.writerow([metric, repr(result["value"]), repr(result.get("std", float("nan"))), result["n"],
                         result.get("excluded", {}).get("count", 0), provenance["protocol"], result.get("variant", "")])
    atomic_write_text(csv_path, table.getvalue())

    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    metrics = list(per_image)
    writer.writerow(["generated", "target", *metrics])
    for i, (generated, target) in enumerate(names):
        writer.writerow([generated, target, *(repr(float(per_image[m][i])) for m in metrics)])
    atomic_write_text(per_image_path, rows.getvalue())
    return [json_path, csv_path, per_image_path]
