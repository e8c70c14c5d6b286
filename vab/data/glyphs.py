"""Symbols drawn as thick strokes (the `words` world's pictures, :mod:`vab.data.words`).

A glyph is a few line segments on the square ``[-1, 1]^2`` (x right, y down); drawn at a
centre and half size in pixels, a pixel belongs to the glyph when it lies within the stroke
half-width of one of its segments.  Letter-like shapes whose strokes differ in orientation
and arrangement, so that an encoder of edge orientations (hog) tells them apart.
"""

from __future__ import annotations

import numpy as np

#: name -> segments ((x0, y0), (x1, y1)) on [-1, 1]^2, y down
GLYPHS: dict[str, tuple[tuple[tuple[float, float], tuple[float, float]], ...]] = {
    "glyph-T": (((-1, -1), (1, -1)), ((0, -1), (0, 1))),
    "glyph-L": (((-1, -1), (-1, 1)), ((-1, 1), (1, 1))),
    "glyph-X": (((-1, -1), (1, 1)), ((-1, 1), (1, -1))),
    "glyph-Z": (((-1, -1), (1, -1)), ((1, -1), (-1, 1)), ((-1, 1), (1, 1))),
    "glyph-N": (((-1, 1), (-1, -1)), ((-1, -1), (1, 1)), ((1, 1), (1, -1))),
    "glyph-H": (((-1, -1), (-1, 1)), ((1, -1), (1, 1)), ((-1, 0), (1, 0))),
    "glyph-V": (((-1, -1), (0, 1)), ((0, 1), (1, -1))),
    "glyph-E": (((-1, -1), (-1, 1)), ((-1, -1), (1, -1)), ((-1, 0), (0.5, 0)), ((-1, 1), (1, 1))),
}
STROKE = 0.22  # stroke half-width, in units of the glyph's half size


def glyph_mask(name: str, height: int, half: int, cx: int, cy: int, width: int) -> np.ndarray:
    """bool ``[height, width]``: the pixels of glyph `name` centred at (`cx`, `cy`), half size `half`."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    x, y = (xx - cx) / half, (yy - cy) / half
    near = np.full((height, width), np.inf)
    for (x0, y0), (x1, y1) in GLYPHS[name]:
        dx, dy = x1 - x0, y1 - y0
        # distance from each pixel to the segment: project onto it, clamp to its ends
        t = np.clip(((x - x0) * dx + (y - y0) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
        near = np.minimum(near, np.hypot(x - (x0 + t * dx), y - (y0 + t * dy)))
    return near <= max(STROKE, 1.0 / half)
