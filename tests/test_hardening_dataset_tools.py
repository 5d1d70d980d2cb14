"""Issue 17 (dataset tools and scripts): every bad path, count or raw file is one `error:` line naming the
culprit with exit status 2, nothing on disk changes, and a failed run leaves nothing that blocks a rerun
(outputs are staged beside the target and published only when complete)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data.annotations import write_annotations
from datasets import make_canonical_poses, make_pairs, make_synthetic, prepare_fashion, prepare_market, staging
from scripts import bench_data, bench_metrics, bench_train, copy_baseline
from tests.disk_checks import refused
from tests.test_prepare import FASHION_TEST, FASHION_TRAIN, MARKET_TRAIN, TORSO, fake_fashion, fake_market, pose


def annotation(root: Path) -> Path:
    path = root / "ann.csv"
    write_annotations(path, {"0001_c1_a.jpg": pose(TORSO), "0001_c2_b.jpg": pose(TORSO)})
    return path


def pairs_argv(root: Path, out: Path, *extra: str) -> list[str]:
    return ["--annotation", str(annotation(root)), "--out", str(out), "--format", "market", *extra]


# --- make_pairs -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("count", ["0", "-5"])
def test_make_pairs_refuses_a_sample_count_below_one(tmp_path, capsys, count):
    argv = pairs_argv(tmp_path, tmp_path / "p.csv", "--test_sample", count)
    refused(tmp_path, make_pairs.main, argv, capsys, f"--test_sample must be >= 1, got {count}")


def test_make_pairs_refuses_an_out_that_is_a_folder(tmp_path, capsys):
    (tmp_path / "p.csv").mkdir()
    argv = pairs_argv(tmp_path, tmp_path / "p.csv", "--overwrite")
    refused(tmp_path, make_pairs.main, argv, capsys, f"--out {tmp_path / 'p.csv'} is a folder")


def test_make_pairs_refuses_an_out_below_a_file(tmp_path, capsys):
    (tmp_path / "blocker").write_text("a file\n")
    argv = pairs_argv(tmp_path, tmp_path / "blocker" / "p.csv")
    refused(tmp_path, make_pairs.main, argv, capsys, f"{tmp_path / 'blocker'} is a file")


# --- prepare_market ---------------------------------------------------------------------------------------

def test_prepare_market_refuses_an_out_that_is_a_file(tmp_path, capsys):
    fake_market(tmp_path / "raw")
    (tmp_path / "out").write_text("not a folder\n")
    argv = ["--raw", str(tmp_path / "raw"), "--out", str(tmp_path / "out")]
    refused(tmp_path, prepare_market.main, argv, capsys, f"--out {tmp_path / 'out'} is a file")


@pytest.mark.parametrize("damage", ["garbage", "cut"])
def test_prepare_market_corrupt_raw_image_publishes_nothing_and_a_rerun_works(tmp_path, capsys, damage):
    raw = fake_market(tmp_path / "raw")
    bad = raw / "bounding_box_train" / MARKET_TRAIN[1]
    good = bad.read_bytes()
    bad.write_bytes(b"not a jpeg" if damage == "garbage" else good[: len(good) // 2])
    argv = ["--raw", str(tmp_path / "raw"), "--out", str(tmp_path / "out")]
    refused(tmp_path, prepare_market.main, argv, capsys, str(bad))
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))
    bad.write_bytes(good)
    assert prepare_market.main(argv) == 0  # nothing of the failed run is in the way
    assert sorted(p.name for p in (tmp_path / "out" / "train").iterdir()) == sorted(MARKET_TRAIN)


def test_prepare_market_refuses_a_folder_where_an_image_goes(tmp_path, capsys):
    fake_market(tmp_path / "raw")
    (tmp_path / "out" / "train" / MARKET_TRAIN[0]).mkdir(parents=True)
    argv = ["--raw", str(tmp_path / "raw"), "--out", str(tmp_path / "out"), "--overwrite"]
    refused(tmp_path, prepare_market.main, argv, capsys, str(tmp_path / "out" / "train" / MARKET_TRAIN[0]),
            "is a folder")


def test_prepare_market_merges_into_an_existing_dataroot(tmp_path):
    fake_market(tmp_path / "raw")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine\n")
    assert prepare_market.main(["--raw", str(tmp_path / "raw"), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine\n"
    assert sorted(p.name for p in (tmp_path / "out" / "train").iterdir()) == sorted(MARKET_TRAIN)


# --- prepare_fashion --------------------------------------------------------------------------------------

def fashion_argv(tmp_path: Path) -> list[str]:
    return ["--raw", str(tmp_path / "raw"), "--out", str(tmp_path / "out")]


def test_prepare_fashion_corrupt_raw_image_publishes_nothing_and_a_rerun_works(tmp_path, capsys):
    raw = fake_fashion(tmp_path / "raw", FASHION_TRAIN, FASHION_TEST, {})
    bad = raw / "Img" / prepare_fashion.flat_to_raw(FASHION_TEST[1])
    good = bad.read_bytes()
    bad.write_bytes(good[: len(good) // 3])
    refused(tmp_path, prepare_fashion.main, fashion_argv(tmp_path), capsys, str(bad))
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))
    bad.write_bytes(good)
    assert prepare_fashion.main(fashion_argv(tmp_path)) == 0
    assert sorted(p.name for p in (tmp_path / "out" / "test").iterdir()) == sorted(FASHION_TEST)


def test_prepare_fashion_refuses_a_list_that_is_not_utf8(tmp_path, capsys):
    raw = fake_fashion(tmp_path / "raw", FASHION_TRAIN, FASHION_TEST, {})
    (raw / "test.lst").write_bytes(("\n".join(FASHION_TEST) + "\nfashionWOMENCaf\xe9id0000000101_1front.jpg\n")
                                   .encode("latin-1"))
    refused(tmp_path, prepare_fashion.main, fashion_argv(tmp_path), capsys, str(raw / "test.lst"), "line 3")


def test_prepare_fashion_reads_a_list_with_a_bom(tmp_path):
    raw = fake_fashion(tmp_path / "raw", FASHION_TRAIN, FASHION_TEST, {})
    (raw / "train.lst").write_text("\n".join(FASHION_TRAIN) + "\n", encoding="utf-8-sig")
    assert prepare_fashion.main(fashion_argv(tmp_path)) == 0
    assert sorted(p.name for p in (tmp_path / "out" / "train").iterdir()) == sorted(FASHION_TRAIN)


def test_prepare_fashion_refuses_an_out_that_is_a_file(tmp_path, capsys):
    fake_fashion(tmp_path / "raw", FASHION_TRAIN, FASHION_TEST, {})
    (tmp_path / "out").write_text("not a folder\n")
    refused(tmp_path, prepare_fashion.main, fashion_argv(tmp_path), capsys, f"--out {tmp_path / 'out'} is a file")


def test_prepare_fashion_disk_full_mid_write_leaves_nothing(tmp_path, monkeypatch, capsys):
    fake_fashion(tmp_path / "raw", FASHION_TRAIN, FASHION_TEST, {})
    calls = []

    def full_disk(image, path):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(28, "No space left on device", str(path))
        image.save(path, "JPEG")
    monkeypatch.setattr(prepare_fashion, "_save_jpeg", full_disk)
    refused(tmp_path, prepare_fashion.main, fashion_argv(tmp_path), capsys, "No space left on device")
    assert len(calls) == 3  # two images were written, into the staging folder that went with the failure


def test_stale_staging_of_a_killed_run_is_removed(tmp_path):
    out = tmp_path / "out"
    dead = tmp_path / ".out.999999999.tmp"  # no such pid
    (dead / "train").mkdir(parents=True)
    alive = tmp_path / f".out.{os.getppid()}.tmp"
    alive.mkdir()
    staging.remove_stale_staging(out)
    assert not dead.exists() and alive.exists()


# --- make_synthetic, make_canonical_poses -----------------------------------------------------------------

@pytest.mark.parametrize("argv,message", [(["--people", "0"], "--people must be >= 1, got 0"),
                                          (["--people", "-3"], "--people must be >= 1, got -3"),
                                          (["--images_per_person", "0"], "--images_per_person must be >= 1")])
def test_make_synthetic_refuses_counts_below_one(tmp_path, capsys, argv, message):
    refused(tmp_path, make_synthetic.main, ["--format", "market", "--out", str(tmp_path / "s"), *argv], capsys,
            message)


def test_make_synthetic_refuses_an_out_that_is_a_file(tmp_path, capsys):
    (tmp_path / "s").write_text("a file\n")
    refused(tmp_path, make_synthetic.main, ["--format", "market", "--out", str(tmp_path / "s")], capsys,
            f"--out {tmp_path / 's'} is a file")


@pytest.mark.parametrize("option", ["--k", "--height", "--width"])
def test_make_canonical_poses_refuses_counts_below_one(tmp_path, capsys, option):
    argv = ["--annotations", str(annotation(tmp_path)), "--out", str(tmp_path / "c.csv"), option, "0"]
    refused(tmp_path, make_canonical_poses.main, argv, capsys, f"{option} must be >= 1, got 0")


def test_make_canonical_poses_refuses_an_existing_sources_file(tmp_path, capsys):
    (tmp_path / "c.sources.txt").write_text("an earlier recipe\n")
    argv = ["--annotations", str(annotation(tmp_path)), "--out", str(tmp_path / "c.csv")]
    refused(tmp_path, make_canonical_poses.main, argv, capsys, str(tmp_path / "c.sources.txt"), "--overwrite")


def test_make_canonical_poses_refuses_an_out_that_is_a_folder(tmp_path, capsys):
    (tmp_path / "c.csv").mkdir()
    argv = ["--annotations", str(annotation(tmp_path)), "--out", str(tmp_path / "c.csv"), "--overwrite"]
    refused(tmp_path, make_canonical_poses.main, argv, capsys, f"{tmp_path / 'c.csv'} is a folder")


# --- scripts ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("main,argv,message", [
    (bench_metrics.main, ["--pairs", "0"], "--pairs must be >= 1, got 0"),
    (bench_metrics.main, ["--frames", "market,lsun"], "unknown --frames lsun; available: fashion, market"),
    (bench_metrics.main, ["--workers", "-1"], "--workers and --threads must be >= 0"),
    (bench_data.main, ["--workers", "0,two"], "--workers '0,two'"),
    (bench_data.main, ["--batches", "-2"], "--batches must be >= 1, got -2"),
    (bench_train.main, ["--model", "PG2", "--iters", "0"], "--iters must be >= 1, got 0"),
    (bench_train.main, ["--model", "DPTN", "--official_root", "/nonexistent/dptn"], "/nonexistent/dptn"),
])
def test_scripts_refuse_bad_options_in_one_line(tmp_path, capsys, main, argv, message):
    refused(tmp_path, main, argv, capsys, message)


def test_copy_baseline_names_a_missing_results_folder_and_a_corrupt_image(tmp_path, capsys):
    root = tmp_path / "data"
    for name in ("a.jpg", "b.jpg"):
        (root / "test").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((16, 8, 3), np.uint8)).save(root / "test" / name)
    (root / "market-pairs-test.csv").write_text("from,to\na.jpg,b.jpg\n")
    argv = ["--results_dir", str(tmp_path / "results"), "--dataroot", str(root)]
    refused(tmp_path, copy_baseline.main, argv, capsys, f"--results_dir: {tmp_path / 'results'} is not a folder")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "a_2_b_vis.jpg").write_bytes(b"garbage")
    refused(tmp_path, copy_baseline.main, argv, capsys, str(tmp_path / "results" / "a_2_b_vis.jpg"))


CANONICAL = Path(__file__).resolve().parents[1] / "datasets" / "canonical_poses" / "market-canonical-poses.csv"


@pytest.mark.parametrize("argv,culprit", [
    (["--height", "-5", "--width", "10"], "--height and --width must be >= 1, got -5 and 10"),
    (["--out", "{blocker}/x.png"], "{blocker} is a file"),
])
def test_draw_pose_refuses_bad_sizes_and_paths(tmp_path, capsys, argv, culprit):
    from scripts import draw_pose

    (tmp_path / "blocker").write_text("a file\n")
    argv = [a.format(blocker=tmp_path / "blocker") for a in argv]
    out = [] if "--out" in argv else ["--out", str(tmp_path / "a.png")]
    refused(tmp_path, draw_pose.main, ["--pose", f"{CANONICAL}:canon_1.jpg", *out, *argv], capsys,
            culprit.format(blocker=tmp_path / "blocker"))


def test_prepare_market_existing_output_is_left_alone_without_overwrite(tmp_path, capsys):
    fake_market(tmp_path / "raw")
    argv = ["--raw", str(tmp_path / "raw"), "--out", str(tmp_path / "out")]
    assert prepare_market.main(argv) == 0
    capsys.readouterr()
    refused(tmp_path, prepare_market.main, argv, capsys, "already exist", str(tmp_path / "out"), "--overwrite")
