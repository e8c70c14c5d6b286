"""The tunes world (`vab synth --world tunes`): a symbol is shown, its four-note tune plays.

A third sequence world, made after the words and events worlds had both been used to choose
settings (issue 30), so that a choice made on them can be confirmed on a world kept out of it:
*what* to sound is a melody, pitch steps in an order, on an instrument and in a key that are
new in every clip.

* Sound: class c is a tune of four notes, :data:`TUNES` ``[c]`` in semitones above the clip's
  key note.  The eight classes are four tunes and the same ones backwards (a rising arpeggio
  and a falling one), so which notes sound names a pair of classes, and only their order the
  class.  Every clip has its own key (a fundamental of 155-250 Hz: no absolute pitch names a
  class), tempo and instrument (brightness, attack, how fast a note dies away, vibrato).
  Whenever the symbol appears the tune starts, and it repeats after a short rest while the
  symbol stays.
* Picture: class c is a letter-like symbol (:mod:`vab.data.glyphs`, glyph ``c + 3`` modulo 8) in a
  random colour on a noisy background, at a random place and size for each appearance.
"""

from __future__ import annotations

import numpy as np

from vab.data.clip_spec import SAMPLE_RATE, ClipSpec, ObjectClass, contrasting_colours, fade, in_a_row, repeat_while_visible
from vab.data.glyphs import GLYPHS
from vab.data.shapes import harmonic_source
from vab.errors import VabError

#: class c plays TUNES[c] (semitones above the key); classes 2k and 2k + 1 are the same notes in opposite orders
TUNES = (
    (0, 4, 7, 12), (12, 7, 4, 0),
    (0, 7, 3, 10), (10, 3, 7, 0),
    (0, 0, 9, 9), (9, 9, 0, 0),
    (5, 0, 12, 2), (2, 12, 0, 5),
)
KEY_HZ = 196.0  # the middle of the keys' range; each clip's key is up to 4 semitones away
NOTE_SECONDS = (0.14, 0.26)  # one note's length, by the clip's tempo
GAP_SECONDS = 0.03  # between notes, at the slowest tempo
REST_SECONDS = 0.25  # between repeats of the tune, at the slowest tempo
SHORTEST_SPAN = 1.3  # seconds a symbol stays visible at least (a tune at the slowest tempo: 1.13 s)
RAMP = 0.006  # seconds of fade at each note's ends


def tune_classes(classes: int = 8) -> list[ObjectClass]:
    """The first `classes` classes: glyph c + 3 (mod 8) with tune c (colours are per clip: white here)."""
    if not 2 <= classes <= len(TUNES):
        raise VabError(f"--classes must be between 2 and {len(TUNES)}, got {classes}")
    glyphs = list(GLYPHS)
    shown = [glyphs[(c + 3) % len(glyphs)] for c in range(classes)]
    return [ObjectClass(f"{shown[c]}-tune{c}", shown[c], (255, 255, 255), "-".join(map(str, TUNES[c])))
            for c in range(classes)]


def clip_variation(rng: np.random.Generator) -> dict:
    """The random per-clip parameters (JSON-able): colours, key, tempo and the instrument."""
    return {
        **contrasting_colours(rng),
        "key_hz": float(KEY_HZ * 2.0 ** (rng.uniform(-4.0, 4.0) / 12.0)),
        "note": float(rng.uniform(*NOTE_SECONDS)),  # seconds per note
        "tilt": float(rng.uniform(0.7, 2.0)),  # harmonic k at k^-tilt: bright (0.7) to mellow (2)
        "attack": float(rng.uniform(0.004, 0.04)),  # seconds to full loudness
        "decay": float(rng.uniform(0.06, 0.6)),  # seconds to fall by 1/e: plucked to held
        "vibrato": float(rng.uniform(0.0, 0.25)),  # semitones either way
        "vibrato_hz": float(rng.uniform(4.5, 6.5)),
    }


def note_sound(semitones: float, v: dict, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """float64 ``[n]``: one note `semitones` above the clip's key as the clip `v` plays it,
    ``v["note"]`` seconds long."""
    n = int(v["note"] * sample_rate)
    t = np.arange(n) / sample_rate
    f0 = v["key_hz"] * 2.0 ** ((semitones + v["vibrato"] * np.sin(2 * np.pi * v["vibrato_hz"] * t)) / 12.0)
    x = harmonic_source(f0, sample_rate, v["tilt"]) * np.minimum(1.0, t / v["attack"]) * np.exp(-t / v["decay"])
    return x / max(np.abs(x).max(), 1e-9) * fade(n, sample_rate, RAMP)


def tune_sound(notes: tuple[int, ...], v: dict, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """float64 ``[n]``: the notes one after another, with short gaps, as the clip `v` plays them."""
    gap = int(GAP_SECONDS * v["note"] / NOTE_SECONDS[1] * sample_rate)
    return in_a_row([note_sound(semitones, v, sample_rate) for semitones in notes], gap)


def render_audio(spec: ClipSpec, cls: ObjectClass, seconds: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """float32 ``[N]``: the class's tune from the start of each visible span, repeated after a
    rest while the symbol stays; silence otherwise."""
    notes = tuple(int(s) for s in cls.sound.split("-"))
    rest = int(REST_SECONDS * spec.extra["note"] / NOTE_SECONDS[1] * sample_rate)
    tune = tune_sound(notes, spec.extra, sample_rate)  # the same every time: no per-rendition noise
    return repeat_while_visible(spec, seconds, sample_rate, lambda: tune, rest)
