"""`python -m metrics.reid` end to end on a synthetic Market dataset with a random network (--random_weights).

Small images (--size 64 32) keep the ResNet-50 fast on the CPU.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data.annotations import read_pairs, write_pairs
from data.synthetic_build import make_synthetic_dataset
from metrics.reid import evaluate_standard, main
from metrics.reid_data import pid_cam
from metrics.reid_features import compute_features, load_image
from metrics.reid_net import BagtricksReID, sha256_of

FAST = ["--random_weights", "--batch_size", "32"]
PAIRS = 10


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a busy 2-core machine, two OpenMP threads wait on each other (10x slower here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def market(tmp_path_factory) -> dict:
    """Synthetic Market (2 test identities, query/), a junk and a distractor box, 10 pairs, fake results."""
    root = tmp_path_factory.mktemp("reid") / "market"
    make_synthetic_dataset(root, "market", people=8, seed=1)
    test = root / "test"
    first = sorted(test.iterdir())[0]
    shutil.copy(first, test / "-1_c1s1_000001_01.jpg")  # junk box: dropped from the gallery
    shutil.copy(first, test / "0000_c2s1_000002_01.jpg")  # distractor: an ordinary negative
    pairs = read_pairs(root / "market-pairs-test.csv")[:PAIRS]
    write_pairs(root / "pairs10.csv", pairs)
    results, copies = root.parent / "results", root.parent / "copies"
    results.mkdir()
    copies.mkdir()
    rng = np.random.default_rng(0)
    for source, target in pairs:
        name = f"{Path(source).stem}_2_{Path(target).stem}_vis.jpg"
        image = np.asarray(Image.open(test / target)).astype(int)
        noisy = np.clip(image + rng.integers(-40, 41, image.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(results / name, quality=90)
        shutil.copy(test / target, copies / name)  # a "generator" that returns the real target
    return {"root": root, "pairs": pairs, "results": results, "copies": copies}


def run(args: list[str], tmp_path: Path, capsys, size=(64, 32)) -> tuple[int, dict | None, str]:
    """(exit code, the JSON report or None, stderr + stdout)."""
    out = tmp_path / "report.json"
    out.unlink(missing_ok=True)
    code = main(args + FAST + ["--size", *map(str, size), "--out", str(out)])
    captured = capsys.readouterr()
    return code, (json.loads(out.read_text()) if out.is_file() else None), captured.err + captured.out


def generated_args(market, results=None, extra=()) -> list[str]:
    """The generated protocol on the 10 pairs; results=False: no --results_dir (--query_source real)."""
    folder = [] if results is False else ["--results_dir", str(results or market["results"])]
    return ["--dataroot", str(market["root"]), "--protocol", "generated", *folder, "--pairs",
            str(market["root"] / "pairs10.csv"), *extra]


def expected_junk(market, with_source: bool) -> int:
    """Gallery items dropped over the 10 queries: same pid and camera as cam(to), plus the source."""
    gallery = [n for n in sorted(p.name for p in (market["root"] / "test").iterdir()) if not n.startswith("-1_")]
    total = 0
    for source, target in market["pairs"]:
        pid, cam = pid_cam(target, "market")
        junk = {n for n in gallery if pid_cam(n, "market") == (pid, cam)}
        total += len(junk | {source}) if with_source else len(junk)
    return total


def test_generated_protocol_reports_both_rules_counts_and_settings(market, tmp_path, capsys):
    code, report, err = run(generated_args(market), tmp_path, capsys)
    assert code == 0 and "--random_weights" in err
    counts = report["counts"]
    assert counts["queries"] == PAIRS and counts["pair_rows"] == PAIRS and counts["sources_in_gallery"] == PAIRS
    assert counts["gallery_images"] == 13 and counts["gallery_junk_dropped"] == 1  # 12 + the 0000 box
    assert set(report["results"]) == {"headline", "fastreid"} and report["headline"] == "headline"
    head, plain = report["results"]["headline"], report["results"]["fastreid"]
    assert head["junk_items"] == expected_junk(market, True) and plain["junk_items"] == expected_junk(market, False)
    assert head["junk_items"] > plain["junk_items"]
    for values in (head, plain):
        assert values["valid_queries"] + values["skipped_queries"] == PAIRS
        assert 0 <= values["rank1"] <= values["rank5"] <= values["rank10"] <= 100 and len(values["cmc"]) == 50
        assert values["metric"] == pytest.approx((values["mAP"] + values["rank1"]) / 2)
    assert report["weights"]["random_weights"] is True and report["weights"]["sha256"] is None
    assert report["weights"]["with_ibn"] is True and report["weights"]["stem_pool"] == "ceil"
    settings = report["settings"]
    assert settings["size"] == [64, 32] and settings["cam_rule"] == "target" and settings["junk_source"] is True
    assert report["metric"] == "cosine" and "sorted by file name" in report["lists"]
    assert "source image is junk" in report["rules"]["headline"]
    assert "Rank-1" in err and "mINP" in err and "sorted by file name" in err  # the console table


def test_a_generator_returning_the_target_scores_like_the_real_data_row(market, tmp_path, capsys):
    _, copies, _ = run(generated_args(market, market["copies"]), tmp_path, capsys)
    _, real, _ = run(generated_args(market, False, ["--query_source", "real"]), tmp_path, capsys)
    for rule in ("headline", "fastreid"):
        for key in ("rank1", "mAP", "mINP", "valid_queries", "junk_items"):
            assert copies["results"][rule][key] == pytest.approx(real["results"][rule][key]), (rule, key)
    assert "real target itself is junk" in real["rules"]["headline"]


def test_camera_rules_change_the_junk(market, tmp_path, capsys):
    _, none, _ = run(generated_args(market, extra=["--cam_rule", "none", "--no_junk_source"]), tmp_path, capsys)
    assert none["results"]["headline"]["junk_items"] == 0
    assert none["results"]["fastreid"]["junk_items"] == expected_junk(market, False)  # always the plain rule
    _, source, _ = run(generated_args(market, extra=["--cam_rule", "source", "--rerank", "--ap", "market_official"]),
                       tmp_path, capsys)
    head = source["results"]["headline"]
    assert head["mAP"] == head["mAP_market_official"] and head["ap_formula"] == "market_official"
    assert source["settings"]["rerank"] is True and source["settings"]["k1"] == 20


def test_a_missing_generated_image_is_one_line_naming_it(market, tmp_path, capsys):
    partial = tmp_path / "partial"
    shutil.copytree(market["results"], partial)
    source, target = market["pairs"][3]
    name = f"{Path(source).stem}_2_{Path(target).stem}_vis.jpg"
    (partial / name).unlink()
    code, report, printed = run(generated_args(market, partial), tmp_path, capsys)
    assert code == 2 and report is None
    assert len(printed.strip().splitlines()) == 1  # checked before the network is built: nothing else printed
    assert printed.startswith("error: generated image ") and name in printed
    assert "pair row 4" in printed and "1 of 10 missing" in printed


def test_standard_protocol_on_query_folder_and_the_training_api(market, tmp_path, capsys):
    code, report, _ = run(["--dataroot", str(market["root"])], tmp_path, capsys)
    assert code == 0 and set(report["results"]) == {"fastreid"}
    queries = len(list((market["root"] / "query").iterdir()))
    result = report["results"]["fastreid"]
    assert report["counts"]["queries"] == queries and result["valid_queries"] == queries
    assert result["skipped_queries"] == 0 and report["counts"]["gallery_images"] == 13
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = BagtricksReID(num_classes=0).train()  # the same random network as --random_weights
    api = evaluate_standard(model, market["root"], size=(64, 32), batch_size=32)
    assert model.training  # mode restored
    assert set(api) >= {"rank1", "rank5", "rank10", "mAP", "mINP", "metric", "valid_queries", "skipped_queries",
                        "gallery_images"}
    for key in ("rank1", "rank5", "mAP", "mINP", "metric"):
        assert api[key] == pytest.approx(result[key])
    assert api["gallery_images"] == 13 and api["valid_queries"] == queries


def test_pngan_protocol_fuses_eight_canonical_images(market, tmp_path, capsys):
    canon = tmp_path / "canon"
    canon.mkdir()
    for folder in ("query", "test"):
        for path in (market["root"] / folder).iterdir():
            for k in range(1, 9):  # every canonical image a copy of the original: fusion gives the original back
                shutil.copy(path, canon / f"{path.stem}_2_canon{k}_vis.jpg")
    args = ["--dataroot", str(market["root"]), "--protocol", "pngan", "--canonical_dir", str(canon), "--metric",
            "cosine"]
    small = (32, 16)  # 8 images per image: the smallest input the network takes keeps this quick
    code, pngan, _ = run(args, tmp_path, capsys, small)
    used = [p for p in canon.iterdir() if not p.name.startswith("-1_")]  # junk boxes are not in the gallery
    assert code == 0 and pngan["counts"]["images_embedded"] == len(used) == 8 * (pngan["counts"]["queries"] + 13)
    _, standard, _ = run(["--dataroot", str(market["root"])], tmp_path, capsys, small)
    for key in ("rank1", "mAP", "mINP"):
        assert pngan["results"]["fastreid"][key] == pytest.approx(standard["results"]["fastreid"][key], abs=1e-4)
    _, default, _ = run(args[:-2] + ["--pn_fusion", "max", "--pn_combine", "concat"], tmp_path, capsys, small)
    assert default["metric"] == "euclidean" and default["settings"]["pn_combine"] == "concat"
    assert default["counts"]["images_embedded"] == len(used) + pngan["counts"]["queries"] + 13  # + the originals
    next(canon.glob("*_2_canon5_vis.jpg")).unlink()
    code, _, err = run(args, tmp_path, capsys, small)
    assert code == 2 and "canonical-pose image" in err and "_2_canon5_vis.jpg" in err


@pytest.mark.parametrize("argv, message", [
    (["--protocol", "standard"], "exactly one of --reid_weights"),
    (["--protocol", "standard", "--random_weights", "--cam_rule", "none"], "--cam_rule applies to --protocol generated"),
    (["--protocol", "generated", "--random_weights"], "needs --results_dir"),
    (["--protocol", "standard", "--random_weights", "--results_dir", "x"], "--results_dir is used by"),
    (["--protocol", "standard", "--reid_weights", "missing.pth"], "missing.pth not found"),
    (["--protocol", "standard", "--random_weights", "--k1", "10"], "apply with --rerank only"),
    (["--protocol", "generated", "--random_weights", "--query_source", "real", "--results_dir", "x"],
     "not read with --query_source real"),
    (["--protocol", "pngan", "--random_weights", "--canonical_dir", "x", "--pn_combine", "orig_only",
      "--pn_fusion", "max"], "no effect"),
])
def test_bad_options_are_one_error_line(market, capsys, argv, message):
    assert main(["--dataroot", str(market["root"])] + argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ") and "Traceback" not in err


def test_flip_is_the_average_with_the_mirror_image(tmp_path):
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (64, 32, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "a.png")
    Image.fromarray(image[:, ::-1]).save(tmp_path / "b.png")
    Image.fromarray(image).convert("RGBA").save(tmp_path / "c.png")  # converted to RGB on load
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = BagtricksReID(num_classes=0).eval()
    paths = [tmp_path / n for n in ("a.png", "b.png", "c.png")]
    plain = compute_features(model, paths, size=(64, 32), batch_size=2)
    flipped = compute_features(model, paths, size=(64, 32), batch_size=2, flip=True)
    assert not torch.allclose(plain[0], plain[1], atol=1e-3)
    torch.testing.assert_close(flipped[0], flipped[1], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(flipped[0], (plain[0] + plain[1]) / 2, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(plain[2], plain[0])
    assert load_image(paths[0], (128, 64)).shape == (3, 128, 64)  # PIL bicubic to (H, W)


def test_a_fast_reid_checkpoint_file_is_loaded_hashed_and_described(market, tmp_path, capsys):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        model = BagtricksReID(num_classes=5).eval()
    path = tmp_path / "model_final.pth"
    torch.save({"model": model.state_dict(), "epoch": 119}, path)
    out = tmp_path / "r.json"
    assert main(["--dataroot", str(market["root"]), "--reid_weights", str(path), "--size", "32", "16",
                 "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    weights = report["weights"]
    assert weights["random_weights"] is False and weights["sha256"] == sha256_of(path)
    assert weights["with_ibn"] is True and weights["num_classes"] == 5 and weights["stem_pool"] == "ceil"
    api = evaluate_standard(model, market["root"], size=(32, 16))
    assert report["results"]["fastreid"]["mAP"] == pytest.approx(api["mAP"])
    assert "random" not in capsys.readouterr().err


def test_deepfashion_generated_protocol_parses_ids_and_finds_the_pair_file(tmp_path, capsys):
    root = tmp_path / "fashion"
    make_synthetic_dataset(root, "fashion", people=4, seed=2, images_per_person=3, test_fraction=0.5)
    pairs = read_pairs(root / "fasion-resize-pairs-test.csv")
    results = tmp_path / "results"
    results.mkdir()
    for source, target in pairs:
        shutil.copy(root / "test" / target, results / f"{Path(source).stem}_2_{Path(target).stem}_vis.jpg")
    base = ["--dataroot", str(root), "--dataset", "fashion", "--protocol", "generated", "--results_dir", str(results)]
    code, report, _ = run(base, tmp_path, capsys, (32, 16))
    assert code == 0 and report["counts"]["pair_rows"] == len(pairs) and report["counts"]["gallery_images"] == 6
    assert report["counts"]["pairs_file"].endswith("fasion-resize-pairs-test.csv")
    # a copy of the target is same id and same view as the target's own file: junk under the camera rule
    assert report["results"]["fastreid"]["junk_items"] == len(pairs)
    assert report["results"]["headline"]["junk_items"] == 2 * len(pairs)  # and the source
    code, item, _ = run(base + ["--fashion_pid", "item", "--cam_rule", "none"], tmp_path, capsys, (32, 16))
    assert code == 0 and item["settings"]["fashion_pid"] == "item"
    assert item["results"]["headline"]["rank1"] == 100.0  # nothing is junk but the source: the target is found


def test_pngan_network_b_embeds_the_canonical_images(market, tmp_path, capsys):
    """--pn_weights: the canonical-pose images go through the second network, the originals through the first."""
    canon = tmp_path / "canon"
    canon.mkdir()
    for folder in ("query", "test"):
        for path in (market["root"] / folder).iterdir():
            for k in range(1, 9):
                shutil.copy(path, canon / f"{path.stem}_2_canon{k}_vis.jpg")
    files = []
    for seed in (3, 4):  # network A, network B
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = BagtricksReID(num_classes=0).eval()
        files.append(tmp_path / f"net{seed}.pth")
        torch.save(net.state_dict(), files[-1])
    base = ["--dataroot", str(market["root"]), "--protocol", "pngan", "--canonical_dir", str(canon), "--size", "32",
            "16", "--batch_size", "64"]

    def report(*extra: str) -> dict:
        out = tmp_path / "r.json"
        out.unlink(missing_ok=True)
        assert main(base + list(extra) + ["--out", str(out)]) == 0, capsys.readouterr().err
        return json.loads(out.read_text())

    two = report("--reid_weights", str(files[0]), "--pn_weights", str(files[1]))
    only_b = report("--reid_weights", str(files[1]))
    only_a = report("--reid_weights", str(files[0]))
    assert two["weights_pn"]["sha256"] == sha256_of(files[1]) and only_b["weights_pn"] == "same as weights"
    for key in ("rank1", "mAP", "mINP"):  # pn_only: only network B's features count
        assert two["results"]["fastreid"][key] == pytest.approx(only_b["results"]["fastreid"][key], abs=1e-6)
    assert only_a["results"]["fastreid"]["mAP"] != pytest.approx(only_b["results"]["fastreid"]["mAP"], abs=1e-6)
    both = report("--reid_weights", str(files[0]), "--pn_weights", str(files[1]), "--pn_combine", "concat")
    assert both["counts"]["images_embedded"] == two["counts"]["images_embedded"] + two["counts"]["queries"] + 13
    assert main(base + ["--reid_weights", str(files[0]), "--pn_weights", str(files[1]), "--pn_combine",
                        "orig_only"]) == 2
    assert "--pn_weights" in capsys.readouterr().err
