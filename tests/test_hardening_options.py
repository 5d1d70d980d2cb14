"""Issue 17 (options, resume, checkpoints) and two items of issue 16: every bad option value, unusable folder and
foreign checkpoint is one `error:` line naming the culprit, exit status 2, with nothing on disk changed; a resumed
run refuses what its training state fixes, and what it may change (--lr) takes effect and is recorded."""
from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest
import torch

import train as train_script
from options.test_options import TestOptions
from tests.disk_checks import snapshot

REPO = Path(__file__).resolve().parents[1]
# test.py shares its module name with Python's own `test` package, so load it by path
_spec = importlib.util.spec_from_file_location("pose_transfer_test_script_hardening", REPO / "test.py")
test_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(test_script)
CPU = ["--gpu_ids", "-1", "--num_threads", "0"]
PG2 = ["--model", "PG2", "--stage", "1", "--ngf", "8"]


@pytest.fixture(scope="module")
def trained(tiny_market_root, tmp_path_factory) -> Path:
    """A checkpoints folder holding run 'small': one step of PG2 stage 1 at --ngf 8."""
    ckpt = tmp_path_factory.mktemp("ckpt_hardening")
    assert train_script.main(train_args(tiny_market_root, ckpt, "small", "--max_steps", "1")) == 0
    return ckpt


@pytest.fixture
def run_copy(trained, tmp_path) -> Path:
    """A private copy of the trained checkpoints folder (tests that break a file or resume)."""
    return Path(shutil.copytree(trained, tmp_path / "ckpt"))


def train_args(root: Path, ckpt: Path, name: str, *extra: str) -> list[str]:
    return ["--name", name, *PG2, "--dataset_mode", "market", "--dataroot", str(root), "--checkpoints_dir",
            str(ckpt), "--batchSize", "2", "--seed", "1", *CPU, *extra]


def test_args(root: Path, ckpt: Path, results: Path, *extra: str) -> list[str]:
    return ["--name", "small", "--stage", "1", "--dataset_mode", "market", "--dataroot", str(root),
            "--checkpoints_dir", str(ckpt), "--results_dir", str(results), "--how_many", "1", *CPU, *extra]


train_args.__test__ = test_args.__test__ = False  # helpers, not tests


def one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


# --- option values refused before any work -----------------------------------------------------------------

BAD_VALUES = [
    (["--lr_policy", "step", "--lr_decay_iters", "0"], "--lr_decay_iters"),
    (["--lr_policy", "step", "--lr_decay_iters", "-3"], "--lr_decay_iters"),
    (["--lr", "-1"], "--lr must be a number > 0, got -1.0"),
    (["--lr", "0"], "--lr must be a number > 0, got 0.0"),
    (["--lr", "nan"], "--lr must be a number > 0"),
    (["--beta1", "1.5"], "--beta1"),
    (["--max_steps", "-1"], "--max_steps must be >= 0 (0 = no limit"),
    (["--epoch_count", "-1"], "--epoch_count"),
    (["--epoch_count", "0"], "--epoch_count"),
    (["--niter", "2", "--niter_decay", "0", "--epoch_count", "5"], "--epoch_count"),
    (["--suffix", "{nope}"], "--suffix '{nope}': {nope} is not an option"),
    (["--suffix", "{model"], "--suffix '{model'"),
    (["--suffix", "{}"], "--suffix '{}'"),
    (["--max_dataset_size", "0"], "--max_dataset_size"),
    (["--display_winsize", "0"], "--display_winsize"),
    (["--torch_threads", "-2"], "--torch_threads"),
]


@pytest.mark.parametrize("flags,words", BAD_VALUES, ids=[" ".join(f) for f, _ in BAD_VALUES])
def test_bad_training_values_are_one_line(flags, words, trained, tiny_market_root, capsys):
    before = snapshot(trained)
    assert train_script.main(train_args(tiny_market_root, trained, "fresh", *flags)) == 2
    assert words in one_error(capsys)
    assert snapshot(trained) == before and not (trained / "fresh").exists()


@pytest.mark.parametrize("name", ["../../x", "../escaped", "", " ", ".", "..", "a/b", "/tmp/absolute_run"])
def test_names_that_leave_the_checkpoints_dir_are_refused(name, trained, tiny_market_root, tmp_path, capsys):
    outside = snapshot(tmp_path)
    before = snapshot(trained)
    assert train_script.main(train_args(tiny_market_root, trained, name)) == 2
    assert f"--name {name!r}" in one_error(capsys)
    assert snapshot(trained) == before and snapshot(tmp_path) == outside
    assert not Path("/tmp/absolute_run").exists()


def test_a_suffix_that_leaves_the_checkpoints_dir_is_refused(trained, tiny_market_root, capsys):
    before = snapshot(trained)
    argv = train_args(tiny_market_root, trained, "run", "--suffix", "x/../../{model}")
    assert train_script.main(argv) == 2
    assert "--name 'run_x/../../PG2'" in one_error(capsys)
    assert snapshot(trained) == before


def test_checkpoints_dir_that_is_a_file_or_under_one(tiny_market_root, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    for ckpt, words in ((blocker, f"--checkpoints_dir {blocker} is a file"),
                        (blocker / "sub", f"lies under {blocker}, which is a file")):
        assert train_script.main(train_args(tiny_market_root, ckpt, "run")) == 2
        assert words in one_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"] and blocker.read_text() == "not a folder"


def test_run_folder_that_is_a_file(tiny_market_root, tmp_path, capsys):
    (tmp_path / "run").write_text("x")
    assert train_script.main(train_args(tiny_market_root, tmp_path, "run")) == 2
    assert f"--name run: {tmp_path / 'run'} is a file" in one_error(capsys)
    assert (tmp_path / "run").read_bytes() == b"x" and [p.name for p in tmp_path.iterdir()] == ["run"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits: see the os.access test below")
def test_read_only_checkpoints_dir_by_chmod(tiny_market_root, tmp_path, capsys):
    ckpt = tmp_path / "ro"
    ckpt.mkdir()
    ckpt.chmod(0o555)
    try:
        assert train_script.main(train_args(tiny_market_root, ckpt, "run")) == 2
        assert f"--checkpoints_dir {ckpt}" in one_error(capsys)
        assert not any(ckpt.iterdir())
    finally:
        ckpt.chmod(0o755)


def test_read_only_checkpoints_dir_via_os_access(tiny_market_root, tmp_path, monkeypatch, capsys):
    """As root chmod does not deny writing, so the permission check itself (os.access) reports the folder
    read-only here; the test shows the message and that nothing is written."""
    ckpt = tmp_path / "ro"
    ckpt.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == ckpt else real_access(p, mode, **kw))
    assert train_script.main(train_args(tiny_market_root, ckpt / "deeper", "run")) == 2
    assert f"--checkpoints_dir {ckpt / 'deeper'}: {ckpt} is not writable" in one_error(capsys)
    assert not any(ckpt.iterdir())


def test_results_dir_that_is_a_file(trained, tiny_market_root, tmp_path, capsys):
    results = tmp_path / "results.jpg"
    results.write_bytes(b"x")
    before = snapshot(trained)
    assert test_script.main(test_args(tiny_market_root, trained, results)) == 2
    assert f"--results_dir {results} is a file" in one_error(capsys)
    assert snapshot(trained) == before and results.read_bytes() == b"x"


def test_page_flags_without_pages_are_refused(trained, tiny_market_root, tmp_path, capsys):
    before = snapshot(trained)
    argv = test_args(tiny_market_root, trained, tmp_path / "r", "--only_generated", "--num_panels", "5")
    assert test_script.main(argv) == 2
    assert "--num_panels shapes the HTML panels, which --only_generated does not write" in one_error(capsys)
    assert snapshot(trained) == before and not (tmp_path / "r").exists()


# --- foreign checkpoints ------------------------------------------------------------------------------------

FOREIGN = [
    ("pickled list", lambda path: torch.save([1, 2, 3], path), "holds a list of 3 items, not network weights"),
    ("bare tensor", lambda path: torch.save(torch.zeros(2, 3), path), "holds a bare tensor of shape (2, 3)"),
    ("zero bytes", lambda path: path.write_bytes(b""), "is empty (0 bytes"),
    ("truncated", lambda path: path.write_bytes(path.read_bytes()[:300]), "is unreadable"),
    ("dict of other things", lambda path: torch.save({"epoch": 3}, path), "holds a dict of 1 entries"),
]


@pytest.mark.parametrize("make,words", [f[1:] for f in FOREIGN], ids=[f[0] for f in FOREIGN])
def test_foreign_weights_file_is_one_line(make, words, run_copy, tiny_market_root, tmp_path, capsys):
    weights = run_copy / "small" / "latest_net_G1.pth"
    make(weights)
    before = snapshot(run_copy)
    assert test_script.main(test_args(tiny_market_root, run_copy, tmp_path / "r")) == 2
    line = one_error(capsys)
    assert f"checkpoint {weights} " in line and words in line
    assert snapshot(run_copy) == before and not (tmp_path / "r").exists()


@pytest.mark.parametrize("make,words", [
    (lambda path: torch.save([1, 2], path), "is not a training state of this project (format 1): it holds a list"),
    (lambda path: torch.save(torch.ones(1), path), "it holds a bare tensor"),
    (lambda path: path.write_bytes(b""), "is empty (0 bytes"),
    (lambda path: torch.save({"format_version": 1, "model": {}}, path), "is an incomplete training state"),
], ids=["list", "tensor", "empty", "incomplete"])
def test_foreign_training_state_is_one_line(make, words, run_copy, tiny_market_root, capsys):
    state = run_copy / "small" / "latest_train_state.pth"
    make(state)
    before = snapshot(run_copy)
    argv = train_args(tiny_market_root, run_copy, "small", "--continue_train", "--max_steps", "2")
    assert train_script.main(argv) == 2
    line = one_error(capsys)
    assert "cannot resume" in line and str(state) in line and words in line
    assert snapshot(run_copy) == before


def test_weights_of_another_width_without_train_opt_name_the_tensor_and_option(run_copy, tiny_market_root,
                                                                                 tmp_path, capsys):
    (run_copy / "small" / "train_opt.txt").unlink()  # bare imported weights: nothing says how they were trained
    before = snapshot(run_copy)
    argv = test_args(tiny_market_root, run_copy, tmp_path / "r", "--model", "PG2", "--ngf", "16")
    assert test_script.main(argv) == 2
    line = one_error(capsys)
    assert str(run_copy / "small" / "latest_net_G1.pth") in line and "wrong shape of " in line
    assert "in the file" in line and "(the file looks like --ngf 8; this run has --ngf 16)" in line
    assert "tensors of the wrong shape in all" in line
    assert snapshot(run_copy) == before


# --- resume --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("flags,words", [
    (["--ngf", "16"], "--ngf 8, asked for 16 (it shapes the saved networks)"),
    (["--seed", "7"], "--seed 1, asked for 7 (the random state continues"),
    (["--lr_policy", "step"], "--lr_policy constant, asked for step"),
    (["--epoch_count", "3"], "--epoch_count 1, asked for 3"),
    (["--stage", "2"], "--stage 1, asked for 2 (it selects the networks"),
], ids=["ngf", "seed", "lr_policy", "epoch_count", "stage"])
def test_resume_refuses_what_the_state_fixes(flags, words, run_copy, tiny_market_root, capsys):
    before = snapshot(run_copy)
    argv = ["--name", "small", "--checkpoints_dir", str(run_copy), "--continue_train", *CPU, *flags]
    assert train_script.main(argv) == 2
    line = one_error(capsys)
    assert line.startswith(f"error: --continue_train: {run_copy / 'small'} was trained with ") and words in line
    assert snapshot(run_copy) == before


def test_resume_with_a_new_lr_takes_effect_and_is_recorded(run_copy, monkeypatch, capsys):
    seen = {}

    def stop_before_training(trainer):  # the resumed optimizer, before any step
        seen["lr"] = [g["lr"] for o in trainer.model.optimizers for g in o.param_groups]
        seen["ngf"], seen["epoch"] = trainer.opt.ngf, trainer.epoch

    monkeypatch.setattr(train_script.Trainer, "run", stop_before_training)
    # only the run's name: every untyped option (model, --ngf 8, dataset, dataroot) comes from train_opt.txt
    argv = ["--name", "small", "--checkpoints_dir", str(run_copy), "--continue_train", "--lr", "0.5", *CPU]
    assert train_script.main(argv) == 0
    assert seen == {"lr": [0.5], "ngf": 8, "epoch": 1}
    out = capsys.readouterr().out
    assert "changed now: --lr 2e-05 -> 0.5" in out and "optimizer 0: lr 2e-05 -> 0.5" in out
    recorded = (run_copy / "small" / "train_opt.txt").read_text()
    assert "lr: 0.5 " in recorded and "ngf: 8 " in recorded and "continue_train: True" in recorded


def test_resume_trains_on_at_the_new_lr(run_copy):
    argv = ["--name", "small", "--checkpoints_dir", str(run_copy), "--continue_train", "--lr", "1e-4",
            "--max_steps", "2", *CPU]
    assert train_script.main(argv) == 0
    state = torch.load(run_copy / "small" / "latest_train_state.pth", weights_only=False)
    assert state["progress"]["total_iters"] == 2
    assert state["model"]["optimizers"][0]["param_groups"][0]["lr"] == 1e-4
    assert state["options"]["lr"] == 1e-4 and state["options"]["ngf"] == 8


# --- PATN's test-time flags (issue 16) -----------------------------------------------------------------------

def test_patn_no_dropout_is_refused_at_test(tmp_path, capsys):
    argv = ["--model", "PATN", "--dataset_mode", "market", "--name", "p", "--checkpoints_dir", str(tmp_path),
            "--results_dir", str(tmp_path / "r"), "--no_dropout", *CPU]
    assert test_script.main(argv) == 2
    line = one_error(capsys)
    assert "--no_dropout" in line and "eval mode" in line
    assert not any(tmp_path.iterdir())


def test_patn_no_flip_at_test_restates_what_test_does(tmp_path):
    """The official test command passes --no_flip; test.py never flips, so the option is on at test time whether
    typed or not, and test_opt.txt records that (it is never accepted and then contradicted)."""
    base = ["--model", "PATN", "--dataset_mode", "market", "--name", "p", "--checkpoints_dir", str(tmp_path), *CPU]
    for extra in ([], ["--no_flip"]):
        opt = TestOptions().parse(base + extra, echo=False, check_folder=False)
        assert opt.no_flip is True and opt.flip_prob == 0.0
