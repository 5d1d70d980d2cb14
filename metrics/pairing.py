"""Find the ground truth of every generated image by name, in the three result layouts of the field.

single: `<from_stem>_2_<to_stem>_vis.<ext>` (test.py and the official DPTN test); the target is
        `<to_stem>.jpg` in the ground-truth folder (DPTN's rule: the text after the last `_2_`, cut at `_vis`;
        `preprocess_path_for_deform_task` in PangzeCheung/Dual-task-Pose-Transformer-Network
        `metrics/metrics.py`).
patn5:  `<from>___<to>_vis.jpg` panels of 5 tiles (source, source pose, target, target pose, generated), as
        tengteng95/Pose-Transfer writes them and its `tool/getMetrics_market.py` reads them.
hpt3:   `<from>___<to>_vis.jpg` panels of 3 tiles (condition, target, generated), as budui/Human-Pose-Transfer
        writes them (its evaluator slices 5 tiles by mistake, HPT issue #6).
In the panel layouts the target is the panel's own target tile, as in the PATN and HPT evaluators.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from util.io import InputError

RESULT_SUFFIXES = (".jpg", ".png")  # what the DPTN evaluator globs, jpg first
GT_SUFFIXES = (".jpg", ".png", ".jpeg")  # DPTN appends .jpg; the others are accepted when .jpg is absent
SHOWN = 5  # names quoted in an error message


@dataclass(frozen=True)
class Layout:
    """How a result file holds the generated image and where its target comes from."""

    name: str
    tiles: int  # tiles side by side in one result file
    generated_tile: int
    target_tile: int | None  # None: the target is a file in the ground-truth folder


LAYOUTS = {
    "single": Layout("single", 1, 0, None),
    "patn5": Layout("patn5", 5, 4, 2),
    "hpt3": Layout("hpt3", 3, 2, 1),
}


@dataclass(frozen=True)
class Pair:
    """One generated image and its target."""

    generated: Path  # the result file
    target: Path  # the ground-truth image (single) or the panel itself (patn5, hpt3)
    source_name: str  # e.g. 0002_c1s1_000451_03 (single: a stem; panels: the full name)
    target_name: str  # the ground-truth file name, the key of the annotation CSV, e.g. 0002_c1s1_000551_01.jpg
    listing_rank: int  # position of the result file in the folder listing (legacy FID order)


@dataclass
class Matching:
    """The pairs to score and everything that did not pair, for the report."""

    layout: Layout
    pairs: list[Pair]  # sorted by generated file name
    result_files: int  # result files found (jpg + png)
    unmatched: list[str] = field(default_factory=list)  # result files whose target is missing
    unparsable: list[str] = field(default_factory=list)  # result files not named as the layout says
    not_generated: list[str] = field(default_factory=list)  # rows of --pairs without a result file
    not_in_pairs: list[str] = field(default_factory=list)  # result files that --pairs does not list

    def skipped(self) -> dict[str, list[str]]:
        """Non-empty problem lists by name."""
        lists = {"unmatched": self.unmatched, "unparsable": self.unparsable,
                 "not_generated": self.not_generated, "not_in_pairs": self.not_in_pairs}
        return {key: value for key, value in lists.items() if value}


def list_result_files(folder: Path) -> list[Path]:
    """`*.jpg` then `*.png` in the folder, each group in directory-listing order, as DPTN's glob gives them.

    Only the folder itself is read (test.py's `web/` subfolder is not an output).
    """
    if not folder.is_dir():
        raise InputError(f"generated-image folder {folder} not found")
    with os.scandir(folder) as entries:
        names = [e.name for e in entries if e.is_file()]
    return [folder / n for suffix in RESULT_SUFFIXES for n in names if n.endswith(suffix)]


def index_folder(folder: Path, suffixes=GT_SUFFIXES) -> dict[str, Path]:
    """file name -> path for the images directly inside `folder`."""
    if not folder.is_dir():
        raise InputError(f"ground-truth folder {folder} not found")
    with os.scandir(folder) as entries:
        return {e.name: Path(e.path) for e in entries if e.is_file() and e.name.lower().endswith(suffixes)}


def parse_single(name: str) -> tuple[str, str] | None:
    """(source stem, target stem) of `<from>_2_<to>_vis.<ext>`, or None if the name does not fit."""
    stem, _, _ = name.rpartition(".")
    source, sep, rest = stem.rpartition("_2_")
    if not sep or "_vis" not in rest:
        return None
    target = rest.split("_vis")[0]
    return (source, target) if source and target else None


def parse_panel(name: str) -> tuple[str, str] | None:
    """(source name, target name) of `<from>___<to>_vis.jpg`: drop 8 characters, split on `___`."""
    if name[-8:-4] != "_vis":
        return None
    parts = name[:-8].split("___")
    return (parts[0], parts[1]) if len(parts) == 2 and all(parts) else None


def _target_file(stem: str, ground_truth: dict[str, Path]) -> Path | None:
    for suffix in GT_SUFFIXES:
        path = ground_truth.get(stem + suffix)
        if path is not None:
            return path
    return None


def expected_result_stems(pairs: list[tuple[str, str]], layout: Layout) -> dict[str, tuple[str, str]]:
    """Result-file stem (no extension) -> (source, target) for the rows of a pair CSV."""
    if layout.name == "single":
        return {f"{Path(a).stem}_2_{Path(b).stem}_vis": (a, b) for a, b in pairs}
    return {f"{a}___{b}_vis": (a, b) for a, b in pairs}


def match(generated_dir: str | os.PathLike, gt_dir: str | os.PathLike | None, layout: str = "single",
          pairs: list[tuple[str, str]] | None = None, allow_missing: bool = False) -> Matching:
    """Pair every result file with its target; InputError on any mismatch unless `allow_missing`.

    `pairs` (rows of a pair CSV, optional) makes the check two-sided: every row needs a result file and
    every result file a row. With `allow_missing` the problems are skipped and listed in the Matching.
    """
    if layout not in LAYOUTS:
        raise InputError(f"unknown --layout {layout!r}; available: {', '.join(LAYOUTS)}")
    spec = LAYOUTS[layout]
    generated_dir = Path(generated_dir)
    files = list_result_files(generated_dir)
    if not files:
        raise InputError(f"no generated images (*.jpg, *.png) in {generated_dir}")
    ground_truth = None
    if spec.target_tile is None:
        if gt_dir is None:
            raise InputError("--gt_path is required with --layout single")
        ground_truth = index_folder(Path(gt_dir))
        if not ground_truth:
            raise InputError(f"no ground-truth images (*.jpg, *.png) in {gt_dir}")
    matching = Matching(spec, [], len(files))
    wanted = expected_result_stems(pairs, spec) if pairs is not None else None
    seen_stems = set()
    for rank, path in enumerate(files):
        parsed = parse_single(path.name) if spec.target_tile is None else parse_panel(path.name)
        if parsed is None:
            matching.unparsable.append(path.name)
            continue
        source, target = parsed
        if wanted is not None:
            stem = path.name.rpartition(".")[0]
            if stem not in wanted:
                matching.not_in_pairs.append(path.name)
                continue
            seen_stems.add(stem)
        if ground_truth is None:
            matching.pairs.append(Pair(path, path, source, target, rank))
            continue
        target_path = _target_file(target, ground_truth)
        if target_path is None:
            matching.unmatched.append(f"{target}.jpg (for {path.name})")
            continue
        matching.pairs.append(Pair(path, target_path, source, target_path.name, rank))
    if wanted is not None:
        matching.not_generated = [f"{a} -> {b}" for stem, (a, b) in wanted.items() if stem not in seen_stems]
    matching.pairs.sort(key=lambda p: p.generated.name)
    _check(matching, generated_dir, gt_dir, allow_missing)
    return matching


def _names(items: list[str]) -> str:
    more = f", ... ({len(items) - SHOWN} more)" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more


def _check(matching: Matching, generated_dir: Path, gt_dir, allow_missing: bool) -> None:
    problems = []
    total = matching.result_files
    if matching.unparsable:
        example = ("<from>_2_<to>_vis.jpg" if matching.layout.name == "single" else "<from>___<to>_vis.jpg")
        problems.append(f"{len(matching.unparsable)} of {total} files in {generated_dir} are not named "
                        f"{example} (--layout {matching.layout.name}): {_names(matching.unparsable)}")
    if matching.unmatched:
        problems.append(f"{len(matching.unmatched)} of {total} generated images have no ground truth in "
                        f"{gt_dir}; first missing: {_names(matching.unmatched)}")
    if matching.not_generated:
        problems.append(f"{len(matching.not_generated)} rows of the pair file have no generated image; first: "
                        f"{_names(matching.not_generated)}")
    if matching.not_in_pairs:
        problems.append(f"{len(matching.not_in_pairs)} generated images are not rows of the pair file; first: "
                        f"{_names(matching.not_in_pairs)}")
    if problems and not allow_missing:
        raise InputError("\n".join(problems) + "\npass --allow_missing to skip them (they are listed in the report)")
    if not matching.pairs:
        raise InputError(f"no generated image in {generated_dir} could be paired with a target")
