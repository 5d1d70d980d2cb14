"""Issue 17, results folder and transfer: a results folder holds one checkpoint's result set (another
checkpoint's or a smaller set is refused, --overwrite replaces the whole set), off-photo poses are refused,
and test.py / scripts.transfer turn every expected failure into one line with exit status 2."""
from __future__ import annotations

import hashlib
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import train as train_script
from data.annotations import read_annotations, read_pairs, write_pairs
from scripts import transfer
from tests.test_transfer import openpose_json
from util.results_dir import RESULTS_MARKER, file_digest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("pose_transfer_test_script_hardening", REPO / "test.py")
test_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(test_script)
MODEL = ["--model", "PG2", "--stage", "1", "--dataset_mode", "market", "--gpu_ids", "-1", "--ngf", "8"]


@pytest.fixture(scope="module")
def trained(tiny_market_root, tmp_path_factory) -> Path:
    """checkpoints/ of a PG2 stage-1 run 'run' trained for two steps (latest only)."""
    ckpt = tmp_path_factory.mktemp("hardening_ckpt")
    argv = ["--name", "run", *MODEL, "--dataroot", str(tiny_market_root), "--checkpoints_dir", str(ckpt),
            "--num_threads", "0", "--batchSize", "2", "--max_steps", "2"]
    assert train_script.main(argv) == 0
    return ckpt


@pytest.fixture
def ckpt(trained, tmp_path) -> Path:
    """A private copy of the trained checkpoints, free to be 'trained further'."""
    return Path(shutil.copytree(trained, tmp_path / "ckpt"))


def run_test(ckpt: Path, root: Path, results: Path, *extra: str, name: str = "run") -> int:
    return test_script.main(["--name", name, *MODEL, "--dataroot", str(root), "--checkpoints_dir", str(ckpt),
                             "--results_dir", str(results), "--num_threads", "0", "--batchSize", "2", *extra])


def train_further(weights: Path, step: float = 0.05) -> None:
    """Stand-in for more training under the same tag: every float weight moves, the file is rewritten."""
    state = torch.load(weights, weights_only=True)
    torch.save({k: v + step if v.is_floating_point() else v for k, v in state.items()}, weights)


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def one_error(capsys) -> str:
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err[-2000:]
    return errors[0]


def expected_names(root: Path, count: int) -> set[str]:
    return {f"{Path(a).stem}_2_{Path(b).stem}_vis.jpg" for a, b in read_pairs(root / "market-pairs-test.csv")[:count]}


def test_another_checkpoint_of_the_same_tag_is_refused_and_nothing_changes(ckpt, tiny_market_root, tmp_path,
                                                                           capsys):
    results = tmp_path / "results"
    assert run_test(ckpt, tiny_market_root, results, "--how_many", "3") == 0
    weights = ckpt / "run" / "latest_net_G1.pth"
    old_hash = file_digest(weights)
    before = digest(results)
    capsys.readouterr()
    train_further(weights)
    for count in ("2", "3"):  # fewer pairs (the reported mix), and the same pairs
        assert run_test(ckpt, tiny_market_root, results, "--how_many", count) == 2
        line = one_error(capsys)
        assert str(results) in line and f"latest_net_G1.pth {old_hash}" in line
        assert f"asked to write checkpoint: latest_net_G1.pth {file_digest(weights)}" in line
        assert "--overwrite" in line
        assert digest(results) == before


def test_a_smaller_set_of_the_same_checkpoint_is_refused(ckpt, tiny_market_root, tmp_path, capsys):
    results = tmp_path / "results"
    assert run_test(ckpt, tiny_market_root, results, "--how_many", "3") == 0
    before = digest(results)
    capsys.readouterr()
    assert run_test(ckpt, tiny_market_root, results, "--how_many", "2") == 2
    line = one_error(capsys)
    assert str(results) in line and "3 results of" in line and "asked to write 2" in line
    assert digest(results) == before


def test_identical_rerun_and_a_larger_set_are_allowed(ckpt, tiny_market_root, tmp_path):
    results = tmp_path / "results"
    assert run_test(ckpt, tiny_market_root, results, "--how_many", "2") == 0
    first = digest(results)
    assert run_test(ckpt, tiny_market_root, results, "--how_many", "2") == 0
    assert digest(results) == first  # the same files, rewritten with the same bytes
    assert run_test(ckpt, tiny_market_root, results, "--how_many", "3") == 0
    assert {p.name for p in results.glob("*_vis.jpg")} == expected_names(tiny_market_root, 3)
    assert (results / RESULTS_MARKER).read_text().endswith("results: 3\n")


def test_overwrite_replaces_the_whole_set(ckpt, tiny_market_root, tmp_path):
    results = tmp_path / "results"
    assert run_test(ckpt, tiny_market_root, results, "--how_many", "4") == 0
    old = {p.name: p.read_bytes() for p in results.glob("*_vis.jpg")}
    (results / "notes.txt").write_text("mine")  # not a file test.py writes: kept
    train_further(ckpt / "run" / "latest_net_G1.pth", step=0.5)
    assert run_test(ckpt, tiny_market_root, results, "--how_many", "2", "--overwrite") == 0
    written = {p.name: p.read_bytes() for p in results.glob("*_vis.jpg")}
    assert set(written) == expected_names(tiny_market_root, 2)  # no stale image of the old checkpoint
    assert all(written[n] != old[n] for n in written)  # both from the new checkpoint
    assert len(list((results / "web" / "panels").glob("*.jpg"))) == 2
    assert (results / "notes.txt").read_text() == "mine"
    marker = (results / RESULTS_MARKER).read_text()
    assert file_digest(ckpt / "run" / "latest_net_G1.pth") in marker and marker.endswith("results: 2\n")


def test_imported_weights_without_a_training_state(trained, tiny_market_root, tmp_path, capsys):
    imported = tmp_path / "imported"
    (imported / "official").mkdir(parents=True)
    weights = imported / "official" / "latest_net_G1.pth"
    shutil.copy(trained / "run" / "latest_net_G1.pth", weights)  # weights alone: no train state, no train_opt
    results = tmp_path / "results"
    assert run_test(imported, tiny_market_root, results, "--how_many", "2", name="official") == 0
    assert f"latest_net_G1.pth {file_digest(weights)}" in (results / RESULTS_MARKER).read_text()
    assert run_test(imported, tiny_market_root, results, "--how_many", "2", name="official") == 0
    before = digest(results)
    capsys.readouterr()
    train_further(weights)  # other weights imported under the same name
    assert run_test(imported, tiny_market_root, results, "--how_many", "2", name="official") == 2
    assert str(results) in one_error(capsys) and digest(results) == before


def test_another_pair_list_is_refused(ckpt, make_pose_dataset, tmp_path, capsys):
    root = make_pose_dataset(tmp_path / "data", "market")
    results = tmp_path / "results"
    assert run_test(ckpt, root, results, "--how_many", "2") == 0
    before = digest(results)
    capsys.readouterr()
    pairs = root / "market-pairs-test.csv"
    write_pairs(pairs, read_pairs(pairs)[::-1])  # other pairs, the same count
    assert run_test(ckpt, root, results, "--how_many", "2") == 2
    line = one_error(capsys)
    assert str(results) in line and "asked to write items:" in line
    assert digest(results) == before


def test_unknown_epoch_names_the_file_and_the_tags(trained, tiny_market_root, tmp_path, capsys):
    results = tmp_path / "results"
    assert run_test(trained, tiny_market_root, results, "--which_epoch", "9") == 2
    line = one_error(capsys)
    assert str(trained / "run" / "9_net_G1.pth") in line and "available: latest" in line
    assert not results.exists()


@pytest.mark.parametrize("where", ["file", "under a file"])
def test_results_dir_that_is_a_file(where, trained, tiny_market_root, tmp_path, capsys):
    blocker = tmp_path / "taken"
    blocker.write_text("not a folder")
    results = blocker if where == "file" else blocker / "sub"
    assert run_test(trained, tiny_market_root, results) == 2
    line = one_error(capsys)
    assert f"--results_dir {results}" in line and ("is a file" if where == "file" else str(blocker)) in line
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize("count", ["0", "-3", "0.5"])
def test_how_many_below_one(count, trained, tiny_market_root, tmp_path, capsys):
    assert run_test(trained, tiny_market_root, tmp_path / "results", "--how_many", count) == 2
    assert "--how_many" in one_error(capsys)
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("content", [[1, 2, 3], torch.zeros(3)], ids=["list", "tensor"])
def test_foreign_checkpoint_is_one_line(content, ckpt, tiny_market_root, tmp_path, capsys):
    weights = ckpt / "run" / "latest_net_G1.pth"
    torch.save(content, weights)
    assert run_test(ckpt, tiny_market_root, tmp_path / "results") == 2
    assert str(weights) in one_error(capsys)
    assert not (tmp_path / "results").exists()


# --- scripts.transfer ---------------------------------------------------------------------------------

def shifted(kps: np.ndarray, count: int, by: float = 1000.0) -> np.ndarray:
    """The pose with its first `count` visible keypoints moved far off any photo."""
    out = kps.astype(np.float64).copy()
    for i in np.flatnonzero((kps >= 0).all(axis=1))[:count]:
        out[i] += by
    return out


@pytest.fixture
def photo(tiny_market_root) -> tuple[Path, np.ndarray, str]:
    """A dataset image as the photo, its keypoints, and the CSV spec of another row as a target."""
    csv = tiny_market_root / "market-annotation-test.csv"
    rows = read_annotations(csv)
    names = list(rows)
    return tiny_market_root / "test" / names[0], rows[names[0]], f"{csv}:{names[1]}"


def own_pose(image: Path) -> str:
    """The CSV spec of a dataset image's own row."""
    return f"{image.parents[1] / 'market-annotation-test.csv'}:{image.name}"


def transfer_args(trained: Path, *extra: str) -> list[str]:
    return ["--name", "run", *MODEL, "--checkpoints_dir", str(trained), *extra]


def test_transfer_refuses_a_source_pose_off_the_photo(trained, photo, tmp_path, capsys):
    image, kps, target = photo
    visible = int((kps >= 0).all(axis=1).sum())
    for count, status in ((visible, 2), (visible // 2 + 1, 2), (2, 0)):  # all, most, a few keypoints off
        pose = openpose_json(tmp_path / f"off{count}.json", shifted(kps, count))
        out = tmp_path / f"result{count}.png"
        argv = transfer_args(trained, "--source", str(image), "--source_pose", str(pose), "--target", target,
                             "--out", str(out), "--framing", "full")
        assert transfer.main(argv) == status, count
        if status == 2:
            line = one_error(capsys)
            assert str(pose) in line and f"{count} of its {visible} visible keypoints fall outside the photo" in line
            assert not out.exists()
        else:
            assert out.is_file()


def test_transfer_refuses_a_target_pose_off_the_frame(trained, photo, tmp_path, capsys):
    image, kps, _ = photo
    pose = openpose_json(tmp_path / "far.json", shifted(kps, 18))
    out = tmp_path / "result.png"
    argv = transfer_args(trained, "--source", str(image), "--source_pose", own_pose(image), "--target", str(pose),
                         "--target_placement", "source", "--out", str(out))
    assert transfer.main(argv) == 2
    line = one_error(capsys)
    assert str(pose) in line and "outside the 128x64 frame (--target_placement source)" in line
    assert not out.exists()


def test_transfer_frame_folder_of_another_sequence_is_refused(trained, photo, tmp_path, capsys):
    image, kps, _ = photo
    walk, other = tmp_path / "walk", tmp_path / "other"
    for folder, names in ((walk, ("a", "b", "c")), (other, ("x", "y"))):
        folder.mkdir()
        for i, name in enumerate(names):
            openpose_json(folder / f"{name}.json", np.where(kps >= 0, kps + [0, 2 * i], -1))
    frames = tmp_path / "frames"
    common = transfer_args(trained, "--source", str(image), "--source_pose", own_pose(image), "--out",
                           str(frames))
    assert transfer.main(common + ["--target_dir", str(walk)]) == 0
    assert transfer.main(common + ["--target_dir", str(walk)]) == 0  # the same sequence again: allowed
    before = digest(frames)
    capsys.readouterr()
    assert transfer.main(common + ["--target_dir", str(other)]) == 2
    line = one_error(capsys)
    assert f"--out {frames} holds 3 frames of another sequence" in line and "0000_a.png" in line
    assert digest(frames) == before


def test_transfer_out_paths_that_cannot_be_written(trained, photo, tmp_path, capsys):
    image, _, target = photo
    blocker = tmp_path / "taken"
    blocker.write_text("x")
    cases = [["--target", target, "--out", str(tmp_path)],  # a folder where an image is asked for
             ["--target", target, "--out", str(blocker / "r.png")],  # an image under a file
             ["--target_dir", str(tmp_path), "--out", str(blocker)],  # a frame folder that is a file
             ["--target_dir", str(tmp_path), "--animation", str(blocker / "walk.gif")]]  # a GIF under a file
    for extra in cases:
        argv = transfer_args(trained, "--source", str(image), "--source_pose", own_pose(image), *extra)
        assert transfer.main(argv) == 2
        line = one_error(capsys)
        assert extra[-2] in line and extra[-1] in line, extra
    assert blocker.read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
