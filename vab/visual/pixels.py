"""Weights-free frame encoder: each frame shrunk to a tiny colour grid.

Lets the whole system (demo, tests) run with no downloaded weights while still
carrying real visual information (colour layout) for the model to condition on.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from vab.visual.base import VisualEncoder


def as_frames(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Check and convert frames to a uint8 CPU/GPU tensor ``[F, H, W, 3]`` (no copy if possible)."""
    if isinstance(frames, np.ndarray):
        frames = np.ascontiguousarray(frames)  # torch rejects negative strides (e.g. BGR views)
    x = torch.as_tensor(frames)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"frames must be [F, H, W, 3], got shape {tuple(x.shape)}")
    if x.dtype != torch.uint8:
        raise ValueError(f"frames must be uint8 RGB, got {x.dtype}")
    return x


def colour_grid_features(chunk: torch.Tensor, grid: int) -> torch.Tensor:
    """uint8 ``[B, H, W, 3]`` -> ``[B, 3 * grid * grid]`` in [-1, 1]: area-averaged colours,
    channel-major ``[3, grid, grid]``."""
    f = F.adaptive_avg_pool2d(chunk.permute(0, 3, 1, 2).float(), grid)
    return (f / 127.5 - 1.0).flatten(1)


class PixelEncoder(VisualEncoder):
    """uint8 ``[F, H, W, 3]`` -> ``[F, grid * grid * 3]`` in [-1, 1].

    Each frame is area-averaged to ``grid x grid`` (every output cell is the mean
    of the pixels it covers), then flattened channel-major ``[3, grid, grid]``.
    """

    name = "pixels"

    def __init__(self, grid: int = 8, batch_size: int = 64):
        super().__init__()
        if grid < 1:
            raise ValueError(f"grid must be >= 1, got {grid}")
        self.grid = int(grid)
        self.batch_size = max(1, int(batch_size))

    @property
    def dim(self) -> int:
        return self.grid * self.grid * 3

    def features(self, chunk: torch.Tensor) -> torch.Tensor:
        """One batch: uint8 ``[B, H, W, 3]`` -> ``[B, dim]`` float32 on the CPU."""
        return colour_grid_features(chunk, self.grid).cpu()

    def encode(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = as_frames(frames)
        out = []
        with torch.inference_mode():
            # batches bound the float copy of full-size frames
            for chunk in x.split(self.batch_size):
                out.append(self.features(chunk))
        # concatenated outside inference mode: callers get an ordinary tensor
        return torch.cat(out) if out else torch.zeros(0, self.dim)
