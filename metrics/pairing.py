"""Find the ground truth of every generated image by name, in the three result layouts of the field.

single: `<from_stem>_2_<to_stem>_vis.<ext>` (test.py and the official DPTN test); the target is
        `<to_stem>.jpg` in the ground-truth folder. The official rule (`preprocess_path_for_deform_task` in
        PangzeCheung/Dual-task-Pose-Transformer-Network `metrics/metrics.py`, the same in
        RenYurui/Global-Flow-Local-Attention `script/metrics.py`): the text after the LAST `_2_` of the file
        name, cut at its first `_vis`, plus `.jpg`, kept only if that file exists in the ground-truth folder.
        A name with several `_2_` is ambiguous when a stem itself holds `_2_` (`a_2_b_2_c_vis.jpg`: target
        `c` or `b_2_c`); the official rule then silently takes `c`. We decide as it does, by the
        ground-truth folder, over every split point: the one candidate that exists is the target (the
        official one whenever it exists alone); none is "unmatched"; several are "ambiguous" and refused,
        since the name cannot say which (a `--pairs` file decides: its row names the target).
        Extensions match case-insensitively (`_vis.JPG`, `.PNG`), which the official glob does not; a
        ground-truth `.png`/`.jpeg` is used when `.jpg` is absent.
patn5:  `<from>___<to>_vis.jpg` panels of 5 tiles (source, source pose, target, target pose, generated), as
        tengteng95/Pose-Transfer writes them and its `tool/getMetrics_market.py` reads them.
hpt3:   `<from>___<to>_vis.jpg` panels of 3 tiles (condition, target, generated), as budui/Human-Pose-Transfer
        writes them (its evaluator slices 5 tiles by mistake, HPT issue #6).
In the panel layouts the target is the panel's own target tile, as in the PATN and HPT evaluators.
"""
from __future__ import annotations

import os
import re
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
    ambiguous: list[str] = field(default_factory=list)  # result files that two existing targets fit
    unparsable: list[str] = field(default_factory=list)  # result files not named as the layout says
    not_generated: list[str] = field(default_factory=list)  # rows of --pairs without a result file
    not_in_pairs: list[str] = field(default_factory=list)  # result files that --pairs does not list

    def skipped(self) -> dict[str, list[str]]:
        """Non-empty problem lists by name."""
        lists = {"unmatched": self.unmatched, "ambiguous": self.ambiguous, "unparsable": self.unparsable,
                 "not_generated": self.not_generated, "not_in_pairs": self.not_in_pairs}
        return {key: value for key, value in lists.items() if value}


def list_result_files(folder: Path) -> list[Path]:
    """`*.jpg` then `*.png` in the folder, each group in directory-listing order, as DPTN's glob gives them.

    Extensions match case-insensitively (`*_vis.JPG` is a result too). Only the folder itself is read
    (test.py's `web/` subfolder is not an output).
    """
    if not folder.is_dir():
        raise InputError(f"generated-image folder {folder} not found")
    with os.scandir(folder) as entries:
        names = [e.name for e in entries if e.is_file()]
    return [folder / n for suffix in RESULT_SUFFIXES for n in names if n.lower().endswith(suffix)]


def index_folder(folder: Path, suffixes=GT_SUFFIXES) -> dict[str, Path]:
    """file name -> path for the images directly inside `folder` (extension case ignored)."""
    if not folder.is_dir():
        raise InputError(f"ground-truth folder {folder} not found")
    with os.scandir(folder) as entries:
        return {e.name: Path(e.path) for e in entries if e.is_file() and e.name.lower().endswith(suffixes)}


def index_by_stem(ground_truth: dict[str, Path]) -> dict[str, Path]:
    """stem -> the ground-truth file of that stem: `.jpg` first (the official rule), then `.png`, `.jpeg`; an
    exact lower-case extension before another spelling of it."""
    def rank(name: str) -> tuple[int, bool]:
        suffix = name[name.rfind("."):]
        return GT_SUFFIXES.index(suffix.lower()), suffix != suffix.lower()

    by_stem: dict[str, Path] = {}
    for name in sorted(ground_truth, key=rank, reverse=True):  # the best spelling is written last and wins
        by_stem[name[:name.rfind(".")]] = ground_truth[name]
    return by_stem


def single_candidates(name: str) -> list[tuple[str, str]]:
    """Every (source stem, target stem) reading of `<from>_2_<to>_vis.<ext>`, the official one first; empty
    if the official reading does not fit. More than one when a stem itself contains `_2_`.

    The official reading is `name.split('_2_')[-1]` cut at `_vis`: after the last `_2_` of a left-to-right,
    non-overlapping scan (in `a_2_2_b` that is the one at 1, target `2_b`); the others follow, rightmost first.
    """
    stem = name.rpartition(".")[0]
    scanned = [m.start() for m in re.finditer("_2_", stem)]
    if not scanned:
        return []
    every = [i for i in range(len(stem)) if stem.startswith("_2_", i)]
    readings = []
    for at in [scanned[-1]] + [i for i in reversed(every) if i != scanned[-1]]:
        source, rest = stem[:at], stem[at + 3:]
        target = rest.split("_vis")[0]
        if source and target and "_vis" in rest:
            readings.append((source, target))
        elif not readings:  # the official reading does not fit: the name is not a result name
            return []
    return readings


def parse_single(name: str) -> tuple[str, str] | None:
    """(source stem, target stem) of `<from>_2_<to>_vis.<ext>` by the official rule, or None if the name does
    not fit."""
    readings = single_candidates(name)
    return readings[0] if readings else None


def parse_panel(name: str) -> tuple[str, str] | None:
    """(source name, target name) of `<from>___<to>_vis.jpg`: drop 8 characters, split on `___`."""
    if name[-8:-4] != "_vis":
        return None
    parts = name[:-8].split("___")
    return (parts[0], parts[1]) if len(parts) == 2 and all(parts) else None


def expected_result_stems(pairs: list[tuple[str, str]], layout: Layout) -> dict[str, tuple[str, str]]:
    """Result-file stem (no extension) -> (source, target) for the rows of a pair CSV.

    InputError when two different rows give one result name (`a_2_b` + `c` and `a` + `b_2_c`): one file
    cannot hold both.
    """
    wanted: dict[str, tuple[str, str]] = {}
    for row, (a, b) in enumerate(pairs, start=1):
        stem = f"{Path(a).stem}_2_{Path(b).stem}_vis" if layout.name == "single" else f"{a}___{b}_vis"
        if stem in wanted and wanted[stem] != (a, b):
            first = wanted[stem]
            raise InputError(f"pair file row {row} ({a} -> {b}) and the row {first[0]} -> {first[1]} both name "
                             f"the result {stem}.jpg; rename one image or drop one row")
        wanted[stem] = (a, b)
    return wanted


def _single_target(path: Path, readings: list[tuple[str, str]], row: tuple[str, str] | None,
                   by_stem: dict[str, Path], matching: Matching) -> tuple[str, Path] | None:
    """(source stem, target file) of one single-layout result, or None after noting why in `matching`."""
    if row is not None:  # the pair file names the target: no guessing
        readings = [(Path(row[0]).stem, Path(row[1]).stem)]
    found = [(source, by_stem[target]) for source, target in readings if target in by_stem]
    if not found:
        matching.unmatched.append(f"{readings[0][1]}.jpg (for {path.name})")
        return None
    if len(found) > 1:
        names = " or ".join(target.name for _, target in found)
        matching.ambiguous.append(f"{path.name} (target {names})")
        return None
    return found[0]


def match(generated_dir: str | os.PathLike, gt_dir: str | os.PathLike | None, layout: str = "single",
          pairs: list[tuple[str, str]] | None = None, allow_missing: bool = False) -> Matching:
    """Pair every result file with its target; InputError on any mismatch unless `allow_missing`.

    `pairs` (rows of a pair CSV, optional) makes the check two-sided: every row needs a result file and
    every result file a row; a row also names its target exactly. With `allow_missing` the problems are
    skipped and listed in the Matching.
    """
    if layout not in LAYOUTS:
        raise InputError(f"unknown --layout {layout!r}; available: {', '.join(LAYOUTS)}")
    spec = LAYOUTS[layout]
    generated_dir = Path(generated_dir)
    files = list_result_files(generated_dir)
    if not files:
        raise InputError(f"no generated images (*.jpg, *.png) in {generated_dir}")
    by_stem = None
    if spec.target_tile is None:
        if gt_dir is None:
            raise InputError("--gt_path is required with --layout single")
        by_stem = index_by_stem(index_folder(Path(gt_dir)))
        if not by_stem:
            raise InputError(f"no ground-truth images (*.jpg, *.png) in {gt_dir}")
    matching = Matching(spec, [], len(files))
    wanted = expected_result_stems(pairs, spec) if pairs is not None else None
    seen_stems = set()
    for rank, path in enumerate(files):
        readings = single_candidates(path.name) if by_stem is not None else [parse_panel(path.name)]
        if not readings or readings[0] is None:
            matching.unparsable.append(path.name)
            continue
        row = None
        if wanted is not None:
            stem = path.name.rpartition(".")[0]
            if stem not in wanted:
                matching.not_in_pairs.append(path.name)
                continue
            seen_stems.add(stem)
            row = wanted[stem]
        if by_stem is None:
            source, target = readings[0]
            matching.pairs.append(Pair(path, path, source, target, rank))
            continue
        found = _single_target(path, readings, row, by_stem, matching)
        if found is not None:
            matching.pairs.append(Pair(path, found[1], found[0], found[1].name, rank))
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
    if matching.ambiguous:
        problems.append(f"{len(matching.ambiguous)} of {total} generated names fit two targets in {gt_dir} "
                        f"(a stem holds '_2_'); pass --pairs to say which: {_names(matching.ambiguous)}")
    if matching.not_generated:
        problems.append(f"{len(matching.not_generated)} rows of the pair file have no generated image; first: "
                        f"{_names(matching.not_generated)}")
    if matching.not_in_pairs:
        problems.append(f"{len(matching.not_in_pairs)} generated images are not rows of the pair file; first: "
                        f"{_names(matching.not_in_pairs)}")
    if problems and not allow_missing:
        raise InputError("; ".join(problems) + "; pass --allow_missing to skip them (they are listed in the report)")
    if not matching.pairs:
        raise InputError(f"no generated image in {generated_dir} could be paired with a target")
