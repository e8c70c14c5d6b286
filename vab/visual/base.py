"""The interface every frame encoder implements (docs/ARCHITECTURE.md, "Data contracts")."""

from __future__ import annotations

import abc

import numpy as np
import torch


class VisualEncoder(abc.ABC, torch.nn.Module):
    """uint8 RGB frames ``[F, H, W, 3]`` -> features ``FloatTensor [F, D]``."""

    name: str = ""

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """Feature size D."""

    @abc.abstractmethod
    def encode(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """``[F, H, W, 3]`` uint8 -> ``[F, D]`` float32 on the CPU.  Batched internally."""
