"""The model directory format: ``config.yaml`` + ``model.safetensors`` (docs/ARCHITECTURE.md, "Data contracts").

Beside those two a model directory may hold only the files of :data:`MODEL_FILES`: the
fitted spectral codec, the model card, and what fine-tuning adds (a retrieval temperature,
a classification head).  That list is what `vab push` uploads and what is fetched for a
Hugging Face Hub id (:mod:`vab.checkpoint.hub`); nothing else travels with a model.

The weights file carries ``format: vab`` metadata and a SHA-256 of its tensors, because
safetensors itself does not notice altered tensor data.  Nothing here unpickles: a model
directory is data, read as YAML and safetensors only.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from vab.errors import VabError
from vab.filenames import (
    CARD_FILE, CODEC_FILE, CONFIG_FILE, HEAD_CONFIG, HEAD_WEIGHTS, TEMPERATURE_FILE, WEIGHTS_FILE,
)
from vab.weights import matching_dtypes, read_safetensors, state_differences, tensors_digest

#: the two files every model directory holds
REQUIRED_FILES = (CONFIG_FILE, WEIGHTS_FILE)
#: every file a model directory may hold: YAML, safetensors and the card, nothing that unpickles
MODEL_FILES = (*REQUIRED_FILES, CODEC_FILE, CARD_FILE, TEMPERATURE_FILE, HEAD_WEIGHTS, HEAD_CONFIG)
#: the ``format`` metadata of a model directory's weights file
FORMAT = "vab"


def weights_metadata(model_type: str, visual_dim: int, frame_rate: float, tensors: dict[str, torch.Tensor]) -> dict[str, str]:
    """The metadata :func:`read_weights` expects: the format, the model type, the two input
    sizes the tensors do not tell (D, audio tokens per second) and the tensors' SHA-256."""
    return {"format": FORMAT, "type": model_type, "visual_dim": str(visual_dim), "frame_rate": repr(float(frame_rate)),
            "sha256": tensors_digest(tensors)}


def read_weights(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """Metadata and tensors (CPU) of a model directory's weights file, checked against its digest."""
    metadata, tensors = read_safetensors(path)
    if metadata.get("format") != FORMAT:
        raise VabError(f"{path}: not a VAB weights file (no 'format: vab' metadata)")
    digest = metadata.get("sha256")
    if digest is not None and digest != tensors_digest(tensors):
        raise VabError(f"{path}: checksum mismatch, the weights were altered or corrupted")
    return metadata, tensors


def check_tensors(path: Path, expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`found` in the dtypes of `expected`; a VabError naming missing, unexpected, mis-shaped,
    wrongly typed or non-finite tensors (:func:`vab.weights.state_differences`)."""
    problems = state_differences(expected, found)
    if problems:
        raise VabError(f"{path}: does not match {CONFIG_FILE}: {problems}")
    return matching_dtypes(expected, found, str(path))


def metadata_number(path: Path, metadata: dict[str, str], key: str, kind: type, low: float) -> float | int:
    """Metadata `key` read as `kind`, finite and >= `low` (> 0 when low is 0), else a VabError."""
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
