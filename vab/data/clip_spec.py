"""What every synthetic world shares (:mod:`vab.data.synthetic`, :mod:`vab.data.shapes`): the
audio rate, the shapes drawn, a class, one clip's specification and the audio gate."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

SAMPLE_RATE = 16000  # Hz, the written audio
RAMP_SECONDS = 0.005  # fade in / out at each on / off switch (no clicks)
SHAPES = ("square", "disc", "triangle", "cross", "ring", "diamond", "hbar", "vbar")
MIN_CONTRAST = 90.0  # summed |RGB difference| between an object drawn in a random colour and its background


@dataclass(frozen=True)
class ObjectClass:
    """One class of the world: what is seen and what is heard."""

    name: str
    shape: str
    colour: tuple[int, int, int]
    sound: str


@dataclass
class ClipSpec:
    """Everything needed to render one clip (seconds, pixels)."""

    id: str
    split: str
    label: int
    intervals: list[tuple[float, float]]  # visible spans, seconds
    places: list[tuple[int, int, int]]  # per span: centre x, centre y, half size (pixels)
    loudness: float  # peak amplitude of the sound
    background: str  # plain | noisy
    background_level: int
    seed: int
    extra: dict = field(default_factory=dict)


def gate(intervals: list[tuple[float, float]], n: int, sample_rate: int) -> np.ndarray:
    """float32 ``[n]`` in [0, 1]: 1 inside the intervals (seconds), 5-ms linear ramps at the edges."""
    g = np.zeros(n, dtype=np.float32)
    ramp = max(1, int(RAMP_SECONDS * sample_rate))
    for t0, t1 in intervals:
        a, b = int(round(t0 * sample_rate)), min(n, int(round(t1 * sample_rate)))
        g[a:b] = 1.0
        up = np.linspace(0.0, 1.0, min(ramp, b - a), dtype=np.float32)
        g[a : a + len(up)] = np.minimum(g[a : a + len(up)], up)
        if b < n:
            g[b - len(up) : b] = np.minimum(g[b - len(up) : b], up[::-1])
    return g


def contrasting_colours(rng: np.random.Generator) -> dict[str, list[int]]:
    """A random object ``colour`` and ``background_colour`` (RGB lists) at least MIN_CONTRAST apart."""
    while True:
        colour = rng.integers(0, 256, size=3)
        background = rng.integers(0, 256, size=3)
        if np.abs(colour - background).sum() >= MIN_CONTRAST:
            return {"colour": [int(v) for v in colour], "background_colour": [int(v) for v in background]}


def fade(n: int, sample_rate: int, seconds: float) -> np.ndarray:
    """``[n]`` envelope rising and falling linearly over `seconds` at the ends (at most half each)."""
    r = max(1, min(n // 2, int(seconds * sample_rate)))
    env = np.ones(n)
    env[:r] = np.linspace(0.0, 1.0, r)
    env[n - r:] = np.linspace(1.0, 0.0, r)
    return env


def in_a_row(sounds: list[np.ndarray], gap: int) -> np.ndarray:
    """float64 ``[n]``: `sounds` one after another with `gap` samples of silence between them."""
    parts = [sounds[0]]
    for sound in sounds[1:]:
        parts += [np.zeros(gap), sound]
    return np.concatenate(parts)


def repeat_while_visible(spec: ClipSpec, seconds: float, sample_rate: int, play: Callable[[], np.ndarray],
                         rest: int) -> np.ndarray:
    """float32 ``[N]``: from the start of each visible span, ``play()`` (one rendition, float
    ``[n]``) again and again with `rest` samples between, cut at the span's end and gated;
    silence elsewhere; peak = ``spec.loudness``.  The sequence worlds' sound (words, events)."""
    n = int(round(seconds * sample_rate))
    x = np.zeros(n)
    for t0, t1 in spec.intervals:
        pos, end = int(round(t0 * sample_rate)), min(n, int(round(t1 * sample_rate)))
        while pos < end:
            w = play()[: end - pos]
            x[pos: pos + len(w)] = w
            pos += len(w) + rest
    x = x * gate(spec.intervals, n, sample_rate)
    return (x / max(np.abs(x).max(), 1e-9) * spec.loudness).astype(np.float32)
