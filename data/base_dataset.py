"""BaseDataset: the plug-in interface of `--dataset_mode` (filled in by the data layer)."""
from __future__ import annotations

import argparse

from torch.utils.data import Dataset


class BaseDataset(Dataset):
    """A dataset of (source, target) pairs; `modify_commandline_options` adds the mode's flags."""

    @staticmethod
    def modify_commandline_options(parser: argparse.ArgumentParser, is_train: bool) -> argparse.ArgumentParser:
        return parser

    @staticmethod
    def derive_options(opt) -> None:
        """Fill values that depend on other options; must set opt.data_format to 'market' or 'fashion'.

        Called once inside parse(), before the model's derive_options.
        """

    def __init__(self, opt) -> None:
        self.opt = opt
