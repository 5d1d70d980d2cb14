"""Raw Market-1501 -> the layout our `market` mode reads.

    <raw>/[Market-1501-v15.09.15/]bounding_box_train/*.jpg -> <out>/train/
    <raw>/[Market-1501-v15.09.15/]bounding_box_test/*.jpg  -> <out>/test/
    <raw>/[Market-1501-v15.09.15/]query/*.jpg              -> <out>/query/  (re-id queries, 3,368 images;
                                                              python -m metrics.reid --protocol standard)
    --annotations DIR: market-annotation-{train,test}.csv, market-pairs-{train,test}.csv -> <out>/

    python -m datasets.prepare_market --raw ~/Downloads/Market-1501 --out data/market \
        --annotations ~/Downloads/pose-annotations
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from data.annotations import read_annotations, read_pairs, write_pairs
from data.pairs import market_pairs
from datasets.staging import check_out_path, publish_folder, refuse_unwritable, staging_folder
from util.image import read_rgb
from util.io import InputError, report_input_errors

SPLIT_FOLDERS = {"train": "bounding_box_train", "test": "bounding_box_test"}
QUERY_FOLDER = "query"  # optional: pose transfer does not need it, the re-id standard protocol does
MARKET_CSVS = {split: (f"market-annotation-{split}.csv", f"market-pairs-{split}.csv") for split in SPLIT_FOLDERS}
SEARCH_DEPTH = 3  # archives unpack as <raw>/Market-1501-v15.09.15/..., sometimes one level deeper
SHOW = 5  # names listed in a report line


def find_raw_root(raw: Path, wanted: tuple[str, ...], depth: int = SEARCH_DEPTH) -> Path:
    """The shallowest folder at or below `raw` holding a `wanted` subfolder (breadth-first); it must hold all."""
    if not raw.is_dir():
        raise InputError(f"--raw {raw} is not a folder")
    level = [raw]
    for _ in range(depth + 1):
        for folder in level:
            found = [w for w in wanted if (folder / w).is_dir()]
            if found and len(found) < len(wanted):
                lacking = [w + "/" for w in wanted if w not in found]
                raise InputError(f"{folder} has {found[0]}/ but no {' or '.join(lacking)}")
            if found:
                return folder
        level = sorted(d for folder in level for d in folder.iterdir() if d.is_dir())
    raise InputError(f"no folder with {' and '.join(w + '/' for w in wanted)} at or below {raw} "
                     f"(searched {depth} levels deep)")


def list_images(folder: Path) -> list[Path]:
    """The .jpg files of one folder, sorted (Market also ships Thumbs.db files)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".jpg")


def place_file(src: Path, dst: Path, link: bool) -> None:
    """Copy (or symlink) `src` to `dst` through a temp name, so `dst` is never half written."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        if link:
            os.symlink(src.resolve(), tmp)
        else:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    finally:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()


def refuse_existing(targets: list[Path], overwrite: bool) -> None:
    """InputError when any target exists and --overwrite was not given, or is a folder (checked before writing
    anything)."""
    refuse_unwritable(targets)
    if overwrite:
        return
    existing = [t for t in targets if t.exists() or t.is_symlink()]
    if existing:
        raise InputError(f"{len(existing)} of the files to write already exist (first: {existing[0]}); "
                         "pass --overwrite to replace them")


def absent_names(names: list[str], *folders: Path) -> list[str]:
    """Names that have no file in any of `folders`, in the given order."""
    present = {p.name for folder in folders if folder.is_dir() for p in folder.iterdir()}
    return [n for n in names if n not in present]


def check_images(files: list[Path]) -> None:
    """Decode every raw image before anything is published; InputError naming the first unreadable one."""
    for path in files:
        read_rgb(path).close()


def plan_annotations(ann_dir: str | Path, csvs: dict[str, tuple[str, str]],
                     build_train_pairs: bool = False) -> dict[str, object]:
    """Read and check the CSVs of `ann_dir`: {file name: parsed rows} of those to install.

    With `build_train_pairs`, a missing Market train pair list is built from its annotation file
    (the release does not ship it); it is then the only file we write rather than copy.
    """
    ann_dir = Path(ann_dir)
    if not ann_dir.is_dir():
        raise InputError(f"--annotations {ann_dir} is not a folder")
    plan: dict[str, object] = {}
    for split, (ann_name, pair_name) in csvs.items():
        if (ann_dir / ann_name).is_file():
            plan[ann_name] = read_annotations(ann_dir / ann_name)
        if (ann_dir / pair_name).is_file():
            plan[pair_name] = read_pairs(ann_dir / pair_name)
        elif build_train_pairs and split == "train" and ann_name in plan:
            plan[pair_name] = market_pairs(plan[ann_name])
    if not plan:
        names = ", ".join(n for pair in csvs.values() for n in pair)
        raise InputError(f"--annotations {ann_dir} holds none of {names}")
    return plan


def install_annotations(plan: dict[str, object], ann_dir: str | Path, out: str | Path,
                        csvs: dict[str, tuple[str, str]], stage: str | Path | None = None) -> dict[str, dict]:
    """Put the planned CSVs into `stage` (default `out`, the folder they end in); per file: rows, image names,
    the names with no image (in `stage` or `out`), built or copied.

    Shipped files are copied byte for byte; only a rebuilt pair list is written by us.
    """
    ann_dir, out = Path(ann_dir), Path(out)
    stage = out if stage is None else Path(stage)
    report: dict[str, dict] = {}
    for split, names in csvs.items():
        for name in names:
            if name not in plan:
                continue
            content = plan[name]
            built = not (ann_dir / name).is_file()
            if built:
                write_pairs(stage / name, content)
            else:
                place_file(ann_dir / name, stage / name, link=False)
            named = list(content) if isinstance(content, dict) else list(dict.fromkeys(n for p in content for n in p))
            report[name] = {"rows": len(content), "names": len(named),
                            "absent": absent_names(named, stage / split, out / split),
                            "built": built, "folder": str(out / split)}
    return report


def print_annotation_report(report: dict[str, dict]) -> None:
    """One line per CSV: rows, and how many of its image names have no image."""
    for name, info in report.items():
        line = f"{name}{' (built by make_pairs)' if info['built'] else ''}: {info['rows']} rows, " \
               f"{info['names']} images named"
        if info["absent"]:
            line += (f", {len(info['absent'])} of them absent from {info['folder']} "
                     f"(first: {', '.join(info['absent'][:SHOW])})")
        else:
            line += ", all present"
        print(line)


def prepare_market(raw: str | Path, out: str | Path, link: bool = False, overwrite: bool = False,
                   annotations: str | Path | None = None) -> dict:
    """Copy (or link) the bounding-box folders to `out/{train,test}` and `query/` (when present) to `out/query`.

    Returns counts (query 0 when the download has no query/ folder) and CSV checks.
    """
    raw, out = Path(raw), Path(out)
    check_out_path(out, "folder")
    root = find_raw_root(raw, tuple(SPLIT_FOLDERS.values()))
    sources = {split: list_images(root / folder) for split, folder in SPLIT_FOLDERS.items()}
    for split, files in sources.items():
        if not files:
            raise InputError(f"{root / SPLIT_FOLDERS[split]} holds no .jpg images")
    if (root / QUERY_FOLDER).is_dir():
        sources["query"] = list_images(root / QUERY_FOLDER)
        if not sources["query"]:
            raise InputError(f"{root / QUERY_FOLDER} holds no .jpg images")
    copies = [(src, split, src.name) for split, files in sources.items() for src in files]
    plan = {} if annotations is None else plan_annotations(annotations, MARKET_CSVS, build_train_pairs=True)
    # everything is checked before the first file is written
    refuse_existing([out / split / name for _, split, name in copies] + [out / name for name in plan], overwrite)
    check_images([src for src, _, _ in copies])
    summary = {"root": str(root), "out": str(out), "linked": link, "query": 0,
               **{split: len(files) for split, files in sources.items()}}
    with staging_folder(out) as stage:  # published only when complete
        for split in sources:
            (stage / split).mkdir()
        for src, split, name in copies:
            place_file(src, stage / split / name, link)
        if annotations is not None:
            summary["annotations"] = install_annotations(plan, annotations, out, MARKET_CSVS, stage)
        publish_folder(stage, out)
    return summary


@report_input_errors
def main(argv: list[str] | None = None) -> int:
    """CLI: prepare Market-1501 and print what was done."""
    parser = argparse.ArgumentParser(prog="python -m datasets.prepare_market", description=__doc__.split("\n")[0])
    parser.add_argument("--raw", required=True, type=Path, help="unpacked Market-1501 (any nesting)")
    parser.add_argument("--out", required=True, type=Path, help="dataroot to fill")
    parser.add_argument("--link", action="store_true", help="symlink the images instead of copying them")
    parser.add_argument("--annotations", type=Path, default=None, help="folder with the market-*.csv files")
    parser.add_argument("--overwrite", action="store_true", help="replace files that already exist in --out")
    args = parser.parse_args(argv)
    summary = prepare_market(args.raw, args.out, args.link, args.overwrite, args.annotations)
    verb = "linked" if args.link else "copied"
    print(f"{verb} {summary['train']} train and {summary['test']} test images, and {summary['query']} query images, "
          f"from {summary['root']} to {args.out}")
    if not summary["query"]:
        print(f"note: {summary['root']} has no {QUERY_FOLDER}/ folder; the standard re-id protocol "
              "(python -m metrics.reid --protocol standard) needs it")
    if "annotations" in summary:
        print_annotation_report(summary["annotations"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
