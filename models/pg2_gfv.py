"""PG2's global feature vectors (GFVs): export, decode (the RL-GAN-Net fork of PG2, kevinleewy/Human-Pose-Transfer
branch RL-GAN-NET). Filled in by the GFV work; PG2Model inherits this mixin."""
from __future__ import annotations

import argparse


def add_gfv_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """test.py flags of the GFV modes (--export_gfv, --decode_gfv_dir, ...)."""
    return parser


class PG2GFVMixin:
    """encode_gfv / decode_gfv and the test-time GFV modes of PG2Model."""

    def test_writer(self, dataset):
        return None
