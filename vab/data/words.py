"""The spoken-words world (`vab synth --world words`): a symbol is shown, its word is spoken.

Made to be kept out of every choice of settings (issue 30) and to ask for more than the other
worlds: *what* to sound is a **sequence** whose order matters.

* Sound: class c is a word of three syllables (consonant + vowel: ``ba``, ``si``, ``mu``,
  ``ke``).  The eight words use two sets of three syllables, each in four orders
  (``ba-si-mu``, ``mu-si-ba``, ``si-mu-ba``, ``ba-mu-si`` ...), so which syllables sound never
  names the class: their order does.  Each clip has its own speaker: fundamental (85-300 Hz),
  vocal-tract length (formants x 0.85-1.2), speaking rate (x 0.7-1.4), voice tilt, breathiness
  and intonation.  Whenever the symbol appears the word is spoken from its start, and repeated
  after a short pause while it stays.  Voiced sounds are a glottal harmonic source through
  formant resonances, consonants are shaped noise bursts; everything is made offline with numpy.
* Picture: class c is a letter-like symbol (:mod:`vab.data.glyphs`) in a random colour on a
  noisy background of a random colour, at a random place and size for each appearance.

Timing is as in the other worlds (the sound plays exactly while the symbol is visible); each
visible span lasts at least :data:`SHORTEST_SPAN` seconds, so that a whole word fits in it.
"""

from __future__ import annotations

import numpy as np

from vab.data.clip_spec import SAMPLE_RATE, ClipSpec, ObjectClass, contrasting_colours, fade, repeat_while_visible
from vab.data.glyphs import GLYPHS
from vab.data.shapes import harmonic_source, resonances, spectral_filter
from vab.errors import VabError

#: syllable -> (consonant, vowel)
SYLLABLES = {"ba": ("b", "a"), "si": ("s", "i"), "mu": ("m", "u"), "ke": ("k", "e")}
#: class c says WORDS[c]: two sets of three syllables, each in four orders
WORDS = (
    ("ba", "si", "mu"), ("mu", "si", "ba"), ("si", "mu", "ba"), ("ba", "mu", "si"),
    ("ba", "si", "ke"), ("ke", "si", "ba"), ("si", "ke", "ba"), ("ke", "ba", "si"),
)
#: vowel formants and bandwidths (Hz), adult male averages (Peterson & Barney)
VOWELS = {
    "a": ((730.0, 1090.0, 2440.0), (90.0, 110.0, 170.0)),
    "i": ((270.0, 2290.0, 3010.0), (60.0, 100.0, 180.0)),
    "u": ((300.0, 870.0, 2240.0), (60.0, 90.0, 170.0)),
    "e": ((530.0, 1840.0, 2480.0), (70.0, 100.0, 160.0)),
}
#: seconds at speaking rate 1: each consonant, a vowel, the pause after a word
CONSONANT_SECONDS = {"b": 0.03, "s": 0.09, "m": 0.07, "k": 0.06}
VOWEL_SECONDS = 0.15
PAUSE_SECONDS = 0.2
SHORTEST_SPAN = 1.0  # seconds a symbol stays visible at least (a word at the slowest rate: 0.9 s)
RAMP = 0.01  # seconds of fade at each segment's ends


def word_classes(classes: int = 8) -> list[ObjectClass]:
    """The first `classes` classes: glyph c with word c (colours are per clip: white here)."""
    if not 2 <= classes <= len(WORDS):
        raise VabError(f"--classes must be between 2 and {len(WORDS)}, got {classes}")
    glyphs = list(GLYPHS)
    return [ObjectClass(f"{glyphs[c]}-{''.join(WORDS[c])}", glyphs[c], (255, 255, 255), "-".join(WORDS[c]))
            for c in range(classes)]


def clip_variation(rng: np.random.Generator) -> dict:
    """The random per-clip parameters (JSON-able): colours and the speaker."""
    colours = contrasting_colours(rng)
    pitch = float(rng.uniform(0.0, 1.0))
    return {
        **colours,
        "f0": float(85.0 * (300.0 / 85.0) ** pitch),  # Hz, log-uniform from a low male to a child
        # higher voices tend to come with shorter vocal tracts (higher formants)
        "formant_scale": float(0.85 + 0.35 * (0.6 * pitch + 0.4 * rng.uniform(0.0, 1.0))),
        "speed": float(rng.uniform(0.7, 1.4)),  # speaking rate factor
        "tilt": float(rng.uniform(0.7, 1.5)),  # spectral tilt exponent of the voice
        "breath": float(rng.uniform(0.0, 0.35)),  # share of aspiration noise in voiced sounds
        "intonation": float(rng.uniform(-0.3, 0.3)),  # f0 change over a word, octaves
    }


# ---------------------------------------------------------------------- sounds
def _noise(n: int, sample_rate: int, centre: float, width: float, rng: np.random.Generator) -> np.ndarray:
    x = spectral_filter(rng.standard_normal(n), sample_rate, resonances([centre], [width]))
    return x / max(np.abs(x).max(), 1e-9)


def _voiced(f0: np.ndarray, formants, v: dict, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """A voiced segment: harmonics of `f0` ``[n]`` plus breath noise through `formants` (centres, widths)."""
    centres, widths = formants
    src = harmonic_source(f0, sample_rate, v["tilt"])
    src = src / max(np.abs(src).max(), 1e-9) + v["breath"] * rng.standard_normal(len(f0))
    x = spectral_filter(src, sample_rate, resonances([c * v["formant_scale"] for c in centres], widths))
    return x / max(np.abs(x).max(), 1e-9)


def syllable_sound(syllable: str, v: dict, f0: float, rng: np.random.Generator,
                   sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """float64 ``[n]``: one syllable of the speaker `v` at fundamental `f0` (Hz); n follows the rate."""
    consonant, vowel = SYLLABLES[syllable]
    speed, fs = v["speed"], v["formant_scale"]
    nc = int(CONSONANT_SECONDS[consonant] / speed * sample_rate)
    nv = int(VOWEL_SECONDS / speed * sample_rate)
    if consonant == "b":  # a short voiced murmur, then a broadband release
        c = 0.25 * _voiced(np.full(nc, f0), ((250.0,), (100.0,)), v, rng, sample_rate)
        burst = min(nc, int(0.008 * sample_rate))
        c[nc - burst:] += 0.6 * _noise(burst, sample_rate, 1500.0 * fs, 2000.0, rng)
    elif consonant == "s":  # a hiss high in the spectrum
        c = 0.5 * _noise(nc, sample_rate, 5200.0 * fs, 1800.0, rng)
    elif consonant == "m":  # a nasal murmur: voiced, low, weak
        c = 0.4 * _voiced(np.full(nc, f0), ((250.0, 1200.0, 2200.0), (60.0, 300.0, 300.0)), v, rng, sample_rate)
    elif consonant == "k":  # closure (silence), a mid-frequency burst, aspiration
        c = np.zeros(nc)
        burst = int(0.6 * nc)
        c[burst:] = 0.5 * _noise(nc - burst, sample_rate, 2600.0 * fs, 1200.0, rng) * np.linspace(1.0, 0.3, nc - burst)
    else:  # pragma: no cover - SYLLABLES names only the consonants above
        raise VabError(f"unknown consonant {consonant!r}")
    glide = f0 * 2.0 ** (0.05 * np.sin(np.linspace(0.0, np.pi, nv)))  # a small rise and fall within the vowel
    vow = _voiced(glide, VOWELS[vowel], v, rng, sample_rate)
    return np.concatenate([c * fade(nc, sample_rate, RAMP), vow * fade(nv, sample_rate, RAMP)])


def word_sound(word: tuple[str, ...], v: dict, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """float64 ``[n]``: the word spoken once by the speaker `v` (intonation over its syllables)."""
    steps = np.linspace(0.0, 1.0, len(word))
    return np.concatenate([
        syllable_sound(s, v, v["f0"] * 2.0 ** (v["intonation"] * k), rng, sample_rate) for s, k in zip(word, steps)
    ])


def render_audio(spec: ClipSpec, cls: ObjectClass, seconds: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """float32 ``[N]``: the class's word from the start of each visible span, repeated after a
    pause while the symbol stays; silence otherwise."""
    rng = np.random.default_rng(spec.seed)
    word = tuple(cls.sound.split("-"))
    pause = int(PAUSE_SECONDS / spec.extra["speed"] * sample_rate)
    return repeat_while_visible(spec, seconds, sample_rate, lambda: word_sound(word, spec.extra, rng, sample_rate), pause)
