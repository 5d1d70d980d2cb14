"""Geometry frames, the pair datasets (items, flips, validation errors) and the synthetic dataset's build."""
from __future__ import annotations

import shutil
import sys
import threading
import types

import numpy as np
import pytest
import torch
from PIL import Image

from data import create_dataloader, find_dataset_class
from data.annotations import read_annotations, read_pairs, write_annotations, write_pairs
from data.base_dataset import read_image_size
from data.fashion_dataset import FashionDataset
from data.geometry import (image_to_network, images_to_dataset_frame, keypoints_to_network, network_size,
                           pad_maps)
from data.keypoints import FLIP_PERMUTATION, body_mask, flip_keypoints, gaussian_heatmaps
from data.market_dataset import MarketDataset
from data.synthetic_dataset import MARKER, SyntheticDataset, ensure_synthetic
from util.distributed import RunContext
from util.io import InputError

FASHION = (256, 176)
KEYS = {"source_image", "target_image", "source_pose", "target_pose", "source_keypoints", "target_keypoints",
        "source_name", "target_name"}


def to_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255).sub(0.5).div(0.5)


# --- geometry ----------------------------------------------------------------------------------------------

def test_network_sizes():
    assert network_size((128, 64), "native") == (128, 64)
    assert network_size(FASHION, "pad256") == network_size(FASHION, "stretch256") == (256, 256)
    with pytest.raises(ValueError, match="pad256"):
        network_size((128, 64), "pad256")
    with pytest.raises(ValueError, match="stretch256"):
        network_size(FASHION, "letterbox")


def test_pad256_round_trip_returns_the_original_and_pads_white():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (*FASHION, 3), dtype=np.uint8)
    padded = to_tensor(image_to_network(Image.fromarray(pixels), "pad256"))
    assert padded.shape == (3, 256, 256)
    assert (padded[..., :40] == 1).all() and (padded[..., 216:] == 1).all()
    back = images_to_dataset_frame(padded[None], FASHION, "pad256")[0]
    assert torch.equal(back, to_tensor(Image.fromarray(pixels)))
    maps = pad_maps(torch.ones(18, *FASHION), FASHION, "pad256", -1.0)
    assert maps.shape == (18, 256, 256) and (maps[..., :40] == -1).all() and (maps[..., 40:216] == 1).all()


def test_keypoints_land_where_their_pixels_went():
    # red encodes the column and green the row, so a keypoint's pixel says where it came from
    rows, cols = np.mgrid[:256, :176]
    pixels = np.stack([cols, rows, np.zeros_like(rows)], -1).astype(np.uint8)
    kps = np.array([[y, x] for y, x in zip(range(0, 255, 15), range(0, 176, 10))] + [[-1, -1]], dtype=np.int64)
    for frame in ("native", "pad256", "stretch256"):
        net = np.array(image_to_network(Image.fromarray(pixels), frame))
        mapped = keypoints_to_network(kps, FASHION, frame)
        assert (mapped[-1] == -1).all()
        for (y, x), (yn, xn) in zip(kps[:-1], mapped[:-1]):
            red, green = int(net[yn, xn, 0]), int(net[yn, xn, 1])
            assert green == y and abs(red - x) <= (0 if frame != "stretch256" else 1), (frame, x, red)
    # the official DPTN loader (`data/fashion_dataset.py`, `util/pose_utils.py`) puts a keypoint at x=90 on column 130
    assert keypoints_to_network(np.array([[100, 90]]), FASHION, "stretch256").tolist() == [[100, 130]]
    assert keypoints_to_network(np.array([[100, 90]]), FASHION, "pad256").tolist() == [[100, 130]]


def test_points_outside_the_dataset_frame_become_missing():
    kps = np.array([[10, 176], [256, 5], [3, 175], [-1, -1]])
    for frame in ("native", "pad256", "stretch256"):
        out = keypoints_to_network(kps, FASHION, frame)
        assert (out[:2] == -1).all() and (out[3] == -1).all() and (out[2] >= 0).all()


def test_stretch256_round_trip_is_close_on_smooth_images():
    rows, cols = np.mgrid[:256, :176]
    pixels = np.stack([cols * 255 // 175, rows, (rows + cols) // 2], -1).astype(np.uint8)
    original = to_tensor(Image.fromarray(pixels))
    stretched = to_tensor(image_to_network(Image.fromarray(pixels), "stretch256"))
    assert stretched.shape == (3, 256, 256)
    back = images_to_dataset_frame(stretched[None], FASHION, "stretch256")[0]
    assert back.shape == (3, *FASHION) and (back - original).abs().max() < 0.03
    with pytest.raises(ValueError, match="expected"):
        images_to_dataset_frame(original[None], FASHION, "stretch256")


# --- items -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode,frame,recipe,size", [
    ("market", None, "none", (128, 64)),
    ("market", None, "pg2", (128, 64)),
    ("fashion", "native", "hpt", (256, 176)),
    ("fashion", "pad256", "pg2", (256, 256)),
    ("fashion", "stretch256", "none", (256, 256)),
])
def test_item_dict(request, dataset_opt, mode, frame, recipe, size):
    root = request.getfixturevalue(f"tiny_{mode}_root")
    extra = {"fashion_frame": frame} if frame else {}
    opt = dataset_opt(mode, dataroot=str(root), mask_recipe=recipe, **extra)
    dataset = find_dataset_class(mode)(opt)
    pairs = read_pairs(next(root.glob("*pairs-test.csv")))
    annotations = read_annotations(next(root.glob("*annotation-test.csv")))
    assert len(dataset) == len(pairs) == 18 and dataset.network_size == size
    item = dataset[3]
    assert set(item) == KEYS | ({"target_mask", "source_mask"} if recipe != "none" else set())
    assert (item["source_name"], item["target_name"]) == pairs[3]
    for key, channels in (("source_image", 3), ("target_image", 3), ("source_pose", 18), ("target_pose", 18)):
        assert item[key].shape == (channels, *size) and item[key].dtype == torch.float32
    assert item["source_image"].min() >= -1 and item["source_image"].max() <= 1
    expected_image = to_tensor(image_to_network(Image.open(root / "test" / pairs[3][0]).convert("RGB"),
                                                dataset.frame))
    assert torch.equal(item["source_image"], expected_image)
    target_kps = keypoints_to_network(annotations[pairs[3][1]], dataset.image_size, dataset.frame)
    assert item["target_keypoints"].dtype == torch.int64 and item["target_keypoints"].tolist() == target_kps.tolist()
    if dataset.frame == "pad256":  # maps are built in the 256x176 frame and padded with zeros
        inner = gaussian_heatmaps(annotations[pairs[3][1]], *FASHION)
        assert torch.equal(item["target_pose"][..., 40:216], inner) and item["target_pose"][..., :40].sum() == 0
    else:
        assert torch.equal(item["target_pose"], gaussian_heatmaps(target_kps, *size))
    if recipe != "none":
        mask = item["target_mask"]
        assert mask.shape == (1, *size) and mask.dtype == torch.float32 and set(mask.unique().tolist()) == {0.0, 1.0}
        if dataset.frame != "pad256":
            assert torch.equal(mask[0].bool(), torch.from_numpy(body_mask(target_kps, *size, recipe)))


def test_tf_disc_encoding_under_pad256_pads_with_minus_one(tiny_fashion_root, dataset_opt):
    opt = dataset_opt("fashion", dataroot=str(tiny_fashion_root), fashion_frame="pad256", pose_encoding="tf_disc")
    pose = FashionDataset(opt)[0]["source_pose"]
    assert set(pose.unique().tolist()) == {-1.0, 1.0} and (pose[..., :40] == -1).all()


def test_loader_batches_and_workers_agree(tiny_market_root, dataset_opt):
    opt = dataset_opt("market", dataroot=str(tiny_market_root), batch_size=4, mask_recipe="pg2")
    ctx = RunContext(device=torch.device("cpu"))
    serial = list(create_dataloader(opt, ctx))
    assert len(serial) == 5 and len(serial[-1]["source_name"]) == 2  # test keeps the last partial batch
    assert serial[0]["target_pose"].shape == (4, 18, 128, 64) and serial[0]["target_mask"].shape == (4, 1, 128, 64)
    opt.num_threads = 2
    parallel = list(create_dataloader(opt, ctx))
    assert [b["target_name"] for b in parallel] == [b["target_name"] for b in serial]
    assert all(torch.equal(a["source_image"], b["source_image"]) for a, b in zip(serial, parallel))


def test_max_dataset_size_keeps_the_first_pairs(tiny_market_root, dataset_opt):
    dataset = MarketDataset(dataset_opt("market", dataroot=str(tiny_market_root), max_dataset_size=5.0))
    assert len(dataset) == 5 and dataset.pairs == read_pairs(tiny_market_root / "market-pairs-test.csv")[:5]


# --- flips -------------------------------------------------------------------------------------------------

def test_flip_mirrors_both_images_and_rebuilds_maps_from_flipped_keypoints(tiny_market_root, dataset_opt):
    plain = MarketDataset(dataset_opt("market", dataroot=str(tiny_market_root), mask_recipe="hpt"))[7]
    opt = dataset_opt("market", is_train=True, phase="test", dataroot=str(tiny_market_root), flip_prob=1.0,
                      mask_recipe="hpt")
    flipped = MarketDataset(opt)[7]
    perm = list(FLIP_PERMUTATION)
    for side in ("source", "target"):
        assert torch.equal(flipped[f"{side}_image"], plain[f"{side}_image"].flip(-1))
        expected = flip_keypoints(plain[f"{side}_keypoints"].numpy(), 64)
        assert flipped[f"{side}_keypoints"].tolist() == expected.tolist()
        assert torch.equal(flipped[f"{side}_pose"], plain[f"{side}_pose"].flip(-1)[perm])
    assert torch.equal(flipped["target_mask"], plain["target_mask"].flip(-1))
    opt.is_train = False  # never at test time
    assert torch.equal(MarketDataset(opt)[7]["source_image"], plain["source_image"])


def test_flip_coins_are_reproducible_from_the_seed(tiny_market_root, dataset_opt):
    def coins(seed, items):
        opt = dataset_opt("market", is_train=True, phase="test", dataroot=str(tiny_market_root),
                          flip_prob=0.5, seed=seed)
        dataset = MarketDataset(opt)
        return [dataset.flip_coin(*item) for item in items]

    draws = [(i % 18,) for i in range(60)]
    assert coins(0, draws) == coins(0, draws) and coins(0, draws) != coins(1, draws)
    assert 15 < sum(coins(0, draws)) < 45
    by_epoch = [(i, e) for e in range(3) for i in range(18)]
    assert coins(0, by_epoch) == coins(0, by_epoch[::-1])[::-1]  # (index, epoch) coins ignore order


def test_header_sizes_match_pil(tmp_path):
    rng = np.random.default_rng(0)
    for i, (fmt, options) in enumerate([("JPEG", {}), ("JPEG", {"progressive": True, "quality": 40}),
                                        ("PNG", {}), ("BMP", {})]):
        pixels = rng.integers(0, 256, (37 + i, 23 + 5 * i, 3), dtype=np.uint8)
        path = tmp_path / f"image{i}.{fmt.lower()}"
        Image.fromarray(pixels).save(path, fmt, **options)
        assert read_image_size(path) == Image.open(path).size == (23 + 5 * i, 37 + i)


# --- validation --------------------------------------------------------------------------------------------

@pytest.fixture
def market_copy(tiny_market_root, tmp_path):
    return shutil.copytree(tiny_market_root, tmp_path / "market")


def build(opt_factory, root, mode="market", **kw):
    return find_dataset_class(mode)(opt_factory(mode, dataroot=None if root is None else str(root), **kw))


def test_missing_dataroot(dataset_opt, tmp_path):
    with pytest.raises(InputError, match="--dataroot"):
        build(dataset_opt, None)
    with pytest.raises(InputError, match=f"--dataroot {tmp_path / 'nowhere'} does not exist"):
        build(dataset_opt, tmp_path / "nowhere")


def test_missing_phase_folder(market_copy, dataset_opt):
    shutil.rmtree(market_copy / "test")
    with pytest.raises(InputError, match=f"image folder {market_copy / 'test'} not found"):
        build(dataset_opt, market_copy)


def test_missing_csv(market_copy, tiny_fashion_root, tmp_path, dataset_opt):
    (market_copy / "market-pairs-test.csv").unlink()
    with pytest.raises(InputError, match="market-pairs-test.csv not found"):
        build(dataset_opt, market_copy)
    fashion = shutil.copytree(tiny_fashion_root, tmp_path / "fashion")
    (fashion / "fasion-resize-annotation-test.csv").unlink()
    with pytest.raises(InputError) as info:
        build(dataset_opt, fashion, "fashion")
    for name in ("fasion-resize-annotation-test.csv", "fashion-resize-annotation-test.csv",
                 "fasion-annotation-test.csv", "fashion-annotation-test.csv"):
        assert name in str(info.value)


def test_fashion_accepts_the_other_spellings(tiny_fashion_root, tmp_path, dataset_opt):
    fashion = shutil.copytree(tiny_fashion_root, tmp_path / "fashion")
    (fashion / "fasion-resize-annotation-test.csv").rename(fashion / "fashion-annotation-test.csv")
    (fashion / "fasion-resize-pairs-test.csv").rename(fashion / "fasion-pairs-test.csv")
    assert len(build(dataset_opt, fashion, "fashion")) == 18


def test_malformed_annotation_row(market_copy, dataset_opt):
    path = market_copy / "market-annotation-test.csv"
    lines = path.read_text().splitlines()
    name, ys, xs = lines[2].split(":")
    lines[2] = ":".join([name, ys.rsplit(",", 1)[0] + "]", xs])  # drop the last y
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match="market-annotation-test.csv row 2: keypoints_y has 17 values"):
        build(dataset_opt, market_copy)


def test_pair_name_unknown_to_the_annotation_file(market_copy, dataset_opt):
    pairs = read_pairs(market_copy / "market-pairs-test.csv")
    write_pairs(market_copy / "market-pairs-test.csv", pairs + [(pairs[0][0], "9999_c1s1_000001_01.jpg")])
    with pytest.raises(InputError) as info:
        build(dataset_opt, market_copy)
    message = str(info.value)
    assert "1 image name(s) have no row in market-annotation-test.csv" in message
    assert "'9999_c1s1_000001_01.jpg' (market-pairs-test.csv row 19)" in message


def test_image_named_in_pairs_but_absent(market_copy, dataset_opt):
    pairs = read_pairs(market_copy / "market-pairs-test.csv")
    (market_copy / "test" / pairs[4][1]).unlink()
    with pytest.raises(InputError) as info:
        build(dataset_opt, market_copy)
    message = str(info.value)
    assert "1 image(s) named in market-pairs-test.csv are missing from" in message and str(market_copy) in message
    first_row = next(r for r, pair in enumerate(pairs, 1) if pairs[4][1] in pair)
    assert f"{pairs[4][1]!r} (market-pairs-test.csv row {first_row})" in message


def test_image_of_the_wrong_size(market_copy, dataset_opt):
    name = read_pairs(market_copy / "market-pairs-test.csv")[0][0]
    Image.new("RGB", (32, 64)).save(market_copy / "test" / name)
    with pytest.raises(InputError, match=f"{market_copy / 'test' / name}: image is 64x32 .* expected 128x64"):
        build(dataset_opt, market_copy)


def test_keypoints_outside_the_frame_are_errors_or_missing(market_copy, dataset_opt):
    path = market_copy / "market-annotation-test.csv"
    annotations = read_annotations(path)
    name = read_pairs(market_copy / "market-pairs-test.csv")[0][1]
    annotations[name][1] = (40, 70)  # neck beyond the 64 columns
    annotations[name][0] = (200, 10)  # nose below the 128 rows
    write_annotations(path, annotations)
    row = list(annotations).index(name) + 1
    with pytest.raises(InputError, match=rf"market-annotation-test.csv row {row} \({name}\): keypoint 0 \(nose\)"):
        build(dataset_opt, market_copy)
    item = build(dataset_opt, market_copy, keypoints_outside="missing")[0]
    assert item["target_keypoints"][:2].tolist() == [[-1, -1], [-1, -1]]
    assert item["target_pose"][:2].sum() == 0 and item["target_pose"][2].max() == 1.0


# --- synthetic ---------------------------------------------------------------------------------------------

@pytest.fixture
def fake_builder(monkeypatch, make_pose_dataset):
    """Stand-in for data.synthetic_build (another module's job) that writes the tiny layout."""
    calls = []

    def make_synthetic_dataset(out, fmt, people, seed):
        calls.append(out)
        make_pose_dataset(out, fmt, people=people, views=2, seed=seed)
        return {"people": people}

    module = types.ModuleType("data.synthetic_build")
    module.make_synthetic_dataset = make_synthetic_dataset
    monkeypatch.setitem(sys.modules, "data.synthetic_build", module)
    return calls


def test_synthetic_options_and_build_once(fake_builder, dataset_opt, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    opt = dataset_opt("synthetic", synthetic_format="fashion", synthetic_people=3, seed=5,
                      fashion_frame="pad256")
    assert opt.dataroot == "./datasets/synthetic/fashion_p3_s5" and opt.data_format == "fashion"
    dataset = SyntheticDataset(opt)
    assert len(dataset) == 6 and dataset.network_size == (256, 256) and dataset.image_size == FASHION
    assert dataset[0]["source_image"].shape == (3, 256, 256)
    assert (tmp_path / "datasets/synthetic/fashion_p3_s5" / MARKER).is_file()
    assert len(SyntheticDataset(opt)) == 6 and len(fake_builder) == 1  # built once, then reused
    assert sorted(p.name for p in (tmp_path / "datasets/synthetic").iterdir()) == ["fashion_p3_s5"]


def test_synthetic_concurrent_builds(fake_builder, tmp_path):
    root, errors, gate = tmp_path / "market_p2_s0", [], threading.Barrier(2)
    original = sys.modules["data.synthetic_build"].make_synthetic_dataset

    def racing(out, fmt, people, seed):
        gate.wait(timeout=10)  # both processes are mid-build at the same time
        return original(out, fmt, people, seed)

    sys.modules["data.synthetic_build"].make_synthetic_dataset = racing

    def start():
        try:
            ensure_synthetic(root, "market", 2, 0)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert errors == [] and len(fake_builder) == 2 and (root / MARKER).is_file()
    assert [p.name for p in tmp_path.iterdir()] == [root.name]  # no temporary folder left
    assert len(read_pairs(root / "market-pairs-test.csv")) == 4


def test_synthetic_refuses_a_foreign_folder(fake_builder, tmp_path, dataset_opt):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("mine")
    opt = dataset_opt("synthetic", dataroot=str(tmp_path / "stuff"))
    with pytest.raises(InputError, match=f"{tmp_path / 'stuff'} holds files but no {MARKER}"):
        SyntheticDataset(opt)
    assert fake_builder == []


def test_dataset_hooks_add_their_flags():
    import argparse

    for mode, flags in (("market", {"--pose_encoding", "--pose_sigma", "--mask_recipe", "--flip_prob"}),
                        ("fashion", {"--fashion_frame"}),
                        ("synthetic", {"--fashion_frame", "--synthetic_format", "--synthetic_people"})):
        parser = find_dataset_class(mode).modify_commandline_options(argparse.ArgumentParser(), True)
        assert flags <= set(parser._option_string_actions)


def test_synthetic_with_the_real_builder(tmp_path, dataset_opt, monkeypatch):
    pytest.importorskip("data.synthetic_build")
    monkeypatch.chdir(tmp_path)
    opt = dataset_opt("synthetic", is_train=True, synthetic_people=4, seed=3, mask_recipe="pg2", flip_prob=0.5)
    dataset = SyntheticDataset(opt)
    root = tmp_path / "datasets/synthetic/market_p4_s3"
    assert dataset.root.resolve() == root and (root / MARKER).is_file()
    assert len(dataset) == len(read_pairs(root / "market-pairs-train.csv")) > 0
    item = dataset[0]
    assert set(item) == KEYS | {"target_mask", "source_mask"} and item["target_pose"].shape == (18, 128, 64)
    assert item["target_pose"].amax(dim=(1, 2)).max() == 1.0 and item["target_mask"].sum() > 100


@pytest.mark.parametrize("flag,value", [("flip_prob", 1.5), ("pose_sigma", 0.0)])
def test_bad_pose_flags(tiny_market_root, dataset_opt, flag, value):
    with pytest.raises(InputError, match=f"--{flag}"):
        build(dataset_opt, tiny_market_root, **{flag: value})


def test_header_mode_matches_pil(tmp_path):
    from data.base_dataset import read_image_header

    for i, (mode, ext) in enumerate([("RGB", "jpg"), ("L", "jpg"), ("CMYK", "jpg"), ("RGB", "png"), ("L", "png"),
                                     ("RGBA", "png"), ("LA", "png"), ("P", "png")]):
        path = tmp_path / f"im{i}.{ext}"
        Image.new(mode, (30 + i, 40)).save(path)
        with Image.open(path) as image:
            assert read_image_header(path) == (image.size[0], image.size[1], image.mode)


def test_grayscale_converted_with_a_warning_and_sizes_resized_only_on_request(make_pose_dataset, tmp_path,
                                                                             dataset_opt, capsys):
    root = make_pose_dataset(tmp_path / "data", "market")
    images = sorted((root / "test").glob("*.jpg"))
    Image.open(images[0]).convert("L").save(images[0])
    Image.open(images[1]).resize((60, 120)).save(images[1])
    with pytest.raises(InputError, match=r"120x60 \(height x width\), expected 128x64; pass --resize_mismatched"):
        build(dataset_opt, root)
    dataset = build(dataset_opt, root, resize_mismatched=True)
    out = capsys.readouterr().out
    assert "1 image(s)" in out and "are not RGB" in out and "--resize_mismatched resizes them" in out
    names = {images[0].name, images[1].name}
    index = next(i for i, pair in enumerate(dataset.pairs) if set(pair) & names)
    assert dataset[index]["source_image"].shape == (3, 128, 64)
