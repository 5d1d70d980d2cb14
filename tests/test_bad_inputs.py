"""The bad-input matrix: each case exits non-zero with one line naming the culprit and changes no file
that existed before under checkpoints/ or results/."""
from __future__ import annotations

import hashlib
import importlib.util
import shutil
from pathlib import Path

import pytest
from PIL import Image

import train as train_script
from data.annotations import read_annotations, write_annotations

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("pose_transfer_test_script", REPO / "test.py")
test_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(test_script)

TINY = ["--gpu_ids", "-1", "--num_threads", "0", "--ngf", "8", "--batchSize", "2", "--max_steps", "2"]


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_market_root):
    """A finished stage-1 run (epoch 1 and latest) and a results folder that must survive every case."""
    base = tmp_path_factory.mktemp("matrix")
    ckpt, results = base / "checkpoints", base / "results"
    argv = ["--name", "good", "--model", "PG2", "--stage", "1", "--dataset_mode", "market", "--dataroot",
            str(tiny_market_root), "--checkpoints_dir", str(ckpt), "--save_epoch_freq", "1", "--niter", "1",
            *TINY[:-2]]
    assert train_script.main(argv) == 0
    assert test_script.main(["--name", "good", "--model", "PG2", "--stage", "1", "--dataset_mode", "market",
                             "--dataroot", str(tiny_market_root), "--checkpoints_dir", str(ckpt),
                             "--results_dir", str(results), "--gpu_ids", "-1", "--num_threads", "0",
                             "--ngf", "8", "--how_many", "3"]) == 0
    return ckpt, results


def edit_annotation(root: Path, phase: str, change) -> None:
    path = root / f"market-annotation-{phase}.csv"
    lines = path.read_text().splitlines()
    lines[1] = change(lines[1])
    path.write_text("\n".join(lines) + "\n")


def edit_lists(root: Path, ys=None, xs=None) -> None:
    """Rewrite the first row's ys/xs lists (as lists of strings) with the given functions."""
    def change(line: str) -> str:
        name, y_text, x_text = line.split(":")
        y_vals = [v.strip() for v in y_text.strip()[1:-1].split(",")]
        x_vals = [v.strip() for v in x_text.strip()[1:-1].split(",")]
        y_vals, x_vals = (ys or list)(y_vals), (xs or list)(x_vals)
        return f"{name}: [{', '.join(y_vals)}]: [{', '.join(x_vals)}]"
    edit_annotation(root, "train", change)


def set_keypoint(root: Path, value) -> None:
    path = root / "market-annotation-train.csv"
    annotations = read_annotations(path)
    first = next(iter(annotations))
    annotations[first][2] = value
    write_annotations(path, annotations)


def first_image(root: Path) -> Path:
    return sorted((root / "train").glob("*.jpg"))[0]


# (id, how to break the dataset, extra argv, command, expected exit status, text the message must contain)
CASES = [
    ("no dataroot", lambda r: shutil.rmtree(r), [], "train", 2, "does not exist"),
    ("no image folder", lambda r: shutil.rmtree(r / "train"), [], "train", 2, "image folder"),
    ("no annotation csv", lambda r: (r / "market-annotation-train.csv").unlink(), [], "train", 2,
     "market-annotation-train.csv"),
    ("no pairs csv", lambda r: (r / "market-pairs-train.csv").unlink(), [], "train", 2, "market-pairs-train.csv"),
    ("empty annotation csv", lambda r: (r / "market-annotation-train.csv").write_text(""), [], "train", 2,
     "market-annotation-train.csv: header"),
    ("wrong annotation header", lambda r: (r / "market-annotation-train.csv").write_text("name,y,x\n"), [],
     "train", 2, "header must be"),
    ("wrong pairs header", lambda r: (r / "market-pairs-train.csv").write_text("a;b\nx;y\n"), [], "train", 2,
     "market-pairs-train.csv: header"),
    ("17 ys", lambda r: edit_lists(r, ys=lambda v: v[:17]), [], "train", 2, "row 1: keypoints_y has 17 values"),
    ("19 xs", lambda r: edit_lists(r, xs=lambda v: v + ["5"]), [], "train", 2, "row 1: keypoints_x has 19 values"),
    ("non-numeric value", lambda r: edit_lists(r, ys=lambda v: ["abc"] + v[1:]), [], "train", 2,
     "row 1: keypoints_y is not a list of integers"),
    ("float value", lambda r: edit_lists(r, xs=lambda v: ["1.5"] + v[1:]), [], "train", 2,
     "row 1: keypoints_x must hold integers"),
    ("keypoint outside the image", lambda r: set_keypoint(r, (500, 20)), [], "train", 2,
     "lies outside the 128x64 image"),
    ("coordinate below -1", lambda r: set_keypoint(r, (-5, 20)), [], "train", 2, "coordinates below -1"),
    ("duplicate name", lambda r: edit_annotation(r, "train", lambda l: l + "\n" + l), [], "train", 2,
     "duplicate image name"),
    ("pair names an unknown image", lambda r: (r / "market-pairs-train.csv").open("a").write(
        "9999_c1s1_000001_01.jpg,9999_c1s1_000002_01.jpg\n"), [], "train", 2, "9999_c1s1_000001_01.jpg"),
    ("pair row with one field", lambda r: (r / "market-pairs-train.csv").open("a").write("lonely.jpg\n"), [],
     "train", 2, "expected 'source,target'"),
    ("image missing", lambda r: first_image(r).unlink(), [], "train", 2, "missing from"),
    ("unreadable image", lambda r: first_image(r).write_bytes(b"this is not an image"), [], "train", 2,
     "not a readable image"),
    ("truncated image", lambda r: first_image(r).write_bytes(first_image(r).read_bytes()[:600]), [], "train", 2,
     "truncated"),
    ("wrong image size", lambda r: Image.new("RGB", (70, 128)).save(first_image(r)), [], "train", 2,
     "expected 128x64"),
    ("unknown model", None, ["--model", "NoSuchGAN"], "train", 2, "available: dpig, dptn, lgan, patn, pg2, pngan, reid_bagtricks, template"),
    ("unknown dataset mode", None, ["--dataset_mode", "coco"], "train", 2, "available: fashion, gfv, keypoint, market, market_reid, synthetic, template"),
    ("bad batch size", None, ["--batchSize", "0"], "train", 2, "--batchSize must be >= 1"),
    ("bad gpu ids", None, ["--gpu_ids", "zero"], "train", 2, "--gpu_ids 'zero'"),
    ("no stage-1 weights", None, ["--stage", "2", "--stage1_name", "never_trained"], "train", 2,
     "never_trained/latest_net_G1.pth"),
    ("resume without a state", None, ["--continue_train", "--name", "fresh"], "train", 2,
     "fresh/latest_train_state.pth"),
    ("reuse a run name with other options", None, ["--name", "good", "--lr", "0.5"], "train", 2,
     "pass --continue_train"),
    ("non-finite loss", None, ["--lr", "1e30", "--max_steps", "4"], "train", 3, "not finite"),
    ("unknown epoch", None, ["--which_epoch", "77"], "test", 2, "77_net_G1.pth not found (--which_epoch 77); available:"),
    ("results of another epoch", None, ["--which_epoch", "1"], "test", 2, "pass --overwrite"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, trained, make_pose_dataset, tmp_path, capsys):
    _, breakage, extra, command, status, culprit = case
    ckpt, results = trained
    before = {"ckpt": digest(ckpt), "results": digest(results)}
    root = make_pose_dataset(tmp_path / "data", "market")
    if breakage is not None:
        breakage(root)
    common = ["--model", "PG2", "--dataset_mode", "market", "--dataroot", str(root), "--checkpoints_dir",
              str(ckpt), "--stage", "1", "--seed", "0"]
    if command == "train":
        rc = train_script.main(["--name", "broken", *common, *TINY, *extra])
    else:
        rc = test_script.main(["--name", "good", *common, "--results_dir", str(results), "--gpu_ids", "-1",
                               "--num_threads", "0", "--ngf", "8", *extra])
    captured = capsys.readouterr()
    assert rc == status
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and culprit in errors[0], captured.err[-2000:]
    assert "Traceback" not in captured.err
    after = {"ckpt": digest(ckpt), "results": digest(results)}
    for where in before:
        assert {k: v for k, v in after[where].items() if k in before[where]} == before[where], where
