"""Golden values for tests/test_patn.py from the official PATN (tengteng95/Pose-Transfer, branch pytorch_v1.0).

Float sums of convolution outputs depend on the CPU kernels (other vector instruction sets sum in other
orders), so the machine-dependent entries are recorded per `torch.backends.cpu.get_cpu_capability()`. This
runs the official TransferModel on CPU with two threads, with the seeds, inputs and call order of the tests:

    python -m scripts.official_bench.patn_golden --official_root /tmp/patn_official \
        [--write tests/data/patn_official_golden.json]

Without --write it prints the values; with it, it checks that the machine-independent initial weight sums
equal the stored ones (proof that the procedure is the tests' one) and stores this machine's set under
"by_cpu_capability".
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import hashlib
import io
import json
import os
import random
import sys
import tempfile
from pathlib import Path

import torch

from scripts.official_bench import REPO, prepare_official_import
from util.io import atomic_write_text  # bound before the official `util` replaces ours in sys.modules

DATASETS = ("market", "fashion")
SIZES = {"market": (128, 64, 2), "fashion": (256, 176, 1)}  # H, W, the tests' batch
MACHINE_KEYS = ("train_forward", "eval_forward", "step1", "step2", "test_path")


def readme_flags(dataset: str) -> list[str]:
    """The README training command's model flags, as tests/test_patn.py's README_MODEL."""
    from test_patn import README_MODEL  # our test module (tests/ on sys.path): imported before the official code

    return README_MODEL[dataset].split()


def sums(tensors) -> list[float]:
    tensors = list(tensors)
    return [sum(t.double().sum().item() for t in tensors), sum(t.double().abs().sum().item() for t in tensors)]


def state_sums(net: torch.nn.Module) -> list[float]:
    return sums(v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked"))


def official_model(dataset: str, flags: list[str], vgg_state: dict, *extra: str):
    """The official TransferModel built after torch.manual_seed(0), its VGG19 features set to `vgg_state`."""
    import torchvision.models

    from models.PATN import TransferModel  # the official modules, from the official root
    from options.train_options import TrainOptions

    random_vgg = torchvision.models.vgg19

    def vgg19(pretrained: bool = False, **kwargs):
        net = random_vgg(pretrained=pretrained, **kwargs)
        net.load_state_dict(vgg_state, strict=False)
        return net

    torchvision.models.vgg19 = vgg19
    argv = ["--dataroot", ".", "--name", "golden", "--model", "PATN", "--checkpoints_dir", tempfile.mkdtemp(),
            "--gpu_ids", "-1", "--dataset_mode", "keypoint", *flags, *extra]
    saved, sys.argv = sys.argv, ["train.py", *argv]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            opt = TrainOptions().parse()
            torch.manual_seed(0)
            model = TransferModel()
            model.initialize(opt)
    finally:
        sys.argv = saved
        torchvision.models.vgg19 = random_vgg
    return model


def official_batch(x: dict) -> dict:
    return {"P1": x["source_image"], "BP1": x["source_pose"], "P2": x["target_image"], "BP2": x["target_pose"],
            "P1_path": x["source_name"], "P2_path": x["target_name"]}


def nets(model) -> dict:
    return {"G": model.netG, "D_PB": model.netD_PB, "D_PP": model.netD_PP}


def record(dataset: str, flags: list[str], inputs, vgg_state: dict) -> dict:
    """The entries of GOLDEN[dataset] that tests/test_patn.py reads, in the tests' order of calls."""
    from util.util import save_image, tensor2im  # the official helpers

    height, width, batch = SIZES[dataset]
    out: dict = {}
    # test_seeded_model_matches_the_official_init_and_forward
    model = official_model(dataset, flags, vgg_state)
    out["init"] = {name: {"state_dict": state_sums(net), "parameters": sums(net.parameters())}
                   for name, net in nets(model).items()}
    out["init_prefix"] = {"G": {k: sums([v]) for k, v in model.netG.state_dict().items()}}
    initial = {k: v.clone() for k, v in model.netG.state_dict().items()}
    model.set_input(official_batch(inputs(batch, height, width)))
    torch.manual_seed(5)
    with torch.no_grad():
        model.forward()
    out["train_forward"] = {"fake_p2": sums([model.fake_p2])}
    model.netG.load_state_dict(initial)
    model.netG.eval()
    with torch.no_grad():
        model.forward()
    out["eval_forward"] = {"output": sums([model.fake_p2])}
    # test_two_training_steps_match_the_official_ones
    model = official_model(dataset, flags, vgg_state)
    model.set_input(official_batch(inputs(batch, height, width)))
    torch.manual_seed(7)
    random.seed(7)
    for step in ("step1", "step2"):
        model.optimize_parameters()
        entry = {"errors": dict(model.get_current_errors()),
                 "net_sums": {name: {"state_dict": state_sums(net), "parameters": sums(net.parameters())}
                              for name, net in nets(model).items()}}
        if step == "step1":
            entry["fake_p2"] = sums([model.fake_p2])
        out[step] = entry
    # test_test_images_are_the_official_ones_to_the_byte
    torch.manual_seed(0)
    net = official_model(dataset, flags, vgg_state, "--L1_type", "origin").netG
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.05, generator=g)
    net.eval()
    x = inputs(1, height, width, seed=2)
    with torch.no_grad():
        fake = net([x["source_image"], torch.cat((x["source_pose"], x["target_pose"]), 1)])
    image = tensor2im(fake)
    jpg = Path(tempfile.mkdtemp()) / "out.jpg"
    save_image(image, str(jpg))
    out["test_path"] = {"fake": sums([fake]), "img_sha256": hashlib.sha256(image.tobytes()).hexdigest(),
                        "jpg_sha256": hashlib.sha256(jpg.read_bytes()).hexdigest(), "img_png_base64": png(image)}
    return out


def png(image) -> str:
    """The uint8 image, lossless: the reference of the tests' pixel comparison on CPUs without a recorded set."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def check_and_store(path: Path, values: dict) -> None:
    """Refuse unless the initial sums equal the stored ones exactly; then store the machine-dependent set."""
    golden = json.loads(path.read_text())
    for dataset in DATASETS:
        mine, stored = values[dataset], golden[dataset]
        for name in ("G", "D_PB", "D_PP"):
            for kind in ("state_dict", "parameters"):
                if mine["init"][name][kind] != stored["init"][name][kind]:
                    raise SystemExit(f"{dataset} init {name} {kind}: {mine['init'][name][kind]} != stored "
                                     f"{stored['init'][name][kind]}: not the procedure of the stored values")
        for key, value in stored["init_prefix"]["G"].items():
            if mine["init_prefix"]["G"][key] != value:
                raise SystemExit(f"{dataset} init_prefix {key}: {mine['init_prefix']['G'][key]} != {value}")
    capability = torch.backends.cpu.get_cpu_capability()
    entry = {"source": {"machine": values["machine"], "cpu_capability": capability, "torch": torch.__version__,
                        "device": "cpu", "threads": torch.get_num_threads(), "date": values["date"],
                        "generator": "scripts/official_bench/patn_golden.py"}}
    for dataset in DATASETS:
        entry[dataset] = {k: values[dataset][k] for k in MACHINE_KEYS}
    golden["source"].setdefault("cpu_capability", "unknown (recorded elsewhere; not AVX2, whose sums differ)")
    golden.setdefault("by_cpu_capability", {})[capability] = entry
    atomic_write_text(path, json.dumps(golden, indent=1) + "\n")


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official_root", required=True, help="a checkout of Pose-Transfer pytorch_v1.0")
    parser.add_argument("--write", type=Path, help="the golden JSON to check against and add this machine to")
    args = parser.parse_args(argv)
    write = args.write.resolve() if args.write else None  # before changing to the official root
    sys.path.insert(0, str(REPO / "tests"))
    from test_dptn import inputs, vgg_state  # the tests' batches and VGG weights, before the official import

    flags = {d: readme_flags(d) for d in DATASETS}
    vgg = vgg_state(7)
    sys.path.remove(str(REPO / "tests"))  # its data/ folder must not shadow the official data package
    torch.set_num_threads(2)
    os.chdir(args.official_root)
    prepare_official_import(cpu_only_cuda_calls=True)
    values = {d: record(d, flags[d], inputs, vgg) for d in DATASETS}
    values["machine"] = cpu_name()
    values["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    if write is None:
        print(json.dumps(values))
    else:
        check_and_store(write, values)
        print(f"stored the {torch.backends.cpu.get_cpu_capability()} set in {write}")


if __name__ == "__main__":
    main()
