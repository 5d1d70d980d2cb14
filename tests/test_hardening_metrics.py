"""Issue 17 (metrics) and issue 16 (one flag for the DeepFashion frame): the official `_2_` split rule, upper-case
extensions, reports never replaced without --overwrite. Every refusal: exit 2, one line naming the culprit, and
nothing on disk changed."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from metrics import metrics as cli
from metrics.pairing import match, parse_single, single_candidates
from tests.disk_checks import refused as refused_by

FAST = ["--num_workers", "0", "--torch_threads", "1", "--metrics", "ssim,psnr"]
A, B, C = "0001_c1s1_000100_01", "0001_c2s1_000200_01", "0002_c1s1_000300_01"


def save(path: Path, seed: int, size=(128, 64)) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(array).save(path)
    return array


def folders(root: Path) -> tuple[Path, Path]:
    """A two-pair Market-sized set in the single layout."""
    for i, name in enumerate((A, B)):
        save(root / "gt" / f"{name}.jpg", i)
    save(root / "gen" / f"{A}_2_{B}_vis.jpg", 10)
    save(root / "gen" / f"{B}_2_{A}_vis.jpg", 11)
    return root / "gt", root / "gen"


def argv(root: Path, *extra: str) -> list[str]:
    return [f"--gt_path={root / 'gt'}", f"--distorated_path={root / 'gen'}", f"--name={root / 'out' / 'run'}",
            "--market", *FAST, *extra]


def refused(root: Path, args: list[str], capsys, *culprits: str) -> str:
    return refused_by(root, cli.main, args, capsys, *culprits)


# --- the official split rule ------------------------------------------------------------------------------

def test_split_rule_is_the_official_one():
    # DPTN / GFLA: name.split('_2_')[-1].split('_vis')[0] + '.jpg'
    for name in (f"{A}_2_{B}_vis.jpg", "x_2_y_2_z_vis.png", "a_vis_2_b_vis_more_vis.JPG", "a_2_2_b_vis.jpg",
                 "x_2__2_y_vis.jpg"):
        official = name.split("_2_")[-1].split("_vis")[0]
        assert parse_single(name)[1] == official
    assert single_candidates("a_2_b_2_c_vis.jpg") == [("a_2_b", "c"), ("a", "b_2_c")]
    assert parse_single("a_2_b.jpg") is None and parse_single("stray.jpg") is None


def test_target_holding_2_is_found_by_the_ground_truth_folder(tmp_path):
    """`s_2_t_2_u_vis.jpg` where only `t_2_u.jpg` exists: the official rule looks for u.jpg and skips it."""
    save(tmp_path / "gt" / "t_2_u.jpg", 0, (16, 8))
    save(tmp_path / "gt" / "s.jpg", 1, (16, 8))
    save(tmp_path / "gen" / "s_2_t_2_u_vis.jpg", 2, (16, 8))
    pair, = match(tmp_path / "gen", tmp_path / "gt").pairs
    assert (pair.source_name, pair.target_name) == ("s", "t_2_u.jpg")
    (tmp_path / "gt" / "t_2_u.jpg").rename(tmp_path / "gt" / "u.jpg")  # now only the official reading fits
    pair, = match(tmp_path / "gen", tmp_path / "gt").pairs
    assert (pair.source_name, pair.target_name) == ("s_2_t", "u.jpg")


def test_ambiguous_name_is_refused_and_a_pair_file_decides(tmp_path, capsys):
    for i, name in enumerate(("s", "t_2_u", "u", "s_2_t")):
        save(tmp_path / "gt" / f"{name}.jpg", i)
    save(tmp_path / "gen" / "s_2_t_2_u_vis.jpg", 9)
    args = [f"--gt_path={tmp_path / 'gt'}", f"--distorated_path={tmp_path / 'gen'}",
            f"--name={tmp_path / 'out'}", "--market", *FAST]
    refused(tmp_path, args, capsys, "s_2_t_2_u_vis.jpg", "u.jpg or t_2_u.jpg", "--pairs")
    (tmp_path / "pairs.csv").write_text("from,to\ns.jpg,t_2_u.jpg\n")
    assert cli.main(args + ["--pairs", str(tmp_path / "pairs.csv")]) == 0
    row = (tmp_path / "out_per_image.csv").read_text().splitlines()[1]
    assert row.startswith("s_2_t_2_u_vis.jpg,t_2_u.jpg,")


def test_pair_rows_that_name_one_result_twice_are_refused(tmp_path, capsys):
    gt, gen = folders(tmp_path)
    (tmp_path / "pairs.csv").write_text("from,to\na_2_b.jpg,c.jpg\na.jpg,b_2_c.jpg\n")
    refused(tmp_path, argv(tmp_path, "--pairs", str(tmp_path / "pairs.csv")), capsys,
            "row 2 (a.jpg -> b_2_c.jpg)", "a_2_b.jpg -> c.jpg")


def test_upper_case_extensions_are_scored_in_listing_groups(tmp_path):
    save(tmp_path / "gt" / f"{A}.JPG", 0)
    save(tmp_path / "gt" / f"{B}.jpg", 1)
    save(tmp_path / "gen" / f"{A}_2_{B}_vis.JPG", 2)
    save(tmp_path / "gen" / f"{B}_2_{A}_vis.PNG", 3)
    matching = match(tmp_path / "gen", tmp_path / "gt")
    assert matching.result_files == 2 and not matching.skipped()
    assert [(p.generated.name, p.target_name) for p in matching.pairs] == [
        (f"{A}_2_{B}_vis.JPG", f"{B}.jpg"), (f"{B}_2_{A}_vis.PNG", f"{A}.JPG")]
    ranks = {p.generated.suffix: p.listing_rank for p in matching.pairs}
    assert ranks == {".JPG": 0, ".PNG": 1}  # *.jpg before *.png, as the official glob


def test_missing_target_message_is_one_line(tmp_path, capsys):
    folders(tmp_path)
    save(tmp_path / "gen" / f"{A}_2_{C}_vis.jpg", 5)
    refused(tmp_path, argv(tmp_path), capsys, f"{C}.jpg", "--allow_missing")


# --- existing reports -------------------------------------------------------------------------------------

@pytest.mark.parametrize("existing", ["run.json", "run.csv", "run_per_image.csv"])
def test_existing_report_is_not_replaced_without_overwrite(tmp_path, capsys, existing):
    folders(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / existing).write_text("an earlier run\n")
    refused(tmp_path, argv(tmp_path), capsys, str(tmp_path / "out" / existing), "--overwrite")


def test_overwrite_replaces_every_report(tmp_path):
    folders(tmp_path)
    assert cli.main(argv(tmp_path)) == 0
    (tmp_path / "out" / "run.csv").write_text("stale\n")
    assert cli.main(argv(tmp_path, "--overwrite")) == 0
    assert (tmp_path / "out" / "run.csv").read_text().startswith("metric,value")
    assert json.loads((tmp_path / "out" / "run.json").read_text())["provenance"]["padding"] == "none"
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]


def test_name_under_a_file_is_refused(tmp_path, capsys):
    folders(tmp_path)
    (tmp_path / "out").write_text("a file, not a folder\n")
    refused(tmp_path, argv(tmp_path), capsys, f"{tmp_path / 'out'} is a file")


def test_name_whose_report_is_a_folder_is_refused(tmp_path, capsys):
    folders(tmp_path)
    (tmp_path / "out" / "run.json").mkdir(parents=True)
    refused(tmp_path, argv(tmp_path, "--overwrite"), capsys, f"{tmp_path / 'out' / 'run.json'} is a folder")


# --- one flag for the DeepFashion frame --------------------------------------------------------------------

def fashion(root: Path) -> list[str]:
    names = [f"fashionWOMENDressesid{i:010d}_1front" for i in range(2)]
    for i, name in enumerate(names):
        save(root / "gt" / f"{name}.jpg", i, (256, 176))
    save(root / "gen" / f"{names[0]}_2_{names[1]}_vis.jpg", 7, (256, 176))
    return [f"--gt_path={root / 'gt'}", f"--distorated_path={root / 'gen'}", f"--name={root / 'out'}", *FAST]


@pytest.mark.parametrize("frame,alias,padded", [("pad256", "--pad_fashion_256", True),
                                                ("native", "--no_pad_fashion_256", False)])
def test_fashion_frame_speaks_train_and_test_vocabulary(tmp_path, frame, alias, padded):
    base = fashion(tmp_path)
    assert cli.main(base + ["--protocol", "clean", "--fashion_frame", frame]) == 0
    ours = json.loads((tmp_path / "out.json").read_text())
    assert ours["provenance"]["padding"].startswith("white") == padded
    assert cli.main(base + ["--protocol", "clean", alias, "--overwrite"]) == 0
    alias_report = json.loads((tmp_path / "out.json").read_text())
    assert alias_report["results"]["ssim"]["value"] == ours["results"]["ssim"]["value"]
    assert cli.build_parser().parse_args(["--distorated_path", "x", alias]).fashion_frame == frame


def test_fashion_frame_stretch256_is_refused(tmp_path, capsys):
    refused(tmp_path, fashion(tmp_path) + ["--fashion_frame", "stretch256"], capsys, "--fashion_frame stretch256")


def test_market_with_pad256_is_refused(tmp_path, capsys):
    folders(tmp_path)
    refused(tmp_path, argv(tmp_path, "--fashion_frame", "pad256"), capsys, "--market", "pad256")
