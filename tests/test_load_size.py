"""PN-GAN's `--load_size 256 128` (docs/models/pngan.md): the 'double' frame of data/geometry.py (PIL bicubic in,
keypoints x2, uint8 PIL bicubic out), Market and synthetic Market reading opt.market_frame, the option's checks,
D's 26x10 output, and train.py / test.py runs that persist the option and write 128x64 results."""
from __future__ import annotations

import argparse
import contextlib
import io
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

import test as test_script
import train as train_script
from data import create_dataset
from data.annotations import read_pairs
from data.geometry import (image_to_network, images_to_dataset_frame, keypoints_to_network, network_size,
                           uint8_to_dataset_frame)
from data.market_dataset import MarketDataset
from data.synthetic_dataset import SyntheticDataset
from models import create_model
from models.pngan_options import derive_load_size
from options.base_options import read_option_file
from options.test_options import TestOptions
from options.train_options import TrainOptions
from util.distributed import RunContext
from util.image import save_image, tensor_to_uint8, uint8_to_tensor
from util.io import InputError

MARKET = (128, 64)
CANONICAL = Path(__file__).resolve().parents[1] / "datasets" / "canonical_poses" / "market-canonical-poses.csv"
SMALL = ["--ngf", "8", "--ndf", "8", "--pngan_blocks", "2"]


def random_image(seed: int = 0, size: tuple[int, int] = MARKET) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(*size, 3), dtype=np.uint8)


def pngan_train_opt(root: Path, *flags: str, model: str = "PNGAN", mode: str = "market"):
    argv = ["--model", model, "--dataset_mode", mode, "--dataroot", str(root), "--gpu_ids", "-1",
            "--checkpoints_dir", str(root / "ck"), *flags]
    return TrainOptions().parse(argv, echo=False, check_folder=False)


# --- the frame ----------------------------------------------------------------------------------------------

def test_double_frame_size_and_image_resize_are_the_official_pil_bicubic():
    assert network_size(MARKET, "double") == (256, 128)
    image = Image.fromarray(random_image())
    ours = np.asarray(image_to_network(image, "double"))
    assert ours.shape == (256, 128, 3)
    assert np.array_equal(ours, np.asarray(image.resize((128, 256), Image.Resampling.BICUBIC)))
    official = transforms.Resize((256, 128), interpolation=3)(image)  # naiq/PN_GAN script/GAN/dataset.py
    assert np.array_equal(ours, np.asarray(official))


def test_double_frame_keypoints_are_scaled_by_two():
    kps = np.full((18, 2), -1, dtype=np.int64)
    kps[0], kps[1], kps[2] = (0, 0), (127, 63), (40, 17)
    kps[3] = (130, 20)  # outside the 128x64 image
    out = keypoints_to_network(kps, MARKET, "double")
    assert out[0].tolist() == [0, 0] and out[1].tolist() == [254, 126] and out[2].tolist() == [80, 34]
    assert (out[3:] == -1).all()  # outside and missing points stay missing
    kept = keypoints_to_network(kps, MARKET, "double", keep_outside=True)
    assert kept[3].tolist() == [260, 40] and (kept[4:] == -1).all()


def test_outputs_go_back_to_128x64_with_pil_bicubic_on_uint8():
    network = np.stack([random_image(1, (256, 128)), random_image(2, (256, 128))])
    back = uint8_to_dataset_frame(network, MARKET, "double")
    assert back.shape == (2, 128, 64, 3) and back.dtype == np.uint8
    for ours, image in zip(back, network):
        assert np.array_equal(ours, np.asarray(Image.fromarray(image).resize((64, 128), Image.Resampling.BICUBIC)))
    # the float path (what PairDataset.output_to_uint8 converts) gives exactly the saved uint8 images
    outputs = torch.rand(2, 3, 256, 128, generator=torch.Generator().manual_seed(0)) * 2.2 - 1.1  # some clamped
    expected = uint8_to_dataset_frame(tensor_to_uint8(outputs), MARKET, "double")
    floats = images_to_dataset_frame(outputs, MARKET, "double")
    assert floats.shape == (2, 3, 128, 64) and floats.dtype == torch.float32
    assert np.array_equal(tensor_to_uint8(floats), expected)
    # every uint8 value survives: 256 constant images (bicubic keeps a constant) come back as themselves
    values = torch.arange(256, dtype=torch.float32)
    constant = ((values + 0.5) / 127.5 - 1.0).view(256, 1, 1, 1).expand(256, 3, 8, 4)
    back = tensor_to_uint8(images_to_dataset_frame(constant, (4, 2), "double"))
    assert np.array_equal(back, np.arange(256, dtype=np.uint8).reshape(256, 1, 1, 1).repeat(4, 1).repeat(2, 2)
                          .repeat(3, 3))


# --- the datasets -------------------------------------------------------------------------------------------

def test_market_reads_market_frame(tiny_market_root, dataset_opt):
    native = MarketDataset(dataset_opt("market", dataroot=str(tiny_market_root)))
    assert native.frame == "native" and native.network_size == MARKET
    dataset = MarketDataset(dataset_opt("market", dataroot=str(tiny_market_root), market_frame="double"))
    assert dataset.frame == "double" and dataset.network_size == (256, 128)
    item = dataset[0]
    source, target = dataset.pairs[0]
    photo = Image.open(tiny_market_root / "test" / source).convert("RGB")
    assert torch.equal(item["source_image"],
                       uint8_to_tensor(np.array(photo.resize((128, 256), Image.Resampling.BICUBIC))))
    kps = dataset.keypoints[target]
    present = (kps >= 0).all(axis=1)
    assert torch.equal(item["target_keypoints"][present], torch.from_numpy(kps[present] * 2))
    k = int(np.flatnonzero(present)[0])
    heatmap = item["target_pose"][k]
    assert heatmap.shape == (256, 128)
    assert divmod(int(heatmap.argmax()), 128) == tuple(2 * kps[k])  # maps built at 256x128, peak at (2y, 2x)
    assert dataset.output_to_uint8(item["target_image"][None]).shape == (1, 128, 64, 3)


def test_synthetic_market_reads_market_frame(dataset_opt):
    opt = dataset_opt("synthetic")
    assert opt.market_frame == "native"
    assert MarketDataset.frame_for(opt) == "native"
    opt.market_frame = "double"
    assert MarketDataset.frame_for(opt) == "double"
    assert MarketDataset.frame_for(types.SimpleNamespace()) == "native"  # modes without it stay native
    opt.market_frame = "pad256"
    with pytest.raises(ValueError, match="unknown Market frame"):
        MarketDataset.frame_for(opt)
    parsed = SyntheticDataset.modify_commandline_options(argparse.ArgumentParser(), False).parse_args([])
    assert parsed.market_frame == "native"


# --- the option ---------------------------------------------------------------------------------------------

def test_load_size_selects_the_frame_and_nothing_else_does(tiny_market_root):
    assert pngan_train_opt(tiny_market_root, "--load_size", "256", "128").market_frame == "double"
    assert pngan_train_opt(tiny_market_root, "--load_size", "128", "64").market_frame == "native"
    assert pngan_train_opt(tiny_market_root).market_frame == "native"
    assert pngan_train_opt(tiny_market_root, model="PATN").market_frame == "native"
    with pytest.raises(InputError, match="--load_size"):  # the flag is PN-GAN's alone
        pngan_train_opt(tiny_market_root, "--load_size", "256", "128", model="PATN")
    with pytest.raises(InputError, match="256 176 is not supported on market data: give 128 64 or 256 128"):
        pngan_train_opt(tiny_market_root, "--load_size", "256", "176")
    fashion = types.SimpleNamespace(load_size=[256, 128], data_format="fashion", dataset_mode="fashion")
    with pytest.raises(InputError, match="--load_size sets Market's frame; DeepFashion's frame is --fashion_frame"):
        derive_load_size(fashion)
    other_mode = types.SimpleNamespace(load_size=[256, 128], data_format="market", dataset_mode="keypoint")
    with pytest.raises(InputError, match="needs a dataset mode that reads Market at 256x128"):
        derive_load_size(other_mode)


def test_discriminator_scores_26x10_at_256x128(tiny_market_root):
    opt = pngan_train_opt(tiny_market_root, "--load_size", "256", "128", "--batch_size", "2", *SMALL)
    model = create_model(opt, RunContext(device=torch.device("cpu")))
    model.setup()
    batch = next(iter(torch.utils.data.DataLoader(create_dataset(opt), batch_size=2)))
    model.set_input(batch)
    model.forward()
    assert model.fake_image.shape == (2, 3, 256, 128)
    assert model.netD(model.fake_image).shape == (2, 1, 26, 10)


# --- train.py and test.py -----------------------------------------------------------------------------------

def run_flags(root: Path, ck: Path) -> list[str]:
    return ["--model", "PNGAN", "--dataset_mode", "market", "--dataroot", str(root), "--name", "run",
            "--checkpoints_dir", str(ck), "--gpu_ids", "-1", "--num_threads", "0", "--load_size", "256", "128",
            "--pose_input", "skeleton_rgb", "--ngf", "4", "--pngan_blocks", "1"]


@pytest.fixture(scope="module")
def trained_256(tiny_market_root, tmp_path_factory) -> Path:
    """One one-iteration epoch of a tiny PN-GAN at 256x128; its checkpoints folder."""
    ck = tmp_path_factory.mktemp("load_size_ck")
    with contextlib.redirect_stdout(io.StringIO()):
        assert train_script.main(run_flags(tiny_market_root, ck) + [
            "--ndf", "4", "--batch_size", "2", "--max_dataset_size", "2", "--niter", "1", "--niter_decay", "0",
            "--display_freq", "100000"]) == 0
    return ck


def test_options_persisted_and_test_writes_128x64_results(trained_256, tiny_market_root, tmp_path):
    saved = read_option_file((trained_256 / "run" / "train_opt.txt").read_text())
    assert saved["load_size"] == "[256, 128]" and saved["market_frame"] == "double"
    results = tmp_path / "results"
    flags = run_flags(tiny_market_root, trained_256) + ["--batch_size", "4", "--results_dir", str(results)]
    with contextlib.redirect_stdout(io.StringIO()):
        assert test_script.main(flags) == 0
    pairs = read_pairs(tiny_market_root / "market-pairs-test.csv")
    written = sorted(results.glob("*_vis.jpg"))
    assert sorted(p.name for p in written) == sorted(f"{Path(a).stem}_2_{Path(b).stem}_vis.jpg" for a, b in pairs)
    assert all(Image.open(p).size == (64, 128) for p in written)
    # test.py rebuilt the 256x128 frame: the first file is G's output, uint8, PIL bicubic to 128x64, JPEG q75
    opt = TestOptions().parse(flags, echo=False, check_folder=False)
    assert opt.market_frame == "double"
    model = create_model(opt, RunContext(device=torch.device("cpu")))
    model.setup()
    model.set_input(next(iter(torch.utils.data.DataLoader(create_dataset(opt), batch_size=1))))
    model.test()
    assert model.generated_images().shape == (1, 3, 256, 128)
    small = Image.fromarray(tensor_to_uint8(model.generated_images())[0]).resize((64, 128), Image.Resampling.BICUBIC)
    save_image(np.asarray(small), tmp_path / "expected.jpg")
    first = results / f"{Path(pairs[0][0]).stem}_2_{Path(pairs[0][1]).stem}_vis.jpg"
    assert first.read_bytes() == (tmp_path / "expected.jpg").read_bytes()


def test_canonical_mode_at_256x128_writes_128x64_results(trained_256, tiny_market_root, tmp_path):
    """The canonical-pose mode builds its items in the same frame and saves at 128x64 too."""
    names = tmp_path / "names.txt"
    names.write_text(sorted(p.name for p in (tiny_market_root / "test").iterdir())[0] + "\n")
    canon = tmp_path / "canon"
    with contextlib.redirect_stdout(io.StringIO()):
        assert test_script.main(run_flags(tiny_market_root, trained_256) + [
            "--batch_size", "8", "--results_dir", str(canon), "--canonical_poses", str(CANONICAL),
            "--image_list", str(names), "--only_generated"]) == 0
    rendered = sorted(canon.glob("*_2_canon*_vis.jpg"))
    assert len(rendered) == 8 and all(Image.open(p).size == (64, 128) for p in rendered)
