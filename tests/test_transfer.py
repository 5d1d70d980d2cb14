"""scripts.transfer and scripts.draw_pose end to end, with PG2 and DPTN trained here and a random-weight Keypoint
R-CNN."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import train as train_script
from data.annotations import read_annotations, read_pairs
from data.framing import BOX_MARGIN, fit_box
from scripts import draw_pose, transfer
from util.io import InputError
from data.keypoint_rcnn import WEIGHTS_FILE, KeypointRCNNEstimator
from util.pose_drawing import draw_skeleton

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("pose_transfer_test_script_for_transfer", REPO / "test.py")
test_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(test_script)
RCNN = ["--pose_random_weights", "--pose_size", "64", "--person_threshold", "0"]  # fast, meaningless poses
OFFSET, ZOOM = (30, 40), 2  # where and how large a dataset image sits in a made-up "photo"


@pytest.fixture(scope="module")
def run(tiny_market_root, tmp_path_factory) -> list[str]:
    """A PG2 stage-1 checkpoint trained for two steps; returns the model flags shared by every call."""
    ckpt = tmp_path_factory.mktemp("transfer_ckpt")
    argv = ["--name", "tr", "--model", "PG2", "--stage", "1", "--dataset_mode", "market", "--dataroot",
            str(tiny_market_root), "--checkpoints_dir", str(ckpt), "--gpu_ids", "-1", "--num_threads", "0",
            "--ngf", "8", "--batchSize", "2", "--max_steps", "2"]
    assert train_script.main(argv) == 0
    return ["--name", "tr", "--model", "PG2", "--stage", "1", "--dataset_mode", "market", "--checkpoints_dir",
            str(ckpt), "--gpu_ids", "-1", "--ngf", "8"]


def photo_keypoints(kps: np.ndarray) -> np.ndarray:
    """Dataset-frame keypoints -> the made-up photo's pixel coordinates (-1 stays)."""
    mapped = (kps + 0.5) * ZOOM - 0.5 + np.array(OFFSET)
    return np.where(kps >= 0, mapped, -1.0)


def openpose_json(path: Path, kps_yx: np.ndarray) -> Path:
    """Write (y, x) keypoints as an OpenPose COCO-18 JSON (x, y, confidence triples; 0 0 0 = missing)."""
    values = []
    for y, x in kps_yx:
        values += [0.0, 0.0, 0.0] if y < 0 else [float(x), float(y), 0.9]
    path.write_text(json.dumps({"version": 1.3, "people": [{"person_id": [-1], "pose_keypoints_2d": values}]}))
    return path


@pytest.fixture(scope="module")
def inputs(tiny_market_root, tmp_path_factory) -> dict:
    """Made-up photos (dataset images enlarged on a bigger canvas), their poses as JSON, a 5-pose sequence."""
    folder = tmp_path_factory.mktemp("transfer_inputs")
    annotations = read_annotations(tiny_market_root / "market-annotation-test.csv")
    names = list(annotations)
    out = {"annotations": tiny_market_root / "market-annotation-test.csv", "names": names}
    for i, name in enumerate(names[:2]):
        image = Image.open(tiny_market_root / "test" / name).convert("RGB")
        canvas = Image.new("RGB", (64 * ZOOM + 90, 128 * ZOOM + 50), (90, 130, 90))
        canvas.paste(image.resize((64 * ZOOM, 128 * ZOOM), Image.Resampling.BICUBIC), OFFSET[::-1])
        canvas.save(folder / f"photo{i}.png")
        out[f"photo{i}"] = folder / f"photo{i}.png"
        out[f"json{i}"] = openpose_json(folder / f"photo{i}.json", photo_keypoints(annotations[name]))
    sequence = folder / "walk"
    sequence.mkdir()
    for step in range(5):  # one pose walking right, 12 px per frame
        moved = np.where(annotations[names[3]] >= 0, annotations[names[3]] + [0, 12 * step], -1)
        openpose_json(sequence / f"frame{step + 1}.json", photo_keypoints(moved))
    out["sequence"] = sequence
    return out


def tiles(path: Path, count: int = 3) -> list[np.ndarray]:
    image = np.asarray(Image.open(path).convert("RGB"))
    width = image.shape[1] // count
    return [image[:, i * width:(i + 1) * width] for i in range(count)]


def transfer_of_first_test_pair(run: list[str], root: Path, tmp_path: Path, prefix: str,
                                subfolder: str = "") -> tuple[Path, np.ndarray]:
    """Run test.py on the first test pair and scripts.transfer on the same pair (dataset image, CSV poses);
    return the transfer arguments and test.py's image (in `subfolder` of --results_dir: PATN's convention)."""
    source, target = read_pairs(root / f"{prefix}-pairs-test.csv")[0]
    results = tmp_path / "results"
    argv = run + ["--dataroot", str(root), "--results_dir", str(results), "--how_many", "1",
                  "--only_generated", "--image_format", "png", "--num_threads", "0"]
    assert test_script.main(argv) == 0
    expected = np.asarray(Image.open(results / subfolder / f"{Path(source).stem}_2_{Path(target).stem}_vis.png"))
    csv = root / f"{prefix}-annotation-test.csv"
    common = run + ["--source", str(root / "test" / source), "--source_pose", f"{csv}:{source}",
                    "--target", f"{csv}:{target}"]
    assert transfer.main(common + ["--out", str(tmp_path / "result.png")]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "result.png")), expected)
    return common, expected


def test_dataset_images_give_exactly_what_test_py_gives(run, tiny_market_root, inputs, tmp_path):
    common, expected = transfer_of_first_test_pair(run, tiny_market_root, tmp_path, "market")
    source, target = read_pairs(tiny_market_root / "market-pairs-test.csv")[0]
    # the panel: the source image as read, the target row drawn as is, the same result
    assert transfer.main(common + ["--out", str(tmp_path / "panel.png"), "--panel"]) == 0
    source_tile, pose_tile, result_tile = tiles(tmp_path / "panel.png")
    source_image = Image.open(tiny_market_root / "test" / source).convert("RGB")
    np.testing.assert_array_equal(source_tile, np.asarray(source_image))
    np.testing.assert_array_equal(pose_tile, draw_skeleton(read_annotations(inputs["annotations"])[target], 128, 64))
    np.testing.assert_array_equal(result_tile, expected)


def test_dptn_on_deepfashion_gives_exactly_what_test_py_gives(tiny_fashion_root, tmp_path):
    """DPTN's official DeepFashion path: stretched to 256x256, then uint8 and OpenCV resize back to 256x176."""
    ckpt = tmp_path / "ckpt"
    model = ["--name", "dptn", "--model", "DPTN", "--dataset_mode", "fashion", "--checkpoints_dir", str(ckpt),
             "--gpu_ids", "-1"]
    assert train_script.main(model + ["--dataroot", str(tiny_fashion_root), "--vgg_random_init", "--num_threads",
                                      "0", "--batchSize", "1", "--max_steps", "1"]) == 0
    _, expected = transfer_of_first_test_pair(model, tiny_fashion_root, tmp_path, "fasion-resize")
    assert expected.shape == (256, 176, 3)


def test_patn_on_deepfashion_gives_exactly_what_test_py_gives(tiny_fashion_root, tmp_path):
    """PATN at DeepFashion's native 256x176 frame on one-pixel pose maps (a narrow network: the path is tested)."""
    ckpt = tmp_path / "ckpt"
    model = ["--name", "patn", "--model", "PATN", "--dataset_mode", "fashion", "--checkpoints_dir", str(ckpt),
             "--gpu_ids", "-1", "--ngf", "8", "--pose_encoding", "pixel"]
    assert train_script.main(model + ["--dataroot", str(tiny_fashion_root), "--vgg_random_init", "--num_threads",
                                      "0", "--batchSize", "1", "--max_steps", "1", "--ndf", "8"]) == 0
    _, expected = transfer_of_first_test_pair(model, tiny_fashion_root, tmp_path, "fasion-resize",
                                              "patn/test_latest")
    assert expected.shape == (256, 176, 3)


def test_photo_source_and_photo_target_through_keypoint_rcnn(run, inputs, tmp_path, capsys):
    out = tmp_path / "panel.png"
    argv = run + RCNN + ["--source", str(inputs["photo0"]), "--target", str(inputs["photo1"]), "--out", str(out),
                         "--panel", "--display_scale", "2"]
    with pytest.warns(UserWarning, match="RANDOM weights"):
        assert transfer.main(argv) == 0
    assert "--pose_random_weights: Keypoint R-CNN (pose estimation) uses RANDOM weights" in capsys.readouterr().out
    assert Image.open(out).size == (3 * 64 * 2, 128 * 2)
    source_tile, _, result_tile = tiles(out)
    assert result_tile.reshape(-1, 3).std(axis=0).max() > 1  # a generated image, not a blank one
    # the source tile is the photo cropped around the detector's box (same seed: the same random detector)
    photo = Image.open(inputs["photo0"]).convert("RGB")
    with pytest.warns(UserWarning, match="RANDOM weights"):
        estimator = KeypointRCNNEstimator(random_weights=True, min_size=64, max_size=106, person_threshold=0.0)
    top, left, bottom, right = estimator(photo, "photo0").box
    room = BOX_MARGIN * (bottom - top)
    framing = fit_box((top - room, left - room, bottom + room, right + room), 128, 64)
    np.testing.assert_array_equal(source_tile[::2, ::2], np.asarray(framing.crop(photo, "edge")))


def test_pose_sequence_to_five_frame_gif(run, inputs, tmp_path):
    gif, frames = tmp_path / "walk.gif", tmp_path / "frames"
    argv = run + ["--source", str(inputs["photo0"]), "--source_pose", str(inputs["json0"]), "--target_dir",
                  str(inputs["sequence"]), "--animation", str(gif), "--out", str(frames), "--panel", "--fps", "5"]
    assert transfer.main(argv) == 0
    written = sorted(frames.glob("*.png"))
    assert [p.name for p in written] == [f"{i:04d}_frame{i + 1}.png" for i in range(5)]
    with Image.open(gif) as animation:
        assert animation.n_frames == 5 and animation.size == (3 * 64, 128) and animation.info["loop"] == 0
        shown = []
        for i in range(5):
            animation.seek(i)
            assert animation.info["duration"] == 200
            shown.append(np.asarray(animation.convert("RGB"), dtype=np.float64))
    centres = []
    for path, frame in zip(written, shown):
        png = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
        assert np.abs(frame - png).mean() < 6  # the GIF holds the frames, up to its 256-colour palette
        skeleton = png[:, 64:128].sum(axis=2)
        centres.append((skeleton * np.arange(64)).sum() / skeleton.sum())
    # one framing for the whole sequence: the walk to the right shows as a steady shift (12 photo px * scale)
    steps = np.diff(centres)
    assert (steps > 1.5).all() and np.ptp(steps) < 1.5


def test_draw_pose_row_and_whole_csv(inputs, tmp_path):
    csv, name = inputs["annotations"], inputs["names"][2]
    out = tmp_path / "one.png"
    assert draw_pose.main(["--pose", f"{csv}:{name}", "--out", str(out), "--height", "128", "--width", "64"]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(out)), draw_skeleton(read_annotations(csv)[name], 128, 64))
    assert draw_pose.main(["--pose", str(csv), "--out", str(tmp_path / "all")]) == 0
    assert len(list((tmp_path / "all").glob("*.png"))) == len(inputs["names"])
    framed = tmp_path / "framed.png"
    assert draw_pose.main(["--pose", str(inputs["json1"]), "--out", str(framed), "--frame", "market",
                           "--background", str(inputs["photo1"])]) == 0
    assert Image.open(framed).size == (64, 128)


def fake_estimator(found: dict) -> KeypointRCNNEstimator:
    """An estimator whose detector returns `found` (the post-processing is what is under test)."""
    estimator = KeypointRCNNEstimator.__new__(KeypointRCNNEstimator)
    estimator.keypoint_threshold, estimator.person_threshold = 2.0, 0.5
    estimator.detect = lambda image: found
    return estimator


def test_estimator_keeps_best_person_converts_and_drops_outside():
    keypoints = torch.zeros(2, 17, 3)
    keypoints[1, :, 0] = torch.arange(17) + 10.0  # x
    keypoints[1, :, 1] = torch.arange(17) * 2 + 20.0  # y
    keypoints[1, 0, 0] = 75.0  # the nose beyond the 60-px-wide photo
    scores = torch.full((2, 17), 5.0)
    scores[1, 16] = 1.0  # right ankle below the threshold
    found = {"boxes": torch.tensor([[0.0, 0, 5, 5], [8.0, 15, 40, 60]]), "scores": torch.tensor([0.6, 0.9]),
             "keypoints": keypoints, "keypoints_scores": scores}
    pose = fake_estimator(found)(Image.new("RGB", (60, 80)), "me.jpg")
    assert pose.box == (15.0, 8.0, 60.0, 40.0) and pose.image_size == (80, 60)  # (top, left, bottom, right)
    assert pose.keypoints[0].tolist() == [-1, -1] and pose.keypoints[10].tolist() == [-1, -1]
    assert pose.keypoints[2].tolist() == [32.0, 16.0]  # r-shoulder = COCO 6
    assert pose.keypoints[1].tolist() == [31.0, 15.5]  # neck = midpoint of COCO 5 and 6
    found["scores"] = torch.tensor([0.2, 0.3])
    with pytest.raises(InputError, match=r"me.jpg: no person found \(best person score 0.30"):
        fake_estimator(found)(Image.new("RGB", (60, 80)), "me.jpg")


def test_weights_loading_accepts_frozen_bn_files_and_names_bad_ones(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    released = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(released, tmp_path / WEIGHTS_FILE)
    KeypointRCNNEstimator._load(net, tmp_path / WEIGHTS_FILE)
    torch.save({**released, "roi_heads.extra": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(InputError, match="other.pth is not Keypoint R-CNN"):
        KeypointRCNNEstimator._load(net, tmp_path / "other.pth")


@pytest.fixture
def bad(inputs, tmp_path, monkeypatch):
    """Inputs for the bad-input matrix; TORCH_HOME is an empty folder, so no weights exist."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 this is not a JPEG")
    (tmp_path / "nobody.json").write_text('{"version": 1.3, "people": []}')
    (tmp_path / "short.json").write_text(json.dumps({"people": [{"pose_keypoints_2d": [1.0, 2.0, 0.9] * 19}]}))
    (tmp_path / "empty_dir").mkdir()
    return {"photo": str(inputs["photo0"]), "json": str(inputs["json0"]), "dir": str(inputs["sequence"]),
            "csv": str(inputs["annotations"]), "tmp": tmp_path}


BAD_INPUTS = {
    "unreadable image": (["--source", "{tmp}/broken.jpg", "--source_pose", "{json}", "--target", "{json}"],
                         ["broken.jpg: not a readable image"]),
    "missing source": (["--source", "{tmp}/absent.jpg", "--target", "{json}"], ["absent.jpg not found"]),
    "json with no person": (["--source", "{photo}", "--source_pose", "{json}", "--target", "{tmp}/nobody.json"],
                            ["nobody.json: the JSON holds no person"]),
    "wrong keypoint count": (["--source", "{photo}", "--source_pose", "{json}", "--target", "{tmp}/short.json"],
                             ["short.json: person 0", "57 keypoint values", "54 (COCO-18), 75 (BODY_25)"]),
    "missing weights": (["--source", "{photo}", "--target", "{json}"],
                        ["missing pretrained weights", WEIGHTS_FILE, "--pose_weights", "pose as a file"]),
    "unknown csv row": (["--source", "{photo}", "--source_pose", "{json}", "--target", "{csv}:nobody.jpg"],
                        ["no row 'nobody.jpg'"]),
    "two targets": (["--source", "{photo}", "--target", "{json}", "--target_dir", "{dir}"],
                    ["exactly one of --target"]),
    "empty pose folder": (["--source", "{photo}", "--source_pose", "{json}", "--target_dir", "{tmp}/empty_dir",
                           "--animation", "{tmp}/a.gif"], ["holds no poses"]),
    "mp4 without a writer": (["--source", "{photo}", "--source_pose", "{json}", "--target_dir", "{dir}",
                              "--animation", "{tmp}/a.mp4"], ["imageio-ffmpeg", "or write a .gif"]),
    "missing checkpoint": (["--name", "never_trained", "--source", "{photo}", "--source_pose", "{json}", "--target",
                            "{json}"], ["latest_net_G1.pth not found", "train_opt.txt"]),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_inputs_are_one_clear_error(case, run, bad, capsys, monkeypatch):
    monkeypatch.setattr("util.animation.mp4_writer_available", lambda: False)
    args, messages = BAD_INPUTS[case]
    out = bad["tmp"] / "result.png"
    argv = run + [a.format(**bad) for a in args]
    if "--target" in argv:
        argv += ["--out", str(out)]
    assert transfer.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    for message in messages:
        assert message in err, (message, err)
    assert not out.exists() and not (bad["tmp"] / "a.gif").exists()
