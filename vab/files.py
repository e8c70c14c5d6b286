"""What a command may do to files: never overwrite one of its inputs, give written files
the permissions the user's umask gives, and turn a failed write from any library into one
line naming the file (see :func:`vab.utils.atomic_path`, the one writer every output uses).
"""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path
from typing import Iterable

from vab.errors import VabError

#: errno values of a write the user can fix (space, quota, permissions, read-only disk, size, a failing disk)
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EFBIG, errno.EIO}
#: how libraries that do not raise OSError (safetensors' Rust core, some C wrappers) word them
_WRITE_WORDS = {
    "no space left on device": os.strerror(errno.ENOSPC),
    "os error 28": os.strerror(errno.ENOSPC),
    "disk quota exceeded": os.strerror(errno.EDQUOT),
    "permission denied": os.strerror(errno.EACCES),
    "os error 13": os.strerror(errno.EACCES),
    "read-only file system": os.strerror(errno.EROFS),
    "file too large": os.strerror(errno.EFBIG),
}
_UMASK_LOCK = threading.Lock()


class WriteError(VabError):
    """An output could not be written (disk full, no permission ...): the next output would
    fail the same way, so a batch stops here."""


def write_problem(exc: BaseException) -> str | None:
    """The user-fixable reason a write failed ("No space left on device" ...), or None when
    `exc` is not such a failure."""
    if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS:
        return exc.strerror or os.strerror(exc.errno)
    text = str(exc).lower()
    for words, problem in _WRITE_WORDS.items():
        if words in text:
            return problem
    return None


def current_umask() -> int:
    """The process umask (read without changing it where /proc allows)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def apply_umask(path: Path, *, is_dir: bool = False) -> None:
    """Give `path` the mode a newly created file (0666) or folder (0777) gets under the
    umask: temporary files come out owner-only (mkstemp), outputs should not."""
    base = 0o777 if is_dir else 0o666
    os.chmod(path, base & ~current_umask())


def _identity(path: Path) -> tuple[str, tuple[int, int] | None]:
    """(resolved path, (device, inode) or None when it does not exist)."""
    try:
        st = os.stat(path)
        ident = (st.st_dev, st.st_ino)
    except OSError:
        ident = None
    return os.path.realpath(path), ident


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when `a` and `b` are one file: the same resolved path (symlinks followed) or
    the same device and inode (hard links)."""
    (ra, ia), (rb, ib) = _identity(Path(a)), _identity(Path(b))
    return ra == rb or (ia is not None and ia == ib)


class InputGuard:
    """The inputs of one command; :meth:`clashes` says which output would overwrite one."""

    def __init__(self, inputs: Iterable[str | os.PathLike]):
        self.paths: dict[str, Path] = {}
        self.inodes: dict[tuple[int, int], Path] = {}
        for item in inputs:
            path = Path(item)
            real, ident = _identity(path)
            self.paths.setdefault(real, path)
            if ident is not None:
                self.inodes.setdefault(ident, path)

    def clashes(self, output: str | os.PathLike) -> Path | None:
        """The input `output` would overwrite, or None."""
        real, ident = _identity(Path(output))
        if real in self.paths:
            return self.paths[real]
        return self.inodes.get(ident) if ident is not None else None

    def refuse(self, outputs: Iterable[str | os.PathLike], option: str = "--out") -> None:
        """Raise a one-line VabError if any of `outputs` is one of the inputs."""
        for output in outputs:
            hit = self.clashes(output)
            if hit is not None:
                raise VabError(f"{output}: is the input {hit}; vab never writes over an input (choose another {option})")


def refuse_input_folder(output: str | os.PathLike, source: str | os.PathLike, option: str) -> None:
    """VabError when the folder a command writes (`option`) is its input folder `source`
    (fine-tuning into the model directory it starts from would replace that model)."""
    InputGuard([source]).refuse([output], option)


def refuse_folder(path: str | os.PathLike, option: str) -> None:
    """Raise VabError when the file a command is told to write (`option`) is a folder."""
    if Path(path).is_dir():
        raise VabError(f"{path}: is a folder; {option} takes a file name")
