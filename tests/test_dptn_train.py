"""DPTN from the command line: the README commands and official defaults, refused flags, the official data path
(DeepFashion stretched to 256x256, heatmaps, outputs resized back with OpenCV), train -> test on tiny data, and
the training benchmark.
"""
from __future__ import annotations

import importlib.util
import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import train as train_script
from data import find_dataset_class
from data.annotations import read_annotations, read_pairs
from models.networks.dptn_generator import DPTNGenerator
from options.test_options import TestOptions
from options.train_options import TrainOptions
from util.io import InputError

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("pose_transfer_test_script_dptn", REPO / "test.py")
test_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(test_script)
DATA = Path(__file__).resolve().parent / "data"

# the commands of the official README (PangzeCheung/Dual-task-Pose-Transformer-Network), verbatim
README = {
    ("train", "fashion"): "--name=DPTN_fashion --model=DPTN --dataset_mode=fashion --dataroot=./dataset/fashion "
                          "--batchSize 32 --gpu_id=0",
    ("train", "market"): "--name=DPTN_market --model=DPTN --dataset_mode=market --dataroot=./dataset/market "
                         "--dis_layers=3 --lambda_g=5 --lambda_rec 2 --t_s_ratio=0.8 --save_latest_freq=10400 "
                         "--batchSize 32 --gpu_id=0",
    ("test", "fashion"): "--name=DPTN_fashion --model=DPTN --dataset_mode=fashion --dataroot=./dataset/fashion "
                         "--which_epoch latest --results_dir ./results/DPTN_fashion --batchSize 1 --gpu_id=0",
    ("test", "market"): "--name=DPTN_market --model=DPTN --dataset_mode=market --dataroot=./dataset/market "
                        "--which_epoch latest --results_dir=./results/DPTN_market  --batchSize 1 --gpu_id=0",
}

# the official defaults (`options/base_options.py`, `models/DPTN_model.py` modify_options):
# official name -> (our attribute, value); the same in train and test
OFFICIAL_COMMON = {
    "checkpoints_dir": ("checkpoints_dir", "./checkpoints"), "model": ("model", "DPTN"), "norm": ("norm", "instance"),
    "image_nc": ("image_nc", 3), "pose_nc": ("pose_nc", 18), "structure_nc": ("structure_nc", 18),
    "loadSize": ("loadSize", 256), "serial_batches": ("serial_batches", False), "nThreads": ("num_threads", 2),
    "max_dataset_size": ("max_dataset_size", math.inf), "display_id": ("display_id", 0),
    "display_port": ("display_port", 8097),  # official 8096; no official command needs it: one port everywhere
    "display_winsize": ("display_winsize", 512), "verbose": ("verbose", False),
    "init_type": ("init_type", "orthogonal"), "use_spect_g": ("use_spect_g", False), "use_spect_d": ("use_spect_d", True),
    "use_coord": ("use_coord", False), "lambda_style": ("lambda_style", 500.0),
    "lambda_content": ("lambda_content", 0.5), "layers_g": ("layers_g", 3), "save_input": ("save_input", False),
    "num_blocks": ("num_blocks", 3), "affine": ("affine", True), "nhead": ("nhead", 2), "num_CABs": ("num_CABs", 2),
    "num_TTBs": ("num_TTBs", 2), "ratio_g2d": ("ratio_g2d", 0.1), "which_epoch": ("which_epoch", "latest"),
}
TRAINING_ONLY = ("lambda_style", "lambda_content", "ratio_g2d", "use_spect_d")
OFFICIAL_TRAIN = {
    "display_freq": ("display_freq", 200), "print_freq": ("print_freq", 800),  # lcm(200, batchSize 32)
    "save_epoch_freq": ("save_epoch_freq", 1), "continue_train": ("continue_train", False),
    "phase": ("phase", "train"), "niter": ("niter", 100), "niter_decay": ("niter_decay", 100),
    "iter_start": ("iter_start", 0), "beta1": ("beta1", 0.5), "lr": ("lr", 2e-4), "lr_policy": ("lr_policy", "lambda"),
    "gan_mode": ("gan_mode", "lsgan"), "pool_size": ("pool_size", 0), "batchSize": ("batch_size", 32),
}
OFFICIAL_TEST = {"phase": ("phase", "test"), "batchSize": ("batch_size", 1)}
OFFICIAL_DATASET = {
    "market": {"name": ("name", "DPTN_market"), "dataset_mode": ("dataset_mode", "market"),
               "dataroot": ("dataroot", "./dataset/market"), "old_size": ("old_size", (128, 64)),
               "load_size": ("load_size", 128), "display_env": ("display_env", "DPTNmarket"),
               "results_dir": ("results_dir", "./results/DPTN_market")},
    "fashion": {"name": ("name", "DPTN_fashion"), "dataset_mode": ("dataset_mode", "fashion"),
                "dataroot": ("dataroot", "./dataset/fashion"), "old_size": ("old_size", (256, 176)),
                "load_size": ("load_size", 256), "display_env": ("display_env", "DPTNfashion"),
                "results_dir": ("results_dir", "./results/DPTN_fashion")},
}
OFFICIAL_TRAIN_DATASET = {  # values under the README training commands
    "market": {"save_latest_freq": ("save_latest_freq", 10400), "lambda_rec": ("lambda_rec", 2.0),
               "lambda_g": ("lambda_g", 5.0), "t_s_ratio": ("t_s_ratio", 0.8), "dis_layers": ("dis_layers", 3)},
    "fashion": {"save_latest_freq": ("save_latest_freq", 1000), "lambda_rec": ("lambda_rec", 5.0),
                "lambda_g": ("lambda_g", 2.0), "t_s_ratio": ("t_s_ratio", 0.5), "dis_layers": ("dis_layers", 4)},
}


def parse(phase: str, argv: list[str]):
    options = TrainOptions() if phase == "train" else TestOptions()
    return options.parse(argv, echo=False, check_folder=False)


@pytest.mark.parametrize("phase", ["train", "test"])
@pytest.mark.parametrize("dataset", ["market", "fashion"])
def test_readme_commands_parse_to_the_official_values(phase, dataset):
    opt = parse(phase, README[(phase, dataset)].split())
    table = {**OFFICIAL_COMMON, **(OFFICIAL_TRAIN if phase == "train" else OFFICIAL_TEST)}
    table.update(OFFICIAL_DATASET[dataset])
    if phase == "train":
        table.pop("results_dir")
        table.update(OFFICIAL_TRAIN_DATASET[dataset])
    else:  # the official test options carry the loss and D flags; test.py refuses them as training options
        for official in TRAINING_ONLY:
            assert not hasattr(opt, table.pop(official)[0])
    wrong = {official: (getattr(opt, ours, "(missing)"), value) for official, (ours, value) in table.items()
             if getattr(opt, ours, "(missing)") != value}
    assert wrong == {}
    assert opt.gpu_ids == ([0] if torch.cuda.is_available() else [])
    assert opt.flip_prob == 0.0 and not getattr(opt, "official_ops", False)  # a training flag
    if dataset == "fashion":
        assert opt.fashion_frame == "stretch256"  # the network sees 256x256 (official `data/fashion_dataset.py`)


def test_abbreviated_flags_of_the_official_scripts(tmp_path):
    # scripts/train_market.sh spells --dis_layer=3 (argparse prefix); the README spells --gpu_id
    opt = parse("train", ["--model=DPTN", "--dataset_mode=market", "--dis_layer=3", "--gpu_id=-1"])
    assert opt.dis_layers == 3 and opt.gpu_ids == []


@pytest.mark.parametrize("phase,flag,words", [
    ("train", ["--fp16"], "AMP"),
    ("train", ["--use_spect_g"], "store_false"),
    ("train", ["--use_coord"], "CoordConv"),
    ("train", ["--n_layers_D", "3"], "--dis_layers"),
    ("train", ["--no_vgg_loss"], "always on"),
    ("test", ["--ntest", "5"], "--how_many"),
    ("test", ["--save_input"], "panels"),
    ("train", ["--gan_mode", "wgan-gp"], "wgangp"),
    ("train", ["--pool_size", "50"], "image pool"),
    ("train", ["--iter_start", "3"], "--epoch_count"),
    ("train", ["--loadSize", "128"], "only 256"),
    ("test", ["--old_size", "256"], "set by the dataset"),
    ("train", ["--pose_nc", "17"], "18 channels"),
])
def test_flags_the_official_code_ignores_are_refused(phase, flag, words):
    base = ["--model", "DPTN", "--dataset_mode", "fashion", "--gpu_ids", "-1"]
    with pytest.raises(InputError, match=words):
        parse(phase, base + flag)


def test_honoured_official_flags():
    base = ["--model", "DPTN", "--dataset_mode", "market", "--gpu_ids", "-1"]
    opt = parse("train", base + ["--use_spect_d", "--gan_mode", "hinge", "--no_flip", "--norm", "batch"])
    assert (opt.use_spect_d, opt.gan_mode, opt.no_flip, opt.norm) == (False, "hinge", True, "batch")
    debug = parse("train", base + ["--debug", "--batchSize", "4"])
    assert (debug.niter, debug.niter_decay, debug.max_dataset_size, debug.print_freq, debug.display_freq) == \
           (1, 0, 10, 4, 1)
    native = parse("train", ["--model", "DPTN", "--dataset_mode", "fashion", "--gpu_ids", "-1",
                             "--fashion_frame", "native"])
    assert native.fashion_frame == "native"
    with pytest.raises(InputError, match="contradicts"):
        parse("train", base + ["--no_flip", "--flip_prob", "0.5"])


def test_help_lists_the_dptn_flags(capsys):
    with pytest.raises(SystemExit):
        TrainOptions().parse(["--model", "DPTN", "--dataset_mode", "fashion", "--help"])
    text = capsys.readouterr().out
    for flag in ("--t_s_ratio", "--dis_layers", "--lambda_g", "--vgg_path", "--fashion_frame", "--fp16",
                 "--official_ops"):
        assert flag in text
    parser = TrainOptions().build_parser(["--model", "DPTN", "--dataset_mode", "fashion"])
    assert [a.option_strings for a in parser._actions if a.option_strings and not a.help] == []


# --- the official data path -------------------------------------------------------------------------------

def cords_to_map(keypoints: np.ndarray, size: tuple[int, int], old_size: tuple[int, int], sigma: int = 6):
    """As the official `util/pose_utils.py` `cords_to_map`: scale in float, truncate, full-frame Gaussian,
    float64 -> float32."""
    result = np.zeros((len(keypoints), *size), dtype="float32")
    yy, xx = np.meshgrid(np.arange(size[0]), np.arange(size[1]), indexing="ij")
    for i, (y, x) in enumerate(keypoints.astype(float)):
        if y == -1 or x == -1:
            continue
        y0, x0 = int(y / old_size[0] * size[0]), int(x / old_size[1] * size[1])
        result[i] = np.exp(-((yy - y0) ** 2 + (xx - x0) ** 2) / (2 * sigma ** 2))
    return torch.from_numpy(result)


def dptn_dataset(mode: str, root: Path, phase: str = "test", *extra: str):
    opt = parse("train" if phase == "train" else "test", ["--model", "DPTN", "--dataset_mode", mode,
                                                           "--dataroot", str(root), "--gpu_ids", "-1", *extra])
    return find_dataset_class(mode)(opt)


@pytest.mark.parametrize("mode", ["market", "fashion"])
def test_items_follow_the_official_loader(mode, request):
    from torchvision.transforms import functional as TF

    root = request.getfixturevalue(f"tiny_{mode}_root")
    dataset = dptn_dataset(mode, root)
    size, old = ((256, 256), (256, 176)) if mode == "fashion" else ((128, 64), (128, 64))
    assert dataset.network_size == size
    annotations = read_annotations(next(root.glob("*annotation-test.csv")))
    pairs = read_pairs(next(root.glob("*pairs-test.csv")))
    item = dataset[4]
    for side, name in (("source", pairs[4][0]), ("target", pairs[4][1])):
        assert torch.equal(item[f"{side}_pose"], cords_to_map(annotations[name], size, old))
        image = TF.resize(Image.open(root / "test" / name).convert("RGB"), list(size))  # F.resize(img, load_size)
        expected = TF.normalize(TF.to_tensor(image), (0.5,) * 3, (0.5,) * 3)
        assert torch.equal(item[f"{side}_image"], expected)


def official_output(image: torch.Tensor, old_size: tuple[int, int]) -> np.ndarray:
    """tensor2im then cv2.resize(img, (W, H)) with the default bilinear, as the official save_results."""
    import cv2

    array = (np.transpose(image.numpy(), (1, 2, 0)) + 1) / 2.0 * 255.0
    array = np.clip(array, 0, 255).astype(np.uint8)
    return cv2.resize(array, (old_size[1], old_size[0]))


def test_outputs_are_converted_as_the_official_test(tiny_fashion_root, tiny_market_root):
    images = torch.rand(2, 3, 256, 256) * 2.2 - 1.1
    fashion = dptn_dataset("fashion", tiny_fashion_root)
    out = fashion.output_to_uint8(images)
    assert out.shape == (2, 256, 176, 3) and out.dtype == np.uint8
    for i in range(2):
        assert np.array_equal(out[i], official_output(images[i], (256, 176)))
    market = dptn_dataset("market", tiny_market_root)
    small = torch.rand(2, 3, 128, 64) * 2 - 1
    assert all(np.array_equal(market.output_to_uint8(small)[i], official_output(small[i], (128, 64))) for i in range(2))
    native = dptn_dataset("fashion", tiny_fashion_root, "test", "--fashion_frame", "native")
    assert native.network_size == (256, 176) and native.output_to_uint8(images[..., :176]).shape == (2, 256, 176, 3)


# --- train -> test on tiny data --------------------------------------------------------------------------

def jpeg_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=75)
    return buffer.getvalue()


def listing_keys(name: str, section: str | None = None) -> list[str]:
    keys, current = [], None
    for line in (DATA / name).read_text().splitlines():
        if line.startswith("## "):
            current = line[3:].split()[0]
        elif line.strip() and not line.startswith("#") and (section is None or current == section):
            keys.append(line.split(" ", 1)[0])
    return keys


@pytest.mark.parametrize("mode", ["market", "fashion"])
def test_readme_commands_train_and_test_on_cpu(mode, request, tmp_path):
    root = request.getfixturevalue(f"tiny_{mode}_root")
    ckpt, results = tmp_path / "checkpoints", tmp_path / "results"
    batch = ["--batchSize", "2"] if mode == "market" else ["--batchSize", "1"]
    steps = "2" if mode == "market" else "1"
    train_argv = README[("train", mode)].split() + [
        "--dataroot", str(root), "--checkpoints_dir", str(ckpt), *batch, "--max_steps", steps,
        "--num_threads", "0", "--vgg_random_init", "--print_freq", "1"]
    with pytest.warns(UserWarning, match="RANDOM"):
        assert train_script.main(train_argv) == 0
    run = ckpt / f"DPTN_{mode}"
    saved_g = torch.load(run / "latest_net_G.pth", weights_only=True)
    saved_d = torch.load(run / "latest_net_D.pth", weights_only=True)
    assert list(saved_g) == listing_keys("dptn_G_state_dict.txt")
    assert list(saved_d) == listing_keys("dptn_D_state_dict.txt", mode)
    log = (run / "loss_log.txt").read_text()
    for name in ("app_gen_s", "content_gen_s", "style_gen_s", "app_gen_t", "ad_gen_t", "dis_img_gen_t",
                 "content_gen_t", "style_gen_t"):
        assert name in log

    how_many = [] if mode == "market" else ["--how_many", "2"]
    test_argv = README[("test", mode)].split() + [
        "--dataroot", str(root), "--checkpoints_dir", str(ckpt), f"--results_dir={results}", "--num_threads", "0",
        *how_many]
    assert test_script.main(test_argv) == 0
    pairs = read_pairs(next(root.glob("*pairs-test.csv")))
    pairs = pairs if mode == "market" else pairs[:2]
    names = sorted(p.name for p in results.glob("*_vis.jpg"))
    assert names == sorted(f"{Path(a).stem}_2_{Path(b).stem}_vis.jpg" for a, b in pairs)
    for name in names:  # the official evaluator's pairing finds every ground truth
        assert (root / "test" / (name.split("_2_")[-1].split("_vis")[0] + ".jpg")).is_file()

    # the first file equals the official pipeline applied to G(exact) with the saved weights
    g = DPTNGenerator()
    g.load_state_dict(saved_g)
    g.eval()
    item = dptn_dataset(mode, root)[0]
    with torch.no_grad():
        fake, none = g(item["source_image"][None], item["source_pose"][None], item["target_pose"][None], False)
    assert none is None
    old = (128, 64) if mode == "market" else (256, 176)
    expected = official_output(fake[0], old)
    first = results / f"{Path(pairs[0][0]).stem}_2_{Path(pairs[0][1]).stem}_vis.jpg"
    assert Image.open(first).size == (old[1], old[0])
    assert first.read_bytes() == jpeg_bytes(expected)


@pytest.mark.slow
def test_bench_train_prints_throughput_and_memory(capsys):
    from scripts import bench_train

    argv = ["--model", "DPTN", "--dataset_mode", "market", "--batch_size", "1", "--iters", "1", "--warmup", "0",
            "--no_official_ops", "--skip_inference"]
    assert bench_train.main(argv) == 0
    out = capsys.readouterr().out
    assert "images/s" in out and "peak MiB" in out and "training iteration" in out
    rows = [line for line in out.splitlines() if line.startswith("ours")]
    assert len(rows) == 1
    memory, gflop, rate = (float(v) for v in rows[0].split()[-3:])
    assert memory > 100  # peak RSS in MiB
    # one Market pair: VGG19 to relu5_2 three times over two 128x64 images is ~36 GFLOP; G and D add ~24
    assert 50 < gflop < 70 and rate > 0
    assert "matmul rate" in out
