"""PATN from the command line: the official README commands verbatim (option by option against the official
parser's values), refused flags, per-dataset defaults, the `keypoint` data mode with and without stored pose
maps, train -> test on tiny Market and DeepFashion data on CPU, PATN's result panels read by the evaluator,
and the benchmark."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import train as train_script
from data import find_dataset_class
from data.annotations import read_annotations, read_pairs
from data.keypoints import gaussian_heatmaps, pixel_pose_maps
from metrics import metrics as metrics_cli
from models import model_names
from models.patn_options import REFUSED
from options.test_options import TestOptions
from options.train_options import TrainOptions
from test_dptn import vgg_state
from test_dptn_train import test_script
from util.image import save_image, tensor_to_uint8
from util.io import InputError

DATA = Path(__file__).resolve().parent / "data"
GOLDEN = json.loads((DATA / "patn_official_golden.json").read_text())
# the official README commands, verbatim (tengteng95/Pose-Transfer README.md)
README = {
    ("train", "market"): "--dataroot ./market_data/ --name market_PATN --model PATN --lambda_GAN 5 --lambda_A 10  "
                         "--lambda_B 10 --dataset_mode keypoint --no_lsgan --n_layers 3 --norm batch --batchSize 32 "
                         "--resize_or_crop no --gpu_ids 0 --BP_input_nc 18 --no_flip --which_model_netG PATN "
                         "--niter 500 --niter_decay 200 --checkpoints_dir ./checkpoints --pairLst "
                         "./market_data/market-pairs-train.csv --L1_type l1_plus_perL1 --n_layers_D 3 --with_D_PP 1 "
                         "--with_D_PB 1  --display_id 0",
    ("train", "fashion"): "--dataroot ./fashion_data/ --name fashion_PATN --model PATN --lambda_GAN 5 --lambda_A 1 "
                          "--lambda_B 1 --dataset_mode keypoint --n_layers 3 --norm instance --batchSize 7 "
                          "--pool_size 0 --resize_or_crop no --gpu_ids 0 --BP_input_nc 18 --no_flip "
                          "--which_model_netG PATN --niter 500 --niter_decay 200 --checkpoints_dir ./checkpoints "
                          "--pairLst ./fashion_data/fasion-resize-pairs-train.csv --L1_type l1_plus_perL1 "
                          "--n_layers_D 3 --with_D_PP 1 --with_D_PB 1  --display_id 0",
    ("test", "market"): "--dataroot ./market_data/ --name market_PATN --model PATN --phase test --dataset_mode "
                        "keypoint --norm batch --batchSize 1 --resize_or_crop no --gpu_ids 2 --BP_input_nc 18 "
                        "--no_flip --which_model_netG PATN --checkpoints_dir ./checkpoints --pairLst "
                        "./market_data/market-pairs-test.csv --which_epoch latest --results_dir ./results "
                        "--display_id 0",
    ("test", "fashion"): "--dataroot ./fashion_data/ --name fashion_PATN --model PATN --phase test --dataset_mode "
                         "keypoint --norm instance --batchSize 1 --resize_or_crop no --gpu_ids 0 --BP_input_nc 18 "
                         "--no_flip --which_model_netG PATN --checkpoints_dir ./checkpoints --pairLst "
                         "./fashion_data/fasion-resize-pairs-test.csv --which_epoch latest --results_dir ./results "
                         "--display_id 0",
}
FOLDERS = {"market": "market_data", "fashion": "fashion_data"}
# official option -> ours where the names differ; the official value of each is in the golden file
RENAMED = {"batchSize": "batch_size", "nThreads": "num_threads", "isTrain": "is_train"}
RUN_SPECIFIC = {"checkpoints_dir", "name", "pairLst", "gpu_ids"}  # set per run in the golden procedure


@pytest.fixture
def official_layout(request, tmp_path, monkeypatch):
    """tmp_path as the official repository's working directory: market_data/ and fashion_data/ hold the tiny
    datasets (images, annotation and pair CSVs) as the README lays them out."""
    for mode, folder in FOLDERS.items():
        shutil.copytree(request.getfixturevalue(f"tiny_{mode}_root"), tmp_path / folder)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def parse(phase: str, argv: list[str]):
    options = TrainOptions() if phase == "train" else TestOptions()
    return options.parse(argv, echo=False, check_folder=False)


@pytest.mark.parametrize("dataset", ["market", "fashion"])
def test_readme_training_commands_parse_to_the_official_values(official_layout, dataset):
    opt = parse("train", README[("train", dataset)].split())
    official = GOLDEN[dataset]["opt"]
    wrong = {}
    for name, value in official.items():
        if name in RUN_SPECIFIC:
            continue
        ours = getattr(opt, RENAMED.get(name, name), "(refused)")
        if name == "max_dataset_size":
            value = math.inf
        if ours == "(refused)":
            assert name in REFUSED, name  # not in our options: using it is an error that says why
        elif ours != value:
            wrong[name] = (ours, value)
    assert wrong == {}
    assert (opt.name, opt.pairLst, opt.data_format, opt.checkpoints_dir) == \
        (f"{dataset}_PATN", f"./{FOLDERS[dataset]}/{'market' if dataset == 'market' else 'fasion-resize'}-pairs-"
                            "train.csv", dataset, "./checkpoints")
    # PATN's epoch: 4,000 random pairs; the last, short batch is trained on; the official 2017 schedule
    assert (opt.pairs_per_epoch, opt.last_batch, opt.lr_policy, opt.keypoints_outside) == \
        (4000, "keep", "lambda", "draw")


@pytest.mark.parametrize("dataset", ["market", "fashion"])
def test_readme_test_commands_parse(official_layout, dataset):
    opt = parse("test", README[("test", dataset)].split())
    assert (opt.phase, opt.batch_size, opt.norm, opt.which_epoch, opt.num_threads) == \
        ("test", 1, "batch" if dataset == "market" else "instance", "latest", 2)
    assert opt.results_dir == str(Path("results") / f"{dataset}_PATN" / "test_latest")  # PATN's folder
    assert opt.result_layout == "single" and opt.fashion_frame == "native"


def test_paper_settings_per_dataset_without_flags(tiny_market_root):
    market = parse("train", ["--model", "PATN", "--dataset_mode", "market", "--gpu_ids", "-1"])
    fashion = parse("train", ["--model", "PATN", "--dataset_mode", "fashion", "--gpu_ids", "-1"])
    keys = ("norm", "no_lsgan", "lambda_A", "lambda_B", "lambda_GAN", "batch_size", "pool_size", "niter",
            "niter_decay", "L1_type")
    assert [getattr(market, k) for k in keys] == ["batch", 1, 10.0, 10.0, 5.0, 32, 50, 500, 200, "l1_plus_perL1"]
    assert [getattr(fashion, k) for k in keys] == ["instance", 0, 1.0, 1.0, 5.0, 7, 0, 500, 200, "l1_plus_perL1"]
    assert parse("train", ["--model", "PATN", "--dataset_mode", "market", "--gpu_ids", "-1",
                           "--no_lsgan", "0"]).no_lsgan == 0  # LSGAN on Market on request


@pytest.mark.parametrize("phase,flags,words", [
    ("train", ["--loadSize", "286"], "accepted but ignored by the official PATN code"),
    ("train", ["--fineSize", "256"], "never cropped"),
    ("train", ["--use_flip", "1"], "without swapping"),
    ("train", ["--resize_or_crop", "resize_and_crop"], "only 'no'"),
    ("train", ["--update_html_freq", "10"], "every --display_freq"),
    ("train", ["--which_direction", "BtoA"], "pix2pix"),
    ("test", ["--ntest", "5"], "--how_many"),
    ("test", ["--aspect_ratio", "2"], "dataset's size"),
    ("train", ["--init_gain", "0.1"], "official initialisation"),
    ("train", ["--BP_input_nc", "1"], "18 channels"),
    ("train", ["--no_flip", "--flip_prob", "0.5"], "contradicts"),
    ("train", ["--D_n_downsampling", "4"], "0 to 3"),
    ("train", ["--pose_encoding", "tf_disc"], "in \\[0, 1\\]"),
])
def test_flags_the_official_code_ignores_or_we_do_not_support_are_refused(phase, flags, words):
    with pytest.raises(InputError, match=words):
        parse(phase, ["--model", "PATN", "--dataset_mode", "market", "--gpu_ids", "-1", *flags])


def test_restating_flags_and_abbreviations_are_accepted():
    opt = parse("train", ["--model", "PATN", "--dataset_mode", "market", "--gpu_ids", "-1", "--use_flip", "0",
                          "--resize_or_crop", "no", "--n_layers", "4", "--no_dropout", "--padding_type", "zero"])
    assert (opt.use_flip, opt.resize_or_crop, opt.n_layers_D, opt.no_dropout, opt.padding_type) == \
        (0, "no", 4, True, "zero")


def test_help_lists_the_patn_flags(capsys):
    with pytest.raises(SystemExit):
        TrainOptions().parse(["--model", "PATN", "--dataset_mode", "market", "--help"])
    text = capsys.readouterr().out
    for flag in ("--lambda_A", "--with_D_PB", "--L1_type", "--official_ops", "--loadSize", "--pairs_per_epoch"):
        assert flag in text


# --- the keypoint mode ------------------------------------------------------------------------------------------

def keypoint_dataset(root: Path, fmt: str, phase: str = "test", *extra: str):
    pairs = root / f"{'market' if fmt == 'market' else 'fasion-resize'}-pairs-{phase}.csv"
    opt = parse("test", ["--model", "PATN", "--dataset_mode", "keypoint", "--dataroot", str(root), "--phase", phase,
                         "--pairLst", str(pairs), "--gpu_ids", "-1", *extra])
    return find_dataset_class("keypoint")(opt)


def write_stored_maps(root: Path, fmt: str, phase: str = "test") -> dict[str, np.ndarray]:
    """<phase>K/<name>.npy as PATN's scripts write them: float32 Gaussians (Market), uint8 pixels (DeepFashion)."""
    annotations = read_annotations(root / f"{'market' if fmt == 'market' else 'fasion-resize'}-annotation-{phase}.csv")
    folder = root / f"{phase}K"
    folder.mkdir()
    stored = {}
    height, width = (128, 64) if fmt == "market" else (256, 176)
    for name, kps in annotations.items():
        if fmt == "market":
            maps = gaussian_heatmaps(kps, height, width, 6.0, keep_outside=True).numpy()
        else:
            maps = pixel_pose_maps(kps, height, width).numpy().astype(np.uint8)
        stored[name] = np.ascontiguousarray(maps.transpose(1, 2, 0))
        np.save(folder / f"{name}.npy", stored[name])
    return stored


@pytest.mark.parametrize("fmt", ["market", "fashion"])
def test_keypoint_mode_reads_stored_maps_or_computes_the_same(make_pose_dataset, tmp_path, fmt):
    root = make_pose_dataset(tmp_path / fmt, fmt)
    computed = keypoint_dataset(root, fmt, "test", *(["--pose_encoding", "pixel"] if fmt == "fashion" else []))
    assert computed.map_dir is None and computed.opt.data_format == fmt
    stored = write_stored_maps(root, fmt)
    read = keypoint_dataset(root, fmt)
    assert read.map_dir == root / "testK"
    for index in (0, 5):
        a, b = read[index], computed[index]
        name = a["source_name"]
        assert a["source_pose"].dtype == torch.float32 and a["source_pose"].shape == (18, *stored[name].shape[:2])
        assert torch.equal(a["source_pose"], torch.from_numpy(stored[name].astype(np.float32)).permute(2, 0, 1))
        assert torch.equal(a["source_pose"], b["source_pose"]) and torch.equal(a["target_image"], b["target_image"])


def test_keypoint_mode_names_what_is_missing_or_wrong(make_pose_dataset, tmp_path):
    root = make_pose_dataset(tmp_path / "m", "market")
    write_stored_maps(root, "market")
    victim = sorted((root / "testK").iterdir())[0]
    np.save(victim, np.zeros((64, 128, 18), np.float32))
    with pytest.raises(InputError, match=f"{victim.name}: pose maps of shape \\(64, 128, 18\\)"):
        keypoint_dataset(root, "market")
    victim.unlink()
    with pytest.raises(InputError, match=f"1 pose map file\\(s\\) missing from {root / 'testK'}: {victim.name}"):
        keypoint_dataset(root, "market")
    assert keypoint_dataset(root, "market", "test", "--pose_maps", "compute").map_dir is None
    with pytest.raises(InputError, match="--pairLst .*nowhere.csv: pair file not found"):
        parse_keypoint = ["--model", "PATN", "--dataset_mode", "keypoint", "--dataroot", str(root), "--gpu_ids", "-1",
                          "--pairLst", str(root / "nowhere.csv")]
        find_dataset_class("keypoint")(parse("test", parse_keypoint))
    (root / "market-annotation-test.csv").unlink()
    with pytest.raises(InputError, match="neither market-annotation-test.csv nor a DeepFashion annotation file"):
        keypoint_dataset(root, "market")


# --- train -> test on tiny data, the official commands verbatim ------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["market", "fashion"])
def test_readme_commands_train_and_test_on_cpu(official_layout, dataset):
    vgg = official_layout / "vgg19-dcbb9e9d.pth"
    torch.save(vgg_state(), vgg)
    # verbatim, then what this machine needs: a local VGG19, two short iterations (the real network, batch 2)
    extra = ["--vgg_path", str(vgg), "--max_steps", "2", "--batchSize", "2", "--num_threads", "0", "--print_freq", "2"]
    if dataset == "fashion":
        extra += ["--pose_encoding", "pixel"]  # the one-pixel maps of the official DeepFashion script
    assert train_script.main(README[("train", dataset)].split() + extra) == 0
    run = official_layout / "checkpoints" / f"{dataset}_PATN"
    names = sorted(p.name for p in run.glob("latest_net_*.pth"))
    assert names == ["latest_net_netD_PB.pth", "latest_net_netD_PP.pth", "latest_net_netG.pth"]
    assert "pair_GANloss" in (run / "loss_log.txt").read_text()
    test_flags = README[("test", dataset)].split() + ["--num_threads", "0", "--how_many", "3"]
    if dataset == "fashion":
        test_flags += ["--pose_encoding", "pixel"]  # typed again: agrees with the run, so accepted
    assert test_script.main(test_flags) == 0
    results = official_layout / "results" / f"{dataset}_PATN" / "test_latest"
    pairs = read_pairs(official_layout / FOLDERS[dataset] / (
        "market-pairs-test.csv" if dataset == "market" else "fasion-resize-pairs-test.csv"))
    written = sorted(p.name for p in results.glob("*_vis.jpg"))
    assert written == sorted(f"{Path(a).stem}_2_{Path(b).stem}_vis.jpg" for a, b in pairs[:3])  # file order
    # the file equals the official test path: G in eval mode on the pair, (x+1)/2*255 truncated, JPEG q75
    opt = parse("test", test_flags)
    dataset_obj = find_dataset_class("keypoint")(opt)
    from models import create_model
    from util.distributed import RunContext

    model = create_model(opt, RunContext(device=torch.device("cpu")))
    model.setup()
    item = dataset_obj[0]
    with torch.no_grad():
        fake = model.netG(item["source_image"][None], torch.cat((item["source_pose"], item["target_pose"]))[None])
    save_image(tensor_to_uint8(fake)[0], official_layout / "expected.jpg")
    first = results / f"{Path(pairs[0][0]).stem}_2_{Path(pairs[0][1]).stem}_vis.jpg"
    assert first.read_bytes() == (official_layout / "expected.jpg").read_bytes()
    size = (64, 128) if dataset == "market" else (176, 256)
    assert Image.open(first).size == size


def test_patn_panels_are_read_by_the_evaluator(official_layout):
    vgg = official_layout / "vgg19-dcbb9e9d.pth"
    torch.save(vgg_state(), vgg)
    assert train_script.main(README[("train", "market")].split() + [
        "--vgg_path", str(vgg), "--max_steps", "1", "--batchSize", "2", "--num_threads", "0", "--ngf", "8",
        "--ndf", "8"]) == 0
    flags = README[("test", "market")].split() + ["--num_threads", "0", "--result_layout", "patn5", "--ngf", "8"]
    assert test_script.main(flags) == 0
    folder = official_layout / "results" / "market_PATN" / "test_latest"
    panels = sorted((folder / "images").glob("*___*_vis.jpg"))
    pairs = read_pairs(official_layout / "market_data" / "market-pairs-test.csv")
    assert [p.name for p in panels] == sorted(f"{a}___{b}_vis.jpg" for a, b in pairs)
    assert Image.open(panels[0]).size == (5 * 64, 128) and (folder / "index.html").is_file()
    # tile 2 is the target image as the official panel shows it: the input tensor back to uint8
    source, target = panels[0].name[:-len("_vis.jpg")].split("___")
    tile = np.asarray(Image.open(panels[0]))[:, 128:192].astype(int)
    truth = np.asarray(Image.open(official_layout / "market_data" / "test" / target)).astype(int)
    assert np.corrcoef(tile.ravel(), truth.ravel())[0, 1] > 0.8  # a JPEG of a JPEG of noisy test images
    prefix = official_layout / "scores"
    assert metrics_cli.main(["--gt_path", str(official_layout / "market_data" / "test"), "--distorated_path",
                             str(folder / "images"), "--layout", "patn5", "--metrics", "ssim", "--market",
                             "--name", str(prefix), "--num_workers", "0"]) == 0
    report = json.loads(prefix.with_suffix(".json").read_text())
    assert report["provenance"]["generated"]["pairs_scored"] == len(pairs)
    assert 0 < report["results"]["ssim"]["value"] <= 1


def test_bench_train_takes_patn(capsys):
    from scripts import bench_train

    argv = ["--model", "PATN", "--dataset_mode", "market", "--batch_size", "1", "--iters", "1", "--warmup", "0",
            "--no_official_ops", "--skip_inference", "--extra", "--ngf 16 --ndf 16"]
    assert bench_train.main(argv) == 0
    out = capsys.readouterr().out
    assert "PATN market" in out and "training iteration" in out
    rows = [line for line in out.splitlines() if line.startswith("ours")]
    assert len(rows) == 1 and float(rows[0].split()[-2]) > 0  # GFLOP per iteration counted
    with pytest.raises(SystemExit):
        bench_train.main(["--model", "NoSuch"])
    assert "available: " + ", ".join(model_names()) in capsys.readouterr().err
