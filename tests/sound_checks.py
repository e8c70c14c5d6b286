"""Checks the synthetic worlds' tests share."""

from __future__ import annotations

import numpy as np

from vab import media
from vab.data.synthetic import visibility
from vab.demo import quality


def assert_sounds_while_visible(row, seconds: float, loud_share: float) -> None:
    """The written clip of truth `row` sounds while its object is visible (at least `loud_share`
    of the visible 20-ms frames above -45 dB: sequences have pauses) and is silent (median below
    -60 dB) where it is not, away from the edges."""
    energy = quality.frame_energy_db(media.read_audio(row.path, 16000, 0.0, seconds), 16000)
    vis = visibility(row.intervals, len(energy), quality.FRAME_RATE)
    assert np.mean(energy[vis] > -45) > loud_share, row.id
    edges = np.convolve(np.diff(vis.astype(int)) != 0, np.ones(7), mode="same") > 0
    quiet = ~vis & ~np.concatenate([[False], edges])
    if quiet.any():
        assert np.median(energy[quiet]) < -60, row.id

