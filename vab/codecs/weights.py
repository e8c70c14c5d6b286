"""Reading library codec weights from files a user points at, with one-line errors.

Every message names the config key (``codec.path``) so the user knows what to fix.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from pathlib import Path
from typing import Any, Iterator

import torch

from vab.errors import VabError

KEY = "codec.path"


def short_reason(exc: BaseException, limit: int = 160) -> str:
    """First line of an exception message (at most `limit` characters), prefixed by its type."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def existing(path: str | Path) -> Path:
    """`codec.path` as a Path; a clear error when it does not exist."""
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise VabError(f"{KEY}={path}: file not found")
    return resolved


def read_weights(path: Path) -> Any:
    """A ``.safetensors`` file -> dict of tensors; anything else goes through
    ``torch.load(weights_only=True)`` (library-native ``.th`` / ``.pt`` / ``.pth``)."""
    if path.is_dir():
        raise VabError(f"{KEY}={path}: is a folder, expected a weights file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types
            raise VabError(f"{KEY}={path}: not a readable .safetensors file ({short_reason(exc)})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        message = str(exc)
        if "Weights only load failed" in message and ("global" in message.lower() or "Unsupported class" in message):
            raise VabError(
                f"{KEY}={path}: holds objects other than tensors, which vab does not unpickle "
                f"(torch.load(weights_only=True)); re-save its state dict as .safetensors"
            ) from None
        # torch's own message for a corrupt file is a page of unpickler advice
        reason = "" if "Weights only load failed" in message else f": {short_reason(exc)}"
        raise VabError(f"{KEY}={path}: cannot read weights (damaged, or not a torch weights file{reason})") from None


def load_state(model: torch.nn.Module, state: Any, path: Path, what: str) -> None:
    """Load `state` into `model` strictly; mismatches become one readable line."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise VabError(f"{KEY}={path}: not a valid {what} checkpoint: not a state dict of tensors")
    expected = model.state_dict()
    problems = []
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing:
        problems.append(f"{len(missing)} missing keys ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})")
    if unexpected:
        problems.append(
            f"{len(unexpected)} unexpected keys ({', '.join(unexpected[:3])}{', ...' if len(unexpected) > 3 else ''})"
        )
    for key, tensor in state.items():
        if key in expected and tensor.shape != expected[key].shape:
            problems.append(f"{key} has shape {list(tensor.shape)}, the model needs {list(expected[key].shape)}")
            break
    if problems:
        raise VabError(f"{KEY}={path}: not a valid {what} checkpoint: {'; '.join(problems)}")
    model.load_state_dict(state, strict=True)


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
