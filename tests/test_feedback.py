"""What a user sees during training: loss lines and page entries at the first and last iteration whatever the
frequencies, one whole-run progress bar, a line per checkpoint, a short option dump after the checks, one line
for out-of-memory, the slow-CPU warning, --torch_threads."""
from __future__ import annotations

import html
import importlib.util
import re
from pathlib import Path

import pytest
import torch

import train as train_script
import util.progress as progress
from models.pg2_model import PG2Model
from util.progress import planned_iterations

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("pose_transfer_test_script_feedback", REPO / "test.py")
test_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(test_script)

# the cheapest training set-up of each model (narrow where the model has width flags; DPIG 1b has none)
MODELS = {
    "PG2": ["--model", "PG2", "--ngf", "8"],
    "DPTN": ["--model", "DPTN", "--vgg_random_init", "--num_blocks", "1"],
    "PATN": ["--model", "PATN", "--vgg_random_init", "--ngf", "8", "--ndf", "8"],
    "PNGAN": ["--model", "PNGAN", "--ngf", "4", "--ndf", "4", "--pngan_blocks", "1"],
    "DPIG": ["--model", "DPIG", "--dpig_stage", "1b"],
}
LOSS_LINE = re.compile(r"^\(epoch: (\d+), iters: (\d+), time: [\d.]+, data: [\d.]+\) \S+: ")


def argv(root: Path, ckpt: Path, model: str, *extra: str, steps: int = 3) -> list[str]:
    """Default frequencies (print 100, display 400 samples): a 3-step run of batch 2 crosses none of them."""
    return [*MODELS[model], "--name", f"fb_{model}", "--dataset_mode", "market", "--dataroot", str(root),
            "--checkpoints_dir", str(ckpt), "--batchSize", "2", "--max_steps", str(steps), "--gpu_ids", "-1",
            "--num_threads", "0", "--seed", "3", *extra]


def train(capsys, args: list[str], status: int = 0) -> tuple[str, str]:
    assert train_script.main(args) == status
    captured = capsys.readouterr()
    return captured.out, captured.err


def bar_counts(err: str) -> list[tuple[int, int]]:
    """(n, total) of every progress-bar refresh on stderr."""
    return [(int(n), int(t)) for n, t in re.findall(r"\| *(\d+)/(\d+) \[", err)]


def error_lines(err: str) -> list[str]:
    return [line for line in re.split(r"[\r\n]", err) if line.startswith("error")]


@pytest.mark.parametrize("model", list(MODELS))
def test_a_short_run_reports_first_and_last_iteration_whatever_the_frequencies(model, tiny_market_root, tmp_path,
                                                                               capsys):
    out, err = train(capsys, argv(tiny_market_root, tmp_path, model))
    run = tmp_path / f"fb_{model}"
    losses = [LOSS_LINE.match(line) for line in out.splitlines() if LOSS_LINE.match(line)]
    assert [(int(m[1]), int(m[2])) for m in losses] == [(1, 2), (1, 6)]  # iterations 1 and 3 (batch 2)
    assert (run / "loss_log.txt").read_text().count("(epoch: 1, iters:") == 2
    page = (run / "web" / "index.html").read_text()
    sources = [html.unescape(s) for s in re.findall(r'<img [^>]*src="([^"]+)"', page)]
    assert "epoch 1, step 1" in page and "epoch 1, step 3" in page
    assert any(s.endswith("loss_curves.png") for s in sources) and len(sources) >= 3
    assert all((run / "web" / s).is_file() for s in sources), sources
    assert f"saved checkpoint 'latest' (iteration 3) in {run}: " in out
    assert "latest_train_state.pth" in out.split("saved checkpoint 'latest'")[1].splitlines()[0]
    counts = bar_counts(err)
    assert counts and {t for _, t in counts} == {3} and counts[-1][0] == 3
    assert re.search(r"epoch 1/\d+: 100%", err)
    assert "warning: this CPU run" not in out  # 3 iterations are far from a day


def test_the_option_dump_lists_only_non_defaults_after_the_checks(tiny_market_root, tmp_path, capsys):
    out, _ = train(capsys, argv(tiny_market_root, tmp_path, "PG2", "--lr", "0.001", steps=1))
    dump = out.split("options: ", 1)[1].splitlines()
    count = int(dump[0].split()[0])
    lines = dump[1:1 + count]
    keys = {line.split(":")[0].strip() for line in lines}
    assert {"lr", "ngf", "max_steps", "batch_size", "name", "dataroot"} <= keys
    assert not keys & {"print_freq", "display_freq", "beta1", "niter", "init_gain", "serial_batches"}
    assert all("[default: " in line for line in lines)
    assert "(all options: " + str(tmp_path / "fb_PG2" / "train_opt.txt") in dump[0]
    assert "print_freq" in (tmp_path / "fb_PG2" / "train_opt.txt").read_text()  # the file keeps every option
    assert out.index("options: ") < out.index("(epoch: 1, iters: 2")


@pytest.mark.parametrize("bad, message", [
    (["--batchSize", "0"], "error: --batchSize must be >= 1, got 0"),  # options' validation
    (["--max_dataset_size", "1"], "error: 1 training pairs are fewer than --batchSize 2"),  # the data check
])
def test_a_failed_start_prints_one_line_and_no_dump(bad, message, tiny_market_root, tmp_path, capsys):
    out, err = train(capsys, argv(tiny_market_root, tmp_path, "PG2") + bad, status=2)
    assert "differ from the defaults" not in out and "Options" not in out
    assert [line for line in err.splitlines() if line.strip()] == [line for line in err.splitlines()
                                                                    if line.startswith(message)]


def test_test_py_dumps_only_non_defaults_too(tiny_market_root, tmp_path, capsys):
    train(capsys, argv(tiny_market_root, tmp_path, "PG2", steps=1))
    args = ["--model", "PG2", "--stage", "1", "--ngf", "8", "--name", "fb_PG2", "--dataset_mode", "market", "--dataroot",
            str(tiny_market_root), "--checkpoints_dir", str(tmp_path), "--results_dir", str(tmp_path / "res"),
            "--gpu_ids", "-1", "--num_threads", "0", "--how_many", "2", "--only_generated"]
    assert test_script.main(args) == 0
    out = capsys.readouterr().out
    assert "differ from the defaults (all options: " in out and "----------------- Options" not in out
    assert "how_many" in out and "num_panels" not in out
    assert test_script.main(args + ["--how_many", "0"]) == 2
    captured = capsys.readouterr()
    assert "differ from the defaults" not in captured.out
    assert error_lines(captured.err) == ["error: --how_many must be >= 1, got 0.0"]
    assert test_script.main(args + ["--how_many", "nan"]) == 2
    assert error_lines(capsys.readouterr().err) == ["error: --how_many must be >= 1, got nan"]


OUT_OF_MEMORY = [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:118] data. DefaultCPUAllocator: can't allocate memory: you "
                 "tried to allocate 9663676416 bytes. Error code 12 (Cannot allocate memory)"),
    MemoryError(),
]


@pytest.mark.parametrize("exc", OUT_OF_MEMORY, ids=["cuda", "cpu_allocator", "memory_error"])
def test_out_of_memory_ends_in_one_line_naming_the_batch_size(exc, tiny_market_root, tmp_path, capsys, monkeypatch):
    def fail(self):
        raise exc

    monkeypatch.setattr(PG2Model, "optimize_parameters", fail)
    out, err = train(capsys, argv(tiny_market_root, tmp_path, "PG2", "--batchSize", "4"), status=2)
    assert "Traceback" not in err
    assert error_lines(err) == ["error: out of CPU memory (cpu) with --batchSize 4: try --accum_steps 2 (the same "
                                "step in micro-batches of 2) or a smaller --batchSize than 4"]


def test_other_runtime_errors_are_not_called_out_of_memory(tiny_market_root, tmp_path, capsys, monkeypatch):
    def fail(self):
        raise RuntimeError("shapes do not match")

    monkeypatch.setattr(PG2Model, "optimize_parameters", fail)
    with pytest.raises(RuntimeError, match="shapes do not match"):
        train_script.main(argv(tiny_market_root, tmp_path, "PG2"))


def test_a_cpu_run_predicted_past_the_threshold_warns_once_with_the_figures(tiny_market_root, tmp_path, capsys,
                                                                            monkeypatch):
    monkeypatch.setattr(progress, "SLOW_RUN_S", 1e-6)  # "a day" shrunk so that any run exceeds it
    monkeypatch.setattr(progress, "TIMED_ITERATIONS", 2)
    out, _ = train(capsys, argv(tiny_market_root, tmp_path, "PG2", steps=5))
    warnings = [line for line in out.splitlines() if line.startswith("warning: this CPU run")]
    assert len(warnings) == 1
    # timed: from the end of iteration 2 to the end of iteration 4 (1 is warm-up); 1 of 5 iterations left
    assert re.fullmatch(r"warning: this CPU run is predicted to take [\d.]+ hours more \([\d.]+ s/iteration x 1 "
                        r"iterations left\); for a try, use a GPU \(--gpu_ids 0\), a shorter run \(--max_steps N\) "
                        r"or narrower networks \(--ngf\)", warnings[0]), warnings[0]


def test_the_bar_covers_the_whole_run_and_resumes_where_it_stopped(tiny_market_root, tmp_path, capsys):
    # 18 pairs, batch 2: 9 iterations per epoch; 2 epochs
    args = argv(tiny_market_root, tmp_path, "PG2", "--niter", "1", "--niter_decay", "1", steps=0)
    args[args.index("--max_steps") + 1] = "12"
    _, err = train(capsys, args)
    assert {t for _, t in bar_counts(err)} == {12} and "epoch 2/2" in err
    more = [a if a != "12" else "0" for a in args] + ["--continue_train"]
    out, err = train(capsys, more)  # the 6 iterations left of epoch 2
    counts = bar_counts(err)
    assert counts[0] == (12, 18) and counts[-1] == (18, 18)
    assert re.findall(r"^\(epoch: (\d+), iters: (\d+),", out, re.M) == [("2", "8"), ("2", "18")]
    assert "epoch 2: 6 iterations" in out and "saved checkpoint 'latest' (iteration 18)" in out


def test_planned_iterations():
    assert planned_iterations(0, 1, 0, 9, 200, 0) == 1800
    assert planned_iterations(0, 1, 0, 9, 200, 20) == 20
    assert planned_iterations(12, 2, 3, 9, 2, 0) == 18  # resumed 3 steps into epoch 2
    assert planned_iterations(12, 2, 3, 9, 2, 100) == 18  # --max_steps beyond the epochs


def test_torch_threads_sets_the_intra_op_threads(tiny_market_root, tmp_path, capsys):
    before = torch.get_num_threads()
    try:
        train(capsys, argv(tiny_market_root, tmp_path, "PG2", "--torch_threads", "1", steps=1))
        assert torch.get_num_threads() == 1
        torch.set_num_threads(before)
        train(capsys, argv(tiny_market_root, tmp_path / "b", "PG2", "--torch_threads", "0", steps=1))
        assert torch.get_num_threads() == before  # 0 leaves it alone
        _, err = train(capsys, argv(tiny_market_root, tmp_path / "c", "PG2", "--torch_threads", "-1"), status=2)
        assert error_lines(err) == ["error: --torch_threads must be >= 0, got -1"]
    finally:
        torch.set_num_threads(before)
