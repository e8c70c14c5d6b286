"""Weight files: the one reader of tensors from disk, and the one report of how a state
dict differs from the module it is meant for.

Every place that reads weights goes through here: a model directory's
``model.safetensors`` (:mod:`vab.checkpoint`), library codec weights (``codec.path``,
:mod:`vab.codecs`) and downloaded scorer networks (:mod:`vab.evaluation.scorers`).
``.safetensors`` files are read with safetensors; any other file (a library's own
``.th`` / ``.pt`` / ``.pth``) with ``torch.load(weights_only=True)``, which unpickles
tensors and plain containers only, never arbitrary objects.  Each caller names the file
as its user knows it (`where`, e.g. ``codec.path=FILE``), so every message is one line
that says which file and what is wrong with it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from vab.errors import VabError

_UNREADABLE = "cannot read weights, the file is truncated or corrupted"


def first_line(exc: BaseException, limit: int = 160) -> str:
    """The first line of an exception message (at most `limit` characters), after its type."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def read_safetensors(path: str | os.PathLike, where: str | None = None) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """Metadata and tensors (CPU) of a safetensors file; a truncated or foreign file is a VabError."""
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except Exception as exc:  # SafetensorError, OSError: truncated or not safetensors at all
        raise VabError(f"{where or path}: {_UNREADABLE} ({first_line(exc)})") from None
    return metadata, tensors


def read_header(path: str | os.PathLike, where: str | None = None) -> tuple[dict[str, str], dict[str, tuple[int, ...]]]:
    """Metadata and tensor shapes of a safetensors file, without reading the tensors."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}, {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
    except Exception as exc:  # SafetensorError, OSError: truncated or not safetensors at all
        raise VabError(f"{where or path}: {_UNREADABLE} ({first_line(exc)})") from None


def read_weights(path: str | os.PathLike, where: str | None = None) -> Any:
    """What a weights file holds: a dict of tensors for ``.safetensors``, else whatever
    ``torch.load(weights_only=True)`` gives (tensors in plain containers).  `where` names
    the file in errors (default: the path)."""
    path = Path(path)
    where = where or str(path)
    if path.is_dir():
        raise VabError(f"{where}: is a folder, expected a weights file")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types
            raise VabError(f"{where}: {_UNREADABLE} ({first_line(exc)})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        message = str(exc)
        if "Weights only load failed" in message and ("global" in message.lower() or "Unsupported class" in message):
            raise VabError(f"{where}: holds objects other than tensors, which vab does not unpickle "
                           "(torch.load(weights_only=True)); re-save its state dict as .safetensors") from None
        # torch's own message for a corrupt file is a page of unpickler advice
        reason = "" if "Weights only load failed" in message else f": {first_line(exc)}"
        raise VabError(f"{where}: cannot read weights (damaged, or not a torch weights file{reason})") from None


def state_dict_in(blob: Any, where: str, nested: tuple[str, ...] = ("model", "state_dict")) -> dict[str, torch.Tensor]:
    """The state dict in what :func:`read_weights` gave: the blob itself, or its first
    `nested` entry that is a dict (released checkpoints wrap it with training state)."""
    for key in nested:
        if isinstance(blob, dict) and isinstance(blob.get(key), dict):
            blob = blob[key]
            break
    if not isinstance(blob, dict) or not all(isinstance(v, torch.Tensor) for v in blob.values()):
        raise VabError(f"{where}: not a state dict of tensors")
    return blob


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes: safetensors itself does not notice
    altered tensor data."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # 0-d too
    return h.hexdigest()


def state_differences(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> str:
    """How `found` differs from `expected` in names and shapes, as one phrase ("" when it
    does not): ``missing tensors: a, b; unexpected tensors: c; wrong shapes: d (3,) (expected (4,))``,
    at most five names of each kind."""

    def names(items: list[str]) -> str:
        return ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")

    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = [f"{k} {tuple(found[k].shape)} (expected {tuple(expected[k].shape)})"
              for k in sorted(set(expected) & set(found)) if tuple(found[k].shape) != tuple(expected[k].shape)]
    problems = [f"{kind}: {names(items)}" for kind, items in
                (("missing tensors", missing), ("unexpected tensors", unexpected), ("wrong shapes", shapes)) if items]
    return "; ".join(problems)


def matching_dtypes(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    """`found` with each tensor in the dtype of its `expected` twin: another float dtype
    (float16, bfloat16, float64 ...) is converted; any other dtype, or a non-finite value
    (NaN, inf) in a float tensor, is a VabError naming the tensor."""
    checked = dict(found)
    for name in sorted(set(expected) & set(found)):
        want, have = expected[name].dtype, found[name].dtype
        if have != want:
            if not (want.is_floating_point and have.is_floating_point):
                raise VabError(f"{where}: tensor {name} has dtype {str(have).replace('torch.', '')}, "
                               f"expected {str(want).replace('torch.', '')}")
            checked[name] = found[name].to(want)
        if want.is_floating_point and not bool(torch.isfinite(found[name]).all()):
            raise VabError(f"{where}: tensor {name} holds non-finite values (NaN or inf); the weights are damaged")
    return checked


def load_state(module: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> torch.nn.Module:
    """Load `state` into `module` strictly, in the module's dtypes; a name or shape mismatch is
    one VabError line, ``{where}: missing tensors: ...`` (:func:`state_differences`)."""
    own = module.state_dict()
    problems = state_differences(own, state)
    if problems:
        raise VabError(f"{where}: {problems}")
    module.load_state_dict(matching_dtypes(own, state, where), strict=True)
    return module
