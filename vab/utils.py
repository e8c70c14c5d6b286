"""Small shared helpers: devices, atomic file output, seeded random numbers."""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import torch

from vab.errors import VabError
from vab.files import WriteError, apply_umask, refuse_folder, write_problem


#: the largest batch of any command (`--batch-size`: videos or clips per model call; the config's
#: extract.batch_size): a bigger one is a typo, and one that does not fit in memory a crash long
#: after the command started
MAX_BATCH_SIZE = 4096
#: what `--device` (and the config keys extract.device, visual.device) accept
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"


def mps_available() -> bool:
    """True on an Apple GPU that torch can use."""
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and bool(mps.is_available())


def check_device(device: str, option: str = "--device") -> str:
    """`device` if this machine can run on it: ``auto``, ``cpu``, ``cuda`` / ``cuda:N`` with
    such a GPU present, ``mps`` on an Apple GPU.  Anything else is a one-line VabError naming
    `option` (a typo, a GPU this machine lacks, torch's internal devices such as ``meta``).
    Every command checks its `--device` here while its command line is parsed, before it
    writes anything (:func:`add_device_option`); :func:`pick_device` checks again, so a
    device named in a config or passed from Python is refused the same way."""
    text = str(device).strip()
    if text == "auto":
        return text
    try:
        parsed = torch.device(text)
    except (RuntimeError, ValueError, TypeError):
        raise VabError(f"{option} {device!r}: not a device (use {DEVICE_CHOICES})") from None
    kind, index = parsed.type, parsed.index
    if kind not in ("cpu", "cuda", "mps") or (kind != "cuda" and index not in (None, 0)):
        raise VabError(f"{option} {device!r}: not a device vab runs on (use {DEVICE_CHOICES})")
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise VabError(f"{option} {device}: not available on this machine (no CUDA GPU; use auto or cpu)")
        if index is not None and index >= count:
            raise VabError(f"{option} {device}: not available on this machine (it has {count} CUDA GPU(s): "
                           f"cuda:0 .. cuda:{count - 1})")
    if kind == "mps" and not mps_available():
        raise VabError(f"{option} {device}: not available on this machine (no Apple GPU; use auto or cpu)")
    return text


def _device_option(value: str) -> str:
    """argparse `type` of `--device` (:func:`check_device`): argparse turns the refusal into one
    line naming the option, before the command runs."""
    try:
        return check_device(value)
    except VabError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--device ")) from None


def _batch_size_option(value: str) -> int:
    """argparse `type` of `--batch-size`: an integer in [1, :data:`MAX_BATCH_SIZE`]."""
    try:
        size = int(value)
    except ValueError:
        size = None
    if size is None or not 1 <= size <= MAX_BATCH_SIZE:
        raise argparse.ArgumentTypeError(f"must be an integer in [1, {MAX_BATCH_SIZE}], got {value!r}")
    return size


def add_device_option(parser: Any, default: str | None = "cpu", help: str | None = None) -> None:
    """The `--device` option of every command and script, checked by one function
    (:func:`check_device`) while the command line is parsed, so before anything is written."""
    parser.add_argument("--device", default=default, type=_device_option,
                        help=help or f"{DEVICE_CHOICES} (default {default or 'auto'})")


def add_batch_size_option(parser: Any, default: int | None, help: str | None = None) -> None:
    """The `--batch-size` option of every command and script (1 .. :data:`MAX_BATCH_SIZE`,
    checked while the command line is parsed)."""
    parser.add_argument("--batch-size", default=default, type=_batch_size_option, help=help)


def pick_device(device: str = "auto", option: str = "--device") -> torch.device:
    """`auto` picks cuda, then mps, then cpu; anything else must pass :func:`check_device`
    (a one-line VabError naming `option` otherwise)."""
    if str(device).strip() == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(check_device(device, option))


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto `final` only if the block succeeds.

    A crash or exception inside the block leaves no half-written `final`.
    The temporary name keeps the final suffix so libraries that infer a
    format from it (PyAV, soundfile) still work.  The result gets the mode the
    user's umask gives (not mkstemp's owner-only 0600).  The data is fsynced before the
    rename and the folder after it, so after a power cut `final` is the old file or the
    whole new one.  A full disk, a quota or a permission error, raised by any library
    inside the block, becomes one :class:`vab.files.WriteError` naming `final`.
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
        sync_to_disk(tmp)  # the data is on the disk before the name says the file is complete
        if is_dir and final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync(final.parent)  # ... and the rename itself survives a power cut
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


def _fsync(path: Path) -> None:
    """fsync one file or folder; a file system that cannot sync folders (EINVAL) is left as is."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def sync_to_disk(path: Path) -> None:
    """fsync a file, or every file and folder under a folder (deepest first)."""
    if path.is_dir():
        for root, dirs, files in os.walk(path, topdown=False):
            for name in files:
                if not os.path.islink(os.path.join(root, name)):
                    _fsync(Path(root) / name)
            _fsync(Path(root))
    else:
        _fsync(path)


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


def check_output_file(path: str | os.PathLike, option: str = "--out") -> None:
    """Raise VabError unless `path` (the file `option` names) can be written: not a folder,
    in a folder that exists or can be made.  Creates nothing: call it before the work."""
    path = Path(path).expanduser()
    refuse_folder(path, option)
    check_writable_dir(path.absolute().parent, f"{option} {path.name}")


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
