"""Clip-level representations from the first `expert_layers` layers (paper 3.4-3.5).

Audio alone, video alone, or both jointly pass through the expert layers
(each modality through its own experts); the outputs are mean-pooled over
positions.  Tokens are never masked here.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from vab.errors import VabError
from vab.training.objective import prepare_batch, unwrap

MODES = ("audio", "visual", "audio-visual")


def pooled(model: torch.nn.Module, batch: dict[str, Any], mode: str) -> torch.Tensor:
    """Mean-pooled expert-layer output ``[B, W]`` for `mode` (audio | visual | audio-visual).

    `batch` holds ``tokens`` ``[B, K, T]`` and/or ``features`` ``[B, F, D]`` as the data set
    yields them (any dtype; moved to the model's device here); a mode needs only its own inputs."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
    core = unwrap(model)
    tokens, features, _ = prepare_batch(model, batch)
    needs = {"audio": ("tokens",), "visual": ("features",), "audio-visual": ("tokens", "features")}[mode]
    missing = [name for name, value in (("tokens", tokens), ("features", features)) if name in needs and value is None]
    if missing:
        raise VabError(f"{mode} embedding needs {' and '.join(missing)}, which this batch does not hold")
    if mode == "audio":
        h = core.encode_audio(tokens)
    elif mode == "visual":
        h = core.encode_visual(features)
    else:
        h = core.encode_joint(tokens, features)
    return h.mean(dim=1)


def embeddings(model: torch.nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-normalised (audio ``[B, W]``, video ``[B, W]``) embeddings: two separate passes."""
    return F.normalize(pooled(model, batch, "audio"), dim=-1), F.normalize(pooled(model, batch, "visual"), dim=-1)
