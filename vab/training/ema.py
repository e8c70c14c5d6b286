"""Exponential moving average of the weights (torch's AveragedModel with an EMA rule).

W_ema <- decay * W_ema + (1 - decay) * W after every optimizer step; the first
update copies the weights.  Buffers are not averaged but copied from the live
model, so constant or integer buffers stay valid.  The average is kept in the
parameters' own dtype and device (fp32 master weights under mixed precision).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_model, save_model
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

EMA_FILE = "ema.safetensors"


class EMA:
    """EMA copy of a module (deep-copied once); `module` is the averaged nn.Module."""

    def __init__(self, model: nn.Module, decay: float, device: torch.device | None = None):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.averaged = AveragedModel(
            model, device=device, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=False
        )
        self.averaged.requires_grad_(False)

    @property
    def module(self) -> nn.Module:
        return self.averaged.module

    @property
    def updates(self) -> int:
        return int(self.averaged.n_averaged.item())

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the current weights of `model` (the unwrapped training model) into the average."""
        self.averaged.update_parameters(model)
        for mine, theirs in zip(self.module.buffers(), model.buffers()):
            mine.copy_(theirs)

    def save(self, folder: str | Path) -> None:
        save_model(self.averaged, str(Path(folder) / EMA_FILE))

    def load(self, folder: str | Path) -> None:
        path = Path(folder) / EMA_FILE
        if not path.exists():
            raise FileNotFoundError(path)
        load_model(self.averaged, str(path))

