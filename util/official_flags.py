"""Official command-line flags that a model mirrors but does not honour: refused by a table, with the reason.

A model that runs its official README commands verbatim must also answer the official flags it does not use:
accepting them and doing nothing would silently change an experiment. Each model lists such flags in one
table of `Refused` entries and calls `add_refused_flags`; using one is an InputError that says why. A flag
may allow the values that merely restate what the model does anyway (e.g. `--use_flip 0`).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

from util.io import InputError


@dataclass(frozen=True)
class Refused:
    """One official flag that is refused here.

    reason: what to do instead; ignored: True when the official code accepts the flag and ignores it (False:
    it does something this project does not support); phase: 'train', 'test' or 'both' (where the official
    parser defines it); default: the value the options record when the flag is not given (argparse.SUPPRESS:
    none); allowed: values (as typed) that are accepted because they change nothing.
    """

    reason: str
    ignored: bool = True
    phase: str = "both"
    default: object = argparse.SUPPRESS
    allowed: tuple[str, ...] = ()


class RefusedFlag(argparse.Action):
    """The argparse action of a `Refused` flag: raises InputError naming the flag and the reason."""

    def __init__(self, option_strings, dest, refused: Refused, code: str, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs="?", default=refused.default,
                         help=f"official flag, refused here: {refused.reason}")
        self.refused = refused
        self.code = code

    def __call__(self, parser, namespace, values, option_string=None):
        if values is not None and str(values) in self.refused.allowed:
            setattr(namespace, self.dest, type(self.default)(values) if self.default is not argparse.SUPPRESS
                    else values)
            return
        if self.refused.ignored:
            raise InputError(f"{option_string} is accepted but ignored by {self.code}, so it is refused here "
                             f"rather than silently ignored: {self.refused.reason}")
        shown = f"{option_string} {values}" if values is not None else option_string
        raise InputError(f"{shown} is not supported: {self.refused.reason}")


def add_refused_flags(group: argparse.ArgumentParser, table: dict[str, Refused], is_train: bool,
                      code: str) -> None:
    """Add every flag of `table` (name without dashes -> Refused) that the official parser defines in this
    phase; `code` names the official code in the messages (e.g. 'the official PATN code')."""
    phase = "train" if is_train else "test"
    for name, refused in table.items():
        if refused.phase in ("both", phase):
            group.add_argument(f"--{name}", action=RefusedFlag, refused=refused, code=code)
