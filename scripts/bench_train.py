"""Training and inference throughput (images/s) and peak memory of a model, on random batches.

    python -m scripts.bench_train --model DPTN --dataset_mode market [--batch_size 4] [--iters 7]
    python -m scripts.bench_train --model DPTN --dataset_mode fashion            # batch 2, 256x256
    python -m scripts.bench_train --model DPTN --dataset_mode market --official_root ../Dual-task-Pose-Transformer-Network
    python -m scripts.bench_train --model PG2 --dataset_mode market --amp bf16 --channels_last   # speed options

A training iteration is `set_input` + `optimize_parameters` (forward and backward of every network and loss, the
optimizer steps); an inference iteration is `set_input` + `test` (test.py's path, batch --test_batch_size). Each
variant runs in its own process, built once; the variants then take turns, one iteration each, so that a machine
whose speed drifts (shared CPUs) slows them alike. Reported: the median seconds per iteration after --warmup
iterations, its min-max spread, images/s = batch / median, the median of the per-turn speed ratios to the first
variant, each process's peak memory (CPU: peak RSS of the whole process; CUDA: max_memory_allocated), and the
floating-point work of one iteration with the rate it achieves, beside the device's float32 matmul rate: a step
made of convolutions cannot run faster than its FLOPs at that rate.

Variants: ours (default), and for DPTN also ours with --official_ops (the official sequence of operations); with
--official_root, the official DPTN code itself (PangzeCheung/Dual-task-Pose-Transformer-Network) is timed the same
way, with the README flags: its model class is built on random inputs, VGG19 with random weights, as in
specs/dptn.md Sec. 9. Loss networks always use random weights here (speed does not depend on them).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BATCH = {"market": 4, "fashion": 2}  # the sizes of specs/dptn.md Sec. 9
README_FLAGS = {  # the official README training flags (specs/dptn.md Sec. 0)
    ("DPTN", "market"): ["--dis_layers=3", "--lambda_g=5", "--lambda_rec", "2", "--t_s_ratio=0.8"],
    ("DPTN", "fashion"): [],
}


# --- the child processes ----------------------------------------------------------------------------------

def random_batch(batch: int, height: int, width: int, seed: int = 1) -> dict:
    """A batch as the datasets return it: images uniform in [-1, 1], pose maps uniform in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    return {
        "source_image": torch.rand(batch, 3, height, width, generator=g) * 2 - 1,
        "target_image": torch.rand(batch, 3, height, width, generator=g) * 2 - 1,
        "source_pose": torch.rand(batch, 18, height, width, generator=g),
        "target_pose": torch.rand(batch, 18, height, width, generator=g),
        "target_mask": (torch.rand(batch, 1, height, width, generator=g) > 0.7).float(),
        "source_name": [f"s{i}.jpg" for i in range(batch)], "target_name": [f"t{i}.jpg" for i in range(batch)],
    }


def network_frame(opt) -> tuple[int, int]:
    """(H, W) of the tensors the model sees for the parsed options."""
    from data.geometry import network_size

    if opt.data_format == "market":
        return 128, 64
    return network_size((256, 176), opt.fashion_frame)


def build_ours(spec: dict):
    """Our model from the registry, as train.py / test.py build it (no weights loaded)."""
    from models import create_model
    from options.test_options import TestOptions
    from options.train_options import TrainOptions
    from util.cpu_memory import set_cpu_memory_policy
    from util.distributed import RunContext

    train = spec["phase"] == "train"
    ckpt = tempfile.mkdtemp(prefix="bench_train_")
    argv = ["--model", spec["model"], "--dataset_mode", spec["dataset_mode"], "--gpu_ids", spec["gpu_ids"],
            "--checkpoints_dir", ckpt, "--name", "bench", "--batchSize", str(spec["batch"])]
    argv += README_FLAGS.get((spec["model"], spec["dataset_mode"]), []) + spec["extra"]
    if spec["model"] == "DPTN" and train:
        argv.append("--vgg_random_init")
    options = TrainOptions() if train else TestOptions()
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt = options.parse(argv, echo=False, check_folder=False)
        set_cpu_memory_policy(opt.cpu_memory)  # as train.py / test.py
        device = torch.device("cuda", opt.gpu_ids[0]) if opt.gpu_ids else torch.device("cpu")
        ctx = RunContext(device=device)
        torch.manual_seed(0)
        if spec["model"] == "PG2" and train and opt.stage == 2:  # stage 2 starts from a saved stage-1 G1
            stage1 = TrainOptions().parse(argv + ["--stage", "1"], echo=False, check_folder=False)
            create_model(stage1, ctx).save_networks(stage1.stage1_epoch)
        model = create_model(opt, ctx)
        if train:
            model.setup()
            model.train()
        else:
            model.eval()
    batch = random_batch(spec["batch"], *network_frame(opt))

    def step() -> None:
        model.set_input(batch)
        if train:
            model.optimize_parameters()
        else:
            model.test()
    return step, device


OFFICIAL_CHILD = r'''
import argparse, contextlib, io, os, sys, types
sys.path.insert(0, os.getcwd())
for name in ("matplotlib", "matplotlib.pyplot", "matplotlib.patches"):  # only its plotting helpers use it
    sys.modules.setdefault(name, types.ModuleType(name))
sys.modules["matplotlib"].use = lambda *a, **k: None
import skimage.draw
if not hasattr(skimage.draw, "circle"):  # removed in scikit-image 0.19; unused by training
    skimage.draw.circle = lambda r, c, radius, shape=None: skimage.draw.disk((r, c), radius, shape=shape)
import torch
import torchvision.models
_vgg19 = torchvision.models.vgg19
torchvision.models.vgg19 = lambda pretrained=False, **kw: _vgg19(weights=None)  # random VGG19, as specs/dptn.md 9
from models.DPTN_model import DPTNModel
'''


def build_official(spec: dict):
    """The official DPTNModel (imported from the current directory, the official repository) on random inputs."""
    # the official `util` folder has no __init__.py, so our package of that name would win: drop our root
    sys.path[:] = [p for p in sys.path if p and Path(p).resolve() != REPO]
    exec(OFFICIAL_CHILD, globals())  # defines DPTNModel with the shims above
    market = spec["dataset_mode"] == "market"
    gpu_ids = [int(i) for i in spec["gpu_ids"].split(",") if int(i) >= 0 and torch.cuda.is_available()]
    device = torch.device("cuda", gpu_ids[0]) if gpu_ids else torch.device("cpu")
    train = spec["phase"] == "train"
    opt = argparse.Namespace(
        gpu_ids=gpu_ids, isTrain=train, checkpoints_dir=tempfile.mkdtemp(), name="bench", model="DPTN", image_nc=3,
        structure_nc=18, norm="instance", use_spect_g=False, use_spect_d=True, use_coord=False, nhead=2,
        num_CABs=2, num_TTBs=2, dis_layers=3 if market else 4, init_type="orthogonal", pool_size=0, lr=2e-4,
        gan_mode="lsgan", device=device, beta1=0.5, ratio_g2d=0.1, lr_policy="lambda", iter_start=1, niter=100,
        niter_decay=100, t_s_ratio=0.8 if market else 0.5, old_size=(128, 64) if market else (256, 176),
        lambda_rec=2.0 if market else 5.0, lambda_g=5.0 if market else 2.0, lambda_style=500.0,
        lambda_content=0.5, continue_train=False, verbose=False, batchSize=spec["batch"], which_epoch="latest")
    torch.manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()):
        if train:
            model = DPTNModel(opt)  # noqa: F821 (defined by OFFICIAL_CHILD)
        else:  # its test-mode constructor loads a checkpoint; build the generator the same way instead
            from models import networks
            model = argparse.Namespace(net_G=networks.define_G(
                opt, image_nc=3, pose_nc=18, ngf=64, img_f=512, encoder_layer=3, norm="instance",
                activation="LeakyReLU", use_spect=False, use_coord=False, output_nc=3, num_blocks=3, affine=True,
                nhead=2, num_CABs=2, num_TTBs=2).eval())
    height, width = (128, 64) if market else (256, 256)
    batch = random_batch(spec["batch"], height, width)
    for key, name in (("source_image", "source_image"), ("target_image", "target_image"),
                      ("source_pose", "source_pose"), ("target_pose", "target_pose")):
        setattr(model, name, batch[key].to(device))  # the official set_input moves tensors only on CUDA

    def step() -> None:
        if train:
            model.optimize_parameters()
        else:
            with torch.no_grad():
                model.net_G(model.source_image, model.source_pose, model.target_pose, False)
    return step, device


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def counted_flops(step) -> float | None:
    """Floating-point operations of one iteration (torch's FlopCounterMode: convolutions, matmuls, attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    try:
        with counter:
            step()
    except Exception:  # noqa: BLE001 - e.g. a compiled graph the counter cannot follow: report no figure
        return None
    return float(counter.get_total_flops())


def matmul_rate(device: torch.device, threads: int) -> float:
    """The machine's float32 matrix-multiply rate (FLOP/s, 2048² operands, best of 5): the ceiling a step whose
    time is spent in convolutions and matmuls can approach."""
    torch.set_num_threads(threads)
    a = torch.randn(2048, 2048, device=device)
    best = float("inf")
    for attempt in range(6):  # the first one warms up
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        a @ a
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if attempt:
            best = min(best, time.perf_counter() - start)
    return 2 * 2048 ** 3 / best


def child(spec: dict) -> int:
    """Build the variant, then answer 'step' (seconds of one iteration), 'mem' (peak MiB), 'flops' (of one more
    iteration) and 'quit' on stdio."""
    torch.set_num_threads(spec["threads"])
    if spec["variant"] == "official":
        os.chdir(spec["official_root"])
    step, device = (build_official if spec["variant"] == "official" else build_ours)(spec)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for line in sys.stdin:
        command = line.strip()
        if command == "step":
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            reply = time.perf_counter() - start
        elif command == "mem":
            reply = peak_memory_mib(device)
        elif command == "flops":
            reply = counted_flops(step)
        else:
            break
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    return 0


# --- the parent ------------------------------------------------------------------------------------------

class Variant:
    """A child process running one variant."""

    def __init__(self, label: str, spec: dict) -> None:
        self.label = label
        self.times: list[float] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scripts.bench_train", "--_child", json.dumps(spec)], cwd=REPO,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(spec["threads"])})
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"variant {label!r} failed to start (see its error above)")

    def ask(self, command: str) -> float:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"variant {self.label!r} died during {command!r}")
        return json.loads(line)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
        self.proc.wait(timeout=60)


def measure(labels_specs: list[tuple[str, dict]], warmup: int, iters: int) -> list[dict]:
    """Start every variant, let them take turns for warmup + iters iterations, and summarise."""
    variants = [Variant(label, spec) for label, spec in labels_specs]
    try:
        for i in range(warmup + iters):
            for v in variants:
                seconds = v.ask("step")
                if i >= warmup:
                    v.times.append(seconds)
        memory = [v.ask("mem") for v in variants]
        flops = [v.ask("flops") for v in variants]
    finally:
        for v in variants:
            v.close()
    base = variants[0].times
    rows = []
    for v, mem, count in zip(variants, memory, flops):
        rows.append({"label": v.label, "median": statistics.median(v.times), "min": min(v.times),
                     "max": max(v.times), "ratio": statistics.median(b / t for b, t in zip(base, v.times)),
                     "memory": mem, "times": v.times, "flops": count})
    return rows


def print_rows(title: str, rows: list[dict], batch: int) -> None:
    print(f"\n{title}")
    header = (f"{'variant':<28} {'batch':>5} {'s/it median':>11} {'(min-max)':>15} {'images/s':>9} "
              f"{'speed vs 1st':>12} {'peak MiB':>9} {'GFLOP/it':>9} {'GFLOP/s':>8}")
    print(header)
    print("-" * len(header))
    for r in rows:
        spread = f"({r['min']:.3f}-{r['max']:.3f})"
        work = (f"{r['flops'] / 1e9:>9.1f} {r['flops'] / 1e9 / r['median']:>8.1f}" if r["flops"]
                else f"{'-':>9} {'-':>8}")
        print(f"{r['label']:<28} {batch:>5} {r['median']:>11.3f} {spread:>15} {batch / r['median']:>9.2f} "
              f"{r['ratio']:>11.2f}x {r['memory']:>9.0f} {work}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench_train", description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=str, default="DPTN", choices=["DPTN", "PG2"])
    parser.add_argument("--dataset_mode", type=str, default="market", choices=["market", "fashion"])
    parser.add_argument("--batch_size", type=int, default=None, help="training batch (default 4 Market, 2 fashion)")
    parser.add_argument("--test_batch_size", type=int, default=1, help="inference batch (the README tests use 1)")
    parser.add_argument("--iters", type=int, default=7, help="timed iterations per variant")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in every variant")
    parser.add_argument("--gpu_ids", type=str, default="-1", help="-1: CPU (default); 0: the first GPU")
    parser.add_argument("--official_root", type=str, default=None,
                        help="a checkout of the official DPTN repository: time it too (DPTN only)")
    parser.add_argument("--no_official_ops", action="store_true", help="DPTN: skip the --official_ops variant")
    parser.add_argument("--skip_inference", action="store_true", help="time training only")
    parser.add_argument("--vgg_random_init", action="store_true",
                        help="accepted for symmetry with train.py; the benchmark always uses random VGG weights")
    parser.add_argument("--extra", type=str, default="", help="more model flags for our variants, e.g. '--stage 2'")
    parser.add_argument("--amp", type=str, default=None, choices=["bf16", "fp16"],
                        help="also time ours with --amp (mixed precision) against float32")
    parser.add_argument("--channels_last", action="store_true", help="also time ours with --channels_last")
    parser.add_argument("--compile", action="store_true", help="also time ours with --compile (torch.compile)")
    parser.add_argument("--variant", action="append", default=[],
                        help="also time ours with these flags, e.g. --variant='--cpu_memory release' (repeatable)")
    parser.add_argument("--_child", type=str, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._child is not None:
        return child(json.loads(args._child))
    if args.official_root and args.model != "DPTN":
        parser.error("--official_root is for --model DPTN")
    batch = args.batch_size or DEFAULT_BATCH[args.dataset_mode]
    base = {"model": args.model, "dataset_mode": args.dataset_mode, "gpu_ids": args.gpu_ids,
            "threads": args.threads, "extra": args.extra.split(), "official_root": args.official_root}
    cuda = any(int(i) >= 0 for i in args.gpu_ids.split(",")) and torch.cuda.is_available()
    device = torch.cuda.get_device_name(0) if cuda else f"cpu ({os.cpu_count()} cores visible)"
    print(f"device {device} | torch {torch.__version__} | threads {args.threads} | float32 | "
          f"{args.model} {args.dataset_mode} | median of {args.iters} after {args.warmup} warm-up, variants in turn")
    rate = matmul_rate(torch.device("cuda", 0) if cuda else torch.device("cpu"), args.threads)
    print(f"float32 matmul rate of this device (2048², best of 5): {rate / 1e9:.1f} GFLOP/s; GFLOP/it below is "
          "torch's FlopCounterMode count of one iteration, GFLOP/s that count over the median time")

    def variants(phase: str, size: int) -> list[tuple[str, dict]]:
        out = [("ours", {**base, "phase": phase, "batch": size, "variant": "ours"})]
        speed_flags = ([f"--amp {args.amp}"] if args.amp else []) + (["--channels_last"] if args.channels_last
                                                                      else []) + (["--compile"] if args.compile else [])
        for flags in speed_flags + args.variant:
            out.append((f"ours {flags}", {**base, "phase": phase, "batch": size, "variant": "ours",
                                          "extra": base["extra"] + flags.split()}))
        if args.model == "DPTN" and phase == "train" and not args.no_official_ops:
            out.append(("ours --official_ops", {**base, "phase": phase, "batch": size, "variant": "ours",
                                                "extra": base["extra"] + ["--official_ops"]}))
        if args.official_root:
            out.append(("official", {**base, "phase": phase, "batch": size, "variant": "official",
                                     "official_root": str(Path(args.official_root).resolve())}))
        return out

    rows = measure(variants("train", batch), args.warmup, args.iters)
    print_rows("training iteration (forward + backward of all networks and losses, optimizer steps)", rows, batch)
    if not args.skip_inference:
        rows = measure(variants("test", args.test_batch_size), args.warmup, args.iters)
        print_rows("inference (test.py path)", rows, args.test_batch_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
