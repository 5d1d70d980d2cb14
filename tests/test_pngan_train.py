"""PN-GAN through the entry points (docs/models/pngan.md): train.py's logged learning rates and train_opt.txt,
test.py rebuilding G from the persisted options and writing one image per pair with the fixed uint8 mapping,
the --canonical_poses mode (names, legacy names, bad CSVs), the canonical-pose recipe and the shipped CSV, and a
200-iteration smoke training."""
from __future__ import annotations

import contextlib
import io
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import test as test_script
import train as train_script
from data.annotations import read_annotations, read_pairs, write_annotations
from data.canonical_poses import CanonicalPoseDataset
from datasets import make_canonical_poses
from models import create_model
from options.base_options import read_option_file
from options.test_options import TestOptions
from options.train_options import TrainOptions
from util.distributed import RunContext
from util.image import save_image, tensor_to_uint8
from util.io import InputError

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "datasets" / "canonical_poses" / "market-canonical-poses.csv"
SMALL = ["--ngf", "4", "--pngan_blocks", "1"]
TEST_FLAGS_FROM_TRAINING = ("pose_input", "ngf", "pngan_blocks", "load_size")


@pytest.fixture(scope="module")
def trained(tiny_market_root, tmp_path_factory):
    """20 one-iteration epochs of a tiny PN-GAN on the tiny Market data (skeleton input), with the log."""
    ck = tmp_path_factory.mktemp("pngan_ck")
    argv = ["--model", "PNGAN", "--dataset_mode", "market", "--dataroot", str(tiny_market_root), "--name", "run",
            "--checkpoints_dir", str(ck), "--gpu_ids", "-1", "--num_threads", "0", "--batch_size", "2",
            "--max_dataset_size", "2", "--ndf", "4", "--pose_input", "skeleton_rgb", "--pngan_d_cond", "source",
            "--lambda_L1", "5", "--display_freq", "100000", *SMALL]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert train_script.main(argv) == 0
    return ck / "run", out.getvalue()


def test_train_logs_the_official_learning_rates(trained):
    _, log = trained
    printed = [float(v) for v in re.findall(r"end of epoch \d+ / 20; learning rate ([0-9.]+)", log)]
    assert len(printed) == 20
    epochs = [2e-4] + printed[:19]  # the rate printed after epoch e is that of epoch e + 1
    assert epochs == pytest.approx([2e-4] * 10 + [2e-4 * f / 10 for f in range(9, -1, -1)], abs=1e-10)


def test_options_are_persisted_and_test_rebuilds_the_same_generator(trained, tiny_market_root, tmp_path):
    run, _ = trained
    saved = read_option_file((run / "train_opt.txt").read_text())
    assert {k: saved[k] for k in ("pose_input", "load_size", "pngan_d_real", "pngan_d_cond", "gan_mode",
                                  "lambda_L1", "ngf", "pngan_blocks")} == {
        "pose_input": "skeleton_rgb", "load_size": "None", "pngan_d_real": "source", "pngan_d_cond": "source",
        "gan_mode": "lsgan", "lambda_L1": "5.0", "ngf": "4", "pngan_blocks": "1"}
    rebuilt = []
    for key in TEST_FLAGS_FROM_TRAINING:
        if saved[key] != "None":
            rebuilt += [f"--{key}", saved[key]]
    results = tmp_path / "results"
    flags = ["--model", "PNGAN", "--dataset_mode", "market", "--dataroot", str(tiny_market_root), "--name", "run",
             "--checkpoints_dir", str(run.parent), "--gpu_ids", "-1", "--num_threads", "0", "--batch_size", "4",
             "--results_dir", str(results), *rebuilt]
    assert test_script.main(flags) == 0
    pairs = read_pairs(tiny_market_root / "market-pairs-test.csv")
    written = sorted(p.name for p in results.glob("*_vis.jpg"))
    assert written == sorted(f"{Path(a).stem}_2_{Path(b).stem}_vis.jpg" for a, b in pairs)  # none dropped
    # the file is G's clamped output, (x + 1) / 2 * 255 truncated, JPEG q75: rebuild it from the weights
    opt = TestOptions().parse(flags, echo=False, check_folder=False)
    model = create_model(opt, RunContext(device=torch.device("cpu")))
    model.setup()
    from data import create_dataset

    item = next(iter(torch.utils.data.DataLoader(create_dataset(opt), batch_size=1)))
    model.set_input(item)
    model.test()
    save_image(tensor_to_uint8(model.generated_images())[0], tmp_path / "expected.jpg")
    first = results / f"{Path(pairs[0][0]).stem}_2_{Path(pairs[0][1]).stem}_vis.jpg"
    assert first.read_bytes() == (tmp_path / "expected.jpg").read_bytes()
    # without the flags the run's train_opt.txt gives them; a contradicting one is one line
    bare = flags[:len(flags) - len(rebuilt)] + ["--overwrite"]  # the rebuilt flags come last
    assert TestOptions().parse(bare, echo=False, check_folder=False).pose_input == "skeleton_rgb"
    wrong = [f if f != "skeleton_rgb" else "heatmap" for f in flags] + ["--overwrite"]
    with pytest.raises(InputError, match="trained with --pose_input skeleton_rgb, asked for heatmap"):
        TestOptions().parse(wrong, echo=False, check_folder=False)
    assert test_script.main(flags + ["--ndf", "4"]) == 2  # D's flags do not exist at test time


def canonical_flags(trained, root, results, *extra, poses: Path = SHIPPED):
    run, _ = trained
    return ["--model", "PNGAN", "--dataset_mode", "market", "--dataroot", str(root), "--name", "run",
            "--checkpoints_dir", str(run.parent), "--gpu_ids", "-1", "--num_threads", "0", "--batch_size", "8",
            "--results_dir", str(results), "--canonical_poses", str(poses), "--pose_input", "skeleton_rgb",
            *SMALL, *extra]


def test_canonical_mode_renders_every_image_in_every_pose(trained, tiny_market_root, tmp_path):
    results = tmp_path / "canon"
    assert test_script.main(canonical_flags(trained, tiny_market_root, results)) == 0
    images = sorted(p.name for p in (tiny_market_root / "test").iterdir())
    written = sorted(p.name for p in results.glob("*_vis.jpg"))
    assert written == sorted(f"{Path(n).stem}_2_canon{k}_vis.jpg" for n in images for k in range(1, 9))
    assert (results / "web" / "index.html").is_file()
    panel = next((results / "web" / "panels").glob("*.jpg"))
    from PIL import Image

    assert Image.open(panel).size == (3 * 64, 128)  # source | canonical pose | generated
    legacy = tmp_path / "legacy"
    listing = tmp_path / "list.txt"
    listing.write_text(f"# two images\n{images[0]}\n{images[3]}\n")
    assert test_script.main(canonical_flags(trained, tiny_market_root, legacy, "--legacy_names", "--image_format",
                                            "png", "--image_list", str(listing), "--only_generated")) == 0
    assert sorted(p.name for p in legacy.glob("*.png")) == sorted(
        f"{Path(n).stem}_to_{k}.png" for n in (images[0], images[3]) for k in range(1, 9))


def test_canonical_mode_bad_inputs(trained, tiny_market_root, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text(SHIPPED.read_text().replace("canon_3.jpg: [", "canon_3.jpg: 7: ["))
    with pytest.raises(InputError, match="bad.csv row 3: expected 'name: \\[ys\\]: \\[xs\\]' \\(3 fields"):
        test_script.main.__wrapped__(canonical_flags(trained, tiny_market_root, tmp_path / "r1", poses=bad))
    with pytest.raises(InputError, match="--legacy_names writes the official"):
        TestOptions().parse(canonical_flags(trained, tiny_market_root, tmp_path / "r2", "--legacy_names"),
                            echo=False, check_folder=False)
    with pytest.raises(InputError, match="belong to the --canonical_poses mode"):
        TestOptions().parse(["--model", "PNGAN", "--dataset_mode", "market", "--legacy_names"], echo=False,
                            check_folder=False)
    # a model that reads the source pose needs every image annotated
    opt = TestOptions().parse(canonical_flags(trained, tiny_market_root, tmp_path / "r3"), echo=False,
                              check_folder=False)
    extra = tmp_path / "unannotated"
    (extra / "test").mkdir(parents=True)
    first = sorted((tiny_market_root / "test").iterdir())[0]
    (extra / "test" / "9999_c1s1_000001_01.jpg").write_bytes(first.read_bytes())
    opt_extra = TestOptions().parse(canonical_flags(trained, extra, tmp_path / "r4"), echo=False, check_folder=False)
    with pytest.raises(InputError, match="reads the source pose, but 1 image\\(s\\) have no row"):
        CanonicalPoseDataset(opt_extra, needs_source_pose=True)
    item = CanonicalPoseDataset(opt_extra, needs_source_pose=False)[3]
    assert item["target_name"] == "canon4" and "target_image" not in item
    assert not item["source_pose"].any() and item["target_pose"].shape == (18, 128, 64)
    assert len(CanonicalPoseDataset(opt, needs_source_pose=True)) == 9 * 8


# --- canonical poses: the recipe and the shipped file --------------------------------------------------------

def synthetic_annotations(path: Path, rows: int = 120) -> None:
    rng = np.random.default_rng(0)
    base = np.array([[15, 32], [27, 32], [27, 20], [44, 14], [58, 10], [27, 44], [44, 50], [58, 54], [62, 24],
                     [88, 24], [112, 24], [62, 40], [88, 40], [112, 40], [12, 29], [12, 35], [14, 25], [14, 39]])
    out = {}
    for i in range(rows):
        kps = base + rng.integers(-4, 5, size=base.shape)
        if i % 3 == 1:  # back views: no face
            kps[[0, 14, 15]] = -1
        if i % 5 == 2:  # a missing wrist (filled from the elbow for the features)
            kps[4] = -1
        if i % 7 == 3:  # an unusable row: no ankle
            kps[10] = -1
        out[f"{i:04d}_c1s1_{i:06d}_01.jpg"] = kps
    write_annotations(path, out)


def test_make_canonical_poses_is_deterministic_and_valid(tmp_path):
    source = tmp_path / "ann.csv"
    synthetic_annotations(source)
    for name in ("a.csv", "b.csv"):
        assert make_canonical_poses.main(["--annotations", str(source), "--out", str(tmp_path / name)]) == 0
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    poses = read_annotations(tmp_path / "a.csv")
    assert list(poses) == [f"canon_{k}.jpg" for k in range(1, 9)]
    used = read_annotations(source)
    sources = (tmp_path / "a.sources.txt").read_text()
    assert "OUR derivation, NOT the paper's" in sources
    for line in sources.splitlines()[-8:]:
        canon, row, size = line.split()
        assert np.array_equal(poses[canon], used[row]) and int(size) >= 1  # a real row (the medoid)
        assert (used[row][list(make_canonical_poses.REQUIRED)] >= 0).all()
    assert make_canonical_poses.main(["--annotations", str(source), "--out", str(tmp_path / "a.csv")]) == 2


def test_shipped_canonical_poses():
    poses = read_annotations(SHIPPED)
    assert list(poses) == [f"canon_{k}.jpg" for k in range(1, 9)]
    for kps in poses.values():
        required = kps[list(make_canonical_poses.REQUIRED)]
        assert (required >= 0).all() and (required[:, 0] < 128).all() and (required[:, 1] < 64).all()
    sources = SHIPPED.with_suffix(".sources.txt").read_text()
    assert "NOT the paper's poses" in sources and "market-annotation-train.csv" in sources
    assert len([line for line in sources.splitlines() if line.startswith("canon_")]) == 8


# --- smoke training -----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_smoke_training_reduces_l1(tmp_path):
    """200 iterations at batch 8 on the synthetic data (narrow networks on CPU): L1 falls, nothing is NaN."""
    from data import create_dataloader, create_dataset

    opt = TrainOptions().parse(["--model", "PNGAN", "--dataset_mode", "synthetic", "--dataroot", str(tmp_path / "s"),
                                "--gpu_ids", "-1", "--ngf", "8", "--ndf", "8", "--pngan_blocks", "2", "--batch_size",
                                "8", "--num_threads", "0", "--checkpoints_dir", str(tmp_path / "ck")],
                               echo=False, check_folder=False)
    ctx = RunContext(device=torch.device("cpu"))
    torch.manual_seed(0)
    dataset = create_dataset(opt)
    model = create_model(opt, ctx)
    model.setup()
    loader = create_dataloader(opt, ctx, dataset)
    fixed = next(iter(torch.utils.data.DataLoader(dataset, batch_size=8)))

    def fixed_l1() -> float:
        model.set_input(fixed)
        model.test()
        return (model.generated_images() - model.target_image).abs().mean().item()

    loader.sampler.set_epoch(1, skip=0)
    batches = [batch for _, batch in zip(range(16), loader)]  # 128 shuffled pairs, loaded once (the loop is tested)
    before = fixed_l1()
    for step in range(200):
        model.set_input(batches[step % len(batches)])
        model.optimize_parameters()
        assert all(math.isfinite(v) for v in model.get_current_losses().values())
    after = fixed_l1()
    assert after < 0.8 * before, (before, after)
