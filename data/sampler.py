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

    With `draws` > 0 an epoch is `draws` indices drawn uniformly at random with replacement (PATN's epoch of
    4,000 random pairs, `--pairs_per_epoch`), again fixed by (seed, epoch).
    """

    def __init__(self, length: int, shuffle: bool, seed: int, num_replicas: int = 1, rank: int = 0,
                 draws: int = 0) -> None:
        if length < 1:
            raise ValueError("cannot sample from an empty dataset")
        if draws < 0:
            raise ValueError(f"draws must be >= 0, got {draws}")
        self.length = length
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.draws = draws
        self.epoch = 0
        self.skip = 0
        self.per_rank = math.ceil((draws or length) / num_replicas)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Select the epoch's order; the first `skip` indices of this rank are left out (resume)."""
        self.epoch = epoch
        self.skip = skip

    def rank_indices(self) -> list[int]:
        """All indices of this rank for the current epoch (before skipping)."""
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        if self.draws:
            order = torch.randint(self.length, (self.draws,), generator=generator).tolist()
        elif self.shuffle:
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
