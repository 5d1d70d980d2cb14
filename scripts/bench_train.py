"""Training and inference throughput (images/s) and peak memory of a model, on random batches.

    python -m scripts.bench_train --model PATN --dataset_mode market [--batch_size 4] [--iters 7]
    python -m scripts.bench_train --model DPTN --dataset_mode fashion            # batch 2, 256x256
    python -m scripts.bench_train --model PATN --dataset_mode market --official_root ../Pose-Transfer  # pytorch_v1.0
    python -m scripts.bench_train --model PG2 --dataset_mode market --amp bf16 --channels_last   # speed options
    python -m scripts.bench_train --model PG2 --dataset_mode market --extra '--stage 2' --variant=--mobilenet

A training iteration is `set_input` + `optimize_parameters` (forward and backward of every network and loss, the
optimizer steps); an inference iteration is `set_input` + `test` (test.py's path, batch --test_batch_size). Each
variant runs in its own process, built once; the variants then take turns, one iteration each, so that a machine
whose speed drifts (shared CPUs) slows them alike. Reported: the median seconds per iteration after --warmup
iterations, its min-max spread, images/s = batch / median, the median of the per-turn speed ratios to the first
variant, each process's peak memory (CPU: peak RSS of the whole process; CUDA: max_memory_allocated), and the
floating-point work of one iteration with the rate it achieves, beside the device's float32 matmul rate: a step
made of convolutions cannot run faster than its FLOPs at that rate (the backward of grouped convolutions is
counted right, which torch's own formula is not: scripts/macs.py). Per network (from the training processes, or
the inference ones with --skip_training): its parameters (`model.parameter_counts()`, and how many have
requires_grad) and the forward GMACs per image of the networks that `model.forward()` runs (the generators):
FLOPs / 2 of one forward of the batch, over the batch (a conv costs output elements x Ci/groups x k x k, a linear
layer in x out; bias adds and upsampling are free).

Any registered model is benchmarked with the flags of its official README command for the dataset
(`BaseModel.benchmark_argv`). Variants: ours (default), ours with each of the model's `benchmark_variants` (DPTN,
PATN: --official_ops; training only), ours with each --variant (training and inference; PG2: --mobilenet), and
with --official_root the official code itself, built by the model's adapter in scripts/official_bench/<model>.py
on the same random batches, with the README flags. Loss networks always use random weights here (speed does
not depend on them).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
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

from util.io import InputError, report_input_errors

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BATCH = {"market": 4, "fashion": 2}  # small enough for a 2-core CPU; pass the paper's on a GPU


# --- the child processes ----------------------------------------------------------------------------------

def random_keypoints(batch: int, height: int, width: int, g: torch.Generator) -> torch.Tensor:
    """(B, 18, 2) int64 (row, col) in the frame, about one in six missing (-1), as the datasets give them."""
    rows = torch.randint(0, height, (batch, 18, 1), generator=g)
    cols = torch.randint(0, width, (batch, 18, 1), generator=g)
    keypoints = torch.cat([rows, cols], dim=2)
    keypoints[torch.rand(batch, 18, generator=g) < 1 / 6] = -1
    return keypoints


def random_batch(batch: int, height: int, width: int, seed: int = 1) -> dict:
    """A batch as the datasets return it: images uniform in [-1, 1], pose maps uniform in [0, 1], random
    keypoints and masks (what the DPIG recipe adds)."""
    g = torch.Generator().manual_seed(seed)
    return {
        "source_image": torch.rand(batch, 3, height, width, generator=g) * 2 - 1,
        "target_image": torch.rand(batch, 3, height, width, generator=g) * 2 - 1,
        "source_pose": torch.rand(batch, 18, height, width, generator=g),
        "target_pose": torch.rand(batch, 18, height, width, generator=g),
        "target_mask": (torch.rand(batch, 1, height, width, generator=g) > 0.7).float(),
        "source_mask": (torch.rand(batch, 1, height, width, generator=g) > 0.7).float(),
        "source_keypoints": random_keypoints(batch, height, width, g),
        "target_keypoints": random_keypoints(batch, height, width, g),
        "source_name": [f"s{i}.jpg" for i in range(batch)], "target_name": [f"t{i}.jpg" for i in range(batch)],
    }


class RandomPairs:
    """A stand-in training set for `BaseModel.start_of_training`: `pairs` and `item(index, flip)` of random items
    (DPIG's stage-II critics draw their real batches from the training set)."""

    flip_prob = 0.0

    def __init__(self, count: int, height: int, width: int) -> None:
        self.pairs = [(f"s{i}.jpg", f"t{i}.jpg") for i in range(count)]
        self.frame = (height, width)

    def __len__(self) -> int:
        return len(self.pairs)

    def item(self, index: int, flip: bool) -> dict:
        one = random_batch(1, *self.frame, seed=index + 2)
        return {k: v[0] for k, v in one.items()}


def network_frame(opt) -> tuple[int, int]:
    """(H, W) of the tensors the model sees for the parsed options."""
    from data.geometry import network_size

    if opt.data_format == "market":
        return 128, 64
    return network_size((256, 176), opt.fashion_frame)


def build_ours(spec: dict):
    """Our model from the registry, as train.py / test.py build it (no weights loaded), with the flags of its
    official README command for the dataset and random loss-network weights (`benchmark_argv`); returns the
    iteration, the device and a function giving the figures of each network (`network_figures`)."""
    from models import allow_compile_fallback, create_model, find_model_class
    from options.test_options import TestOptions
    from options.train_options import TrainOptions
    from util.cpu_memory import set_cpu_memory_policy
    from util.distributed import RunContext

    train = spec["phase"] == "train"
    model_class = find_model_class(spec["model"])
    ckpt = tempfile.mkdtemp(prefix="bench_train_")
    argv = ["--model", spec["model"], "--dataset_mode", spec["dataset_mode"], "--gpu_ids", spec["gpu_ids"],
            "--checkpoints_dir", ckpt, "--name", "bench"]
    argv += model_class.benchmark_argv(spec["dataset_mode"], train)
    argv += ["--batchSize", str(spec["batch"])] + spec["extra"]
    options = TrainOptions() if train else TestOptions()
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt = options.parse(argv, echo=False, check_folder=False)
        set_cpu_memory_policy(opt.cpu_memory)  # as train.py / test.py
        if opt.compile:
            allow_compile_fallback()
        device = torch.device("cuda", opt.gpu_ids[0]) if opt.gpu_ids else torch.device("cpu")
        ctx = RunContext(device=device)
        torch.manual_seed(0)
        model_class.prepare_benchmark(opt)
        model = create_model(opt, ctx)
        if train:
            model.setup()
            model.start_of_training(1, RandomPairs(4 * spec["batch"], *network_frame(opt)))
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
    return step, device, lambda: network_figures(model, batch)


def network_figures(model, batch: dict) -> dict[str, list]:
    """name -> [parameters, trainable parameters, forward MACs per image or None] of each network; the MACs are
    those of one `model.forward()` on `batch` (no grad), so only the networks it runs (the generators) get one."""
    from scripts.macs import network_macs
    from util.checkpoint import unwrap

    networks = {name: unwrap(net) for name, net in model.networks().items()}
    try:
        with network_macs(networks) as macs:
            model.set_input(batch)
            with torch.no_grad():
                model.forward()
    except Exception:  # noqa: BLE001 - e.g. a compiled graph the counter cannot follow: report no figure
        macs = {}
    size = len(batch["source_name"])
    trainable = {name: sum(p.numel() for p in net.parameters() if p.requires_grad)
                 for name, net in networks.items()}
    return {name: [count, trainable[name], macs[name] / size if name in macs else None]
            for name, count in model.parameter_counts().items()}


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def counted_flops(step) -> float | None:
    """Floating-point operations of one iteration (torch's FlopCounterMode: convolutions, matmuls, attention;
    with the backward of grouped convolutions counted right, scripts/macs.py)."""
    from scripts.macs import flop_counter

    counter = flop_counter()
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
    iteration), 'nets' (`network_figures`; null for the official code) and 'quit' on stdio."""
    torch.set_num_threads(spec["threads"])
    if spec["variant"] == "official":
        os.chdir(spec["official_root"])
        adapter = importlib.import_module(f"scripts.official_bench.{spec['model'].lower()}")
        step, device = adapter.build(spec, random_batch)
        figures = None
    else:
        step, device, figures = build_ours(spec)
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
        elif command == "nets":
            reply = figures() if figures is not None else None
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
        networks = [v.ask("nets") for v in variants]
    finally:
        for v in variants:
            v.close()
    base = variants[0].times
    rows = []
    for v, mem, count, nets in zip(variants, memory, flops, networks):
        rows.append({"label": v.label, "median": statistics.median(v.times), "min": min(v.times),
                     "max": max(v.times), "ratio": statistics.median(b / t for b, t in zip(base, v.times)),
                     "memory": mem, "times": v.times, "flops": count, "networks": nets})
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


def print_networks(rows: list[dict]) -> None:
    """Parameters and forward GMACs per image of each network of each variant (indented: the timing rows stay
    the only lines that start with a variant's name)."""
    print("\nnetworks: parameters (model.parameter_counts()), those with requires_grad (a frozen network has 0), "
          "forward GMACs per image = FlopCounterMode FLOPs / 2 of one model.forward() over the batch ('-': not "
          "run by forward())")
    header = f"  {'variant':<28} {'network':<8} {'parameters':>12} {'trainable':>12} {'GMACs/image':>12}"
    print(header)
    print("  " + "-" * (len(header) - 2))
    for r in rows:
        for name, (count, trainable, macs) in (r["networks"] or {}).items():
            gmacs = f"{macs / 1e9:>12.3f}" if macs is not None else f"{'-':>12}"
            print(f"  {r['label']:<28} {name:<8} {count:>12,} {trainable:>12,} {gmacs}")


def check_counts(args) -> None:
    """InputError for a count out of range, before any timing."""
    for option, least in (("iters", 1), ("warmup", 0), ("threads", 1), ("test_batch_size", 1)):
        if getattr(args, option) < least:
            raise InputError(f"--{option} must be >= {least}, got {getattr(args, option)}")
    if args.batch_size is not None and args.batch_size < 1:
        raise InputError(f"--batch_size must be >= 1, got {args.batch_size}")
    if args.official_root and not Path(args.official_root).is_dir():
        raise InputError(f"--official_root {args.official_root} is not a folder")


@report_input_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench_train", description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=str, default="DPTN", help="any registered model (models/<name>_model.py)")
    parser.add_argument("--dataset_mode", type=str, default="market", choices=["market", "fashion"])
    parser.add_argument("--batch_size", type=int, default=None, help="training batch (default 4 Market, 2 fashion)")
    parser.add_argument("--test_batch_size", type=int, default=1, help="inference batch (the README tests use 1)")
    parser.add_argument("--iters", type=int, default=7, help="timed iterations per variant")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in every variant")
    parser.add_argument("--gpu_ids", type=str, default="-1", help="-1: CPU (default); 0: the first GPU")
    parser.add_argument("--official_root", type=str, default=None,
                        help="a checkout of the model's official repository: time it too (models with an adapter "
                             "in scripts/official_bench/)")
    parser.add_argument("--no_official_ops", action="store_true",
                        help="skip the model's own variants (e.g. --official_ops)")
    parser.add_argument("--skip_inference", action="store_true", help="time training only")
    parser.add_argument("--skip_training", action="store_true",
                        help="time inference only (the networks table then comes from the inference processes)")
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
    from models import find_model_class, model_names

    if args.model.lower() not in model_names():
        parser.error(f"unknown --model {args.model}; available: {', '.join(model_names())}")
    model_class = find_model_class(args.model)
    if args.skip_training and args.skip_inference:
        parser.error("--skip_training and --skip_inference together leave nothing to time")
    if args.official_root and not (REPO / "scripts" / "official_bench" / f"{args.model.lower()}.py").is_file():
        parser.error(f"--official_root: no adapter for {args.model} in scripts/official_bench/")
    check_counts(args)
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
        for flags in () if args.no_official_ops or phase != "train" else model_class.benchmark_variants:
            out.append((f"ours {flags}", {**base, "phase": phase, "batch": size, "variant": "ours",
                                          "extra": base["extra"] + flags.split()}))
        if args.official_root:
            out.append(("official", {**base, "phase": phase, "batch": size, "variant": "official",
                                     "official_root": str(Path(args.official_root).resolve())}))
        return out

    if not args.skip_training:
        rows = measure(variants("train", batch), args.warmup, args.iters)
        print_rows("training iteration (forward + backward of all networks and losses, optimizer steps)", rows,
                   batch)
        print_networks(rows)
    if not args.skip_inference:
        rows = measure(variants("test", args.test_batch_size), args.warmup, args.iters)
        print_rows("inference (test.py path)", rows, args.test_batch_size)
        if args.skip_training:
            print_networks(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
