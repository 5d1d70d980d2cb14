"""`--dataset_mode gfv --gfv_dir DIR`: the GFVs of a PG2 export (util/gfv_store.py), one item per manifest row.

What the latent GAN (`--model LGAN`, docs/models/lgan.md) trains on. Items: `gfv` (C, H, W) float32 as stored (the
model normalises; no flip or other augmentation), `index` (the manifest row) and the pair's `source_name` /
`target_name`. A store exported from test pairs is refused for training unless --allow_test_gfv: KLW's l-GAN
trained on a folder of train and test GFVs together (kevinleewy/Human-Pose-Transfer branch RL-GAN-NET).
"""
from __future__ import annotations

import argparse
import math

import torch

from data.base_dataset import BaseDataset
from util.gfv_store import GFVStore
from util.io import InputError


class GfvDataset(BaseDataset):
    """The rows of one GFV store, in manifest order."""

    @staticmethod
    def modify_commandline_options(parser: argparse.ArgumentParser, is_train: bool) -> argparse.ArgumentParser:
        g = parser.add_argument_group("GFV store (--dataset_mode gfv)")
        g.add_argument("--gfv_dir", type=str, default=None,
                       help="a GFV export folder (manifest.csv, gfv_meta.json, the arrays): test.py --model PG2 "
                            "--export_gfv writes one per phase")
        g.add_argument("--allow_test_gfv", action="store_true",
                       help="train on a store whose gfv_meta.json says phase test (refused by default: the test "
                            "pairs must stay unseen)")
        return parser

    @staticmethod
    def derive_options(opt) -> None:
        if opt.gfv_dir is None:
            raise InputError("--dataset_mode gfv needs --gfv_dir: a GFV export folder (test.py --model PG2 "
                             "--export_gfv)")
        opt.data_format = "gfv"
        opt.gfv_arrays = True  # a model that needs only the rows (LGAN at test time) sets this to False

    def __init__(self, opt) -> None:
        super().__init__(opt)
        self.store = GFVStore(opt.gfv_dir)
        if opt.is_train and self.store.phase == "test" and not opt.allow_test_gfv:
            raise InputError(f"{self.store.folder}: gfv_meta.json says phase test; training on test GFVs leaks the "
                             "test pairs into the model. Export the train pairs (--phase train), or pass "
                             "--allow_test_gfv to train on them anyway")
        self.rows = self.store.rows
        if math.isfinite(opt.max_dataset_size):
            self.rows = self.rows[: max(int(opt.max_dataset_size), 0)]
        if not self.rows:
            raise InputError(f"{self.store.folder}: no GFVs to read (count {len(self.store)}, --max_dataset_size "
                             f"{opt.max_dataset_size})")
        self.read_arrays = getattr(opt, "gfv_arrays", True)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.store.shape

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, item: int | tuple[int, int]) -> dict:
        index = item[0] if isinstance(item, tuple) else item
        source, target, _ = self.rows[index]
        out = {"index": index, "source_name": source, "target_name": target}
        if self.read_arrays:
            out["gfv"] = torch.from_numpy(self.store[index].astype("float32", copy=False))
        return out
