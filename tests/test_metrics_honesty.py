"""The evaluator says what its numbers are: random weights labelled meaningless (table, JSON, CSV), legacy FID's
dropped images in the table, the FID real set checked before any pair metric, help for every option, and
`--num_threads` meaning loader workers as in train.py/test.py (torch threads: `--torch_threads`)."""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metrics import metrics as cli
from metrics.report import format_table, legacy_fid_note, mark_random_weights
from options.base_options import BaseOptions

NAMES = [f"0001_c{c}s1_000{c}00_01" for c in range(1, 6)] + [f"0002_c{c}s1_000{c}00_01" for c in range(1, 6)]


@pytest.fixture(autouse=True)
def offline(no_downloads):
    """An empty torch hub cache; any download attempt fails the test (conftest.no_downloads)."""


def folders(root: Path, real_size=(128, 64), real_count: int = 10) -> tuple[Path, Path, Path]:
    """10 Market pairs (targets in gt/, results in gen/) and a real set of `real_count` images."""
    rng = np.random.default_rng(0)
    for sub in ("gt", "gen", "real"):
        (root / sub).mkdir(parents=True)
    for name in NAMES:
        Image.fromarray(rng.integers(0, 256, (128, 64, 3), dtype=np.uint8)).save(root / "gt" / f"{name}.jpg")
    for source, target in zip(NAMES, NAMES[1:] + NAMES[:1]):
        Image.fromarray(rng.integers(0, 256, (128, 64, 3), dtype=np.uint8)).save(
            root / "gen" / f"{source}_2_{target}_vis.jpg")
    for i in range(real_count):
        Image.fromarray(rng.integers(0, 256, (*real_size, 3), dtype=np.uint8)).save(root / "real" / f"r{i:02d}.jpg")
    return root / "gt", root / "gen", root / "real"


def command(root: Path, *extra: str) -> list[str]:
    return [f"--gt_path={root / 'gt'}", f"--distorated_path={root / 'gen'}", f"--fid_real_path={root / 'real'}",
            f"--name={root / 'out'}", "--market", "--num_workers", "0", "--torch_threads", "1", "--no_cache", *extra]


def test_random_weights_and_dropped_fid_images_are_in_the_table_and_reports(tmp_path, capsys):
    folders(tmp_path)
    argv = command(tmp_path, "--random_weights", "--metrics", "ssim,lpips,fid", "--fid_batch_size", "4")
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    table = out[out.index("protocol: legacy"):].splitlines()
    print("\n".join(table[:7]))
    assert table[1] == ("WARNING: lpips, fid computed with RANDOM network weights (--random_weights): these numbers "
                        "are meaningless")
    rows = {line.split()[0]: line for line in table[2:7] if line and not line.startswith(" ")}
    assert "MEANINGLESS (random weights)" in rows["lpips"] and "MEANINGLESS (random weights)" in rows["fid"]
    assert "MEANINGLESS" not in rows["ssim"]
    fid_row = table.index(rows["fid"])
    assert rows["fid"].split()[3] == "8"  # n: the images legacy FID scored
    assert table[fid_row + 1].strip() == ("scored 8 of 10 generated and 8 of 10 real images: legacy FID uses whole "
                                          "batches of 4 only (--fid_batch_size), as GFLA/DPTN")
    report = json.loads((tmp_path / "out.json").read_text())
    assert list(report)[0] == "warning" and "lpips, fid meaningless" in report["warning"]
    results = report["results"]
    assert results["lpips"]["meaningless"].startswith("MEANINGLESS") and "meaningless" in results["fid"]
    assert "meaningless" not in results["ssim"] and report["provenance"]["random_weights"] is True
    assert results["fid"]["note"].startswith("scored 8 of 10 generated")
    with open(tmp_path / "out.csv", newline="") as f:
        notes = {row["metric"]: row["note"] for row in csv.DictReader(f)}
    assert notes["ssim"] == "" and notes["lpips"].startswith("MEANINGLESS")
    assert "MEANINGLESS" in notes["fid"] and "scored 8 of 10" in notes["fid"]


def test_table_without_random_weights_has_no_warning():
    results = {"ssim": {"value": 0.5, "std": 0.1, "n": 3, "variant": "v"},
               "fid": {"value": 20.0, "n": 64, "variant": "f", "note": legacy_fid_note(64, 120, 128, 150, 64)}}
    table = format_table(results, "legacy")
    assert "WARNING" not in table and "MEANINGLESS" not in table
    assert "scored 64 of 120 generated and 128 of 150 real images" in table
    mark_random_weights(results)
    assert "meaningless" in results["fid"] and "meaningless" not in results["ssim"]


@pytest.mark.parametrize("protocol", ["legacy", "clean"])
@pytest.mark.parametrize("problem", ["size", "mixed", "truncated"])
def test_fid_real_set_is_checked_before_the_pair_metrics(tmp_path, capsys, monkeypatch, protocol, problem):
    """A DeepFashion-sized (or broken) real set fails in the plan, before the minutes of SSIM/LPIPS work."""
    folders(tmp_path, real_size=(256, 176) if problem == "size" else (128, 64))
    real = tmp_path / "real"
    if problem == "mixed":
        Image.new("RGB", (176, 256)).save(real / "r03.jpg")
    elif problem == "truncated":
        (real / "r03.jpg").write_bytes((real / "r03.jpg").read_bytes()[:10])

    def no_pair_pass(*args, **kwargs):
        raise AssertionError("the pair metrics ran before the real set was checked")
    monkeypatch.setattr(cli, "score_pairs", no_pair_pass)
    assert cli.main(command(tmp_path, "--random_weights", "--metrics", "ssim,fid", "--fid_batch_size", "2",
                            "--protocol", protocol)) == 2
    err = capsys.readouterr().err
    if problem == "truncated":
        assert "r03.jpg: unreadable image" in err
    else:
        assert f"FID real set {real}: images must be 128x64 like the generated ones" in err
        assert ("256x176: 10" if problem == "size" else "128x64: 9, 256x176: 1") in err
    assert not (tmp_path / "out.json").exists()


def test_every_metrics_option_has_help():
    parser = cli.build_parser()
    missing = [action.option_strings[0] for action in parser._actions
               if action.option_strings and not (action.help or "").strip()]
    assert missing == []


def test_num_threads_means_loader_workers_everywhere(tmp_path, monkeypatch):
    parser = cli.build_parser()
    args = parser.parse_args(["--distorated_path", "x", "--num_threads", "3"])
    assert args.num_workers == 3 and args.torch_threads == 0 and not hasattr(args, "num_threads")
    assert parser.parse_args(["--distorated_path", "x", "--nThreads", "2"]).num_workers == 2
    train_help = {a.dest: a.help for a in BaseOptions().initialize(argparse.ArgumentParser())._actions}
    assert "DataLoader worker processes" in train_help["num_threads"]  # the same meaning in train.py/test.py
    seen, evaluate = {}, cli.evaluate

    def record(args, argv):
        seen["threads"], seen["workers"] = torch.get_num_threads(), args.num_workers
        return 0
    monkeypatch.setattr(cli, "evaluate", record)
    before = torch.get_num_threads()
    assert cli.main(["--distorated_path", "x", "--torch_threads", "1", "--num_threads", "0"]) == 0
    assert seen == {"threads": 1, "workers": 0} and torch.get_num_threads() == before
    folders(tmp_path)
    monkeypatch.setattr(cli, "evaluate", evaluate)
    assert cli.main(command(tmp_path, "--metrics", "ssim", "--torch_threads", "-1")) == 2
