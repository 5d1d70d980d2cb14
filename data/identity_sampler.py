"""fast-reid's NaiveIdentitySampler (P identities x K instances per batch), resumable like ResumableSampler.

fast-reid (https://github.com/JDAI-CV/fast-reid, `fastreid/data/samplers/triplet_sampler.py`) draws P of the
identities still available without replacement; each identity's images are shuffled once per round (an
identity with fewer than K images is first drawn K times with replacement) and handed out K at a time; an
identity leaves the round when fewer than K of its images remain, and a new round starts when fewer than P
identities remain. Its stream is infinite; an "epoch" is len(dataset) // global batch iterations.

Here each epoch's batches are drawn afresh from (seed, epoch), so a run resumed mid-epoch sees exactly the
batches an uninterrupted one would (fast-reid's stream carries a partly used round into the next epoch; the
distribution of batches is the same). Under torchrun each global batch of P·world identities is cut into
per-rank parts of whole identities, so every rank's batch has the P x K structure.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterator

import numpy as np
from torch.utils.data import Sampler

from util.io import InputError


class NaiveIdentitySampler(Sampler[tuple[int, int, int]]):
    """(index, epoch, slot) items for one rank; `slot` is the item's position in the epoch's global order
    (unique even when an index repeats), so augmentation can depend on (seed, epoch, slot) alone."""

    def __init__(self, labels: list[int], batch_size: int, num_instances: int, seed: int,
                 num_replicas: int = 1, rank: int = 0) -> None:
        if num_instances < 1 or batch_size % num_instances:
            raise InputError(f"--batchSize {batch_size} must be a multiple of --num_instances {num_instances}")
        self.labels = list(labels)
        self.batch_size = batch_size
        self.num_instances = num_instances
        self.ids_per_batch = batch_size // num_instances * num_replicas  # P of the global batch
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.by_label: dict[int, list[int]] = defaultdict(list)
        for index, label in enumerate(self.labels):
            self.by_label[label].append(index)
        self.identities = sorted(self.by_label)
        if len(self.identities) < self.ids_per_batch:
            raise InputError(f"{len(self.identities)} training identities are fewer than the {self.ids_per_batch} "
                             f"a batch needs (--batchSize {batch_size} / --num_instances {num_instances}"
                             f"{f' x {num_replicas} processes' if num_replicas > 1 else ''})")
        self.iterations = len(self.labels) // (batch_size * num_replicas)  # fast-reid: len(dataset) // batch
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Select the epoch's batches; the first `skip` items of this rank are left out (resume)."""
        self.epoch = epoch
        self.skip = skip

    def global_batches(self) -> list[list[int]]:
        """The epoch's `iterations` global batches of P·world x K indices, fixed by (seed, epoch)."""
        rng = np.random.default_rng([self.seed % 2**32, self.epoch, 0x1D5A])
        k, p = self.num_instances, self.ids_per_batch
        batches: list[list[int]] = []
        while len(batches) < self.iterations:  # one round of fast-reid's sampler per pass
            available = list(self.identities)
            pools: dict[int, list[int]] = {}
            while len(available) >= p and len(batches) < self.iterations:
                batch = []
                for label in rng.choice(available, size=p, replace=False).tolist():
                    if label not in pools:
                        images = list(self.by_label[label])
                        if len(images) < k:
                            images = rng.choice(images, size=k, replace=True).tolist()
                        rng.shuffle(images)
                        pools[label] = images
                    batch += pools[label][:k]
                    del pools[label][:k]
                    if len(pools[label]) < k:
                        available.remove(label)
                batches.append(batch)
        return batches

    def rank_indices(self) -> list[int]:
        """This rank's indices for the epoch (before skipping): its whole-identity part of each batch."""
        return [index for _, index in self._rank_items()]

    def _rank_items(self) -> list[tuple[int, int]]:
        items = []
        start, stop = self.rank * self.batch_size, (self.rank + 1) * self.batch_size
        for number, batch in enumerate(self.global_batches()):
            base = number * len(batch)
            items += [(base + slot, batch[slot]) for slot in range(start, stop)]
        return items

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        return iter([(index, self.epoch, slot) for slot, index in self._rank_items()[self.skip:]])

    def __len__(self) -> int:
        return self.iterations * self.batch_size - self.skip
