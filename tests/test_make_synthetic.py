"""Synthetic datasets: official layout and CSV syntax, real parsers, determinism, disjoint splits, safe writes."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data.annotations import read_annotations, read_pairs
from data import synthetic_build, synthetic_render
from data.pairs import fashion_identity, fashion_pairs, market_identity, market_pairs
from data.pose_bank import BANK_DIR, BANK_FILES, FASHION_VIEWS, load_pose_bank
from data.synthetic_build import make_synthetic_dataset
from data.synthetic_render import flip_pose
from datasets.make_synthetic import main
from datasets.pose_bank import to_fashion_176
from datasets.prepare_fashion import flat_to_raw, raw_to_flat
from util.io import InputError

ROW = re.compile(r"^(\S+\.jpg): \[(-?\d+(, -?\d+){17})\]: \[(-?\d+(, -?\d+){17})\]$")
NAMES = {"market": re.compile(r"^\d{4}_c[1-6]s[1-6]_\d{6}_\d{2}\.jpg$"),
         "fashion": re.compile(r"^fashion(WOMEN|MEN)[A-Za-z_]+id\d{10}_(1front|2side|3back|4full|7additional)\.jpg$")}
SIZES = {"market": (64, 128), "fashion": (176, 256)}  # PIL (W, H)
CSVS = {"market": ("market-annotation-{}.csv", "market-pairs-{}.csv"),
        "fashion": ("fasion-resize-annotation-{}.csv", "fasion-resize-pairs-{}.csv")}
IDENTITY = {"market": market_identity, "fashion": fashion_identity}
PEOPLE = {"market": 10, "fashion": 8}


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module", params=["market", "fashion"])
def dataset(request, tmp_path_factory):
    fmt = request.param
    out = tmp_path_factory.mktemp(fmt) / "data"
    summary = make_synthetic_dataset(out, fmt, people=PEOPLE[fmt], seed=3)
    return fmt, out, summary


def test_layout_is_exactly_the_official_one(dataset):
    fmt, out, summary = dataset
    expected = {"train", "test"} | {pattern.format(split) for pattern in CSVS[fmt] for split in ("train", "test")}
    expected |= {"query"} if fmt == "market" else set()  # Market's re-id queries (no CSV)
    assert {p.name for p in out.iterdir()} == expected
    assert [p.name for p in out.parent.iterdir()] == ["data"]  # no temp folder left beside it
    assert summary["train_identities"] + summary["test_identities"] == PEOPLE[fmt]
    assert summary["train_images"] == len(list((out / "train").iterdir()))
    assert summary["test_pairs"] == len(read_pairs(out / CSVS[fmt][1].format("test")))


def test_csv_rows_have_the_reference_syntax_and_parse(dataset):
    fmt, out, _ = dataset
    h, w = SIZES[fmt][1], SIZES[fmt][0]
    for split in ("train", "test"):
        ann_path, pair_path = (out / p.format(split) for p in CSVS[fmt])
        lines = ann_path.read_text().splitlines()
        assert lines[0] == "name:keypoints_y:keypoints_x"
        assert all(ROW.match(line) for line in lines[1:]), [l for l in lines[1:] if not ROW.match(l)][:1]
        annotations = read_annotations(ann_path)
        assert set(annotations) == {p.name for p in (out / split).iterdir()}
        for keypoints in annotations.values():
            visible = (keypoints >= 0).all(axis=1)
            assert ((keypoints[~visible] == -1).all())  # missing means -1 in both lists
            assert (keypoints[visible, 0] < h).all() and (keypoints[visible, 1] < w).all()
        assert pair_path.read_text().splitlines()[0] == "from,to"
        pairs = read_pairs(pair_path)
        assert pairs, "every split must have pairs"
        for source, target in pairs:
            assert source != target and IDENTITY[fmt](source) == IDENTITY[fmt](target)
            assert (out / split / source).is_file() and (out / split / target).is_file()
        # the pairs are what data/pairs.py builds from the written annotation file
        rebuilt = market_pairs(annotations) if fmt == "market" else fashion_pairs(annotations)
        assert pairs == rebuilt
        if fmt == "market":  # torso points are kept inside the frame, so every image takes part
            assert {n for pair in pairs for n in pair} == set(annotations)


def test_images_are_jpegs_of_the_official_size_and_names(dataset):
    fmt, out, _ = dataset
    for split in ("train", "test"):
        for path in (out / split).iterdir():
            assert NAMES[fmt].match(path.name), path.name
            with Image.open(path) as image:
                assert image.format == "JPEG" and image.mode == "RGB" and image.size == SIZES[fmt]
            if fmt == "fashion":  # the names map onto the raw DeepFashion tree and back
                assert raw_to_flat(flat_to_raw(path.name)) == path.name


def test_train_and_test_identities_are_disjoint(dataset):
    fmt, out, _ = dataset
    ids = {split: {IDENTITY[fmt](p.name) for p in (out / split).iterdir()} for split in ("train", "test")}
    assert ids["train"] and ids["test"] and not ids["train"] & ids["test"]


def test_every_identity_has_several_images_and_different_poses(dataset):
    fmt, out, summary = dataset
    annotations = read_annotations(out / CSVS[fmt][0].format("train"))
    groups: dict[str, list[np.ndarray]] = {}
    for name, keypoints in annotations.items():
        groups.setdefault(IDENTITY[fmt](name), []).append(keypoints)
    assert all(len(g) == summary["images_per_person"] for g in groups.values())
    for poses in groups.values():
        assert not np.array_equal(poses[0], poses[1])
        assert all((k[[1, 2, 5, 8, 11]] >= 0).all() for k in poses)  # neck, shoulders, hips always inside


def test_market_query_images_have_a_match_in_another_camera(dataset):
    fmt, out, summary = dataset
    if fmt != "market":
        assert "query_images" not in summary and not (out / "query").exists()
        return
    query = sorted(p.name for p in (out / "query").iterdir())
    test = sorted(p.name for p in (out / "test").iterdir())
    test_ids = {market_identity(n) for n in test}
    assert summary["query_images"] == len(query) and len(test_ids) <= len(query) <= 2 * len(test_ids)
    assert {market_identity(n) for n in query} == test_ids and not set(query) & set(test)
    for name in query:
        assert NAMES["market"].match(name), name
        with Image.open(out / "query" / name) as image:
            assert image.format == "JPEG" and image.size == SIZES["market"]
        cam = name.split("_c")[1][0]
        assert any(market_identity(t) == market_identity(name) and t.split("_c")[1][0] != cam for t in test)


def test_query_images_leave_train_and_test_bytes_unchanged(tmp_path, monkeypatch):
    """The query images come from their own random streams: without them, train/test are the same bytes."""
    make_synthetic_dataset(tmp_path / "a", "market", people=4, seed=5, images_per_person=3)
    monkeypatch.setattr(synthetic_build, "_write_market_query", lambda folder, *args: folder.mkdir() or 0)
    make_synthetic_dataset(tmp_path / "b", "market", people=4, seed=5, images_per_person=3)
    assert not any((tmp_path / "b" / "query").iterdir()) and any((tmp_path / "a" / "query").iterdir())
    for root in (tmp_path / "a", tmp_path / "b"):
        __import__("shutil").rmtree(root / "query")
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")


def test_the_person_is_drawn_where_the_keypoints_say():
    _, poses = load_pose_bank("market")
    pose = poses[0].astype(float)
    pose[(poses[0] < 0).any(axis=1)] = np.nan
    look = synthetic_render.random_look(np.random.default_rng(0))
    look = synthetic_render.Look(**{**look.__dict__, "stripes": "none", "bag": None, "long_sleeves": False,
                                  "shirt": (200, 30, 30), "skin": (30, 200, 30), "hair": (30, 30, 200)})
    s = synthetic_render.SUPERSAMPLE
    canvas = Image.new("RGB", (64 * s, 128 * s), (128, 128, 128))
    synthetic_render.render_person(canvas, pose, look)
    image = np.asarray(canvas.resize((64, 128), Image.BOX)).astype(int)
    waist = ((pose[1] + pose[8] + pose[11]) / 3).astype(int)  # between neck and hips: shirt
    assert np.abs(image[waist[0], waist[1]] - (200, 30, 30)).max() < 8
    for wrist in (4, 7):  # bare hands at the wrists
        if not np.isnan(pose[wrist, 0]):
            y, x = pose[wrist].astype(int)
            assert np.abs(image[y, x] - (30, 200, 30)).max() < 8
    drawn = np.abs(image - 128).sum(axis=2) > 0
    assert 0.15 < drawn.mean() < 0.7  # a person that fills much, not all, of the frame
    assert not drawn[:, :2].all() and not drawn[-2:, :].all()


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path):
    first = make_synthetic_dataset(tmp_path / "a", "market", people=4, seed=11, images_per_person=3)
    make_synthetic_dataset(tmp_path / "b", "market", people=4, seed=11, images_per_person=3)
    make_synthetic_dataset(tmp_path / "c", "market", people=4, seed=12, images_per_person=3)
    assert first["train_images"] == 9 and first["test_images"] == 3
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")
    assert tree_digest(tmp_path / "a") != tree_digest(tmp_path / "c")


def test_refuses_a_non_empty_out_unless_overwrite(tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty.*--overwrite"):
        make_synthetic_dataset(out, "fashion", people=3, seed=0, images_per_person=2)
    assert (out / "keep.txt").read_text() == "mine"
    make_synthetic_dataset(out, "fashion", people=3, seed=0, images_per_person=2, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "fasion-resize-pairs-train.csv").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_an_empty_out_folder_is_filled(tmp_path):
    (tmp_path / "data").mkdir()
    summary = make_synthetic_dataset(tmp_path / "data", "market", people=3, seed=0, images_per_person=2)
    assert summary["train_images"] == 4 and (tmp_path / "data" / "test").is_dir()


def test_a_failed_run_leaves_nothing_behind(tmp_path, monkeypatch):
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) > 3:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    real = synthetic_build.render_image
    monkeypatch.setattr(synthetic_build, "render_image", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        make_synthetic_dataset(tmp_path / "data", "market", people=4, seed=0, images_per_person=2)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, message", [
    (["--format", "market", "--people", "1"], "no train or no test"),
    (["--format", "market", "--images_per_person", "1"], "images_per_person must be >= 2"),
    (["--format", "fashion", "--images_per_person", "6"], "one image per view"),
    (["--format", "market", "--test_fraction", "1.5"], "test_fraction"),
    (["--format", "market", "--seed", "-1"], "seed"),
])
def test_cli_reports_bad_arguments_without_traceback(tmp_path, capsys, argv, message):
    assert main(argv + ["--out", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "data").exists()


def test_cli_writes_and_summarises(tmp_path, capsys):
    assert main(["--format", "fashion", "--out", str(tmp_path / "f"), "--people", "4", "--seed", "1",
                 "--images_per_person", "3", "--test_fraction", "0.5"]) == 0
    assert "train 6 images / 2 identities" in capsys.readouterr().out
    assert len(list((tmp_path / "f" / "test").iterdir())) == 6


def test_pose_bank_is_small_real_and_in_the_target_frames():
    assert sum((BANK_DIR / f).stat().st_size for f in BANK_FILES.values()) < 150_000
    names, poses = load_pose_bank("market")
    assert poses.shape[1:] == (18, 2) and len(names) >= 200
    assert ((poses >= 0).all(axis=2).sum(axis=1) >= 12).all()
    assert (poses[:, [1, 2, 5, 8, 11]] >= 0).all()
    assert poses[..., 0].max() < 128 and poses[..., 1].max() < 64
    names, poses = load_pose_bank("fashion")
    assert {n.rsplit("_", 1)[1][:-4] for n in names} == set(FASHION_VIEWS)
    assert (poses[:, [1, 2, 5, 8, 11]] >= 0).all() and poses[..., 1].max() < 176


def test_pose_bank_rebuilds_identically_from_the_shared_files(tmp_path):
    shared = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "annotations"
    if not (shared / "market-annotation-train.csv").is_file():
        pytest.skip("shared annotation files absent")
    from datasets.pose_bank import build_pose_bank
    build_pose_bank(shared, tmp_path)
    for name in BANK_FILES.values():
        assert (tmp_path / name).read_bytes() == (BANK_DIR / name).read_bytes()


def test_fashion_conversion_and_flip_follow_the_reference():
    keypoints = np.full((18, 2), -1, dtype=np.int64)
    keypoints[0] = (10, 39)  # falls off the crop
    keypoints[1] = (20, 100)
    keypoints[2] = (30, 215)
    keypoints[5] = (30, 216)  # x_176 = 176: outside
    converted = to_fashion_176(keypoints)
    assert converted[0].tolist() == [-1, -1] and converted[1].tolist() == [20, 60]
    assert converted[2].tolist() == [30, 175] and converted[5].tolist() == [-1, -1]
    flipped = flip_pose(converted, 176)
    assert flipped[5].tolist() == [30, 0] and flipped[2].tolist() == [-1, -1] and flipped[1].tolist() == [20, 115]
