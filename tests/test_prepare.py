"""Pair lists (the reference Market construction, reproduced on the shared files) and the preparation scripts."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data import pairs as dp
from data.annotations import read_annotations, read_pairs, write_annotations, write_pairs
from datasets import make_pairs as mp
from datasets import prepare_fashion as pf
from datasets import prepare_market as pm
from util.io import InputError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "annotations"
needs_shared = pytest.mark.skipif(not (SHARED / "market-annotation-train.csv").is_file(),
                                  reason="shared annotation files absent")


def pose(visible: list[int]) -> np.ndarray:
    keypoints = np.full((18, 2), -1, dtype=np.int64)
    for i in visible:
        keypoints[i] = (10 + i, 5 + i)
    return keypoints


TORSO = [1, 2, 5, 8, 11]


# ---------------------------------------------------------------- make_pairs


@needs_shared
def test_market_train_pairs_have_the_standard_count():
    pairs = dp.make_pairs(SHARED / "market-annotation-train.csv", "market")
    assert len(pairs) == 263_632
    assert len(set(pairs)) == len(pairs)


@needs_shared
def test_market_test_pairs_reproduce_the_shared_file_row_for_row(tmp_path):
    candidates = dp.market_pairs(read_annotations(SHARED / "market-annotation-test.csv"))
    assert len(candidates) == 257_198
    assert mp.main(["--annotation", str(SHARED / "market-annotation-test.csv"), "--out", str(tmp_path / "p.csv"),
                    "--format", "market", "--test_sample", "12000"]) == 0
    assert (tmp_path / "p.csv").read_bytes() == (SHARED / "market-pairs-test.csv").read_bytes()


def test_market_pairs_follow_the_reference_rules():
    annotations = {
        "0002_c1_a.jpg": pose(TORSO), "0001_c1_a.jpg": pose(TORSO), "0002_c2_b.jpg": pose(TORSO),
        "0001_c2_b.jpg": pose([1, 2, 5, 8]),  # a hip missing: dropped
        "0001_c3_c.jpg": pose(TORSO + [0]), "0002_c3_c.jpg": pose(TORSO),
        "-1_c1_x.jpg": pose(TORSO), "-1_c2_y.jpg": pose(TORSO),  # junk
        "0000_c1_x.jpg": pose(TORSO), "0000_c2_y.jpg": pose(TORSO),  # distractors
        "0003_c1_a.jpg": pose(TORSO),  # alone: no pair
    }
    pairs = dp.market_pairs(annotations)
    # identities in order of first appearance (0002 before 0001), permutations in file order
    assert pairs == [("0002_c1_a.jpg", "0002_c2_b.jpg"), ("0002_c1_a.jpg", "0002_c3_c.jpg"),
                     ("0002_c2_b.jpg", "0002_c1_a.jpg"), ("0002_c2_b.jpg", "0002_c3_c.jpg"),
                     ("0002_c3_c.jpg", "0002_c1_a.jpg"), ("0002_c3_c.jpg", "0002_c2_b.jpg"),
                     ("0001_c1_a.jpg", "0001_c3_c.jpg"), ("0001_c3_c.jpg", "0001_c1_a.jpg")]
    assert dp.market_pairs(annotations, min_keypoints=6) == []  # only 0001_c3_c has 6 visible: no partner


def test_fashion_pairs_use_item_and_photo_set_and_min_keypoints():
    a, b, c = (f"fashionWOMENTees_Tanksid0000290606_{v}.jpg" for v in ("1front", "2side", "3back"))
    other = "fashionWOMENTees_Tanksid0000290607_1front.jpg"  # same item, other photo set: other identity
    assert dp.fashion_identity(a) == "fashionWOMENTees_Tanksid0000290606"
    annotations = {a: pose(list(range(10))), other: pose(list(range(10))), b: pose(list(range(5))),
                   c: pose(list(range(18)))}
    assert dp.fashion_pairs(annotations) == [(a, c), (c, a)]  # b has 5 < 6 visible
    assert len(dp.fashion_pairs(annotations, min_keypoints=0)) == 6


def test_sample_pairs_is_pandas_sample_and_checks_its_size():
    pairs = [(f"{i}", f"{i + 1}") for i in range(50)]
    assert dp.sample_pairs(pairs, 5, seed=0) == dp.sample_pairs(pairs, 5, seed=0)
    assert dp.sample_pairs(pairs, 5, seed=0) != dp.sample_pairs(pairs, 5, seed=1)
    assert sorted(dp.sample_pairs(pairs, 50)) == sorted(pairs)
    with pytest.raises(InputError, match="only 50 candidate pairs"):
        dp.sample_pairs(pairs, 51)


def test_make_pairs_cli_refuses_to_overwrite_and_reports_errors(tmp_path, capsys):
    ann = tmp_path / "a.csv"
    write_annotations(ann, {"0001_c1_a.jpg": pose(TORSO), "0001_c2_b.jpg": pose(TORSO)})
    out = tmp_path / "p.csv"
    assert mp.main(["--annotation", str(ann), "--out", str(out), "--format", "market"]) == 0
    assert read_pairs(out) == [("0001_c1_a.jpg", "0001_c2_b.jpg"), ("0001_c2_b.jpg", "0001_c1_a.jpg")]
    assert mp.main(["--annotation", str(ann), "--out", str(out), "--format", "market"]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert mp.main(["--annotation", str(tmp_path / "none.csv"), "--out", str(tmp_path / "q.csv"),
                    "--format", "market"]) == 2
    assert capsys.readouterr().err.startswith("error: annotation file")
    assert mp.main(["--annotation", str(ann), "--out", str(tmp_path / "q.csv"), "--format", "fashion"]) == 2
    assert "no pairs" in capsys.readouterr().err and not (tmp_path / "q.csv").exists()


# ---------------------------------------------------------------- prepare_market

MARKET_TRAIN = ["0002_c1s1_000451_03.jpg", "0002_c2s1_000301_01.jpg", "0007_c1s6_028546_01.jpg"]
MARKET_TEST = ["-1_c1s1_000401_03.jpg", "0001_c1s1_001051_00.jpg"]


def fake_market(root: Path) -> Path:
    raw = root / "Market-1501-v15.09.15"
    for folder, names in (("bounding_box_train", MARKET_TRAIN), ("bounding_box_test", MARKET_TEST),
                          ("query", ["0001_c2s1_000301_00.jpg"])):
        (raw / folder).mkdir(parents=True)
        for i, name in enumerate(names):
            Image.new("RGB", (64, 128), (i * 40, 10, 10)).save(raw / folder / name)
    (raw / "bounding_box_train" / "Thumbs.db").write_bytes(b"junk")
    return raw


def test_prepare_market_copies_both_splits_from_a_nested_download(tmp_path, capsys):
    raw = fake_market(tmp_path / "download")
    out = tmp_path / "market"
    assert pm.main(["--raw", str(tmp_path / "download"), "--out", str(out)]) == 0
    assert "copied 3 train and 2 test images" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "train").iterdir()) == sorted(MARKET_TRAIN)
    assert sorted(p.name for p in (out / "test").iterdir()) == sorted(MARKET_TEST)
    assert (out / "train" / MARKET_TRAIN[0]).read_bytes() == (raw / "bounding_box_train" / MARKET_TRAIN[0]).read_bytes()
    assert not (out / "train" / MARKET_TRAIN[0]).is_symlink()


def test_prepare_market_links_and_never_overwrites_without_the_flag(tmp_path, capsys):
    raw = fake_market(tmp_path)
    out = tmp_path / "market"
    summary = pm.prepare_market(raw, out, link=True)
    assert summary["train"] == 3 and summary["linked"]
    link = out / "test" / MARKET_TEST[1]
    assert link.is_symlink() and link.resolve() == (raw / "bounding_box_test" / MARKET_TEST[1]).resolve()
    assert pm.main(["--raw", str(raw), "--out", str(out)]) == 2
    assert "already exist" in capsys.readouterr().err
    assert link.is_symlink()  # untouched
    assert pm.main(["--raw", str(raw), "--out", str(out), "--overwrite"]) == 0
    assert not link.is_symlink() and link.is_file()


@pytest.mark.parametrize("damage, message", [
    (lambda raw: __import__("shutil").rmtree(raw / "bounding_box_test"), "no bounding_box_test/"),
    (lambda raw: [p.unlink() for p in (raw / "bounding_box_train").iterdir()], "holds no .jpg images"),
])
def test_prepare_market_fails_loudly_on_a_missing_or_empty_folder(tmp_path, capsys, damage, message):
    raw = fake_market(tmp_path / "raw")
    damage(raw)
    assert pm.main(["--raw", str(tmp_path / "raw"), "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # no empty folders


def test_prepare_market_copies_the_query_folder_for_re_id(tmp_path, capsys):
    raw = fake_market(tmp_path / "raw")
    out = tmp_path / "market"
    assert pm.main(["--raw", str(tmp_path / "raw"), "--out", str(out)]) == 0
    assert "and 1 query images" in capsys.readouterr().out
    assert [p.name for p in (out / "query").iterdir()] == ["0001_c2s1_000301_00.jpg"]
    assert (out / "query" / "0001_c2s1_000301_00.jpg").read_bytes() == \
        (raw / "query" / "0001_c2s1_000301_00.jpg").read_bytes()
    assert pm.main(["--raw", str(tmp_path / "raw"), "--out", str(out)]) == 2  # query files are refused too
    (out / "train").rename(tmp_path / "moved")
    (out / "test").rename(tmp_path / "moved2")
    assert pm.main(["--raw", str(tmp_path / "raw"), "--out", str(out)]) == 2
    assert "already exist (first: " + str(out / "query") in capsys.readouterr().err


def test_prepare_market_without_query_says_so(tmp_path, capsys):
    raw = fake_market(tmp_path / "raw")
    __import__("shutil").rmtree(raw / "query")
    summary = pm.prepare_market(raw, tmp_path / "out")
    assert summary["query"] == 0 and not (tmp_path / "out" / "query").exists()
    assert pm.main(["--raw", str(raw), "--out", str(tmp_path / "out2")]) == 0
    assert "has no query/ folder" in capsys.readouterr().out


def test_prepare_market_without_any_market_folder(tmp_path):
    (tmp_path / "raw" / "something").mkdir(parents=True)
    with pytest.raises(InputError, match="no folder with bounding_box_train/ and bounding_box_test/"):
        pm.prepare_market(tmp_path / "raw", tmp_path / "out")


def test_prepare_market_installs_and_checks_the_csvs(tmp_path, capsys):
    raw = fake_market(tmp_path / "raw")
    ann = tmp_path / "ann"
    write_annotations(ann / "market-annotation-train.csv",
                      {name: pose(TORSO) for name in MARKET_TRAIN + ["0007_c2s1_000001_01.jpg"]})
    write_annotations(ann / "market-annotation-test.csv", {name: pose(TORSO) for name in MARKET_TEST})
    write_pairs(ann / "market-pairs-test.csv", [(MARKET_TEST[1], "0001_c6s1_000001_01.jpg")])
    out = tmp_path / "out"
    assert pm.main(["--raw", str(raw), "--out", str(out), "--annotations", str(ann)]) == 0
    report = capsys.readouterr().out
    assert "market-annotation-train.csv: 4 rows, 4 images named, 1 of them absent" in report
    assert "0007_c2s1_000001_01.jpg" in report
    assert "market-pairs-train.csv (built by make_pairs): 4 rows" in report
    assert "market-pairs-test.csv: 1 rows, 2 images named, 1 of them absent" in report
    assert (out / "market-annotation-test.csv").read_bytes() == (ann / "market-annotation-test.csv").read_bytes()
    built = dp.market_pairs(read_annotations(ann / "market-annotation-train.csv"))
    assert read_pairs(out / "market-pairs-train.csv") == built


def test_prepare_market_checks_the_csvs_before_writing(tmp_path):
    raw = fake_market(tmp_path / "raw")
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / "market-annotation-test.csv").write_text("name:keypoints_y:keypoints_x\na.jpg: [1]: [2]\n")
    with pytest.raises(InputError, match="row 1: keypoints_y has 1 values, expected 18"):
        pm.prepare_market(raw, tmp_path / "out", annotations=tmp_path / "ann")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- prepare_fashion

NAME_CASES = [
    ("img/WOMEN/Tees_Tanks/id_00002906/06_2_side.jpg", "fashionWOMENTees_Tanksid0000290606_2side.jpg"),
    ("img/WOMEN/Blouses_Shirts/id_00000693/02_3_back.jpg", "fashionWOMENBlouses_Shirtsid0000069302_3back.jpg"),
    ("img/WOMEN/Dresses/id_00005537/05_4_full.jpg", "fashionWOMENDressesid0000553705_4full.jpg"),
    ("img/MEN/Sweatshirts_Hoodies/id_00000123/01_7_additional.jpg",
     "fashionMENSweatshirts_Hoodiesid0000012301_7additional.jpg"),
    ("img/MEN/Denim/id_00007001/03_1_front.jpg", "fashionMENDenimid0000700103_1front.jpg"),
    ("img/WOMEN/Rompers_Jumpsuits/id_00004321/11_6_flat.jpg", "fashionWOMENRompers_Jumpsuitsid0000432111_6flat.jpg"),
]


@pytest.mark.parametrize("raw, flat", NAME_CASES)
def test_fashion_names_map_both_ways(raw, flat):
    assert pf.raw_to_flat(raw) == flat
    assert pf.flat_to_raw(flat) == raw
    assert pf.raw_to_flat("/data/In-shop/Img/" + raw) == flat  # any prefix


@pytest.mark.parametrize("bad", ["fasionWOMENTeesTanksid0000290606_2side.jpg",  # the older split's spelling
                                 "fashionKIDSTeesid0000290606_2side.jpg", "fashionWOMENTees_Tanksid00002906_2side.jpg",
                                 "0002_c1s1_000451_03.jpg"])
def test_flat_to_raw_rejects_other_names(bad):
    with pytest.raises(InputError, match="not a DeepFashion flat name"):
        pf.flat_to_raw(bad)


@pytest.mark.parametrize("bad", ["img/WOMEN/Tees_Tanks/00002906/06_2_side.jpg",
                                 "img/KIDS/Tees/id_00002906/06_2_side.jpg", "WOMEN/id_00002906/06_2_side.jpg",
                                 "img/WOMEN/Tees_Tanks/id_00002906/06_side.jpg"])
def test_raw_to_flat_rejects_other_paths(bad):
    with pytest.raises(InputError, match="expected <MEN|WOMEN>"):
        pf.raw_to_flat(bad)


def raw_image(size: tuple[int, int]) -> Image.Image:
    """Red margins, a green middle: a correct [40, 216) crop of a 256x256 image is all green."""
    array = np.zeros((size[1], size[0], 3), np.uint8)
    array[:] = (220, 20, 20)
    array[:, 40:216] = (20, 220, 20)
    return Image.fromarray(array)


def fake_fashion(root: Path, train: list[str], test: list[str], sizes: dict[str, tuple[int, int]]) -> Path:
    raw = root / "In-shop Clothes Retrieval Benchmark"
    for name in train + test:
        if name.startswith("fashion"):
            path = raw / "Img" / pf.flat_to_raw(name)
            path.parent.mkdir(parents=True, exist_ok=True)
            raw_image(sizes.get(name, (256, 256))).save(path)
    (raw / "Img" / "img" / "list_eval_partition.txt").write_text("other files are ignored")
    (raw / "train.lst").write_text("\n".join(train) + "\n")
    (raw / "test.lst").write_text("\n".join(test) + "\n")
    return raw


FASHION_TRAIN = [flat for _, flat in NAME_CASES[:3]]
FASHION_TEST = [flat for _, flat in NAME_CASES[3:5]]


def test_prepare_fashion_crops_and_renames(tmp_path, capsys):
    resized_name = FASHION_TEST[1]
    fake_fashion(tmp_path / "raw", FASHION_TRAIN, FASHION_TEST, {resized_name: (375, 550)})
    out = tmp_path / "fashion"
    assert pf.main(["--raw", str(tmp_path / "raw"), "--out", str(out)]) == 0
    report = capsys.readouterr().out
    assert "train: 3 of 3 listed names matched" in report and "test: 2 of 2" in report
    assert "1 raw images were not 256x256" in report and resized_name in report
    assert sorted(p.name for p in (out / "train").iterdir()) == sorted(FASHION_TRAIN)
    for split, names in (("train", FASHION_TRAIN), ("test", FASHION_TEST)):
        for name in names:
            with Image.open(out / split / name) as image:
                assert image.size == (176, 256) and image.format == "JPEG"
                pixels = np.asarray(image).astype(int)
            if name != resized_name:  # exactly the green middle survives the crop
                assert np.abs(pixels - (20, 220, 20)).max() < 40


def test_prepare_fashion_reports_unmatched_and_needs_allow_missing(tmp_path, capsys):
    raw = fake_fashion(tmp_path / "raw", FASHION_TRAIN, FASHION_TEST, {})
    missing = "fashionWOMENSkirtsid0000999901_1front.jpg"
    (raw / "train.lst").write_text("\n".join(FASHION_TRAIN + [missing]) + "\n")
    assert pf.main(["--raw", str(raw), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "1 of 4 names in train.lst have no raw image" in err and missing in err and "--allow_missing" in err
    assert not (tmp_path / "out").exists()
    assert pf.main(["--raw", str(raw), "--out", str(tmp_path / "out"), "--allow_missing"]) == 0
    assert f"train: 3 of 4 listed names matched a raw image; unmatched (first): {missing}" in capsys.readouterr().out


def test_prepare_fashion_fails_when_no_name_matches(tmp_path, capsys):
    # the older split's names ("fasion", no underscores) do not name files of the raw tree
    old_names = ["fasionWOMENTeesTanksid0000290606_2side.jpg"]
    raw = fake_fashion(tmp_path / "raw", FASHION_TRAIN, FASHION_TEST, {})
    (raw / "test.lst").write_text("\n".join(old_names) + "\n")
    assert pf.main(["--raw", str(raw), "--out", str(tmp_path / "out"), "--allow_missing"]) == 2
    err = capsys.readouterr().err
    assert "none of the 1 names in test.lst matched" in err and old_names[0] in err
    assert not (tmp_path / "out").exists()


def test_prepare_fashion_needs_the_raw_tree_and_lists(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no img/ folder with MEN/ or WOMEN/"):
        pf.prepare_fashion(tmp_path / "empty", tmp_path / "out")
    raw = fake_fashion(tmp_path / "raw", FASHION_TRAIN, FASHION_TEST, {})
    (raw / "test.lst").unlink()
    with pytest.raises(InputError, match="test.lst not found"):
        pf.prepare_fashion(raw, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_prepare_fashion_never_overwrites_and_installs_csvs(tmp_path, capsys):
    raw = fake_fashion(tmp_path / "raw", FASHION_TRAIN, FASHION_TEST, {})
    ann = tmp_path / "ann"
    write_annotations(ann / "fasion-resize-annotation-test.csv", {n: pose(TORSO) for n in FASHION_TEST})
    write_pairs(ann / "fasion-resize-pairs-test.csv", [(FASHION_TEST[0], FASHION_TEST[1])])
    out = tmp_path / "out"
    assert pf.main(["--raw", str(raw), "--out", str(out), "--annotations", str(ann)]) == 0
    assert "fasion-resize-annotation-test.csv: 2 rows, 2 images named, all present" in capsys.readouterr().out
    assert (out / "fasion-resize-pairs-test.csv").read_bytes() == (ann / "fasion-resize-pairs-test.csv").read_bytes()
    before = (out / "train" / FASHION_TRAIN[0]).stat().st_mtime_ns
    assert pf.main(["--raw", str(raw), "--out", str(out)]) == 2
    assert "already exist" in capsys.readouterr().err
    assert (out / "train" / FASHION_TRAIN[0]).stat().st_mtime_ns == before
    assert pf.main(["--raw", str(raw), "--out", str(out), "--overwrite"]) == 0
