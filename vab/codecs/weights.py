"""What the codecs add to :mod:`vab.weights` for files a user points at with ``codec.path``.

Every message names the config key (``codec.path``) so the user knows what to fix.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from pathlib import Path
from typing import Iterator

import torch

from vab.errors import VabError

KEY = "codec.path"


def existing(path: str | Path) -> Path:
    """`codec.path` as a Path; a clear error when it does not exist."""
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise VabError(f"{KEY}={path}: file not found")
    return resolved


def check_sha256_prefix(path: Path, prefix: str, what: str) -> None:
    """Library checkpoints carry the start of their sha256 in the name (`name-<prefix>.th`)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if not digest.hexdigest().startswith(prefix):
        raise VabError(
            f"{KEY}={path}: not a valid {what} checkpoint: sha256 starts with "
            f"{digest.hexdigest()[:len(prefix)]}, the file name promises {prefix}"
        )


@contextlib.contextmanager
def seeded(seed: int = 0) -> Iterator[None]:
    """Random-init codecs must give the same tokens in every process (extraction vs
    generation), so build them under a fixed seed without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def scalar(path: str, state: dict[str, torch.Tensor], name: str) -> float:
    """A one-value tensor of a state file as a finite number, else a VabError."""
    t = state[name]
    if t.numel() != 1 or t.dtype == torch.bool or t.is_complex():
        raise VabError(f"{path}: {name} must be one number, got a {str(t.dtype).replace('torch.', '')} "
                       f"tensor of shape {tuple(t.shape)}")
    value = float(t.double().item())
    if not math.isfinite(value):
        raise VabError(f"{path}: {name} must be a finite number, got {value}")
    return value
