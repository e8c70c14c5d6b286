"""The tunes world (`vab synth --world tunes`): a symbol is shown and its four-note tune plays, in a
key and on an instrument new in every clip, so only the steps between the notes name the class."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from vab.data import tunes
from vab.data.synthetic import plan_clips, world_classes
from vab.demo import quality
from vab.errors import VabError


def _pitch_hz(x: np.ndarray, sample_rate: int = 16000) -> float:
    """The fundamental of a steady harmonic sound: the strongest autocorrelation lag in 2-12 ms."""
    x = x - x.mean()
    ac = np.correlate(x, x, "full")[len(x) - 1:]
    lo, hi = int(sample_rate / 500), int(sample_rate / 80)
    return sample_rate / (lo + int(np.argmax(ac[lo:hi])))


def test_each_tune_has_its_reverse_so_only_the_order_names_the_class():
    classes = world_classes(8, "tunes")
    assert len({c.shape for c in classes}) == len({c.sound for c in classes}) == 8
    notes = [tuple(int(s) for s in c.sound.split("-")) for c in classes]
    assert all(b == a[::-1] for a, b in zip(notes[0::2], notes[1::2]))
    assert len({frozenset(n) for n in notes}) == 4  # the notes name a pair, the order the class
    with pytest.raises(VabError, match="between 2 and 8"):
        world_classes(1, "tunes")


def test_the_notes_sound_at_their_steps_above_the_clips_key():
    specs = plan_clips(8, {"train": 16}, 4.0, 8.0, 48, 48, 0, "tunes")
    for key in ("key_hz", "note", "tilt", "decay", "colour"):
        assert len({json.dumps(s.extra[key]) for s in specs}) == len(specs), key
    v = dict(specs[0].extra, vibrato=0.0, decay=10.0, note=0.2)
    root, fifth = _pitch_hz(tunes.note_sound(0, v)), _pitch_hz(tunes.note_sound(7, v))
    assert root == pytest.approx(v["key_hz"], rel=0.03)
    assert fifth / root == pytest.approx(2 ** (7 / 12), rel=0.03)


def test_spans_fit_a_whole_tune_and_the_judge_hears_a_tune_from_its_reverse():
    specs = plan_clips(2, {"train": 48}, 3.0, 8.0, 48, 48, 1, "tunes")
    assert all(s.background == "noisy" for s in specs)
    assert all(b - a >= tunes.SHORTEST_SPAN - 1e-9 for s in specs for a, b in s.intervals)
    slow = dict(specs[0].extra, note=tunes.NOTE_SECONDS[1])
    assert len(tunes.tune_sound(tunes.TUNES[0], slow)) / 16000 <= tunes.SHORTEST_SPAN
    classes = world_classes(2, "tunes")
    same = replace(specs[0], intervals=[(0.0, 3.0)])
    spectra = [quality.log_mel(tunes.render_audio(same, c, 3.0), 16000).mean(axis=0) for c in classes]
    assert np.corrcoef(*spectra)[0, 1] > 0.95  # the same notes: long-term spectra alike
    wavs = [tunes.render_audio(s, classes[s.label], 3.0) for s in specs]
    labels = [s.label for s in specs]
    judge = quality.SoundClassifier(16000).fit(wavs[:32], labels[:32])
    assert quality.agreement(judge.predict(wavs[32:]), labels[32:]) >= 0.9

