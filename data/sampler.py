"""A sampler whose order depends only on (seed, epoch), so a run can resume mid-epoch exactly."""
from __future__ import annotations

import math
from typing import Iterator

import torch
from torch.utils.data import Sampler


class ResumableSampler(Sampler[tuple[int, int]]):
    """Shuffled (or file-order) (index, epoch) items for one rank, reproducible from (seed, epoch).

    The epoch travels with each index so that random augmentation (the flip coin) can depend only on
    (seed, index, epoch), whichever worker process loads the item.

    Like DistributedSampler (pads to a multiple of the number of replicas, strides by rank) but also works
    with a single process and can start `skip` samples into the epoch, which is how --continue_train
    resumes mid-epoch. Set the epoch with `set_epoch(epoch, skip)` before each epoch.
    """

    def __init__(self, length: int, shuffle: bool, seed: int, num_replicas: int = 1, rank: int = 0) -> None:
        if length < 1:
            raise ValueError("cannot sample from an empty dataset")
        self.length = length
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.skip = 0
        self.per_rank = math.ceil(length / num_replicas)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Select the epoch's order; the first `skip` indices of this rank are left out (resume)."""
        self.epoch = epoch
        self.skip = skip

    def rank_indices(self) -> list[int]:
        """All indices of this rank for the current epoch (before skipping)."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.length, generator=generator).tolist()
        else:
            order = list(range(self.length))
        total = self.per_rank * self.num_replicas
        order += order[: total - len(order)]  # pad so every rank gets the same count
        return order[self.rank:total:self.num_replicas]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter([(index, self.epoch) for index in self.rank_indices()[self.skip:]])

    def __len__(self) -> int:
        return self.per_rank - self.skip
