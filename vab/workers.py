"""Data-loader worker processes forked from a process that may have used FFmpeg (PyAV)."""

from __future__ import annotations

import gc
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def start_workers(loader: Iterable[T]) -> Iterator[T]:
    """``iter(loader)``, whose worker processes (a DataLoader's ``num_workers``) are forked
    now, after this process's unreachable objects are freed.  A forked worker would otherwise
    free them itself, and an FFmpeg object with threads of its own (a used `av.AudioResampler`'s
    filter graph) then waits forever in the child for threads that exist only in the parent
    (found with PyAV 18.1.1; tests/test_workers.py)."""
    if getattr(loader, "num_workers", 0) > 0:
        gc.collect()
    return iter(loader)
