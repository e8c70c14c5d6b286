"""Class-balanced sampling: every epoch re-draws the training items with weights
``sum over a clip's labels of 1 / count(label)`` (paper 3.5), seeded by (seed, epoch)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from vab.data.dataset import VABDataset
from vab.errors import VabError
from vab.training.rng import derive_seed


def dataset_labels(dataset: VABDataset) -> np.ndarray:
    """Multi-hot labels ``[N, C]`` float32 of a VABDataset, read from the label column only."""
    out = np.zeros((len(dataset), dataset.num_classes), dtype=np.float32)
    columns = [table.column("labels").to_pylist() for table, _ in dataset.tables]
    for row, (n, i) in enumerate(dataset.index):
        ids = columns[n][i]
        if ids:
            out[row, dataset.tables[n][1][ids]] = 1.0
    return out



def balanced_weights(labels: np.ndarray) -> np.ndarray:
    """Per-clip weights ``[N]``: the sum over a clip's labels of 1 / (clips with that label)."""
    labels = np.asarray(labels, dtype=np.float64)
    counts = labels.sum(axis=0)
    inverse = np.divide(1.0, counts, out=np.zeros_like(counts), where=counts > 0)
    return labels @ inverse



class BalancedDataset(torch.utils.data.Dataset):
    """Class-balanced view of `base`: epoch e draws ``len(base)`` items with replacement,
    with :func:`balanced_weights`, seeded by (seed, e) only (deterministic, resumable).

    The engine's own sampler permutes positions 0..N-1; this wrapper maps them to the
    drawn items, so the engine stays unchanged."""

    def __init__(self, base: Any, labels: np.ndarray, seed: int = 0):
        self.base = base
        self.seed = int(seed)
        self.weights = torch.as_tensor(balanced_weights(labels), dtype=torch.float64)
        if len(self.weights) != len(base):
            raise ValueError(f"labels for {len(self.weights)} clips, data set has {len(base)}")
        if not (self.weights > 0).any():
            raise VabError("class-balanced sampling: no training clip has a label")
        self.epoch = -1
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        if int(epoch) == self.epoch:
            return
        self.epoch = int(epoch)
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)
        gen = torch.Generator().manual_seed(derive_seed(self.seed, "balanced", self.epoch))
        self.indices = torch.multinomial(self.weights, len(self.weights), replacement=True, generator=gen).tolist()

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, item: int) -> dict[str, Any]:
        return self.base[self.indices[item]]

