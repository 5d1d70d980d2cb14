"""python -m metrics.metrics: the official DPTN command end to end on test.py's output, the reports, padding per
protocol, and clear errors for bad input. Networks use random weights through --random_weights only."""
from __future__ import annotations

import importlib.util
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

import train as train_script
from metrics import metrics as cli

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("pose_transfer_test_script", REPO / "test.py")
test_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(test_script)
MODEL = ["--model", "PG2", "--stage", "1", "--dataset_mode", "market", "--ngf", "8", "--gpu_ids", "-1",
         "--num_threads", "0"]
FAST = ["--num_workers", "0", "--torch_threads", "1"]


@pytest.fixture(autouse=True)
def offline(no_downloads):
    """An empty torch hub cache; any download attempt fails the test (conftest.no_downloads)."""


@pytest.fixture(scope="module")
def generated(tiny_market_root, tmp_path_factory):
    """test.py's results for 6 test pairs of the tiny Market set, from a 1-step PG2 run."""
    base = tmp_path_factory.mktemp("metrics_e2e")
    common = [*MODEL, "--name", "m", "--dataroot", str(tiny_market_root), "--checkpoints_dir", str(base / "ckpt")]
    assert train_script.main(common + ["--batchSize", "2", "--max_steps", "1"]) == 0
    results = base / "results"
    assert test_script.main(common + ["--results_dir", str(results), "--how_many", "6"]) == 0
    return results


def read_json(prefix: Path) -> dict:
    return json.loads(prefix.with_name(prefix.name + ".json").read_text())


def dptn_command(root: Path, results: Path, name: Path) -> list[str]:
    """The official DPTN evaluation command, verbatim (`=` spelling included)."""
    return [f"--gt_path={root / 'test'}", f"--distorated_path={results}", f"--fid_real_path={root / 'train'}",
            f"--name={name}", "--market"]


@pytest.mark.slow
def test_dptn_command_end_to_end_on_test_py_output(generated, tiny_market_root, tmp_path, capsys):
    name = tmp_path / "reports" / "market"
    extra = ["--random_weights", "--fid_batch_size", "4", "--cache_dir", str(tmp_path / "cache"),
             "--calculate_mask", "--annotation", str(tiny_market_root / "market-annotation-test.csv"), *FAST]
    assert cli.main(dptn_command(tiny_market_root, generated, name) + extra) == 0
    out = capsys.readouterr().out
    assert "RANDOM weights" in out and "statistics cache miss" in out and "padding: none" in out
    report = read_json(name)
    results, provenance = report["results"], report["provenance"]
    assert list(results) == ["ssim", "ssim_256", "psnr", "l1", "mae", "lpips", "mask_ssim", "mask_lpips", "fid"]
    assert all(results[m]["n"] == 6 for m in ("ssim", "lpips", "mask_ssim"))
    assert provenance["generated"]["pairs_scored"] == 6 and provenance["generated"]["formats"] == {".jpg": 6}
    fid = provenance["fid"]
    assert (fid["fake_images_used"], fid["real"]["images_used"], fid["real"]["images_found"]) == (4, 8, 9)
    assert results["fid"]["n"] == 4 and np.isfinite(results["fid"]["value"])
    assert fid["preprocessing"] == "legacy-fid" and fid["file"].startswith("random")
    assert provenance["annotation"]["sha256"] and provenance["padding"] == "none"
    # one pair recomputed by hand with scikit-image, from the files
    rows = (name.parent / "market_per_image.csv").read_text().splitlines()
    assert len(rows) == 7 and rows[0].startswith("generated,target,ssim,ssim_256,psnr")
    generated_name, target_name, ssim51, _, psnr = rows[1].split(",")[:5]
    gen = np.asarray(Image.open(generated / generated_name).convert("RGB")) / 255.0
    tgt = np.asarray(Image.open(tiny_market_root / "test" / target_name).convert("RGB")) / 255.0
    assert float(ssim51) == pytest.approx(structural_similarity(tgt, gen, data_range=1, win_size=51, channel_axis=-1),
                                          abs=1e-9)
    assert float(psnr) == pytest.approx(peak_signal_noise_ratio(tgt, gen, data_range=1), abs=1e-9)
    table = (name.parent / "market.csv").read_text().splitlines()
    assert table[0] == "metric,value,std,n,excluded,protocol,variant,note" and len(table) == 10
    # the same command again: refused (the report exists), then with --overwrite the real-set statistics come
    # from the cache and the numbers are identical
    assert cli.main(dptn_command(tiny_market_root, generated, name) + extra) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main(dptn_command(tiny_market_root, generated, name) + extra + ["--overwrite"]) == 0
    assert "statistics cache hit" in capsys.readouterr().out
    assert read_json(name)["results"]["fid"]["value"] == results["fid"]["value"]


def test_default_run_without_networks_is_the_dptn_reconstruction_set(generated, tiny_market_root, tmp_path):
    name = tmp_path / "recon"
    argv = [f"--gt_path={tiny_market_root / 'test'}", f"--distorated_path={generated}", f"--name={name}",
            "--market", "--metrics", "ssim_51,ssim_gauss,psnr", *FAST]
    assert cli.main(argv) == 0
    assert list(read_json(name)["results"]) == ["ssim", "ssim_256", "psnr"]


def fashion_folders(root: Path, pairs: int = 3) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    names = [f"fashionWOMENDressesid{i:010d}_1front" for i in range(pairs + 1)]
    for name in names:
        (root / "gt").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (256, 176, 3), dtype=np.uint8)).save(root / "gt" / f"{name}.png")
    (root / "gen").mkdir()
    for source, target in itertools.pairwise(names):
        Image.fromarray(rng.integers(0, 256, (256, 176, 3), dtype=np.uint8)).save(
            root / "gen" / f"{source}_2_{target}_vis.png")
    return root / "gt", root / "gen"


def pad_256(image: np.ndarray) -> np.ndarray:
    canvas = np.full((256, 256, 3), 255, dtype=image.dtype)
    canvas[:, 40:216] = image
    return canvas


@pytest.mark.parametrize("flags,padded", [([], True), (["--protocol", "clean"], False),
                                          (["--no_pad_fashion_256"], False),
                                          (["--protocol", "clean", "--pad_fashion_256"], True)])
def test_deepfashion_padding_follows_the_protocol(tmp_path, flags, padded):
    gt, gen = fashion_folders(tmp_path)
    name = tmp_path / "out"
    assert cli.main([f"--gt_path={gt}", f"--distorated_path={gen}", f"--name={name}", "--metrics",
                     "ssim,ssim_256,psnr", *FAST, *flags]) == 0
    report = read_json(name)
    assert report["provenance"]["padding"].startswith("white") == padded
    first = min(gen.iterdir())
    pred = np.asarray(Image.open(first))
    target = np.asarray(Image.open(gt / (first.name.split("_2_")[-1].split("_vis")[0] + ".png")))
    if padded:
        pred, target = pad_256(pred), pad_256(target)
    pred255, target255 = pred.astype(np.float64), target.astype(np.float64)
    want = structural_similarity(target255 / 255, pred255 / 255, data_range=1, win_size=51, channel_axis=-1)
    want_gauss = structural_similarity(target255, pred255, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False, channel_axis=-1,
                                       data_range=pred255.max() - pred255.min())
    row = (tmp_path / "out_per_image.csv").read_text().splitlines()[1].split(",")
    assert row[0] == first.name
    assert float(row[2]) == pytest.approx(want, abs=1e-9) and float(row[3]) == pytest.approx(want_gauss, abs=1e-9)


def run_error(argv: list[str], capsys) -> str:
    assert cli.main(argv) == 2
    return capsys.readouterr().err


def market_folders(root: Path, names=("0001_c1s1_000100_01", "0001_c2s1_000200_01")) -> tuple[Path, Path]:
    rng = np.random.default_rng(1)
    (root / "gt").mkdir(parents=True)
    (root / "gen").mkdir()
    for name in names:
        Image.fromarray(rng.integers(0, 256, (128, 64, 3), dtype=np.uint8)).save(root / "gt" / f"{name}.jpg")
    for source, target in zip(names, names[::-1]):
        Image.fromarray(rng.integers(0, 256, (128, 64, 3), dtype=np.uint8)).save(
            root / "gen" / f"{source}_2_{target}_vis.jpg")
    return root / "gt", root / "gen"


def base_args(gt: Path, gen: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [f"--gt_path={gt}", f"--distorated_path={gen}", f"--name={tmp_path / 'out'}", "--market", *FAST, *extra]


def test_bad_inputs_fail_clearly_and_write_nothing(tmp_path, capsys):
    gt, gen = market_folders(tmp_path)
    (tmp_path / "empty").mkdir()
    assert "no generated images (*.jpg, *.png) in" in run_error(base_args(gt, tmp_path / "empty", tmp_path), capsys)
    assert "ground-truth folder" in run_error(base_args(tmp_path / "nope", gen, tmp_path), capsys)
    err = run_error(base_args(gt, gen, tmp_path, "--metrics", "ssim,sharpness"), capsys)
    assert "unknown --metrics sharpness; available: ssim, ssim_256" in err
    assert "mask_ssim need --annotation" in run_error(base_args(gt, gen, tmp_path, "--metrics", "mask_ssim"), capsys)
    assert "fid needs --fid_real_path" in run_error(base_args(gt, gen, tmp_path, "--metrics", "fid"), capsys)
    err = run_error([f"--gt_path={gt}", f"--distorated_path={gen}", f"--name={tmp_path / 'out'}", *FAST], capsys)
    assert "DeepFashion padding needs 256x176 images, these are 128x64 (Market-1501? pass --market)" in err

    Image.new("RGB", (64, 128)).save(gen / "0001_c1s1_000100_01_2_0009_c9s9_000900_01_vis.jpg")
    err = run_error(base_args(gt, gen, tmp_path), capsys)
    assert "1 of 3 generated images have no ground truth" in err and "0009_c9s9_000900_01.jpg" in err
    (gen / "0001_c1s1_000100_01_2_0009_c9s9_000900_01_vis.jpg").unlink()

    broken = gen / "0001_c2s1_000200_01_2_0001_c1s1_000100_01_vis.jpg"
    good = broken.read_bytes()
    broken.write_bytes(b"no image here")
    err = run_error(base_args(gt, gen, tmp_path, "--metrics", "ssim"), capsys)
    assert f"{broken}: unreadable image" in err
    broken.write_bytes(good[: len(good) // 2])  # a truncated JPEG: the header reads, the pixels do not
    err = run_error(base_args(gt, gen, tmp_path, "--metrics", "ssim"), capsys)
    assert f"{broken.name}: unreadable image" in err
    assert not list(tmp_path.glob("out*"))  # nothing written by any failed run


def test_missing_weights_stop_with_the_file_name(tmp_path, capsys):
    gt, gen = market_folders(tmp_path)
    hub = tmp_path / "torch_home" / "hub" / "checkpoints"
    err = run_error(base_args(gt, gen, tmp_path), capsys)  # the default set includes LPIPS
    assert f"{hub}/alexnet-owt-7be5be79.pth not found" in err and err.count("\n") == 4  # one error, 4 lines
    err = run_error(base_args(gt, gen, tmp_path, "--metrics", "fid", f"--fid_real_path={gt}", "--fid_batch_size", "1"),
                    capsys)
    assert "inception_v3_google-0cc3c7bd.pth not found" in err and "inception_v3_google-1a9a5a14.pth" in err
    err = run_error(base_args(gt, gen, tmp_path, "--protocol", "clean", "--metrics", "fid", f"--fid_real_path={gt}"),
                    capsys)
    assert "pt_inception-2015-12-05-6726825d.pth not found" in err
    err = run_error(base_args(gt, gen, tmp_path, "--metrics", "lpips", "--weights_dir", str(tmp_path / "w")), capsys)
    assert f"{tmp_path / 'w' / 'alexnet-owt-7be5be79.pth'} not found" in err


def test_allow_missing_skips_and_reports(tmp_path):
    gt, gen = market_folders(tmp_path)
    Image.new("RGB", (64, 128)).save(gen / "0001_c1s1_000100_01_2_0009_c9s9_000900_01_vis.jpg")
    assert cli.main(base_args(gt, gen, tmp_path, "--metrics", "ssim,psnr", "--allow_missing")) == 0
    provenance = read_json(tmp_path / "out")["provenance"]
    assert provenance["generated"]["pairs_scored"] == 2
    assert provenance["generated"]["skipped"]["unmatched"]["count"] == 1


def test_bench_script_runs_and_agrees(capsys):
    from scripts import bench_metrics

    assert bench_metrics.main(["--pairs", "4", "--frames", "market", "--repeats", "1", "--workers", "0"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("market")]
    assert len(rows) == 2 and all(float(row[-1]) < 1e-9 for row in rows)  # max |diff| against the loop


def test_inception_score_paths(tmp_path, capsys, standing_pose):
    from data.annotations import write_annotations

    names = tuple(f"000{i}_c1s1_000{i}00_01" for i in range(1, 5))
    gt, gen = market_folders(tmp_path, names)
    annotation = tmp_path / "market-annotation-test.csv"
    write_annotations(annotation, {f"{n}.jpg": standing_pose("market", shift=i) for i, n in enumerate(names)})
    legacy = base_args(gt, gen, tmp_path, "--random_weights", "--metrics", "is,mask_is", "--is_splits", "2",
                       "--annotation", str(annotation))
    assert cli.main(legacy) == 0
    assert "2 splits over the images in sorted name order" in capsys.readouterr().out
    report = read_json(tmp_path / "out")
    assert list(report["results"]) == ["is", "mask_is"] and len(report["results"]["is"]["splits"]) == 2
    assert report["provenance"]["is"]["preprocessing"] == "tf-is"
    assert report["provenance"]["is"]["resize"].startswith("TF1 legacy bilinear")
    clean = base_args(gt, gen, tmp_path, "--random_weights", "--protocol", "clean", "--metrics", "fid,is",
                      "--is_splits", "2", f"--fid_real_path={gt}", "--no_cache", "--overwrite")
    assert cli.main(clean) == 0
    provenance = read_json(tmp_path / "out")["provenance"]
    assert provenance["is"]["preprocessing"] == provenance["fid"]["preprocessing"] == "clean-fid"
    assert provenance["fid"]["fake_images_used"] == 4 and provenance["fid"]["real"]["order"] == "sorted by name"
