"""Options shared by training and testing, and the parse -> hooks -> validate -> save -> freeze sequence."""
from __future__ import annotations

import argparse
import math
import os
import string
import sys
from pathlib import Path

import torch

import data
import models
from util.io import InputError, atomic_write_text
from util.official_flags import RefusedFlag
from util.run_options import (RUN_FILE, RunRecord, explicit_dests, flag_of, load_run_record, mark_run_shaping,
                              read_option_file, run_shaping_actions, value_from_text)

__all__ = ["BaseOptions", "HelpfulParser", "Options", "check_run_name", "check_writable_folder", "gpu_list",
           "read_option_file", "suffixed_name"]


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


def check_run_name(name: str) -> None:
    """A run name is one folder inside --checkpoints_dir: not empty, not absolute, no path separators, not '.'/'..'
    (else a run would write outside --checkpoints_dir, or into it directly)."""
    separators = {"/", os.sep, os.altsep} - {None}
    if not name.strip() or name in (".", "..") or os.path.isabs(name) or any(sep in name for sep in separators):
        raise InputError(f"--name {name!r}: a run name is one folder inside --checkpoints_dir (not empty, no path "
                         "separators, not '.' or '..'); choose a plain name such as 'market_pg2'")


def suffixed_name(name: str, suffix: str, values: dict) -> str:
    """<name>_<suffix formatted with the options>; a malformed suffix or one naming no option is an InputError."""
    hint = "write option names in braces, e.g. --suffix {model}_{dataset_mode}"
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(suffix) if field is not None]
    except ValueError as exc:
        raise InputError(f"--suffix {suffix!r}: {exc}; {hint}") from None
    for field in fields:
        root = field.split(".", 1)[0].split("[", 1)[0]
        if root == "" or root.isdigit():
            raise InputError(f"--suffix {suffix!r}: '{{{field}}}' names no option; {hint}")
        if root not in values:
            raise InputError(f"--suffix {suffix!r}: {{{root}}} is not an option of this command; {hint}")
    try:
        return f"{name}_{suffix.format(**values)}"
    except (KeyError, IndexError, AttributeError, ValueError, TypeError) as exc:
        raise InputError(f"--suffix {suffix!r}: cannot be formatted ({type(exc).__name__}: {exc}); {hint}") from None


def check_writable_folder(flag: str, path: str | os.PathLike) -> None:
    """A folder this command writes into must be a folder (or creatable under one) that this user may write."""
    path = Path(path)
    existing = path
    while not existing.exists() and existing.parent != existing:  # the nearest part of the path that exists
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        where = "is a file" if existing == path else f"lies under {existing}, which is a file"
        raise InputError(f"{flag} {path} {where}; give a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{flag} {path}: {existing} is not writable by this user; give a folder you may write")


class BaseOptions:
    """Flags common to train.py and test.py (pix2pix names; DPTN's spellings are aliases)."""

    is_train = False
    opt_file_name = "opt.txt"
    entry = "train.py"  # the command named in messages
    reads_run = False  # take the run-shaping options from <checkpoints_dir>/<name>/train_opt.txt (test.py)
    dataset_from_run = False  # with a run and no --dataset_mode typed, the run's chooses the dataset hook
    not_read: dict[str, str] = {}  # dest -> why this command refuses the flag when it is typed

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
                       help="seed for python, numpy and torch (plus the rank under torchrun); test.py seeds "
                            "them too before building the model (what a model samples at test time), and "
                            "--dataset_mode synthetic builds its data from it")
        g.add_argument("--verbose", action="store_true", help="print network architectures")
        g.add_argument("--no_download", action="store_true",
                       help="never download pretrained weights (also HPT_NO_DOWNLOAD=1): missing files are one error "
                            "listing each with its URL (docs/weights.md)")
        g.add_argument("--suffix", type=str, default="",
                       help="appended to --name, formatted with the options: e.g. {model}_{dataset_mode}")
        mark_run_shaping(g, "model")  # test.py takes the run's model unless --model is given

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
                       help="DataLoader worker processes that read and prepare the pairs (0 = read them in the "
                            "main process); it does not set torch's number of compute threads")
        g.add_argument("--max_dataset_size", type=float, default=math.inf,
                       help="use at most this many pairs (first in file order)")

        g = parser.add_argument_group("networks")
        if self.is_train:  # test.py loads trained weights: initialising them is a training option
            g.add_argument("--init_type", type=str, default="normal",
                           choices=["normal", "xavier", "kaiming", "orthogonal", "torch"],
                           help="weight initialisation (models may set their paper's default); torch: PyTorch's "
                                "own default init, left as it is")
            g.add_argument("--init_gain", type=float, default=0.02,
                           help="scale for normal, xavier and orthogonal initialisation")
        else:
            parser.set_defaults(init_type="normal", init_gain=0.02)  # the networks are built before loading

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
        g.add_argument("--torch_threads", type=int, default=0,
                       help="threads torch uses for CPU work (torch.set_num_threads); 0 = torch's default")

        g = parser.add_argument_group("display")
        g.add_argument("--display_id", type=int, default=0,
                       help="visdom window id; 0 disables visdom (the HTML page is always written)")
        g.add_argument("--display_server", type=str, default="http://localhost",
                       help="visdom server address; on this machine (localhost, 127.0.0.1) one is started when "
                            "none answers (python -m util.visdom_server, no network needed)")
        g.add_argument("--display_port", type=int, default=8097,
                       help="visdom server port (8097, visdom's and pix2pix's default, for every model)")
        g.add_argument("--display_env", type=str, default=None,
                       help="visdom environment (default: the run name)")
        g.add_argument("--display_winsize", type=int, default=256, help="display size of images (pixels)")
        return parser

    # --- parsing ---------------------------------------------------------------------------------------

    def build_parser(self, argv: list[str], run: RunRecord | None = None) -> argparse.ArgumentParser:
        """Base flags, then the dataset hook, then the model hook (so a model may set dataset defaults); with
        a `run`, its model (unless --model is typed) and its run-shaping values become the defaults."""
        # first pass without -h, so that `--model X --help` shows X's flags too
        base = self.initialize(HelpfulParser(add_help=False))
        known, _ = base.parse_known_args(argv)
        typed = explicit_dests(base, argv) if run is not None else set()
        self.model_name = known.model
        if run is not None and "model" in run.values and "model" not in typed:
            self.model_name = run.values["model"]
        dataset_mode = known.dataset_mode
        if run is not None and self.dataset_from_run and "dataset_mode" in run.values and "dataset_mode" not in typed:
            dataset_mode = run.values["dataset_mode"]
        parser = self.initialize(HelpfulParser(
            description=self.__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter))
        parser = data.get_option_setter(dataset_mode)(parser, self.is_train)
        parser = models.get_option_setter(self.model_name)(parser, self.is_train)
        self.own_defaults = {a.dest: a.default for a in parser._actions}
        self.own_parser_defaults = dict(parser._defaults)
        if run is not None:
            for action in self.run_default_actions(parser):
                if action.dest in run.values:
                    parser.set_defaults(**{action.dest: self.run_value(run, action)})
        return parser

    def run_default_actions(self, parser: argparse.ArgumentParser) -> list[argparse.Action]:
        """The options whose default becomes the run's recorded value (test.py: the run-shaping ones)."""
        return run_shaping_actions(parser)

    def restore_own_defaults(self, parser: argparse.ArgumentParser) -> None:
        """Put back the defaults the run's values replaced, so that option files mark real defaults."""
        for action in parser._actions:
            action.default = self.own_defaults.get(action.dest, action.default)
        parser._defaults.clear()
        parser._defaults.update(self.own_parser_defaults)

    @staticmethod
    def run_value(run: RunRecord, action: argparse.Action):
        text = run.values[action.dest]
        try:
            return value_from_text(action, text)
        except (ValueError, TypeError, SyntaxError):
            raise InputError(f"{run.folder / RUN_FILE}: cannot read {action.dest}: {text!r}") from None

    def run_record(self, argv: list[str]) -> RunRecord | None:
        """The recorded options of the run that --checkpoints_dir/--name point to (commands that read one)."""
        known, _ = self.initialize(HelpfulParser(add_help=False)).parse_known_args(argv)
        check_run_name(known.name)  # before reading anything under it
        if not self.reads_run_of(known):
            return None
        name = known.name
        if known.suffix:
            try:
                name = suffixed_name(name, known.suffix, vars(known))
            except InputError:
                return None  # the suffix names a model's option (or is malformed: derive() says so)
            check_run_name(name)
        return load_run_record(known.checkpoints_dir, name)

    def reads_run_of(self, known: argparse.Namespace) -> bool:
        """Whether this invocation (the base flags in `known`) reads its run's train_opt.txt."""
        return self.reads_run

    def check_against_run(self, opt: Options, parser: argparse.ArgumentParser, run: RunRecord,
                          explicit: set[str]) -> None:
        """Refuse typed run-shaping values that contradict the run; print one line naming those taken from it."""
        contradictions, taken, as_default = [], [], []
        for action in run_shaping_actions(parser):
            text = run.values.get(action.dest)
            if text is None:
                continue
            value = getattr(opt, action.dest)
            if action.dest in explicit:
                if not self.same_value(action.dest, value, text):
                    contradictions.append(f"{flag_of(action)} {text}, asked for {value}")
            elif str(self.own_defaults.get(action.dest)) != text:
                taken.append(f"{flag_of(action)} {text}")
            else:
                as_default.append(flag_of(action))
        if contradictions:
            raise InputError(f"{run.folder} was trained with " + "; ".join(contradictions))
        if taken or as_default:
            same = f" ({len(as_default)} more as their defaults: {' '.join(as_default)})" if as_default else ""
            print(f"options from the run {run.folder / RUN_FILE}: {' '.join(taken) or 'none changed'}{same}")

    @staticmethod
    def same_value(dest: str, value, text: str) -> bool:
        if dest == "model":  # names are case-insensitive
            return models.find_model_class(str(value)) is models.find_model_class(text)
        return str(value).strip() == text

    def sibling_options(self) -> list["BaseOptions"]:
        """Option classes of the other commands, to say where an unknown flag belongs (test.py: train.py's)."""
        return []

    def explain_unknown(self, extras: list[str], argv: list[str]) -> str:
        """The error for unrecognised arguments: where the first unknown flag belongs, if anywhere."""
        plain = f"unrecognized arguments: {' '.join(extras)}"
        flags = [t.split("=", 1)[0] for t in extras if t.startswith("--")]
        if not flags:
            return plain
        flag = flags[0]
        for other in self.sibling_options():
            if flag in _flags_of(other.build_parser(argv)):
                if other.is_train:
                    return f"{flag} is a training option (train.py), not an option of {self.entry}"
                return f"{flag} is an option of {other.entry}, not of {self.entry}"
        names = {n: models.find_model_class(n).__name__.removesuffix("Model") for n in models.model_names()}
        owners = _hook_owners(flag, names, models.get_option_setter, self.is_train)
        if owners:
            return f"{flag} is an option of --model {owners}, not of --model {self.model_name}"
        owners = _hook_owners(flag, {n: n for n in data.dataset_names()}, data.get_option_setter, self.is_train)
        if owners:
            return f"{flag} is an option of --dataset_mode {owners}"
        return plain

    def parse(self, argv: list[str] | None = None, echo: bool = True, check_folder: bool = True) -> Options:
        """Parse `argv` (default sys.argv), derive values, validate, print, freeze. Writes nothing: the entry
        point calls `save(opt)` once the data and the model have been built, so a failed start leaves every
        file as it was. `check_folder` runs the run-folder check now (train: no clash with another run)."""
        argv = list(sys.argv[1:] if argv is None else argv)
        self.run = self.run_record(argv)
        parser = self.build_parser(argv, self.run)
        opt, extras = parser.parse_known_args(argv, namespace=Options())
        if extras:
            raise InputError(self.explain_unknown(extras, argv))
        self.parser = parser
        explicit = explicit_dests(parser, argv)
        for dest in sorted(explicit & self.not_read.keys()):
            action = next(a for a in parser._actions if a.dest == dest)
            if getattr(opt, dest) == action.default:  # e.g. PATN's official test command: --display_id 0
                continue
            raise InputError(f"{flag_of(action)} {self.not_read[dest]}")
        if self.run is not None:
            self.check_against_run(opt, parser, self.run, explicit)
            self.restore_own_defaults(parser)
        self.explicit = explicit
        self.derive(opt)
        self.validate(opt)
        if check_folder:
            self.check_run_folder(opt, self.option_file(opt), self.format(opt, parser) + "\n")
        self.echo = echo  # printed by save(), once the data and the model are built: no dump before an error
        self.given = self.given_options(parser, argv)
        return opt.freeze()

    def derive(self, opt: Options) -> None:
        """Compute the values that follow from the flags; after this nothing assigns to `opt`."""
        opt.is_train = self.is_train
        check_run_name(opt.name)
        if opt.suffix:
            opt.name = suffixed_name(opt.name, opt.suffix, vars(opt))
            check_run_name(opt.name)
        opt.gpu_ids = gpu_list(opt.gpu_ids)
        if opt.gpu_ids and not torch.cuda.is_available():
            print(f"note: --gpu_ids {','.join(map(str, opt.gpu_ids))} asked for CUDA, which is not available; "
                  "running on CPU")
            opt.gpu_ids = []
        if opt.display_env is None:
            opt.display_env = opt.name
        # dataset first (it sets opt.data_format: market | fashion), then the model (paper defaults per format)
        data.find_dataset_class(opt.dataset_mode).derive_options(opt)
        trained = getattr(self, "run", None) and self.run.values.get("data_format")
        if trained and trained != opt.data_format:
            shown = "" if opt.dataset_mode == opt.data_format else f" (--dataset_mode {opt.dataset_mode})"
            doing = "resuming" if self.is_train else "testing"
            raise InputError(f"{self.run.folder} was trained on {trained}, {doing} on {opt.data_format}{shown}")
        models.find_model_class(opt.model).derive_options(opt)

    def validate(self, opt: Options) -> None:
        """Reject impossible combinations with one clear message."""
        if opt.batch_size < 1:
            raise InputError(f"--batchSize must be >= 1, got {opt.batch_size}")
        if opt.num_threads < 0:
            raise InputError(f"--num_threads must be >= 0, got {opt.num_threads}")
        for flag, least in (("torch_threads", 0), ("display_winsize", 1), ("max_dataset_size", 1)):
            if getattr(opt, flag) < least:
                raise InputError(f"--{flag} must be >= {least}, got {getattr(opt, flag)}")
        for flag, path in self.written_folders(opt):
            check_writable_folder(flag, path)
        run_folder = Path(opt.checkpoints_dir) / opt.name
        if run_folder.exists() and not run_folder.is_dir():
            raise InputError(f"--name {opt.name}: {run_folder} is a file, not a run folder; choose another --name")

    def written_folders(self, opt: Options) -> list[tuple[str, str]]:
        """(flag, folder) of the folders this command writes into, checked before any work."""
        return [("--checkpoints_dir", opt.checkpoints_dir)]

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

    @staticmethod
    def given_options(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
        """The option names set on the command line: argparse fills in a default only where the namespace
        lacks the name, so a namespace pre-filled with a marker keeps the marker for every flag not given."""
        unset = object()
        names = {action.dest for action in parser._actions if action.dest != argparse.SUPPRESS}
        namespace = parser.parse_args(argv, namespace=argparse.Namespace(**dict.fromkeys(names, unset)))
        return {name for name, value in vars(namespace).items() if value is not unset}

    @staticmethod
    def format_changed(opt: Options, parser: argparse.ArgumentParser, path: Path, given: set[str]) -> str:
        """The options that differ from their defaults (the model's and dataset's paper defaults included;
        options without a default count when given on the command line), one per line; all are in `path`."""
        changed = []
        for key, value in opt.public_items():
            default = parser.get_default(key)
            if key == "gpu_ids" and default is not None:
                default = gpu_list(default)  # lists, as the value (CPU: [] where CUDA is missing)
            if default == argparse.SUPPRESS or value == default or (default is None and key not in given):
                continue
            changed.append(f"{key:>25}: {value!s:<30}\t[default: {default}]")
        head = f"options: {len(changed)} differ from the defaults (all options: {path})"
        return "\n".join([head, *changed])

    def option_file(self, opt: Options) -> Path:
        return Path(opt.checkpoints_dir) / opt.name / self.opt_file_name

    def save(self, opt: Options) -> Path:
        """Write <checkpoints_dir>/<name>/<train|test>_opt.txt (atomically) for options from `parse`."""
        path = self.option_file(opt)
        atomic_write_text(path, self.format(opt, self.parser) + "\n")
        if getattr(self, "echo", False):
            print(self.format_changed(opt, self.parser, path, self.given))
        return path

    def check_run_folder(self, opt: Options, path: Path, text: str) -> None:
        """Hook: refuse to write into a folder that belongs to another run (train options override it)."""


def _flags_of(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string of `parser` that is a working flag (the refused official ones excluded)."""
    return {s for a in parser._actions if not isinstance(a, RefusedFlag) for s in a.option_strings}


def _hook_owners(flag: str, names: dict[str, str], setter, is_train: bool) -> str:
    """'DPTN, PATN': the plug-ins whose option hook adds `flag` (in this phase, else 'training'/'test' ones)."""
    here, other = [], []
    for name, label in names.items():
        for phase, found in ((is_train, here), (not is_train, other)):
            try:
                parser = setter(name)(HelpfulParser(add_help=False), phase)
            except Exception:  # a hook that needs the shared flags: it is not the owner we look for
                continue
            if flag in _flags_of(parser):
                found.append(label)
                break
    if here:
        return ", ".join(here)
    if other:
        return f"{', '.join(other)} ({'training' if not is_train else 'test'} only)"
    return ""
