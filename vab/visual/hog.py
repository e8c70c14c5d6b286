"""Weights-free frame encoder that sees shape: multi-scale gradient-orientation histograms.

The ``pixels`` encoder averages colours on a grid, so it cannot tell a ring from a disc of
the same colour.  This one describes where edges are and which way they run (the idea of
HOG, Dalal & Triggs 2005), on a pyramid of grids so that both the layout (fine cells) and
the overall mix of orientations (coarse cells, insensitive to where the object is) are there:

1. frames are smoothed (3 x 3 box) and differentiated (central differences) per colour
   channel; each pixel keeps the channel with the strongest gradient, less ``NOISE`` (a
   gradient weaker than a step of 3 grey levels is sensor or compression noise, not shape);
2. the gradient's unsigned orientation (0-180 degrees) is split linearly between the two
   nearest of ``BINS`` orientation bins, weighted by its magnitude;
3. for every grid size g of the pyramid (``grid, grid // 2, ..., 1``) the ``BINS`` maps are
   summed over g x g cells and divided by the frame's total gradient magnitude (so colour
   and contrast do not matter), then square-rooted (Hellinger) and scaled to unit mean size.
   The total is floored at the gradient of one faint edge across the frame
   (:func:`energy_floor`), so a flat, dark or fading frame whose only gradients are noise
   gives near-zero features, as a constant frame does, instead of its noise at full strength.

Features: ``[F, BINS * sum(g * g)]``, e.g. 765 values for ``grid=8`` (8, 4, 2, 1).

``hog-colour`` appends the ``pixels`` colour grid at half the finest cell size
(``grid // 2``; 48 values for ``grid=8``): histograms alone do not know colour, which names
many real sources (fire, water, foliage) and the demo world's classes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vab.visual.pixels import PixelEncoder, colour_grid_features

BINS = 9  # orientation bins over 180 degrees
#: gradient magnitude per pixel (frames in [0, 1], after the 3 x 3 smoothing) taken off as noise:
#: a step of 3 grey levels (3 / 255, spread over 3 pixels by the smoothing).  One or two grey
#: levels of noise stay below it (per-pixel maxima 0.0028 and 0.0052 measured on 256 x 192
#: frames), while the synthetic worlds keep 92% of their gradient energy (docs/BENCHMARKS.md).
NOISE = 1.0 / 255
#: contrast of the faintest edge whose gradient counts in full: the total a frame is divided by is
#: at least that of one edge of 8 grey levels across the frame's longer side (:func:`energy_floor`);
#: the synthetic worlds' frames hold 50 or more times that (docs/BENCHMARKS.md)
EDGE_CONTRAST = 8.0 / 255


def pyramid(grid: int) -> list[int]:
    """Grid sizes ``grid, grid // 2, ..., 1`` (distinct, largest first)."""
    sizes = []
    g = int(grid)
    while g >= 1:
        sizes.append(g)
        g //= 2
    return sizes


def hog_dim(grid: int) -> int:
    """Feature size of :class:`HogEncoder` with `grid`."""
    return BINS * sum(g * g for g in pyramid(grid))


def colour_grid(grid: int) -> int:
    """Side of the colour grid ``hog-colour`` appends: half the finest hog cell grid, at least 1."""
    return max(1, int(grid) // 2)


def hog_colour_dim(grid: int) -> int:
    """Feature size of :class:`HogColourEncoder` with `grid`."""
    return hog_dim(grid) + 3 * colour_grid(grid) ** 2


def energy_floor(height: int, width: int) -> float:
    """The least total gradient magnitude a frame is normalised by: that of one straight
    edge of ``EDGE_CONTRAST`` across its longer side.  Smoothed and differentiated, a step of
    contrast c gives c/3, c/3, c/6, c/6 on the four pixels across it, each less ``NOISE``."""
    across = sum(max(EDGE_CONTRAST * k - NOISE, 0.0) for k in (1 / 3, 1 / 3, 1 / 6, 1 / 6))
    return max(height, width) * across + 1e-6


def orientation_maps(frames: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B, H, W, 3]`` -> float32 ``[B, BINS, H, W]``: gradient magnitude (less ``NOISE``)
    per orientation bin."""
    x = frames.permute(0, 3, 1, 2).float() / 255.0
    x = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    gx = (p[..., 1:-1, 2:] - p[..., 1:-1, :-2]) / 2
    gy = (p[..., 2:, 1:-1] - p[..., :-2, 1:-1]) / 2
    mag = torch.sqrt(gx * gx + gy * gy)
    best = mag.argmax(dim=1, keepdim=True)  # the strongest channel per pixel
    mag = (mag.gather(1, best) - NOISE).clamp_min(0.0)  # noise is no shape
    angle = torch.atan2(gy.gather(1, best), gx.gather(1, best)) % math.pi  # [B, 1, H, W] in [0, pi)
    pos = angle / math.pi * BINS - 0.5  # bin centres at (k + 0.5) * pi / BINS
    lo = torch.floor(pos)
    w_hi = pos - lo
    lo = lo.long() % BINS
    hi = (lo + 1) % BINS
    out = torch.zeros(x.shape[0], BINS, x.shape[2], x.shape[3])
    out.scatter_add_(1, lo, mag * (1 - w_hi))
    out.scatter_add_(1, hi, mag * w_hi)
    return out


class HogEncoder(PixelEncoder):
    """uint8 ``[F, H, W, 3]`` -> ``[F, hog_dim(grid)]`` (see the module docstring), float32 >= 0.
    Grid checks and batching are the pixel grid's; only the features of a batch differ."""

    name = "hog"

    @property
    def dim(self) -> int:
        return hog_dim(self.grid)

    def features(self, chunk: torch.Tensor) -> torch.Tensor:
        maps = orientation_maps(chunk.cpu())
        floor = energy_floor(maps.shape[2], maps.shape[3])
        total = maps.sum(dim=(1, 2, 3)).clamp_min(floor)[:, None, None, None]
        parts = []
        for g in pyramid(self.grid):
            cells = F.adaptive_avg_pool2d(maps, g) * (maps.shape[2] * maps.shape[3]) / (g * g)
            # share of the frame's gradient energy in each cell and bin, rooted, ~unit mean
            parts.append((cells / total * (BINS * g * g)).sqrt().flatten(1))
        return torch.cat(parts, dim=1)


class HogColourEncoder(HogEncoder):
    """uint8 ``[F, H, W, 3]`` -> ``[F, hog_colour_dim(grid)]``: the hog features, then the colour grid
    of :class:`PixelEncoder` at ``colour_grid(grid)`` (values in [-1, 1]); shape and colour."""

    name = "hog-colour"

    @property
    def dim(self) -> int:
        return hog_colour_dim(self.grid)

    def features(self, chunk: torch.Tensor) -> torch.Tensor:
        return torch.cat([super().features(chunk), colour_grid_features(chunk.cpu(), colour_grid(self.grid))], dim=1)
