"""train.py -> checkpoints -> test.py on tiny datasets in the official layouts, resume and bad inputs."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from PIL import Image

import train as train_script
from data.annotations import read_pairs

REPO = Path(__file__).resolve().parents[1]
# test.py shares its module name with Python's own `test` package, so load it by path
_spec = importlib.util.spec_from_file_location("pose_transfer_test_script", REPO / "test.py")
test_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(test_script)
COMMON = ["--gpu_ids", "-1", "--num_threads", "0", "--ngf", "8", "--seed", "3"]


def train_args(root: Path, ckpt: Path, name: str, *extra: str) -> list[str]:
    return ["--name", name, "--model", "PG2", "--dataset_mode", "market", "--dataroot", str(root),
            "--checkpoints_dir", str(ckpt), "--batchSize", "2", "--niter", "2", "--niter_decay", "0",
            "--print_freq", "2", "--display_freq", "4", "--save_epoch_freq", "1", *COMMON, *extra]


def args_for_test(root: Path, ckpt: Path, name: str, results: Path, *extra: str) -> list[str]:
    return ["--name", name, "--model", "PG2", "--dataset_mode", "market", "--dataroot", str(root),
            "--checkpoints_dir", str(ckpt), "--results_dir", str(results), "--batchSize", "3", *COMMON, *extra]


@pytest.fixture(scope="module")
def stage1_run(tiny_market_root, tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("ckpt")
    assert train_script.main(train_args(tiny_market_root, ckpt, "pg2_s1", "--stage", "1")) == 0
    return ckpt


def test_training_writes_checkpoints_logs_and_html(stage1_run):
    run = stage1_run / "pg2_s1"
    for name in ("train_opt.txt", "loss_log.txt", "web/index.html", "web/images/loss_curves.png",
                 "latest_net_G1.pth", "latest_train_state.pth", "1_net_G1.pth", "2_net_G1.pth",
                 "2_train_state.pth"):
        assert (run / name).is_file(), name
    log = (run / "loss_log.txt").read_text()
    assert "G1_mask_l1" in log and "(epoch: 1" in log
    state = torch.load(run / "latest_train_state.pth", weights_only=False)
    assert state["progress"]["epoch"] == 3 and state["progress"]["epoch_iter"] == 0
    saved = torch.load(run / "latest_net_G1.pth", weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in state["model"]["networks"]["G1"].items())
    assert not any(k.startswith("module.") for k in saved)


def test_test_writes_every_pair_at_dataset_resolution(stage1_run, tiny_market_root, tmp_path):
    results = tmp_path / "results"
    assert test_script.main(args_for_test(tiny_market_root, stage1_run, "pg2_s1", results, "--stage", "1")) == 0
    pairs = read_pairs(tiny_market_root / "market-pairs-test.csv")
    expected = {f"{Path(a).stem}_2_{Path(b).stem}_vis.jpg" for a, b in pairs}
    assert {p.name for p in results.glob("*.jpg")} == expected
    for path in results.glob("*.jpg"):
        assert Image.open(path).size == (64, 128)
    page = (results / "web" / "index.html").read_text()
    panels = sorted((results / "web" / "panels").glob("*.jpg"))
    assert len(panels) == len(pairs) and panels[0].name in page
    assert Image.open(panels[0]).size == (5 * 64, 128)
    assert (stage1_run / "pg2_s1" / "test_opt.txt").is_file()


def test_how_many_and_only_generated(stage1_run, tiny_market_root, tmp_path):
    results = tmp_path / "only"
    argv = args_for_test(tiny_market_root, stage1_run, "pg2_s1", results, "--stage", "1", "--how_many", "2",
                     "--only_generated", "--image_format", "png")
    assert test_script.main(argv) == 0
    assert len(list(results.glob("*_vis.png"))) == 2 and not (results / "web").exists()


def test_stage2_trains_from_stage1_and_tests(stage1_run, tiny_market_root, tmp_path):
    argv = train_args(tiny_market_root, stage1_run, "pg2_s2", "--stage", "2", "--stage1_name", "pg2_s1",
                      "--niter", "1")
    assert train_script.main(argv) == 0
    run = stage1_run / "pg2_s2"
    g1_before = torch.load(stage1_run / "pg2_s1" / "latest_net_G1.pth", weights_only=True)
    g1_after = torch.load(run / "latest_net_G1.pth", weights_only=True)
    assert all(torch.equal(g1_before[k], g1_after[k]) for k in g1_before)
    assert (run / "latest_net_G2.pth").is_file() and (run / "latest_net_D.pth").is_file()
    results = tmp_path / "s2"
    assert test_script.main(args_for_test(tiny_market_root, stage1_run, "pg2_s2", results, "--stage", "2")) == 0
    assert len(list(results.glob("*_vis.jpg"))) == len(read_pairs(tiny_market_root / "market-pairs-test.csv"))


def test_resume_equals_uninterrupted_run(tiny_market_root, tmp_path):
    # 5 iterations straight vs 2 + resume + 3 (crossing an epoch boundary, flips on): identical weights
    straight = train_args(tiny_market_root, tmp_path, "straight", "--stage", "1", "--max_steps", "5")
    assert train_script.main(straight) == 0
    first = train_args(tiny_market_root, tmp_path, "resumed", "--stage", "1", "--max_steps", "2")
    assert train_script.main(first) == 0
    assert train_script.main(first[:-1] + ["5", "--continue_train"]) == 0
    a = torch.load(tmp_path / "straight" / "latest_net_G1.pth", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "latest_net_G1.pth", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    state = torch.load(tmp_path / "resumed" / "latest_train_state.pth", weights_only=False)
    assert state["progress"]["total_iters"] == 5


def test_fashion_pad256_outputs_are_cropped_back(tiny_fashion_root, tmp_path):
    common = ["--model", "PG2", "--dataset_mode", "fashion", "--dataroot", str(tiny_fashion_root),
              "--checkpoints_dir", str(tmp_path), "--name", "fash", "--stage", "1", *COMMON]
    assert train_script.main(common + ["--batchSize", "2", "--max_steps", "1"]) == 0
    results = tmp_path / "res"
    assert test_script.main(common + ["--results_dir", str(results), "--how_many", "2"]) == 0
    images = sorted(results.glob("*_vis.jpg"))
    assert len(images) == 2 and all(Image.open(p).size == (176, 256) for p in images)
