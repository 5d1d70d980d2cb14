"""TensorBoard event files for a training run (`--tensorboard`): losses, learning rates, throughput, visuals.

torch.utils.tensorboard needs the `tensorboard` package; options check for it before training starts,
so a missing package is one error at the command line, not a traceback mid-run.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from util.io import InputError


def check_tensorboard_installed() -> None:
    """Raise InputError when --tensorboard cannot work (called at option validation)."""
    if importlib.util.find_spec("tensorboard") is None:
        raise InputError("--tensorboard needs the tensorboard package: pip install 'tensorboard>=2.14,<3' "
                         "(or drop --tensorboard)")


class TensorBoardWriter:
    """Event files under `<run folder>/tensorboard/`; a resumed run appends a new file to the same folder."""

    def __init__(self, log_dir: str | Path) -> None:
        from torch.utils.tensorboard import SummaryWriter  # imported only when --tensorboard is on

        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def scalars(self, step: int, values: dict[str, float], group: str) -> None:
        """One scalar per name, tagged `<group>/<name>` (e.g. loss/G_L1, lr/G, speed/img_per_s)."""
        for name, value in values.items():
            self.writer.add_scalar(f"{group}/{name}", float(value), global_step=int(step))

    def images(self, step: int, images: dict[str, np.ndarray]) -> None:
        """uint8 (H, W, 3) images, tagged `visuals/<label>`."""
        for label, image in images.items():
            self.writer.add_image(f"visuals/{label}", image, global_step=int(step), dataformats="HWC")

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
