"""Data-loader workers forked from a process that has used FFmpeg (vab/workers.py)."""

from __future__ import annotations

import gc

import pytest
import torch

from tests.mediagen import leave_ffmpeg_garbage
from vab.workers import start_workers


class _Numbers(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> int:
        return i


def _collect(_worker_id: int) -> None:
    gc.collect()  # what a worker's allocations may trigger at any moment


@pytest.mark.timeout(120)
def test_a_worker_that_collects_garbage_does_not_hang_on_the_parents_ffmpeg_objects():
    loader = torch.utils.data.DataLoader(_Numbers(), batch_size=2, num_workers=1, worker_init_fn=_collect)
    gc.disable()  # keep the garbage until the worker is forked
    try:
        leave_ffmpeg_garbage()
        batches = [b.tolist() for b in start_workers(loader)]
    finally:
        gc.enable()
    assert batches == [[0, 1], [2, 3]]


def test_only_a_loader_with_workers_pays_for_a_collection(monkeypatch):
    calls = []
    monkeypatch.setattr(gc, "collect", lambda *a: calls.append(a))
    assert list(start_workers([1, 2])) == [1, 2]
    assert [b.tolist() for b in start_workers(torch.utils.data.DataLoader(_Numbers(), batch_size=4))] == [[0, 1, 2, 3]]
    assert not calls
    loader = torch.utils.data.DataLoader(_Numbers(), batch_size=4, num_workers=1)
    assert [b.tolist() for b in start_workers(loader)] == [[0, 1, 2, 3]] and len(calls) == 1
