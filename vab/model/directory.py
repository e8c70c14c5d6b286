"""The model directory format: ``config.yaml`` + ``model.safetensors`` (DESIGN section 6).

Beside those two a model directory may hold only the files of :data:`MODEL_FILES`: the
fitted spectral codec, the model card, and what fine-tuning adds (a retrieval temperature,
a classification head).  That list is what `vab push` uploads and what is fetched for a
Hugging Face Hub id (:mod:`vab.model.hub`); nothing else travels with a model.

The weights file carries ``format: vab`` metadata and a SHA-256 of its tensors, because
safetensors itself does not notice altered tensor data.  Nothing here unpickles: a model
directory is data, read as YAML and safetensors only.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from vab.codecs.spectral import STATE_FILE as CODEC_FILE  # a fitted spectral codec
from vab.errors import VabError

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"  # the model card (Hub metadata + what is known of the model)
TEMPERATURE_FILE = "retrieval.safetensors"  # retrieval fine-tuning's temperature (vab.finetuning.contrastive)
HEAD_WEIGHTS = "classifier.safetensors"  # a classification head (vab.finetuning.classification)
HEAD_CONFIG = "classifier.yaml"  # the head's mode, loss and label names
#: the two files every model directory holds
REQUIRED_FILES = (CONFIG_FILE, WEIGHTS_FILE)
#: every file a model directory may hold: YAML, safetensors and the card, nothing that unpickles
MODEL_FILES = (*REQUIRED_FILES, CODEC_FILE, CARD_FILE, TEMPERATURE_FILE, HEAD_WEIGHTS, HEAD_CONFIG)


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes: safetensors itself does not
    detect altered tensor data."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # 0-d too
    return h.hexdigest()


def read_weights(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """Metadata and tensors (CPU) of a safetensors file, checked against its digest."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except Exception as exc:  # SafetensorError, OSError: truncated or not safetensors at all
        raise VabError(f"{path}: cannot read weights, the file is truncated or corrupted ({_one_line(exc)})") from None
    if metadata.get("format") != "vab":
        raise VabError(f"{path}: not a VAB weights file (no 'format: vab' metadata)")
    digest = metadata.get("sha256")
    if digest is not None and digest != tensors_digest(tensors):
        raise VabError(f"{path}: checksum mismatch, the weights were altered or corrupted")
    return metadata, tensors


def tensor_differences(
    expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]
) -> tuple[list[str], list[str], list[str]]:
    """Sorted names (missing from `found`, unexpected in it, present in both with another shape)."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = [k for k in sorted(set(expected) & set(found)) if tuple(found[k].shape) != tuple(expected[k].shape)]
    return missing, unexpected, wrong


def check_tensors(path: Path, expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> None:
    """Raise a VabError naming missing, unexpected and mis-shaped tensors."""

    def names(items: list[str]) -> str:
        return ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")

    missing, unexpected, wrong = tensor_differences(expected, found)
    shapes = [f"{k} {tuple(found[k].shape)} (expected {tuple(expected[k].shape)})" for k in wrong]
    problems = []
    if missing:
        problems.append(f"missing tensors: {names(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors: {names(unexpected)}")
    if shapes:
        problems.append(f"wrong shapes: {names(shapes)}")
    if problems:
        raise VabError(f"{path}: does not match {CONFIG_FILE}: " + "; ".join(problems))


def check_values(path: Path, expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`found` with each tensor in the dtype of its `expected` twin: another float dtype
    (float16, bfloat16, float64 ...) is converted; any other dtype, or a non-finite value
    (NaN, inf) in a float tensor, is a VabError naming the tensor."""
    checked = dict(found)
    for name in sorted(set(expected) & set(found)):
        want, have = expected[name].dtype, found[name].dtype
        if have != want:
            if not (want.is_floating_point and have.is_floating_point):
                raise VabError(f"{path}: tensor {name} has dtype {str(have).replace('torch.', '')}, "
                               f"expected {str(want).replace('torch.', '')}")
            checked[name] = found[name].to(want)
        if want.is_floating_point and not bool(torch.isfinite(found[name]).all()):
            raise VabError(f"{path}: tensor {name} holds non-finite values (NaN or inf); the weights are damaged")
    return checked


def metadata_number(path: Path, metadata: dict[str, str], key: str, kind: type, low: float) -> float | int:
    """Metadata `key` read as `kind`, finite and >= `low` (> 0 when low is 0), else a VabError."""
    import math

    try:
        value = kind(float(metadata[key])) if kind is int else kind(metadata[key])
        ok = math.isfinite(value) and (value > low if low == 0 else value >= low)
    except (KeyError, ValueError, OverflowError):
        ok, value = False, metadata.get(key)
    if kind is int and ok and float(metadata[key]) != value:
        ok = False
    if not ok:
        raise VabError(f"{path}: metadata {key}={value!r} is not a {'positive' if low == 0 else f'>= {low}'} "
                       f"{'whole number' if kind is int else 'number'}")
    return value


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
