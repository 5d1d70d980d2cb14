"""Dataset registry: `--dataset_mode <name>` loads data/<name>_dataset.py::<Name>Dataset."""
from __future__ import annotations

import random
import signal
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader

from data.base_dataset import BaseDataset
from data.sampler import ResumableSampler
from util.registry import available_names, find_plugin_class

DATA_DIR = Path(__file__).resolve().parent
_EXCLUDED = ("base_dataset",)


def dataset_names() -> list[str]:
    """Every name `--dataset_mode` accepts."""
    return available_names(DATA_DIR, "_dataset", _EXCLUDED)


def find_dataset_class(name: str) -> type[BaseDataset]:
    """The BaseDataset subclass for `--dataset_mode name`; InputError listing the choices if unknown."""
    return find_plugin_class(name, "data", DATA_DIR, "_dataset", BaseDataset, _EXCLUDED, "--dataset_mode")


def get_option_setter(name: str) -> Callable:
    """The dataset's `modify_commandline_options(parser, is_train)` hook."""
    return find_dataset_class(name).modify_commandline_options


def create_dataset(opt) -> BaseDataset:
    """Build (and validate) the dataset named by `opt.dataset_mode` for `opt.phase`."""
    return find_dataset_class(opt.dataset_mode)(opt)


def _end_worker_quietly(signum: int, frame) -> None:
    """A worker's SIGTERM ends its loop the way torch's worker handles Ctrl-C: a clean exit (status 0)."""
    raise KeyboardInterrupt


def _init_worker(worker_id: int) -> None:
    """Seed numpy and random in each worker from torch's per-worker seed, and keep the stop signals from
    failing the run. Ctrl-C in a terminal (or a scheduler's SIGTERM to the job) reaches every process of the
    group; the main process then saves at the next step boundary. A worker ignores SIGINT (it keeps serving
    batches until then) and ends cleanly on SIGTERM (which is also how the main process ends its workers), so
    torch never reports a worker killed by a signal in the middle of that save."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _end_worker_quietly)
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def create_dataloader(opt, ctx, dataset: BaseDataset | None = None) -> DataLoader:
    """A DataLoader over `dataset` (built from `opt` if None), driven by the dataset's own sampler
    (`BaseDataset.make_sampler`, e.g. re-id's P x K identity sampler) or else a ResumableSampler.

    Training shuffles (unless --serial_batches) with an order fixed by (--seed, epoch), or draws
    --pairs_per_epoch random pairs with replacement, and drops the last partial batch unless --last_batch
    keep; testing keeps every pair in file order. Under torchrun each rank reads its own share;
    `--batchSize` is per process. Call `loader.sampler.set_epoch(epoch, skip)` before each epoch.
    """
    dataset = dataset if dataset is not None else create_dataset(opt)
    train = opt.is_train
    sampler = dataset.make_sampler(opt, ctx)
    if sampler is None:
        sampler = ResumableSampler(len(dataset), shuffle=train and not opt.serial_batches, seed=opt.seed,
                                   num_replicas=ctx.world_size, rank=ctx.rank,
                                   draws=opt.pairs_per_epoch if train else 0)
    workers = opt.num_threads
    return DataLoader(
        dataset,
        batch_size=opt.batch_size,
        sampler=sampler,
        num_workers=workers,
        drop_last=train and opt.last_batch == "drop",
        pin_memory=ctx.device.type == "cuda",
        persistent_workers=workers > 0,
        worker_init_fn=_init_worker,
        generator=torch.Generator().manual_seed(opt.seed + ctx.rank),
    )
