"""Options: official DPTN/pix2pix flags parse, hooks run, unknown names are clear errors, files are saved."""
from __future__ import annotations

import math

import pytest

from options.test_options import TestOptions
from options.train_options import TrainOptions
from util.io import InputError


def parse_train(argv, tmp_path, **kw):
    return TrainOptions().parse(argv + [f"--checkpoints_dir={tmp_path}"], echo=False, **kw)


def test_dptn_readme_train_flags_parse(tmp_path):
    # the base flags of the official DPTN Market command (its model flags come with the DPTN model)
    opt = parse_train(["--name=DPTN_market", "--model=PG2", "--dataset_mode=market",
                       "--dataroot=./dataset/market", "--batchSize", "32", "--gpu_id=-1",
                       "--save_latest_freq=10400"], tmp_path)
    assert (opt.name, opt.model, opt.dataset_mode, opt.dataroot) == ("DPTN_market", "PG2", "market",
                                                                     "./dataset/market")
    assert opt.batch_size == 32 and opt.gpu_ids == [] and opt.save_latest_freq == 10400
    assert opt.is_train and opt.phase == "train" and opt.data_format == "market"


def test_dptn_readme_test_flags_parse(tmp_path):
    options = TestOptions()
    opt = options.parse(["--name=DPTN_market", "--model=PG2", "--dataset_mode=market",
                               "--dataroot=./dataset/market", "--gpu_id=0", "--batchSize", "1",
                               "--which_epoch", "latest", "--results_dir", "./results/DPTN_market",
                               f"--checkpoints_dir={tmp_path}"], echo=False)
    assert opt.which_epoch == "latest" and opt.results_dir == "./results/DPTN_market"
    assert not opt.is_train and opt.phase == "test" and opt.how_many == math.inf
    assert not (tmp_path / "DPTN_market").exists()  # parsing writes nothing
    options.save(opt)
    assert (tmp_path / "DPTN_market" / "test_opt.txt").is_file()


def test_pix2pix_flags_parse(tmp_path):
    opt = parse_train(["--model", "DPTN", "--dataset_mode", "market", "--gpu_ids", "-1", "--phase", "train",
                       "--niter", "3", "--niter_decay", "2", "--lr", "0.001", "--beta1", "0.9",
                       "--continue_train", "--epoch_count", "2", "--display_id", "0", "--display_port", "8100",
                       "--display_server", "http://127.0.0.1", "--display_freq", "10", "--print_freq", "5",
                       "--save_epoch_freq", "2", "--nThreads", "0", "--serial_batches",
                       "--max_dataset_size", "10", "--init_type", "xavier", "--init_gain", "0.1",
                       "--seed", "7"], tmp_path)
    assert (opt.niter, opt.niter_decay, opt.lr, opt.beta1) == (3, 2, 0.001, 0.9)
    assert opt.continue_train and opt.epoch_count == 2 and opt.display_port == 8100
    assert opt.num_threads == 0 and opt.serial_batches and opt.max_dataset_size == 10
    assert (opt.init_type, opt.init_gain, opt.seed) == ("xavier", 0.1, 7)
    assert parse_train(["--num_threads", "3", "--gpu_ids=-1"], tmp_path).num_threads == 3
    with pytest.raises(InputError, match="--init_type and --init_gain do not apply to --model PG2"):
        parse_train(["--model", "PG2", "--gpu_ids=-1", "--init_type", "xavier"], tmp_path)


def test_gpu_ids_comma_list_and_cpu_fallback(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert parse_train(["--gpu_ids", "0,1"], tmp_path).gpu_ids == [0, 1]
    assert parse_train(["--gpu_ids", "-1"], tmp_path).gpu_ids == []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert parse_train(["--gpu_id=0"], tmp_path).gpu_ids == []
    with pytest.raises(InputError, match="--gpu_ids"):
        parse_train(["--gpu_ids", "zero"], tmp_path)


@pytest.mark.parametrize("flag,value,choice", [("--model", "NoSuchNet", "pg2"),
                                               ("--dataset_mode", "imagenet", "market")])
def test_unknown_names_list_the_choices(tmp_path, flag, value, choice):
    with pytest.raises(InputError) as info:
        parse_train([flag, value], tmp_path)
    message = str(info.value)
    assert value in message and "available" in message and choice in message


def test_options_saved_with_non_defaults_marked_and_frozen(tmp_path):
    options = TrainOptions()
    opt = options.parse(["--name", "run1", "--lr", "0.5", "--gpu_ids=-1", f"--checkpoints_dir={tmp_path}"],
                        echo=False)
    options.save(opt)
    text = (tmp_path / "run1" / "train_opt.txt").read_text()
    lr_line = next(line for line in text.splitlines() if line.strip().startswith("lr:"))
    assert "0.5" in lr_line and "[default: 2e-05]" in lr_line  # PG2's hook sets the paper's rate
    seed_line = next(line for line in text.splitlines() if line.strip().startswith("seed:"))
    assert "[default" not in seed_line
    with pytest.raises(AttributeError, match="read-only"):
        opt.lr = 1.0


def test_no_file_written_when_parsing_fails(tmp_path):
    with pytest.raises(InputError):
        parse_train(["--name", "bad", "--batchSize", "0"], tmp_path)
    assert not (tmp_path / "bad").exists()


def test_help_lists_model_and_dataset_flags(capsys):
    with pytest.raises(SystemExit) as info:
        TrainOptions().parse(["--model", "PG2", "--dataset_mode", "fashion", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--which_epoch", "--save_latest_freq", "--stage", "--fashion_frame", "--mask_recipe"):
        assert flag in text


def test_every_option_has_help():
    parser = TrainOptions().build_parser(["--model", "PG2", "--dataset_mode", "synthetic"])
    missing = [a.option_strings for a in parser._actions if a.option_strings and not a.help]
    assert missing == []
