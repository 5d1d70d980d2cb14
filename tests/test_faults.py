"""Faults a long run meets: SIGTERM/SIGINT (preemption, Ctrl-C), a full disk, temp files of interrupted saves,
a kill between an epoch's end and its checkpoint, a second training of the same --name, torchrun's agent
killed or a rank stopped, and the one error path of every CLI (`util.io.report_input_errors`).

Signals are sent by the test at a point the run announces (train.py's HPT_TEST_PAUSE hook holds that step
boundary or save until the signal came), so every case stops at a known iteration."""
from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import pytest
import torch

import data as data_registry
import train as train_script
import util.io
from util.checkpoint import load_training_state
from util.io import atomic_torch_save, report_input_errors
from util.run_lock import LOCK_NAME

REPO = Path(__file__).resolve().parents[1]
STEPS = 5  # batches of 6 from 18 pairs: 3 iterations per epoch, so the run crosses one epoch's end


def run_args(root: Path, ckpt: Path, name: str, *extra: str) -> list[str]:
    return ["--name", name, "--model", "PG2", "--stage", "1", "--ngf", "8", "--dataset_mode", "market",
            "--dataroot", str(root), "--checkpoints_dir", str(ckpt), "--batchSize", "6", "--gpu_ids", "-1",
            "--num_threads", "0", "--seed", "5", "--niter", "3", "--niter_decay", "0", "--max_steps", str(STEPS),
            "--save_epoch_freq", "1", *extra]


def start(argv: list[str], log: Path, pause: str | None = None, marker: Path | None = None,
          launcher: tuple[str, ...] = (), own_group: bool = False, **env: str) -> subprocess.Popen:
    """train.py in a fresh process (one torch thread: every run computes alike), output to `log`."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **env}
    if pause:
        env.update(HPT_TEST_PAUSE=pause, HPT_TEST_PAUSE_FILE=str(marker))
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, *launcher, "train.py", *argv], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=own_group)


def wait_for(path: Path, proc: subprocess.Popen, seconds: float = 180) -> None:
    deadline = time.time() + seconds
    while not path.exists():
        assert proc.poll() is None, f"the run ended ({proc.returncode}) before {path.name} appeared"
        assert time.time() < deadline, f"{path} did not appear in {seconds} s"
        time.sleep(0.02)


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def temp_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.tmp"))


def checkpoint_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.glob("*.pth")}


@pytest.fixture(scope="module")
def straight(tiny_market_root, tmp_path_factory) -> Path:
    """The uninterrupted run every interrupted one must reproduce bit for bit."""
    ckpt = tmp_path_factory.mktemp("straight")
    proc = start(run_args(tiny_market_root, ckpt, "straight"), ckpt / "log.txt")
    assert proc.wait(timeout=300) == 0, (ckpt / "log.txt").read_text()[-3000:]
    return ckpt / "straight"


def interrupt(root: Path, tmp_path: Path, pause: str, signals: tuple[int, ...], *extra: str,
              to_group: bool = False) -> tuple[subprocess.Popen, str]:
    """Start 'victim', wait until it holds at `pause`, send `signals` (0.3 s apart; with `to_group` to its whole
    process group, as a terminal or a scheduler does), wait for its exit."""
    marker, log = tmp_path / "paused", tmp_path / "victim.log"
    proc = start(run_args(root, tmp_path, "victim", *extra), log, pause, marker, own_group=to_group)
    send = (lambda signum: os.killpg(proc.pid, signum)) if to_group else proc.send_signal
    try:
        wait_for(marker, proc)
        for i, signum in enumerate(signals):
            if i:
                time.sleep(0.3)
            send(signum)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            send(signal.SIGKILL)
    return proc, log.read_text(errors="replace")


def resume_and_compare(root: Path, tmp_path: Path, straight: Path) -> None:
    log = tmp_path / "resume.log"
    assert start(run_args(root, tmp_path, "victim", "--continue_train"), log).wait(timeout=300) == 0, \
        log.read_text()[-3000:]
    victim = tmp_path / "victim"
    for tag in ("latest", "1"):
        assert same_weights(straight / f"{tag}_net_G1.pth", victim / f"{tag}_net_G1.pth"), tag
    assert load_training_state(victim / "latest_train_state.pth")["progress"]["total_iters"] == STEPS


# --- SIGTERM and SIGINT ----------------------------------------------------------------------------------

@pytest.mark.parametrize("signum,pause,stopped_at", [(signal.SIGTERM, "step:2", 2), (signal.SIGINT, "step:4", 4)],
                         ids=["SIGTERM mid-epoch", "SIGINT after an epoch's end"])
def test_a_stop_signal_saves_at_the_step_boundary_and_the_resume_is_exact(tiny_market_root, tmp_path, straight,
                                                                          signum, pause, stopped_at):
    proc, log = interrupt(tiny_market_root, tmp_path, pause, (signum,))
    status = 128 + signum
    assert proc.returncode == status, log[-3000:]
    name = signal.Signals(signum).name
    state = tmp_path / "victim" / "latest_train_state.pth"
    assert (f"stopped by {name} at epoch {1 + stopped_at // 3}, iteration {stopped_at}: resumable state in {state}; "
            f"to resume, run the same command with --continue_train (exit status {status})") in log
    assert f"{name} received: stopping after this step" in log and "Traceback" not in log
    assert load_training_state(state)["progress"]["total_iters"] == stopped_at
    assert not (tmp_path / "victim" / LOCK_NAME).exists() and temp_files(tmp_path / "victim") == []
    resume_and_compare(tiny_market_root, tmp_path, straight)


class _WorkerSignals(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> list[bool]:
        return [signal.getsignal(signal.SIGINT) == signal.SIG_IGN,
                signal.getsignal(signal.SIGTERM) is data_registry._end_worker_quietly]


def test_loader_workers_ignore_ctrl_c_and_end_cleanly_on_sigterm():
    loader = torch.utils.data.DataLoader(_WorkerSignals(), num_workers=1, worker_init_fn=data_registry._init_worker)
    assert [flag.item() for flag in next(iter(loader))] == [True, True]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["Ctrl-C", "scheduler SIGTERM"])
def test_a_stop_signal_to_the_whole_process_group_with_loader_workers_saves_and_resumes_exactly(
        tiny_market_root, tmp_path, straight, signum):
    """A terminal's Ctrl-C (or a scheduler's SIGTERM to the job) reaches the run and its two loader workers at
    once: one clean stop, no traceback."""
    proc, text = interrupt(tiny_market_root, tmp_path, "step:2", (signum,), "--num_threads", "2", to_group=True)
    assert proc.returncode == 128 + signum and "Traceback" not in text, text[-3000:]
    assert f"stopped by {signal.Signals(signum).name} at epoch 1, iteration 2" in text
    resume_and_compare(tiny_market_root, tmp_path, straight)


def test_sigterm_during_a_save_finishes_it_and_stops_without_another(tiny_market_root, tmp_path, straight):
    """The signal arrives between the weights and the state of the end-of-epoch 'latest' (save 1 of 3)."""
    proc, log = interrupt(tiny_market_root, tmp_path, "save:1", (signal.SIGTERM,))
    assert proc.returncode == 143, log[-3000:]
    assert "stopped by SIGTERM at epoch 2, iteration 3" in log
    assert log.count("saved checkpoint 'latest'") == 1  # the end of epoch 1's, finished; no second one
    assert "saved checkpoint '1'" in log  # the epoch's own checkpoint is part of the step boundary's saves
    victim = tmp_path / "victim"
    progress = load_training_state(victim / "latest_train_state.pth")["progress"]
    assert (progress["epoch"], progress["epoch_iter"], progress["total_iters"]) == (2, 0, 3)
    resume_and_compare(tiny_market_root, tmp_path, straight)


def test_a_second_sigint_aborts_at_once_and_the_last_complete_state_resumes(tiny_market_root, tmp_path, straight):
    """Two Ctrl-C inside the final save (weights written, state not): no save, no traceback, exit 130; the
    state of iteration 3 is intact, and resuming from it gives the uninterrupted weights."""
    proc, log = interrupt(tiny_market_root, tmp_path, "save:3:2", (signal.SIGINT, signal.SIGINT))
    assert proc.returncode == 130, log[-3000:]
    assert "error: aborted by a second Ctrl-C without saving" in log and "Traceback" not in log
    victim = tmp_path / "victim"
    assert load_training_state(victim / "latest_train_state.pth")["progress"]["total_iters"] == 3
    assert temp_files(victim) == [] and not (victim / LOCK_NAME).exists()
    resume_and_compare(tiny_market_root, tmp_path, straight)


# --- a kill between an epoch's end and its checkpoint ----------------------------------------------------

def test_an_epoch_checkpoint_lost_to_a_kill_is_written_on_resume(tiny_market_root, tmp_path, straight):
    """kill -9 inside save 2 (epoch 1's numbered checkpoint: weights written, state not), after 'latest' said
    epoch 2: the resume writes 1_train_state.pth (and the weights again) as the straight run has them."""
    proc, log = interrupt(tiny_market_root, tmp_path, "save:2", (signal.SIGKILL,))
    assert proc.returncode == -signal.SIGKILL
    victim = tmp_path / "victim"
    assert not (victim / "1_train_state.pth").exists()
    resume = tmp_path / "resume.log"
    assert start(run_args(tiny_market_root, tmp_path, "victim", "--continue_train"), resume).wait(300) == 0
    text = resume.read_text()
    assert "note: the checkpoint of epoch 1 is missing" in text and "saved checkpoint '1' (iteration 3)" in text
    assert temp_files(victim) == []
    repaired = load_training_state(victim / "1_train_state.pth")
    expected = load_training_state(straight / "1_train_state.pth")
    assert repaired["progress"] == expected["progress"]
    nets, want = repaired["model"]["networks"]["G1"], expected["model"]["networks"]["G1"]
    assert all(torch.equal(nets[k], want[k]) for k in want)
    assert same_weights(straight / "1_net_G1.pth", victim / "1_net_G1.pth")
    assert same_weights(straight / "latest_net_G1.pth", victim / "latest_net_G1.pth")


# --- one training per run folder -------------------------------------------------------------------------

def test_a_second_training_of_the_same_name_is_refused_and_the_first_is_unharmed(tiny_market_root, tmp_path,
                                                                                 straight, capsys):
    marker, log = tmp_path / "paused", tmp_path / "first.log"
    first = start(run_args(tiny_market_root, tmp_path, "victim"), log, "step:2", marker)
    try:
        wait_for(marker, first)
        assert train_script.main(run_args(tiny_market_root, tmp_path, "victim")) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and err.startswith(f"error: {tmp_path / 'victim'} is in use by another training")
        assert f"(pid {first.pid} on {socket.gethostname()}" in err and "choose another --name" in err
        marker.unlink()  # the first run goes on
        assert first.wait(timeout=300) == 0, log.read_text()[-3000:]
    finally:
        if first.poll() is None:
            first.kill()
    for tag in ("latest", "1"):
        assert same_weights(straight / f"{tag}_net_G1.pth", tmp_path / "victim" / f"{tag}_net_G1.pth")


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_stale_lock_is_reported_and_taken_over(tiny_market_root, tmp_path, capsys):
    folder = tmp_path / "run"
    folder.mkdir()
    pid = dead_pid()
    (folder / LOCK_NAME).write_text(f"{pid} {socket.gethostname()} 2026-01-01T00:00:00\n")
    argv = run_args(tiny_market_root, tmp_path, "run", "--max_steps", "1")
    assert train_script.main(argv) == 0
    out = capsys.readouterr().out
    assert f"note: {folder / LOCK_NAME}: its owner (pid {pid} on {socket.gethostname()}) is gone" in out
    assert not (folder / LOCK_NAME).exists() and (folder / "latest_train_state.pth").is_file()


def test_a_lock_from_another_host_is_refused_and_names_the_file(tiny_market_root, tmp_path, capsys):
    folder = tmp_path / "run"
    folder.mkdir()
    lock = folder / LOCK_NAME
    lock.write_text("4242 other-host 2026-01-01T00:00:00\n")
    assert train_script.main(run_args(tiny_market_root, tmp_path, "run")) == 2
    err = capsys.readouterr().err
    assert "(pid 4242 on other-host, since 2026-01-01T00:00:00" in err and f"delete {lock}" in err
    assert sorted(p.name for p in folder.iterdir()) == [LOCK_NAME]  # nothing written, the lock left as it was
    assert lock.read_text() == "4242 other-host 2026-01-01T00:00:00\n"


def test_a_refused_start_leaves_no_run_folder(tiny_market_root, tmp_path, capsys):
    assert train_script.main(run_args(tiny_market_root, tmp_path, "run", "--batchSize", "64")) == 2
    assert "fewer than --batchSize 64" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # the lock and the folder made for it are gone


# --- temp files of interrupted saves ---------------------------------------------------------------------

def test_temp_files_of_dead_writers_are_removed_at_start_and_no_others(tiny_market_root, tmp_path, capsys):
    folder = tmp_path / "run"
    (folder / "web").mkdir(parents=True)
    dead = dead_pid()
    stale = [folder / f".latest_net_G1.pth.{dead}.tmp", folder / "web" / f".index.html.{dead}.tmp"]
    kept = [folder / f".other_net_X.pth.{os.getpid()}.tmp",  # a live writer (this process)
            folder / ".notes.tmp", folder / f"latest.{dead}.tmp"]  # not util.io's pattern
    for path in stale + kept:
        path.write_bytes(b"x" * 1000)
    assert train_script.main(run_args(tiny_market_root, tmp_path, "run", "--max_steps", "1")) == 0
    out = capsys.readouterr().out
    assert f"note: removed 2 temp file(s) of interrupted saves (0.0 MiB) in {folder}" in out
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)


# --- a full disk ---------------------------------------------------------------------------------------

def error_line(stderr: str) -> str:
    """The one `error:` line of a run's stderr (the progress bar shares it); no traceback."""
    lines = [line for line in stderr.replace("\r", "\n").splitlines() if "error" in line.lower()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    return lines[0].strip()


def full_disk_open(monkeypatch, after_bytes: int, matching: str) -> None:
    """util.io's open() gives files whose write fails with ENOSPC past `after_bytes` (names with `matching`)."""
    real_open = open

    class FullFile:
        def __init__(self, f):
            self.f, self.written = f, 0

        def write(self, data) -> int:
            self.written += len(data)
            if self.written > after_bytes:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.f.write(data)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def __getattr__(self, name):
            return getattr(self.f, name)

    def fake_open(path, mode="r", *args, **kwargs):
        f = real_open(path, mode, *args, **kwargs)
        return FullFile(f) if matching in str(path) and "w" in mode else f

    monkeypatch.setattr(util.io, "open", fake_open, raising=False)


def test_atomic_write_on_a_full_disk_raises_enospc_and_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "latest_net_G.pth"
    atomic_torch_save({"w": torch.ones(3)}, target)
    full_disk_open(monkeypatch, 100, "latest_net_G")
    with pytest.raises(OSError) as caught:  # not torch's "enforce fail ... unexpected pos"
        atomic_torch_save({"w": torch.zeros(10000)}, target)
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(target)
    assert torch.equal(torch.load(target, weights_only=True)["w"], torch.ones(3))
    assert temp_files(tmp_path) == []


def test_disk_full_in_a_save_is_one_line_and_the_previous_state_resumes_exactly(tiny_market_root, tmp_path,
                                                                                monkeypatch, capsys):
    """ENOSPC while writing the final 'latest' state (its weights already replaced): one line, exit 2; the
    state of iteration 3 loads, and resuming from it gives the weights of a run that never failed."""
    assert train_script.main(run_args(tiny_market_root, tmp_path, "straight")) == 0
    argv = run_args(tiny_market_root, tmp_path, "run")
    assert train_script.main(argv + ["--max_steps", "3"]) == 0
    capsys.readouterr()
    with monkeypatch.context() as patch:
        full_disk_open(patch, 4096, "latest_train_state")
        assert train_script.main(argv + ["--continue_train"]) == 2
    err = error_line(capsys.readouterr().err)
    folder = tmp_path / "run"
    assert err.startswith(f"error: disk full in {folder} while saving checkpoint 'latest' "
                          f"({folder / 'latest_train_state.pth'})")
    assert temp_files(folder) == [] and not (folder / LOCK_NAME).exists()
    assert load_training_state(folder / "latest_train_state.pth")["progress"]["total_iters"] == 3
    assert train_script.main(argv + ["--continue_train"]) == 0
    assert same_weights(tmp_path / "straight" / "latest_net_G1.pth", folder / "latest_net_G1.pth")


def test_too_little_free_space_is_refused_before_a_checkpoint_is_touched(tiny_market_root, tmp_path, monkeypatch,
                                                                         capsys):
    argv = run_args(tiny_market_root, tmp_path, "run", "--max_steps", "1")
    assert train_script.main(argv) == 0
    folder = tmp_path / "run"
    before = checkpoint_bytes(folder)
    capsys.readouterr()
    monkeypatch.setattr(util.io.shutil, "disk_usage", lambda path: types.SimpleNamespace(free=300 * 1024))
    assert train_script.main(run_args(tiny_market_root, tmp_path, "run", "--max_steps", "2", "--continue_train")) == 2
    err = error_line(capsys.readouterr().err)
    assert err.startswith(f"error: not enough disk space in {folder}: checkpoint 'latest' "
                                                   "needs about ")
    assert "0.3 MiB free" in err and "resume with --continue_train" in err
    assert checkpoint_bytes(folder) == before


@pytest.fixture
def small_disk(tmp_path):
    """A real 8 MiB file system (tmpfs) under tmp_path; skipped where mounting needs privileges we lack."""
    mount = tmp_path / "small_disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root); the injected-ENOSPC tests cover the same paths")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave: int) -> None:
    """Write a filler file so that about `leave` bytes stay free on `disk`."""
    stats = os.statvfs(disk)
    free = stats.f_bavail * stats.f_frsize
    with open(disk / "filler.bin", "wb") as f:
        f.write(b"\0" * max(free - leave, 0))


def test_a_real_full_disk_raises_enospc_and_keeps_the_old_file(small_disk):
    target = small_disk / "latest_net_G.pth"
    atomic_torch_save({"w": torch.ones(3)}, target)
    fill(small_disk, 64 * 1024)
    with pytest.raises(OSError) as caught:
        atomic_torch_save({"w": torch.zeros(256 * 1024)}, target)  # 1 MiB into 64 KiB
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(target)
    assert torch.equal(torch.load(target, weights_only=True)["w"], torch.ones(3))
    assert temp_files(small_disk) == []


def test_training_on_a_real_full_disk_is_one_line_and_the_checkpoint_still_loads(tiny_market_root, small_disk,
                                                                                  capsys):
    argv = run_args(tiny_market_root, small_disk, "run", "--max_steps", "1")
    assert train_script.main(argv) == 0
    folder = small_disk / "run"
    before = checkpoint_bytes(folder)
    fill(small_disk, 128 * 1024)
    capsys.readouterr()
    assert train_script.main(run_args(tiny_market_root, small_disk, "run", "--max_steps", "2",
                                      "--continue_train")) == 2
    err = error_line(capsys.readouterr().err)
    assert err.startswith(f"error: not enough disk space in {folder}") or f"disk full in {folder}" in err, err
    assert checkpoint_bytes(folder) == before
    assert temp_files(folder) == []
    assert load_training_state(folder / "latest_train_state.pth")["progress"]["total_iters"] == 1


# --- one error path for every CLI ------------------------------------------------------------------------

@pytest.mark.parametrize("code", ["ENOSPC", "EROFS", "EACCES", "EPERM", "ENOTDIR", "EISDIR"])
def test_expected_os_errors_are_one_line_and_exit_status_2(code, tmp_path, capsys):
    number, path = getattr(errno, code), tmp_path / "out" / "x.csv"

    @report_input_errors
    def main() -> int:
        raise OSError(number, os.strerror(number), str(path))

    assert main() == 2
    assert capsys.readouterr().err == f"error: {os.strerror(number)}: {path}\n"


class _DamagedAtFirstUse(torch.utils.data.Dataset):
    """An item that fails like a damaged image found by a loader worker."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int):
        raise util.io.InputError(f"img/{index}.jpg: damaged image data")


def test_an_input_error_in_a_loader_worker_is_still_one_line(capsys):
    """torch re-raises a worker's exception with the worker's traceback in its message; only the message is shown."""

    @report_input_errors
    def main() -> int:
        next(iter(torch.utils.data.DataLoader(_DamagedAtFirstUse(), num_workers=1)))
        return 0

    assert main() == 2
    assert capsys.readouterr().err == "error: img/0.jpg: damaged image data\n"


def test_a_folder_where_a_checkpoint_belongs_is_one_line(tiny_market_root, tmp_path, capsys):
    """A real EISDIR: the rename onto latest_net_G1.pth, a folder, fails at the first save; it is named."""
    blocker = tmp_path / "run" / "latest_net_G1.pth"
    blocker.mkdir(parents=True)
    assert train_script.main(run_args(tiny_market_root, tmp_path, "run", "--max_steps", "1")) == 2
    assert error_line(capsys.readouterr().err) == f"error: Is a directory: {blocker}"
    assert blocker.is_dir() and temp_files(tmp_path) == []


def test_other_errors_keep_their_traceback_and_say_they_are_a_bug(tmp_path):
    @report_input_errors
    def main() -> int:
        raise RuntimeError("an internal inconsistency")

    with pytest.raises(RuntimeError) as caught:  # in-process callers (tests) still see the exception
        main()
    assert any("this is a bug in Human Pose Transfer" in note for note in caught.value.__notes__)
    script = textwrap.dedent("""
        import sys
        from util.io import report_input_errors

        @report_input_errors
        def main():
            raise KeyError("lost")
        sys.exit(main())
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and lines[0] == "Traceback (most recent call last):"
    assert lines[-2] == "KeyError: 'lost'" and lines[-1].startswith("this is a bug in Human Pose Transfer")
    assert "issue tracker" in lines[-1]


# --- torchrun: the agent killed, a rank stopped ------------------------------------------------------------

def children(pid: int) -> list[int]:
    """Pids whose parent is `pid` (from /proc: no psutil here)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def rank_of(pid: int) -> int:
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return int(next(v for v in environ if v.startswith(b"RANK=")).split(b"=", 1)[1])


def gone_within(pids: list[int], seconds: float) -> float:
    """Seconds until every pid has ended (zombies count); fails past `seconds`."""
    from util.run_lock import pid_alive

    began = time.time()
    while any(pid_alive(p) for p in pids):
        assert time.time() - began < seconds, f"still running after {seconds} s: {[p for p in pids if pid_alive(p)]}"
        time.sleep(0.2)
    return time.time() - began


TORCHRUN = ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2")


def start_torchrun(root: Path, tmp_path: Path, **env: str) -> tuple[subprocess.Popen, list[int]]:
    """Two gloo ranks of a long run held at step 2 (both ranks pause); returns the agent and the ranks."""
    argv = run_args(root, tmp_path, "ddp", "--batchSize", "3", "--max_steps", "1000", "--niter", "500")
    marker = tmp_path / "paused"
    agent = start(argv, tmp_path / "ddp.log", "step:2", marker, launcher=TORCHRUN, **env)
    wait_for(marker, agent, seconds=300)
    ranks = children(agent.pid)
    assert sorted(rank_of(p) for p in ranks) == [0, 1]
    return agent, ranks


@pytest.mark.slow
def test_killing_the_torchrun_agent_ends_both_ranks_within_60_s(tiny_market_root, tmp_path):
    agent, ranks = start_torchrun(tiny_market_root, tmp_path)
    try:
        agent.send_signal(signal.SIGKILL)
        agent.wait(timeout=30)
        gone_within(ranks, 60)  # the parent watch polls once a second
    finally:
        for pid in ranks:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert "the launcher (pid" in (tmp_path / "ddp.log").read_text(errors="replace")


@pytest.mark.slow
def test_a_stopped_rank_ends_the_run_within_the_process_group_timeout(tiny_market_root, tmp_path):
    """SIGSTOP rank 1, let rank 0 go on: rank 0's next collective times out after HPT_PG_TIMEOUT = 10 s, it
    exits with one line, and the agent then kills the stopped rank (its grace period is 30 s): all gone
    within 90 s."""
    agent, ranks = start_torchrun(tiny_market_root, tmp_path, HPT_PG_TIMEOUT="10")
    stopped = next(p for p in ranks if rank_of(p) == 1)
    try:
        os.kill(stopped, signal.SIGSTOP)
        (tmp_path / "paused").unlink()  # both ranks leave the hook; rank 1 cannot
        gone_within(ranks + [agent.pid], 90)
    finally:
        for pid in ranks:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if agent.poll() is None:
            agent.kill()
    assert agent.wait(timeout=10) != 0
    log = (tmp_path / "ddp.log").read_text(errors="replace")
    assert "error: rank 0: another process of this run died or stopped answering" in log, log[-3000:]
