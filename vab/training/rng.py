"""Random-number plumbing for exact resumption.

Every stream the engine owns is seeded from `derive_seed(seed, purpose, ...)`,
so it can be rebuilt from the config alone (data order per epoch) or saved
and restored (the objective's generator).  `isolated_rng` lets validation use
randomness without moving the training streams.
"""

from __future__ import annotations

import contextlib
import random
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from vab.errors import VabError


def derive_seed(seed: int, purpose: str, *keys: int) -> int:
    """A 63-bit seed from (seed, purpose, keys...), well mixed by numpy's SeedSequence."""
    entropy = [int(seed) & 0xFFFFFFFF, *(ord(c) for c in purpose), *(int(k) & 0xFFFFFFFF for k in keys)]
    low, high = np.random.SeedSequence(entropy).generate_state(2)
    return int((int(high) << 32 | int(low)) & 0x7FFF_FFFF_FFFF_FFFF)


def make_generator(device: torch.device, seed: int) -> torch.Generator:
    """A torch.Generator on `device` (CPU when the device has no generator type)."""
    try:
        gen = torch.Generator(device=device)
    except RuntimeError:
        gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def save_generator(gen: torch.Generator, path: str | Path) -> None:
    save_file({"state": gen.get_state()}, str(path))


def load_generator(gen: torch.Generator, path: str | Path) -> None:
    """Restore `gen` from a file written by :func:`save_generator`; VabError naming the file
    when it is damaged or holds no generator state."""
    try:
        gen.set_state(load_file(str(path))["state"])
    except Exception as exc:  # truncated or foreign file: safetensors / torch raise assorted types
        raise VabError(f"{path}: not a saved random-generator state ({type(exc).__name__}); "
                       "resume from an earlier checkpoint folder with --resume FOLDER") from None


@contextlib.contextmanager
def isolated_rng(device: torch.device) -> Iterator[None]:
    """Run a block (validation) without changing python, numpy and torch RNG states."""
    py_state = random.getstate()
    np_state = np.random.get_state()
    devices = []
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
