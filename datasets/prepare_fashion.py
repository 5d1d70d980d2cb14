"""Raw DeepFashion In-shop -> the flat 256x176 layout our `fashion` mode reads.

The lists (`train.lst`, `test.lst`) and the CSVs name images flat, the raw tree nests them:

    fashionWOMENTees_Tanksid0000290606_2side.jpg  <->  img/WOMEN/Tees_Tanks/id_00002906/06_2_side.jpg

(category underscores kept, `id_` loses its underscore, the photo number is glued to the id, and the view
loses its underscore). Raw low-res images are 256x256 and are cropped to columns [40, 216) as the reference;
other sizes are resized to 256 high and centre-cropped/padded to 176 wide, which the run reports.

    python -m datasets.prepare_fashion --raw ~/DeepFashion/In-shop --out data/fashion --annotations DIR
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path, PurePath, PurePosixPath

from PIL import Image

from datasets.prepare_market import (SHOW, install_annotations, plan_annotations, print_annotation_report,
                                     refuse_existing)
from datasets.staging import check_out_path, publish_folder, staging_folder
from util.image import read_rgb
from util.io import InputError, report_input_errors
from util.text_files import read_text_lines

HEIGHT, WIDTH = 256, 176
CROP = (40, 0, 216, 256)  # (left, top, right, bottom) of a 256x256 raw image
JPEG_QUALITY = 75  # PIL's default, which the reference script saved with
GENDERS = ("WOMEN", "MEN")
FASHION_CSVS = {split: (f"fasion-resize-annotation-{split}.csv", f"fasion-resize-pairs-{split}.csv")
                for split in ("train", "test")}  # sic: "fasion"
_FLAT = re.compile(r"fashion(WOMEN|MEN)(.+?)id(\d{8})(\d{2})_(\d)([a-z]+)\.jpg")
_ITEM = re.compile(r"id_(\d{8})")
_PHOTO = re.compile(r"(\d{2})_(\d)_([a-z]+)\.jpg")


def raw_to_flat(raw_path: str | PurePath) -> str:
    """`img/WOMEN/Tees_Tanks/id_00002906/06_2_side.jpg` -> `fashionWOMENTees_Tanksid0000290606_2side.jpg`.

    Only the last four path parts count, so any prefix (`img/`, an absolute path) is fine.
    """
    parts = PurePosixPath(PurePath(raw_path).as_posix()).parts[-4:]
    if len(parts) < 4:
        raise InputError(f"{raw_path}: expected <MEN|WOMEN>/<category>/id_<8 digits>/<NN>_<V>_<view>.jpg")
    gender, category, item, photo = parts
    item_match, photo_match = _ITEM.fullmatch(item), _PHOTO.fullmatch(photo)
    if gender not in GENDERS or not category or item_match is None or photo_match is None:
        raise InputError(f"{raw_path}: expected <MEN|WOMEN>/<category>/id_<8 digits>/<NN>_<V>_<view>.jpg")
    number, view_index, view = photo_match.groups()
    return f"fashion{gender}{category}id{item_match.group(1)}{number}_{view_index}{view}.jpg"


def flat_to_raw(name: str) -> str:
    """`fashionWOMENTees_Tanksid0000290606_2side.jpg` -> `img/WOMEN/Tees_Tanks/id_00002906/06_2_side.jpg`."""
    match = _FLAT.fullmatch(name)
    if match is None:
        raise InputError(f"{name!r} is not a DeepFashion flat name like fashionWOMENTees_Tanksid0000290606_2side.jpg")
    gender, category, item, number, view_index, view = match.groups()
    return f"img/{gender}/{category}/id_{item}/{number}_{view_index}_{view}.jpg"


def find_img_dir(raw: Path, depth: int = 4) -> Path:
    """The folder holding MEN/ and WOMEN/: `raw` itself, or an `img` folder below it (breadth-first)."""
    if not raw.is_dir():
        raise InputError(f"--raw {raw} is not a folder")
    level = [raw]
    for _ in range(depth + 1):
        for folder in level:
            if any((folder / g).is_dir() for g in GENDERS):
                return folder
        level = sorted(d for folder in level for d in folder.iterdir() if d.is_dir())
    raise InputError(f"no img/ folder with MEN/ or WOMEN/ at or below {raw} (searched {depth} levels deep)")


def find_list(raw: Path, name: str, depth: int = 3) -> Path:
    """`train.lst`/`test.lst` at or below `raw`, shallowest first."""
    level = [raw]
    for _ in range(depth + 1):
        for folder in level:
            if (folder / name).is_file():
                return folder / name
        level = sorted(d for folder in level for d in folder.iterdir() if d.is_dir())
    raise InputError(f"{name} not found at or below {raw}: pass --{name.replace('.', '_')}")


def index_raw_tree(img_dir: Path) -> dict[str, Path]:
    """Flat name -> raw file for every image of the raw tree whose path fits the DeepFashion layout."""
    index: dict[str, Path] = {}
    for path in sorted(img_dir.rglob("*.jpg")):
        try:
            index[raw_to_flat(path.relative_to(img_dir))] = path
        except InputError:
            continue  # not part of the in-shop layout (e.g. a stray file)
    return index


def read_list(path: Path) -> list[str]:
    """Image names of a `.lst` file, one per line (UTF-8, a BOM allowed)."""
    names = [line.strip() for line in read_text_lines(path) if line.strip()]
    if not names:
        raise InputError(f"{path} lists no images")
    return names


def to_176(image: Image.Image) -> tuple[Image.Image, bool]:
    """256x176 RGB image; True when the raw size was not 256x256 and it had to be resized."""
    image = image.convert("RGB")
    if image.size == (256, 256):
        return image.crop(CROP), False
    width = max(1, round(image.width * HEIGHT / image.height))
    image = image.resize((width, HEIGHT), Image.BICUBIC)
    canvas = Image.new("RGB", (WIDTH, HEIGHT), (255, 255, 255))  # studio white where we pad
    canvas.paste(image, ((WIDTH - width) // 2, 0))  # a negative offset centre-crops
    return canvas, True


def match_lists(index: dict[str, Path], lists: dict[str, Path]) -> tuple[dict[str, list], dict[str, list[str]]]:
    """Per split: [(flat name, raw file)] matched and [flat name] unmatched, in list order."""
    matched, unmatched = {}, {}
    for split, lst in lists.items():
        names = read_list(lst)
        matched[split] = [(n, index[n]) for n in names if n in index]
        unmatched[split] = [n for n in names if n not in index]
    return matched, unmatched


def prepare_fashion(raw: str | Path, out: str | Path, train_lst: str | Path | None = None,
                    test_lst: str | Path | None = None, allow_missing: bool = False, overwrite: bool = False,
                    annotations: str | Path | None = None) -> dict:
    """Crop/rename the listed raw images into `out/{train,test}`; returns counts, matches and CSV checks."""
    raw, out = Path(raw), Path(out)
    check_out_path(out, "folder")
    img_dir = find_img_dir(raw)
    lists = {"train": Path(train_lst) if train_lst else find_list(raw, "train.lst"),
             "test": Path(test_lst) if test_lst else find_list(raw, "test.lst")}
    for split, lst in lists.items():
        if not lst.is_file():
            raise InputError(f"--{split}_lst {lst} not found")
    index = index_raw_tree(img_dir)
    matched, unmatched = match_lists(index, lists)
    for split, missing in unmatched.items():
        if not matched[split]:
            example = missing[0]
            raise InputError(f"none of the {len(missing)} names in {lists[split].name} matched an image under "
                             f"{img_dir} ({len(index)} raw images found); e.g. {example} -> "
                             f"{_expected(example, img_dir)}")
        if missing and not allow_missing:
            raise InputError(f"{len(missing)} of {len(missing) + len(matched[split])} names in {lists[split].name} "
                             f"have no raw image (first: {', '.join(missing[:SHOW])}); "
                             "pass --allow_missing to go on without them")
    plan = {} if annotations is None else plan_annotations(annotations, FASHION_CSVS)
    targets = [out / split / name for split, pairs in matched.items() for name, _ in pairs]
    refuse_existing(targets + [out / name for name in plan], overwrite)
    resized = []
    summary = {"img_dir": str(img_dir), "out": str(out), "resized": resized,
               **{split: len(pairs) for split, pairs in matched.items()},
               **{f"{split}_listed": len(matched[split]) + len(unmatched[split]) for split in matched},
               **{f"{split}_unmatched": unmatched[split] for split in matched}}
    with staging_folder(out) as stage:  # published only when every image is written
        for split, pairs in matched.items():
            (stage / split).mkdir()
            for name, src in pairs:
                with read_rgb(src) as image:  # a corrupt raw image: one line naming it, nothing published
                    result, was_resized = to_176(image)
                if was_resized:
                    resized.append(name)
                _save_jpeg(result, stage / split / name)
        if annotations is not None:
            summary["annotations"] = install_annotations(plan, annotations, out, FASHION_CSVS, stage)
        publish_folder(stage, out)
    return summary


def _expected(name: str, img_dir: Path) -> str:
    try:
        return str(img_dir.joinpath(*flat_to_raw(name).split("/")[1:]))  # flat_to_raw starts with img/
    except InputError as err:
        return str(err)


def _save_jpeg(image: Image.Image, path: Path) -> None:
    """Save through a temp name so that an interrupted run leaves no truncated image."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        image.save(tmp, "JPEG", quality=JPEG_QUALITY)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@report_input_errors
def main(argv: list[str] | None = None) -> int:
    """CLI: prepare DeepFashion In-shop and print what was matched, resized and checked."""
    parser = argparse.ArgumentParser(prog="python -m datasets.prepare_fashion", description=__doc__.split("\n")[0])
    parser.add_argument("--raw", required=True, type=Path, help="In-shop folder holding img/ (any nesting)")
    parser.add_argument("--out", required=True, type=Path, help="dataroot to fill")
    parser.add_argument("--train_lst", type=Path, default=None, help="default: train.lst found under --raw")
    parser.add_argument("--test_lst", type=Path, default=None, help="default: test.lst found under --raw")
    parser.add_argument("--annotations", type=Path, default=None, help="folder with the fasion-resize-*.csv files")
    parser.add_argument("--allow_missing", action="store_true", help="go on when some listed names have no image")
    parser.add_argument("--overwrite", action="store_true", help="replace files that already exist in --out")
    args = parser.parse_args(argv)
    summary = prepare_fashion(args.raw, args.out, args.train_lst, args.test_lst, args.allow_missing,
                              args.overwrite, args.annotations)
    for split in ("train", "test"):
        line = f"{split}: {summary[split]} of {summary[split + '_listed']} listed names matched a raw image"
        if summary[f"{split}_unmatched"]:
            line += f"; unmatched (first): {', '.join(summary[split + '_unmatched'][:SHOW])}"
        print(line)
    if summary["resized"]:
        print(f"{len(summary['resized'])} raw images were not 256x256 and were resized to 256 high and "
              f"centre-cropped/padded to 176 wide (first: {summary['resized'][0]}); the official keypoints assume "
              "the 256x256 crop")
    print(f"wrote {summary['train']} train and {summary['test']} test images (256x176) to {args.out}")
    if "annotations" in summary:
        print_annotation_report(summary["annotations"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
