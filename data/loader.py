"""Reproducible data loading: per-sample generators, worker seeding and the training loader.

Every random choice a training sample makes (crop position, flip/rotation)
comes from :func:`sample_rng`, a generator seeded by ``(seed, epoch, index)``.
The batches of an epoch therefore depend only on the seed and the epoch
number: not on the number of workers, not on which worker served which
sample, and not on what happened in earlier epochs.  Training N epochs
straight and training N/2 epochs, saving, resuming and training N/2 more
give the same batches, provided the trainer calls :func:`set_epoch` with
the same epoch number before iterating the loader.

The sample order comes from a :class:`~torch.utils.data.DistributedSampler`
(also for one process), which shuffles with ``seed + epoch`` in the same way.

Workers leave SIGTERM and SIGINT to the main process (:func:`init_worker`):
a cluster stops a job by signalling all of its processes at once, and the
main process must outlive its workers to save ``model_latest.pth``.
"""
from __future__ import annotations

import random
import signal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator for sample ``index`` of ``epoch`` (PCG64 seeded by a hash of all three)."""
    if seed < 0 or epoch < 0 or index < 0:
        raise ValueError(f"seed, epoch and index must be non-negative, got {(seed, epoch, index)}")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence((int(seed), int(epoch), int(index)))))


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn``: seed ``numpy`` and ``random`` in a worker from its torch seed.

    DataLoader gives each worker the torch seed ``base_seed + worker_id``, with
    ``base_seed`` drawn from the loader's generator; this makes code that uses
    the global ``numpy``/``random`` state in a worker reproducible too.  The
    datasets here do not rely on it (see :func:`sample_rng`).
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def leave_stop_signals_to_main() -> None:
    """In a DataLoader worker: ignore SIGTERM and SIGINT, which the main process handles.

    SLURM (``scancel``, the time limit, pre-emption), ``timeout``, systemd and
    a terminal's Ctrl-C signal every process of the job, not only the main
    one.  A worker killed by that signal makes the main process fail with
    "DataLoader worker ... is killed by signal" before it can save; ignoring
    it keeps the workers serving batches until the main process, which also
    got the signal, saves at the next step and shuts them down itself.  A
    worker whose main process is gone still exits (PyTorch's watchdog), and
    SIGKILL, which a scheduler sends when its grace period is over, still
    ends everything.
    """
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)


def shutdown_workers(loader: DataLoader) -> None:
    """End the worker processes of ``loader`` (persistent ones included) now; nothing where it has none.

    A finished or stopped run must not leave them to ``multiprocessing``'s clean-up at exit: it stops
    workers with SIGTERM, which ours ignore (:func:`leave_stop_signals_to_main`), and would wait for
    them forever (an exception's traceback can keep the loader's iterator alive until then).  The next
    ``iter(loader)`` starts new workers.
    """
    batches = getattr(loader, "_iterator", None)
    shutdown = getattr(batches, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()
    loader._iterator = None


def init_worker(worker_id: int) -> None:
    """The training loader's ``worker_init_fn``: :func:`seed_worker`, then :func:`leave_stop_signals_to_main`."""
    seed_worker(worker_id)
    leave_stop_signals_to_main()


def loader_generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed`` for a DataLoader."""
    g = torch.Generator()
    g.manual_seed(int(seed))
    return g


class ResumableSampler(Sampler):
    """Wraps a sampler; ``skip`` drops the first indices of the next pass only (resuming mid-epoch)."""

    def __init__(self, sampler: Sampler):
        self.sampler = sampler
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __iter__(self):
        skip, self.skip = self.skip, 0
        for i, index in enumerate(self.sampler):
            if i >= skip:
                yield index

    def __len__(self) -> int:
        return len(self.sampler)


def build_train_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    seed: int = 0,
    num_workers: int = 0,
    world_size: int = 1,
    rank: int = 0,
    drop_last: bool = False,
    pin_memory: bool = False,
    persistent_workers: bool = False,
) -> DataLoader:
    """A shuffling loader whose batches depend only on ``seed`` and the epoch set by :func:`set_epoch`.

    With ``world_size > 1`` each rank reads its own shard (pass the rank and
    world size of the process group); with one process the shard is everything.
    The sampler is a :class:`ResumableSampler`: set ``loader.sampler.skip`` to
    resume an epoch part-way.
    """
    sampler = ResumableSampler(
        DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        pin_memory=pin_memory,
        persistent_workers=persistent_workers and num_workers > 0,
        worker_init_fn=init_worker,
        generator=loader_generator(seed),
    )


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Tell the loader's sampler and dataset which epoch comes next; call before iterating."""
    for obj in (loader.sampler, loader.dataset):
        if hasattr(obj, "set_epoch"):
            obj.set_epoch(epoch)
