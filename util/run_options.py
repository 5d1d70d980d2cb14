"""What a trained run remembers: its `train_opt.txt`, and the options that shape its networks.

A model's (or a dataset's) option hook marks the flags that change parameter shapes or the input tensor layout
with `mark_run_shaping(group, "ngf", ...)`. test.py and scripts.transfer then take those flags from
`<checkpoints_dir>/<name>/train_opt.txt` unless they are typed, and refuse a typed value that contradicts the
run (options/base_options.py does the reading); checkpoints built with other shapes never load silently.
"""
from __future__ import annotations

import argparse
import ast
from dataclasses import dataclass
from pathlib import Path

RUN_FILE = "train_opt.txt"
_MARK = "run_shaping"  # attribute set on the argparse Action of a run-shaping flag


def read_option_file(text: str) -> dict[str, str]:
    """Parse an options file written by `BaseOptions.format` back into {name: value as text}."""
    values = {}
    for line in text.splitlines():
        if ": " in line and not line.startswith("-"):
            key, value = line.split(": ", 1)
            values[key.strip()] = value.split("\t[default:", 1)[0].strip()
    return values


def mark_run_shaping(container, *dests: str) -> None:
    """Declare the flags of `dests` (argparse dests, already added to `container`, a parser or one of its
    groups) as run-shaping: a trained run's value is used at test time and a different typed value is refused."""
    actions = {a.dest: a for a in container._actions}  # a group shares its parser's list of actions
    for dest in dests:
        if dest not in actions:
            raise ValueError(f"mark_run_shaping: no option with dest {dest!r} has been added")
        setattr(actions[dest], _MARK, True)


def run_shaping_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The actions marked by `mark_run_shaping`, in the order they were added."""
    return [a for a in parser._actions if getattr(a, _MARK, False)]


def flag_of(action: argparse.Action) -> str:
    """The spelling used in messages: the first long option string."""
    longs = [s for s in action.option_strings if s.startswith("--")]
    return (longs or action.option_strings)[0]


@dataclass(frozen=True)
class RunRecord:
    """A run's recorded options: `folder` (checkpoints_dir/name) and {option: value as text}."""

    folder: Path
    values: dict[str, str]


def load_run_record(checkpoints_dir: str, name: str) -> RunRecord | None:
    """The run's train_opt.txt, or None when the folder has none (a fresh name, or bare imported weights)."""
    folder = Path(checkpoints_dir) / name
    path = folder / RUN_FILE
    if not path.is_file():
        return None
    return RunRecord(folder, read_option_file(path.read_text()))


def value_from_text(action: argparse.Action, text: str):
    """The parsed value of `action` that `BaseOptions.format` printed as `text` (its str())."""
    if text == "None":
        return None
    if action.nargs == 0:  # store_true / store_false / store_const: the recorded constant or default
        for candidate in (action.const, action.default):
            if str(candidate) == text:
                return candidate
        return ast.literal_eval(text)
    convert = action.type if callable(action.type) else str
    if action.nargs in (None, "?"):
        return convert(text)
    return [convert(item) for item in ast.literal_eval(text)]


def explicit_dests(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The dests that `argv` sets itself (through any alias or abbreviation), not by a default."""
    saved_defaults = dict(parser._defaults)
    saved = [(action, action.default) for action in parser._actions]
    try:
        parser._defaults.clear()
        for action, _ in saved:
            action.default = argparse.SUPPRESS
        namespace, _ = parser.parse_known_args(argv, argparse.Namespace())
    finally:
        parser._defaults.update(saved_defaults)
        for action, default in saved:
            action.default = default
    return set(vars(namespace))
