"""Options shared by training and testing, and the parse -> hooks -> validate -> save -> freeze sequence."""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

import data
import models
from util.io import InputError, atomic_write_text


class Options(argparse.Namespace):
    """Parsed options; read-only once parsing is done (parse once, pass explicitly)."""

    def freeze(self) -> "Options":
        object.__setattr__(self, "_frozen", True)
        return self

    def __setattr__(self, key, value):
        if getattr(self, "_frozen", False):
            raise AttributeError(f"options are read-only after parsing (tried to set {key!r})")
        super().__setattr__(key, value)

    def public_items(self) -> list[tuple[str, object]]:
        """(name, value) pairs, sorted, without private fields."""
        return sorted((k, v) for k, v in vars(self).items() if not k.startswith("_"))


class HelpfulParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors become InputError (one line, no exit from library code)."""

    def error(self, message):
        raise InputError(message)


def gpu_list(text: str) -> list[int]:
    """'0,1' -> [0, 1]; negative ids mean CPU and are dropped ('-1' -> [])."""
    try:
        ids = [int(x) for x in str(text).split(",") if x.strip() != ""]
    except ValueError:
        raise InputError(f"--gpu_ids {text!r}: expected a comma list of integers, -1 for CPU") from None
    return [i for i in ids if i >= 0]


class BaseOptions:
    """Flags common to train.py and test.py (pix2pix names; DPTN's spellings are aliases)."""

    is_train = False
    opt_file_name = "opt.txt"

    def initialize(self, parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        g = parser.add_argument_group("experiment")
        g.add_argument("--name", type=str, default="experiment",
                       help="run name; checkpoints go to <checkpoints_dir>/<name>/")
        g.add_argument("--model", type=str, default="PG2",
                       help=f"which model to use: {', '.join(models.model_names())}")
        g.add_argument("--gpu_ids", "--gpu_id", dest="gpu_ids", type=str, default="0",
                       help="GPU ids, e.g. 0 or 0,1; -1 for CPU. Falls back to CPU (with a note) when CUDA "
                            "is unavailable. Under torchrun each process takes one id by its local rank")
        g.add_argument("--checkpoints_dir", type=str, default="./checkpoints",
                       help="models, options, logs and the HTML page are saved in <checkpoints_dir>/<name>/")
        g.add_argument("--seed", type=int, default=0,
                       help="seed for python, numpy and torch (plus the rank under torchrun)")
        g.add_argument("--verbose", action="store_true", help="print network architectures")
        g.add_argument("--suffix", type=str, default="",
                       help="appended to --name, formatted with the options: e.g. {model}_{dataset_mode}")

        g = parser.add_argument_group("data")
        g.add_argument("--dataset_mode", type=str, default="synthetic",
                       help=f"which dataset format to read: {', '.join(data.dataset_names())}")
        g.add_argument("--dataroot", type=str, default=None,
                       help="dataset folder holding <phase>/ images and the annotation and pair CSVs")
        g.add_argument("--phase", type=str, default="train" if self.is_train else "test",
                       help="split to read: train or test")
        g.add_argument("--batchSize", "--batch_size", dest="batch_size", type=int, default=1,
                       help="batch size (per process under torchrun)")
        g.add_argument("--serial_batches", action="store_true",
                       help="read pairs in file order instead of shuffling")
        g.add_argument("--num_threads", "--nThreads", dest="num_threads", type=int, default=2,
                       help="data-loading worker processes (0 = load in the main process)")
        g.add_argument("--max_dataset_size", type=float, default=math.inf,
                       help="use at most this many pairs (first in file order)")

        g = parser.add_argument_group("networks")
        g.add_argument("--init_type", type=str, default="normal",
                       choices=["normal", "xavier", "kaiming", "orthogonal", "torch"],
                       help="weight initialisation (models may set their paper's default); torch: PyTorch's own "
                            "default init, left as it is")
        g.add_argument("--init_gain", type=float, default=0.02,
                       help="scale for normal, xavier and orthogonal initialisation")

        g = parser.add_argument_group("speed (README: Multi-GPU and mixed precision)")
        g.add_argument("--amp", type=str, default="none", choices=["none", "bf16", "fp16"],
                       help="mixed precision via torch.autocast (fp16 adds a GradScaler, saved in the training "
                            "state); Gram matrices and GAN losses stay float32")
        g.add_argument("--channels_last", action="store_true",
                       help="networks and image batches in channels_last memory format (faster convolutions on "
                            "recent GPUs)")
        g.add_argument("--compile", action="store_true",
                       help="torch.compile the networks (falls back to eager execution, with a note, where "
                            "compiling is unavailable)")
        g.add_argument("--cpu_memory", type=str, default="reuse", choices=["reuse", "release"],
                       help="reuse: keep freed CPU memory in the process for the next step's tensors (glibc; "
                            "saves the page faults of re-mapping big activations every step; the process keeps "
                            "its peak memory); release: the C library's defaults")

        g = parser.add_argument_group("display")
        g.add_argument("--display_id", type=int, default=0,
                       help="visdom window id; 0 disables visdom (the HTML page is always written)")
        g.add_argument("--display_server", type=str, default="http://localhost",
                       help="visdom server address (a server is never launched for you)")
        g.add_argument("--display_port", type=int, default=8097, help="visdom server port")
        g.add_argument("--display_env", type=str, default=None,
                       help="visdom environment (default: the run name)")
        g.add_argument("--display_winsize", type=int, default=256, help="display size of images (pixels)")
        return parser

    # --- parsing ---------------------------------------------------------------------------------------

    def build_parser(self, argv: list[str]) -> argparse.ArgumentParser:
        """Base flags, then the dataset hook, then the model hook (so a model may set dataset defaults)."""
        # first pass without -h, so that `--model X --help` shows X's flags too
        known, _ = self.initialize(HelpfulParser(add_help=False)).parse_known_args(argv)
        parser = self.initialize(HelpfulParser(
            description=self.__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter))
        parser = data.get_option_setter(known.dataset_mode)(parser, self.is_train)
        parser = models.get_option_setter(known.model)(parser, self.is_train)
        return parser

    def parse(self, argv: list[str] | None = None, echo: bool = True, check_folder: bool = True) -> Options:
        """Parse `argv` (default sys.argv), derive values, validate, print, freeze. Writes nothing: the entry
        point calls `save(opt)` once the data and the model have been built, so a failed start leaves every
        file as it was. `check_folder` runs the run-folder check now (train: no clash with another run)."""
        argv = list(sys.argv[1:] if argv is None else argv)
        parser = self.build_parser(argv)
        opt = parser.parse_args(argv, namespace=Options())
        self.parser = parser
        self.derive(opt)
        self.validate(opt)
        if check_folder:
            self.check_run_folder(opt, self.option_file(opt), self.format(opt, parser) + "\n")
        if echo:
            print(self.format(opt, parser))
        return opt.freeze()

    def derive(self, opt: Options) -> None:
        """Compute the values that follow from the flags; after this nothing assigns to `opt`."""
        opt.is_train = self.is_train
        if opt.suffix:
            opt.name = f"{opt.name}_{opt.suffix.format(**vars(opt))}"
        opt.gpu_ids = gpu_list(opt.gpu_ids)
        if opt.gpu_ids and not torch.cuda.is_available():
            print(f"note: --gpu_ids {','.join(map(str, opt.gpu_ids))} asked for CUDA, which is not available; "
                  "running on CPU")
            opt.gpu_ids = []
        if opt.display_env is None:
            opt.display_env = opt.name
        # dataset first (it sets opt.data_format: market | fashion), then the model (paper defaults per format)
        data.find_dataset_class(opt.dataset_mode).derive_options(opt)
        models.find_model_class(opt.model).derive_options(opt)

    def validate(self, opt: Options) -> None:
        """Reject impossible combinations with one clear message."""
        if opt.batch_size < 1:
            raise InputError(f"--batchSize must be >= 1, got {opt.batch_size}")
        if opt.num_threads < 0:
            raise InputError(f"--num_threads must be >= 0, got {opt.num_threads}")

    @staticmethod
    def format(opt: Options, parser: argparse.ArgumentParser) -> str:
        """One line per option; values that differ from the default are marked."""
        lines = ["----------------- Options ---------------"]
        for key, value in opt.public_items():
            default = parser.get_default(key)
            mark = f"\t[default: {default}]" if default is not None and value != default else ""
            lines.append(f"{key:>25}: {value!s:<30}{mark}")
        lines.append("----------------- End -------------------")
        return "\n".join(lines)

    def option_file(self, opt: Options) -> Path:
        return Path(opt.checkpoints_dir) / opt.name / self.opt_file_name

    def save(self, opt: Options) -> Path:
        """Write <checkpoints_dir>/<name>/<train|test>_opt.txt (atomically) for options from `parse`."""
        path = self.option_file(opt)
        atomic_write_text(path, self.format(opt, self.parser) + "\n")
        return path

    def check_run_folder(self, opt: Options, path: Path, text: str) -> None:
        """Hook: refuse to write into a folder that belongs to another run (train options override it)."""


def read_option_file(text: str) -> dict[str, str]:
    """Parse an options file written by `BaseOptions.format` back into {name: value as text}."""
    values = {}
    for line in text.splitlines():
        if ": " in line and not line.startswith("-"):
            key, value = line.split(": ", 1)
            values[key.strip()] = value.split("\t[default:", 1)[0].strip()
    return values
