"""Small shared helpers: devices, atomic file output, seeded random numbers."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import torch

from vab.errors import VabError
from vab.files import WriteError, apply_umask, write_problem


def pick_device(device: str = "auto") -> torch.device:
    """`auto` picks cuda, then mps, then cpu; anything else is passed to torch."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def check_device(device: str) -> None:
    """Raise VabError unless `device` (``--device``: auto, cpu, cuda, cuda:N, mps) names a device
    this machine has; commands call it before they create any output."""
    if device == "auto":
        return
    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise VabError(f"--device {device!r}: not a device (use auto, cpu, cuda, cuda:N or mps)") from None
    mps = getattr(torch.backends, "mps", None)
    if (kind == "cuda" and not torch.cuda.is_available()) or (kind == "mps" and not (mps and mps.is_available())):
        raise VabError(f"--device {device}: not available on this machine (try --device auto)")


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto `final` only if the block succeeds.

    A crash or exception inside the block leaves no half-written `final`.
    The temporary name keeps the final suffix so libraries that infer a
    format from it (PyAV, soundfile) still work.  The result gets the mode the
    user's umask gives (not mkstemp's owner-only 0600).  A full disk, a quota or a
    permission error, raised by any library inside the block, becomes one
    :class:`vab.files.WriteError` naming `final`.
    """
    final = Path(final)
    tmp: Path | None = None
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=f".tmp{final.suffix}", dir=final.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        if is_dir:
            tmp.unlink()
        yield tmp
        apply_umask(tmp, is_dir=is_dir)
        if is_dir and final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except Exception as exc:
        problem = None if isinstance(exc, VabError) else write_problem(exc)
        if problem is None:
            raise
        raise WriteError(f"{final}: cannot write ({problem})") from None
    finally:
        if tmp is not None and tmp.exists():
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink()


def check_writable_dir(path: str | os.PathLike, what: str = "output") -> None:
    """Raise VabError unless folder `path` exists and is writable, or could be created there
    (its nearest existing ancestor is a writable folder).  Creates nothing: call it before
    long work whose result goes to `path`."""
    target = Path(path).expanduser().absolute()
    probe = target
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise VabError(f"{target}: cannot write {what} here ({probe} is a file, not a folder)")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise VabError(f"{target}: cannot write {what} here (no write permission on {probe})")


def launched_processes() -> int:
    """Processes started by `accelerate launch` / torchrun (1 for a plain run)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched_without_gpu() -> bool:
    """Several processes launched on a machine with no accelerator device: Accelerate
    forms a (gloo) process group only when told to use the CPU (`Accelerator(cpu=True)`).
    Note that `accelerate launch --cpu` starts a single process; use `--multi_gpu`."""
    if launched_processes() <= 1:
        return False
    probe = getattr(torch, "accelerator", None)
    if probe is not None and hasattr(probe, "is_available"):
        return not bool(probe.is_available())
    return not torch.cuda.is_available()


def uniform(shape: tuple[int, ...], generator: torch.Generator | None = None,
            device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Uniform [0, 1) numbers drawn on the generator's device, returned on `device`."""
    source = generator.device if generator is not None else device
    values = torch.rand(shape, generator=generator, device=source, dtype=dtype)
    return values if device is None else values.to(device)
