"""The events world (`vab synth --world events`): a symbol is shown, three sounds follow in order.

A second world kept out of every choice of settings (issue 30), made after the words world had
been used to choose one: *what* to sound is again a sequence whose order matters, of sounds
that are not speech.

* Sound: class c is a sequence of three sound events out of four kinds: a low ``thump``, a
  high ``whistle``, a ``hiss`` and a ``buzz``.  The eight classes are four sequences and the
  same ones backwards (``thump whistle hiss`` and ``hiss whistle thump``), so which sounds play
  names a pair of classes, and only their order the class.  Every clip has its own version of
  each kind (pitch, brightness, band) and its own tempo.  Whenever the symbol appears the
  sequence starts, and it repeats after a short rest while the symbol stays.
* Picture: class c is a letter-like symbol (:mod:`vab.data.glyphs`, as in the words world, in
  the opposite order) in a random colour on a noisy background, at a random place and size for
  each appearance.
"""

from __future__ import annotations

import numpy as np

from vab.data.clip_spec import SAMPLE_RATE, ClipSpec, ObjectClass, contrasting_colours, fade, in_a_row, repeat_while_visible
from vab.data.glyphs import GLYPHS
from vab.data.shapes import harmonic_source, resonances, spectral_filter
from vab.errors import VabError

KINDS = ("thump", "whistle", "hiss", "buzz")
#: class c plays SEQUENCES[c]; classes 2k and 2k + 1 are the same sounds in opposite orders
SEQUENCES = (
    ("thump", "whistle", "hiss"), ("hiss", "whistle", "thump"),
    ("whistle", "buzz", "thump"), ("thump", "buzz", "whistle"),
    ("hiss", "thump", "buzz"), ("buzz", "thump", "hiss"),
    ("buzz", "hiss", "whistle"), ("whistle", "hiss", "buzz"),
)
EVENT_SECONDS = (0.16, 0.3)  # one event's length, by the clip's tempo
GAP_SECONDS = 0.04  # between events, at the slowest tempo
REST_SECONDS = 0.2  # between repeats of the sequence, at the slowest tempo
SHORTEST_SPAN = 1.2  # seconds a symbol stays visible at least (a sequence at the slowest tempo: 0.98 s)
RAMP = 0.008  # seconds of fade at each event's ends


def event_classes(classes: int = 8) -> list[ObjectClass]:
    """The first `classes` classes: glyph c with sequence c (colours are per clip: white here)."""
    if not 2 <= classes <= len(SEQUENCES):
        raise VabError(f"--classes must be between 2 and {len(SEQUENCES)}, got {classes}")
    glyphs = list(GLYPHS)[::-1]
    return [ObjectClass(f"{glyphs[c]}-{'-'.join(SEQUENCES[c])}", glyphs[c], (255, 255, 255), "-".join(SEQUENCES[c]))
            for c in range(classes)]


def clip_variation(rng: np.random.Generator) -> dict:
    """The random per-clip parameters (JSON-able): colours, tempo and each kind of event's sound."""
    return {
        **contrasting_colours(rng),
        "event": float(rng.uniform(*EVENT_SECONDS)),  # seconds per event
        "thump_hz": float(rng.uniform(55.0, 110.0)),
        "thump_decay": float(rng.uniform(0.04, 0.12)),  # seconds to fall by 1/e
        "whistle_hz": float(rng.uniform(1400.0, 3000.0)),
        "whistle_glide": float(rng.uniform(-0.3, 0.3)),  # octaves over the event
        "hiss_hz": float(rng.uniform(4000.0, 6500.0)),  # the noise band's centre
        "buzz_hz": float(rng.uniform(90.0, 180.0)),  # fundamental
        "buzz_formant": float(rng.uniform(600.0, 1200.0)),
        "tilt": float(rng.uniform(0.6, 1.4)),  # the buzz's spectral tilt exponent
    }


def event_sound(kind: str, v: dict, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """float64 ``[n]``: one event of `kind` as the clip `v` sounds it, ``v["event"]`` seconds long."""
    n = int(v["event"] * sample_rate)
    t = np.arange(n) / sample_rate
    if kind == "thump":  # a low, quickly decaying tone with a soft click
        x = np.sin(2 * np.pi * v["thump_hz"] * t) * np.exp(-t / v["thump_decay"])
        click = min(n, int(0.005 * sample_rate))
        x[:click] += 0.3 * rng.standard_normal(click)
    elif kind == "whistle":  # a pure tone high up, gliding a little
        f = v["whistle_hz"] * 2.0 ** (v["whistle_glide"] * t / max(t[-1], 1e-9))
        x = np.sin(2 * np.pi * np.cumsum(f) / sample_rate)
    elif kind == "hiss":  # a band of noise high in the spectrum
        x = spectral_filter(rng.standard_normal(n), sample_rate, resonances([v["hiss_hz"]], [1500.0]))
    elif kind == "buzz":  # harmonics of a low fundamental through one resonance
        src = harmonic_source(np.full(n, v["buzz_hz"]), sample_rate, v["tilt"])
        x = spectral_filter(src, sample_rate, resonances([v["buzz_formant"]], [400.0]))
    else:
        raise VabError(f"unknown sound event {kind!r} (expected one of {', '.join(KINDS)})")
    return x / max(np.abs(x).max(), 1e-9) * fade(n, sample_rate, RAMP)


def sequence_sound(kinds: tuple[str, ...], v: dict, rng: np.random.Generator,
                   sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """float64 ``[n]``: the events one after another, with short gaps, as the clip `v` sounds them."""
    gap = int(GAP_SECONDS * v["event"] / EVENT_SECONDS[1] * sample_rate)
    return in_a_row([event_sound(kind, v, rng, sample_rate) for kind in kinds], gap)


def render_audio(spec: ClipSpec, cls: ObjectClass, seconds: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """float32 ``[N]``: the class's sequence from the start of each visible span, repeated after a
    rest while the symbol stays; silence otherwise."""
    rng = np.random.default_rng(spec.seed)
    kinds = tuple(cls.sound.split("-"))
    rest = int(REST_SECONDS * spec.extra["event"] / EVENT_SECONDS[1] * sample_rate)
    return repeat_while_visible(spec, seconds, sample_rate, lambda: sequence_sound(kinds, spec.extra, rng, sample_rate),
                                rest)
