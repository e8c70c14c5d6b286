"""The order of training examples: a fresh permutation per epoch, seeded by (seed, epoch), that can
start mid-epoch.  (Not to be confused with the token sampler, `vab.generation.sampling`.)"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Sampler

from vab.training.rng import derive_seed


class EpochSampler(Sampler[int]):
    """Indices of a map-style data set of `size` items.

    The order of epoch e depends only on (seed, e), so a resumed run sees the
    same order.  `set_position(epoch, start)` skips the first `start` indices of
    that epoch's order (the items already consumed by all processes); moving to
    another epoch with `set_epoch` starts at 0 again.  Under Accelerate the
    sampler feeds one batch sampler whose batches are dealt round-robin to the
    processes, so skipping `batches * batch_size * num_processes` indices
    resumes every process exactly where it stopped.
    """

    def __init__(self, size: int, seed: int, shuffle: bool = True):
        self.size = size
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        # Accelerate calls this at the start of every pass; same epoch keeps the offset.
        if epoch != self.epoch:
            self.epoch = epoch
            self.start = 0

    def set_position(self, epoch: int, start: int) -> None:
        self.epoch = epoch
        self.start = max(0, min(start, self.size))

    def order(self, epoch: int) -> torch.Tensor:
        """The full index order of `epoch`, [size] int64."""
        if not self.shuffle:
            return torch.arange(self.size)
        gen = torch.Generator().manual_seed(derive_seed(self.seed, "order", epoch))
        return torch.randperm(self.size, generator=gen)

    def __iter__(self) -> Iterator[int]:
        return iter(self.order(self.epoch)[self.start :].tolist())

    def __len__(self) -> int:
        return self.size - self.start
