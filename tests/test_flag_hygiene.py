"""No flag accepted and then ignored: test.py refuses training options, scripts.transfer refuses test.py's result
and loader options, an unknown flag names the model that has it; --seed, --no_affine and --num_threads do what
their help says."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

import train as train_script
from options.test_options import TestOptions
from scripts import transfer

REPO = Path(__file__).resolve().parents[1]
# test.py shares its module name with Python's own `test` package, so load it by path
_spec = importlib.util.spec_from_file_location("pose_transfer_test_script_hygiene", REPO / "test.py")
test_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(test_script)


def base_args(tmp_path: Path, *extra: str) -> list[str]:
    return ["--name", "nothing", "--checkpoints_dir", str(tmp_path), "--gpu_ids", "-1", "--dataset_mode",
            "market", *extra]


def one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


TRAINING_ONLY = [
    ("PG2", ["--flip_prob", "0.5"]), ("PG2", ["--init_type", "normal"]), ("PG2", ["--init_gain", "0.02"]),
    ("PG2", ["--display_id", "1"]), ("PG2", ["--display_server", "http://example.org"]),
    ("PG2", ["--display_port", "8098"]), ("PG2", ["--display_env", "main"]),
    ("DPTN", ["--lambda_style", "1"]), ("DPTN", ["--lambda_content", "1"]), ("DPTN", ["--lambda_rec", "1"]),
    ("DPTN", ["--lambda_g", "1"]), ("DPTN", ["--ratio_g2d", "1"]), ("DPTN", ["--t_s_ratio", "0.5"]),
    ("DPTN", ["--use_spect_d"]), ("DPTN", ["--dis_layers", "3"]), ("DPTN", ["--no_flip"]),
]


@pytest.mark.parametrize("model,flag", TRAINING_ONLY, ids=[f"{m}{f[0]}" for m, f in TRAINING_ONLY])
def test_test_py_refuses_training_options(model, flag, tmp_path, capsys):
    # values other than the defaults: a typed default (official test commands pass --display_id 0) is accepted
    assert test_script.main(base_args(tmp_path, "--model", model, *flag)) == 2
    line = one_error(capsys)
    assert flag[0] in line and "training option" in line
    assert not any(tmp_path.iterdir())  # nothing written


def test_unknown_flag_names_the_model_that_has_it(tmp_path, capsys):
    assert train_script.main(base_args(tmp_path, "--model", "PG2", "--lambda_style", "1")) == 2
    line = one_error(capsys)
    assert "--lambda_style is an option of --model DPTN, not of --model PG2" in line


def test_test_py_seeds_before_building_the_data_and_model(tmp_path, monkeypatch, tiny_market_root):
    calls = []

    class Stop(Exception):
        pass

    def build_dataset(opt):
        calls.append("data")
        raise Stop

    monkeypatch.setattr(test_script, "seed_everything", lambda seed: calls.append(seed))
    monkeypatch.setattr(test_script, "build_dataset", build_dataset)
    for seed in (7, 11):
        with pytest.raises(Stop):
            test_script.main(base_args(tmp_path, "--dataroot", str(tiny_market_root), "--seed", str(seed)))
    assert calls == [7, "data", 11, "data"]


def test_dptn_no_affine_parses(tmp_path):
    def parse(*extra):
        return TestOptions().parse(base_args(tmp_path, "--model", "DPTN", *extra), echo=False, check_folder=False)

    assert parse().affine is True and parse("--affine").affine is True
    assert parse("--no_affine").affine is False


def test_num_threads_help_says_loader_workers(capsys):
    with pytest.raises(SystemExit):
        TestOptions().parse(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    start = out.index("--nThreads NUM_THREADS")  # the entry, not the usage line
    assert "DataLoader worker processes" in out[start:start + 300]


# test.py's result and loader flags that scripts.transfer does not use: refused with the reason
TRANSFER_REFUSED = [
    (["--results_dir", "out"], "--out"), (["--overwrite"], "--out"), (["--how_many", "3"], "--target"),
    (["--image_format", "png"], "suffix"), (["--num_panels", "5"], "--panel"), (["--page_size", "5"], "--panel"),
    (["--result_layout", "patn5"], "--panel"), (["--only_generated"], "--panel"),
    (["--image_list", "x.txt"], "--canonical_poses"), (["--legacy_names"], "--canonical_poses"),
    (["--num_threads", "1"], "DataLoader"), (["--serial_batches"], "DataLoader"),
    (["--max_dataset_size", "3"], "DataLoader"), (["--display_id", "1"], "visdom"),
    (["--flip_prob", "0.5"], "training option"),
]


@pytest.mark.parametrize("flag,why", TRANSFER_REFUSED, ids=[f[0] for f, _ in TRANSFER_REFUSED])
def test_transfer_refuses_test_py_output_and_loader_flags(flag, why, tmp_path, capsys):
    argv = base_args(tmp_path, "--model", "PG2", "--source", "p.jpg", "--target", "t.json",
                     "--out", str(tmp_path / "r.png"), *flag)
    assert transfer.main(argv) == 2
    line = one_error(capsys)
    assert flag[0] in line and why in line
    if why not in ("visdom", "training option"):
        assert "scripts.transfer" in line and "test.py" in line
    assert not any(tmp_path.iterdir())
