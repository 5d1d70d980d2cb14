"""A history of generated images for the discriminator (Shrivastava et al., CVPR 2017; pix2pix's ImagePool).

While the pool holds fewer than `size` images, every incoming image is stored and passed on. Once it is full,
each incoming image is, with probability 0.5, swapped for a stored one chosen uniformly (the stored one is
passed on, the new one takes its place), else passed on itself. The draws use Python's `random`, in the
official order (uniform, then randint), so a seeded run repeats them; the pool's contents belong to the
training state (`state_dict`), so a resumed run continues with the same history.
"""
from __future__ import annotations

import random

import torch


class ImagePool:
    """`query(images)` -> images for the discriminator; size 0 passes every batch through unchanged."""

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"the pool size must be >= 0, got {size}")
        self.size = size
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) detached images -> (B, C, H, W), each from the batch or from the history."""
        if self.size == 0:
            return images
        out = []
        for image in images.unbind(0):
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image)
                out.append(image)
            elif random.uniform(0, 1) > 0.5:
                index = random.randint(0, self.size - 1)
                out.append(self.images[index].clone())
                self.images[index] = image
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state_dict(self) -> dict:
        return {"size": self.size, "images": [image.detach().cpu().clone() for image in self.images]}

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        if state["size"] != self.size:
            raise ValueError(f"the saved image pool holds up to {state['size']} images, this one {self.size}")
        self.images = [image.to(device) for image in state["images"]]
