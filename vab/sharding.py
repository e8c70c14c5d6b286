"""The inputs of an inference command split over the processes of `accelerate launch`.

    accelerate launch --num_processes 8 -m vab generate videos/ --checkpoint DIR --out out/

Every process computes the same ordered input list, then takes one contiguous block of
it (`Shard.take`): process r of W gets items ``[r * N // W, (r + 1) * N // W)``.  The
blocks are disjoint, cover the list, and depend only on the list, the rank and the
number of processes; concatenated in rank order they are the list again, so whatever
the main process merges comes out in input order, as with one process.  A plain run
(no launcher) is one process holding the whole list and needs no process group.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Sequence, TypeVar

import torch.distributed as dist
from accelerate import PartialState
from accelerate.utils import gather_object

from vab.utils import launched_processes, launched_without_gpu

T = TypeVar("T")

# Fast processes wait at the merge for the slowest one; a barrier must not give up first.
BARRIER_TIMEOUT = timedelta(hours=48)


@dataclass(frozen=True)
class Shard:
    """This process's place among `world_size` processes (rank 0 is the main one)."""

    rank: int = 0
    world_size: int = 1
    state: Any = None  # accelerate.PartialState when launched with several processes

    @classmethod
    def current(cls) -> "Shard":
        """The shard of this process: from Accelerate's state under `accelerate launch`
        (gloo on machines without a GPU), else the single whole shard."""
        if launched_processes() <= 1:
            return cls()

        state = PartialState(cpu=launched_without_gpu(), timeout=BARRIER_TIMEOUT)
        return cls(int(state.process_index), int(state.num_processes), state)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def name(self) -> str:
        """``rank-of-world`` (``00003-of-00008``), for per-process file names."""
        return f"{self.rank:05d}-of-{self.world_size:05d}"

    def bounds(self, n: int, unit: int = 1) -> tuple[int, int]:
        """[start, stop) of this process's block of `n` items.  With `unit` > 1 blocks hold
        whole groups of `unit` items (the batches one process would form, so batched
        results, which may differ in the last bits with the batch's company, are the same)."""
        groups = -(-n // unit)
        start, stop = self.rank * groups // self.world_size, (self.rank + 1) * groups // self.world_size
        return min(n, start * unit), min(n, stop * unit)

    def take(self, items: Sequence[T], unit: int = 1) -> list[T]:
        """This process's contiguous block of `items` (all of them with one process)."""
        start, stop = self.bounds(len(items), unit)
        return list(items[start:stop])

    def describe(self, n: int, what: str, unit: int = 1) -> str:
        """One line saying which block of `n` `what` this process took."""
        start, stop = self.bounds(n, unit)
        block = f"{what} {start + 1}-{stop}" if stop > start else f"no {what}"
        return f"process {self.rank} of {self.world_size}: {block} of {n}"

    def barrier(self) -> None:
        """Wait until every process gets here (nothing to wait for with one process)."""
        if self.state is not None:
            self.state.wait_for_everyone()

    def close(self) -> None:
        """Wait for every process, then take the process group down: a process that exits
        with the group still up can abort at exit ("terminate called without an active
        exception") while the main one is still merging.  Nothing to do with one process."""
        if self.state is None:
            return

        self.state.wait_for_everyone()
        if dist.is_initialized():
            dist.destroy_process_group()

    def gather(self, value: T) -> list[T]:
        """Every process's `value`, in rank order, on every process (a barrier too)."""
        if self.state is None:
            return [value]

        return list(gather_object([value]))

    def device(self, requested: str) -> str:
        """`auto` (and a bare `cuda`) mean this process's own device when launched
        (cuda:<local rank>), so processes do not all land on the first GPU; any other
        choice is kept."""
        if requested in ("auto", "cuda") and self.state is not None:
            return str(self.state.device)
        return requested
