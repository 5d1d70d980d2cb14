"""The real embeddings DPIG's stage-II critics see: a fresh batch of training images for every critic step.

The official TF trainer pulls a new image batch from its shuffling queue for each critic step, so one iteration
of `--critic_iters` 5 sees five different real batches per factor. Here each critic step draws its batch by
(seed, rank, iteration, factor, step): pair indices uniformly with replacement and a mirror coin with
`--flip_prob`, so a resumed run draws exactly what an uninterrupted one would. The encoder is frozen (eval mode,
no grad), so an image's embedding never changes during the run:

- `fresh` loads and encodes every drawn batch (TF's cost);
- `cache` encodes every distinct source image (in both mirror states when flipping) once at the start and looks
  the same draws up, which gives the same embeddings up to float rounding at a fraction of the cost.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch
from torch.utils.data import default_collate
from tqdm import tqdm

from util.distributed import print0

CRITIC_REALS = ("fresh", "cache", "loader")  # --critic_reals; loader = reuse the loader batch (models/dpig_model.py)
Encoder = Callable[[dict], dict]  # a collated batch -> {factor: (B, d) float32 embeddings on the device}
DRAW_SALT = 0xC817  # keeps the critics' draws apart from the datasets' flip coins, which share the seed


class CriticRealDraws:
    """Real embeddings per critic step, drawn from `dataset` (a PairDataset: `pairs`, `item(index, flip)`)."""

    def __init__(self, dataset, encode: Encoder, batch_size: int, seed: int, rank: int, cache: bool,
                 show_progress: bool = True) -> None:
        if len(dataset) == 0:
            raise ValueError("the critics need a non-empty training set")
        self.dataset, self.encode, self.batch_size = dataset, encode, batch_size
        self.seed, self.rank = seed, rank
        self.flip_prob = float(getattr(dataset, "flip_prob", 0.0))
        self.cache: dict[str, torch.Tensor] | None = None
        if cache:
            self.build_cache(show_progress)

    def draw_indices(self, iteration: int, factor: int, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(pair indices, mirror flags) of one critic step's batch."""
        rng = np.random.default_rng([self.seed % 2**32, self.rank, iteration, factor, step, DRAW_SALT])
        indices = rng.integers(len(self.dataset), size=self.batch_size)
        flips = rng.random(self.batch_size) < self.flip_prob
        return indices, flips

    def draw(self, iteration: int, factor: int, step: int) -> dict[str, torch.Tensor]:
        """{factor name: (B, d)} real embeddings of critic step `step` of `iteration` for factor number `factor`."""
        indices, flips = self.draw_indices(iteration, factor, step)
        if self.cache is None:
            batch = default_collate([self.dataset.item(int(i), bool(f)) for i, f in zip(indices, flips)])
            return self.encode(batch)
        rows = torch.as_tensor(self.row_of_pair[indices])
        mirror = torch.as_tensor(flips.astype(np.int64))
        return {name: table[mirror.to(table.device), rows.to(table.device)] for name, table in self.cache.items()}

    def build_cache(self, show_progress: bool) -> None:
        """Encode every distinct source image once per mirror state: tables (states, images, d) on the device."""
        first_pair: dict[str, int] = {}
        for index, (source, _) in enumerate(self.dataset.pairs):
            first_pair.setdefault(source, index)
        row = {name: r for r, name in enumerate(first_pair)}
        self.row_of_pair = np.array([row[source] for source, _ in self.dataset.pairs], dtype=np.int64)
        states = (False, True) if self.flip_prob > 0 else (False,)
        jobs = [(index, flip) for flip in states for index in first_pair.values()]
        start = time.perf_counter()
        parts: list[dict[str, torch.Tensor]] = []
        for at in tqdm(range(0, len(jobs), self.batch_size), desc="DPIG: caching real embeddings", unit="batch",
                       disable=not show_progress, leave=False):
            chunk = jobs[at:at + self.batch_size]
            parts.append(self.encode(default_collate([self.dataset.item(i, f) for i, f in chunk])))
        flat = {name: torch.cat([p[name] for p in parts]) for name in parts[0]}
        self.cache = {name: t.view(len(states), len(first_pair), -1) for name, t in flat.items()}
        print0(f"DPIG: cached the real embeddings of {len(first_pair)} image(s) x {len(states)} mirror state(s) "
               f"in {time.perf_counter() - start:.1f} s")
