"""Runs remember their options: test.py takes a run's network-shaping flags (and its model) from
<checkpoints_dir>/<name>/train_opt.txt, and refuses typed values or data that contradict the run."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

import train as train_script
from data.annotations import read_pairs

REPO = Path(__file__).resolve().parents[1]
# test.py shares its module name with Python's own `test` package, so load it by path
_spec = importlib.util.spec_from_file_location("pose_transfer_test_script_run_options", REPO / "test.py")
test_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(test_script)
CPU = ["--gpu_ids", "-1", "--num_threads", "0", "--seed", "1"]


@pytest.fixture(scope="module")
def ngf8_run(tiny_market_root, tmp_path_factory) -> Path:
    """One step of PG2 stage 1 at --ngf 8 (not the paper's width 128)."""
    ckpt = tmp_path_factory.mktemp("ckpt_run_options")
    argv = ["--name", "small", "--model", "PG2", "--stage", "1", "--ngf", "8", "--dataset_mode", "market",
            "--dataroot", str(tiny_market_root), "--checkpoints_dir", str(ckpt), "--batchSize", "2",
            "--max_steps", "1", *CPU]
    assert train_script.main(argv) == 0
    assert "ngf: 8" in (ckpt / "small" / "train_opt.txt").read_text()
    return ckpt


def test_args(ckpt: Path, root: Path, results: Path, *extra: str) -> list[str]:
    return ["--name", "small", "--stage", "1", "--checkpoints_dir", str(ckpt), "--dataroot", str(root),
            "--results_dir", str(results), *CPU, *extra]


test_args.__test__ = False  # a helper, not a test


def error_lines(captured) -> list[str]:
    return [line for line in captured.err.splitlines() if line.startswith("error:")]


def test_ngf_and_model_come_from_the_run(ngf8_run, tiny_market_root, tmp_path, capsys):
    results = tmp_path / "res"
    # neither --ngf nor --model typed: the run's 8 and PG2 are used (the default --ngf 128 would not load)
    argv = test_args(ngf8_run, tiny_market_root, results, "--dataset_mode", "market", "--how_many", "2")
    assert test_script.main(argv) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith("options from the run"))
    assert str(ngf8_run / "small" / "train_opt.txt") in line and "--ngf 8" in line
    assert len(list(results.glob("*_vis.jpg"))) == 2
    saved = (ngf8_run / "small" / "test_opt.txt").read_text()
    assert "ngf: 8" in saved and "model: PG2" in saved


def test_typed_same_value_is_accepted(ngf8_run, tiny_market_root, tmp_path):
    argv = test_args(ngf8_run, tiny_market_root, tmp_path / "r", "--dataset_mode", "market", "--model", "pg2",
                     "--ngf", "8", "--how_many", "1")
    assert test_script.main(argv) == 0


def test_contradicting_ngf_is_one_error(ngf8_run, tiny_market_root, tmp_path, capsys):
    results = tmp_path / "res"
    argv = test_args(ngf8_run, tiny_market_root, results, "--dataset_mode", "market", "--ngf", "16")
    assert test_script.main(argv) == 2
    captured = capsys.readouterr()
    lines = error_lines(captured)
    assert len(lines) == 1 and len(captured.err.strip().splitlines()) == 1
    assert "trained with --ngf 8" in lines[0] and "16" in lines[0] and str(ngf8_run / "small") in lines[0]
    assert not results.exists()
    assert not (ngf8_run / "small" / "test_opt.txt").exists() or "ngf: 16" not in \
        (ngf8_run / "small" / "test_opt.txt").read_text()


def test_other_dataset_is_one_error(ngf8_run, tiny_fashion_root, tmp_path, capsys):
    results = tmp_path / "res"
    argv = test_args(ngf8_run, tiny_fashion_root, results, "--dataset_mode", "fashion")
    assert test_script.main(argv) == 2
    lines = error_lines(capsys.readouterr())
    assert len(lines) == 1 and "trained on market" in lines[0] and "fashion" in lines[0]
    assert not results.exists()


def test_fresh_name_keeps_the_defaults(tiny_market_root, tmp_path, capsys):
    # no train_opt.txt: nothing is read, and the missing weights are the error (not a silent default run)
    argv = ["--name", "none", "--checkpoints_dir", str(tmp_path), "--dataroot", str(tiny_market_root),
            "--dataset_mode", "market", "--results_dir", str(tmp_path / "r"), *CPU]
    assert test_script.main(argv) == 2
    captured = capsys.readouterr()
    assert "options from the run" not in captured.out and len(error_lines(captured)) == 1


def test_transfer_takes_ngf_from_the_run(ngf8_run, tiny_market_root, tmp_path, capsys):
    from scripts import transfer

    source, target = read_pairs(tiny_market_root / "market-pairs-test.csv")[0]
    csv = tiny_market_root / "market-annotation-test.csv"
    argv = ["--name", "small", "--stage", "1", "--checkpoints_dir", str(ngf8_run), "--gpu_ids", "-1",
            "--dataset_mode", "market", "--source", str(tiny_market_root / "test" / source),
            "--source_pose", f"{csv}:{source}", "--target", f"{csv}:{target}", "--out", str(tmp_path / "r.png")]
    assert transfer.main(argv) == 0 and (tmp_path / "r.png").is_file()
    assert "--ngf 8" in capsys.readouterr().out
    assert transfer.main(argv[:-1] + [str(tmp_path / "s.png"), "--ngf", "16"]) == 2
    assert "trained with --ngf 8" in capsys.readouterr().err and not (tmp_path / "s.png").exists()
