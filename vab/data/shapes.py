"""The harder synthetic world (`vab synth --world shapes`): the class is the *shape* drawn.

Beside the demo world (:mod:`vab.data.synthetic`, where each class has its own colour and a
clean fixed sound), this world removes the easy cues a real video does not give:

* Picture: class c is shape c; its colour, the background colour (plain or noisy) and, for
  each appearance, its size and position are random per clip.  A grid of mean colours
  cannot name the class; an encoder must see edges and their orientations.
* Sound: each class is a *family* of sounds whose pitch, speed, timbre (spectral tilt,
  formant scale) and loudness are drawn per clip.  Four classes are speech-like vowels
  (a glottal pulse source at a random, gliding pitch through the vowel's formant filter,
  in syllables at a random rate) and so share the same band (100 Hz - 4 kHz); the others
  are a whispered fricative, plucked notes, a whistle and knocks, each varying in the same ways.
  Everything is made offline with numpy.

Timing is as in the demo world: the sound plays exactly while the shape is visible.  Frames
are drawn by :func:`vab.data.synthetic.render_frames` with the clip's colours (``spec.extra``).
"""

from __future__ import annotations

import numpy as np

from vab.data.clip_spec import SAMPLE_RATE, SHAPES, ClipSpec, ObjectClass, contrasting_colours, gate
from vab.errors import VabError

#: class c pairs SHAPES[c] with SOUND_FAMILIES[c]
SOUND_FAMILIES = ("vowel-a", "vowel-i", "vowel-u", "vowel-ae", "fricative", "pluck", "whistle", "knock")
#: formant frequencies (Hz) and bandwidths of the vowels (adult male averages, Peterson & Barney)
VOWELS = {
    "vowel-a": ((730.0, 1090.0, 2440.0), (90.0, 110.0, 170.0)),
    "vowel-i": ((270.0, 2290.0, 3010.0), (60.0, 100.0, 180.0)),
    "vowel-u": ((300.0, 870.0, 2240.0), (60.0, 90.0, 170.0)),
    "vowel-ae": ((660.0, 1720.0, 2410.0), (80.0, 110.0, 170.0)),
}


def shape_classes(classes: int = 8) -> list[ObjectClass]:
    """The first `classes` classes: shape c with sound family c (colour is per clip: white here)."""
    if not 2 <= classes <= len(SHAPES):
        raise VabError(f"--classes must be between 2 and {len(SHAPES)}, got {classes}")
    return [ObjectClass(f"{SHAPES[c]}-{SOUND_FAMILIES[c]}", SHAPES[c], (255, 255, 255), SOUND_FAMILIES[c])
            for c in range(classes)]


# ---------------------------------------------------------------------- per-clip variation
def clip_variation(rng: np.random.Generator) -> dict:
    """The random per-clip parameters of a clip of this world (JSON-able)."""
    colours = contrasting_colours(rng)
    return {
        **colours,
        "pitch": float(rng.uniform(0.0, 1.0)),  # 0..1 within the family's pitch range
        "speed": float(rng.uniform(0.7, 1.5)),  # syllable / note rate factor
        "tilt": float(rng.uniform(0.6, 1.6)),  # spectral tilt exponent of harmonic sources
        "formant_scale": float(rng.uniform(0.88, 1.15)),  # vocal tract length
        "glide": float(rng.uniform(-0.25, 0.25)),  # pitch change over the clip, octaves
    }


# ---------------------------------------------------------------------- sounds
def _syllables(t: np.ndarray, rate: float, rng: np.random.Generator, floor: float = 0.35) -> np.ndarray:
    """Amplitude envelope of syllables at about `rate` per second, between `floor` and 1."""
    n_syl = int(np.ceil(t[-1] * rate)) + 2
    starts = np.cumsum(rng.uniform(0.7, 1.3, size=n_syl) / rate) - 1.0 / rate
    env = np.zeros_like(t)
    for s in starts:
        d = (t - s) * rate
        inside = (d >= 0) & (d < 1)
        env[inside] = np.maximum(env[inside], np.sin(np.pi * d[inside]) ** 0.7)
    return floor + (1.0 - floor) * env


def harmonic_source(f0: np.ndarray, sample_rate: int, tilt: float, top: float = 7000.0) -> np.ndarray:
    """Harmonics of a time-varying fundamental `f0` ``[N]`` (Hz), amplitude k^-tilt, up to `top` Hz."""
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    x = np.zeros_like(f0)
    for k in range(1, int(top / f0.min()) + 1):
        x += np.where(k * f0 < top, np.sin(k * phase) * k ** -tilt, 0.0)
    return x


def spectral_filter(x: np.ndarray, sample_rate: int, gain) -> np.ndarray:
    """`x` through the zero-phase filter whose gain at frequency f (Hz array) is `gain(f)`."""
    spec = np.fft.rfft(x)
    return np.fft.irfft(spec * gain(np.fft.rfftfreq(len(x), 1.0 / sample_rate)), len(x))


def resonances(centres, widths):
    """The gain function ``gain(f)`` (f in Hz) of a sum of resonances at `centres` with bandwidths `widths` (Hz)."""
    def gain(f):
        return sum(1.0 / (1.0 + ((f - c) / (w / 2)) ** 2) for c, w in zip(centres, widths))
    return gain


def family_sound(family: str, n: int, v: dict, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """float32 ``[n]`` at unit peak: one clip's sound of `family` with the variation `v`."""
    t = np.arange(n) / sample_rate
    glide = 2.0 ** (v["glide"] * t / max(t[-1], 1e-9))
    if family in VOWELS:
        centres, widths = VOWELS[family]
        f0 = (95.0 + 150.0 * v["pitch"]) * glide * (1 + 0.03 * np.sin(2 * np.pi * 5.0 * t))
        src = harmonic_source(f0, sample_rate, v["tilt"])
        x = spectral_filter(src, sample_rate, resonances([c * v["formant_scale"] for c in centres], widths))
        x = x * _syllables(t, 3.5 * v["speed"], rng)
    elif family == "fricative":  # a whispered "sh": noise through one broad resonance
        centre = (2200.0 + 1400.0 * v["pitch"]) * v["formant_scale"]
        x = spectral_filter(rng.standard_normal(n), sample_rate, resonances([centre], [900.0 * v["tilt"]]))
        x = x * _syllables(t, 3.0 * v["speed"], rng)
    elif family == "pluck":  # decaying harmonic notes, each at a random pitch within the clip's range
        x = np.zeros(n)
        rate = 5.0 * v["speed"]
        base = 180.0 + 250.0 * v["pitch"]
        start = 0.0
        while start < t[-1]:
            a = int(start * sample_rate)
            start += rng.uniform(0.8, 1.2) / rate
            b = min(n, int(start * sample_rate))
            local = t[a:b] - t[a]
            f0 = np.full(b - a, base * 2.0 ** (rng.integers(0, 8) / 12.0))
            x[a:b] = harmonic_source(f0, sample_rate, v["tilt"] + 0.4, top=5000.0) * (0.3 + 0.7 * np.exp(-local / 0.12))
    elif family == "whistle":  # a sine with slow glides and vibrato
        f = (900.0 + 900.0 * v["pitch"]) * glide * 2.0 ** (0.3 * np.sin(2 * np.pi * 0.8 * v["speed"] * t))
        f = f * (1 + 0.01 * np.sin(2 * np.pi * 6.0 * t))
        x = np.sin(2 * np.pi * np.cumsum(f) / sample_rate)
    elif family == "knock":  # low decaying noise bursts
        rate = 6.0 * v["speed"]
        x = np.zeros(n)
        centre = (250.0 + 300.0 * v["pitch"]) * v["formant_scale"]
        burst = spectral_filter(rng.standard_normal(n), sample_rate, resonances([centre], [300.0]))
        start = 0.0
        env = np.full(n, 0.3)
        while start < t[-1]:
            local = t - start
            env = np.maximum(env, np.where(local >= 0, np.exp(-np.clip(local, 0, None) / 0.06), 0.0))
            start += rng.uniform(0.8, 1.2) / rate
        x = burst * env
    else:
        raise VabError(f"unknown sound family {family!r}")
    return (x / max(np.abs(x).max(), 1e-9)).astype(np.float32)


def render_audio(spec: ClipSpec, cls: ObjectClass, seconds: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """float32 ``[N]``: the clip's sound while the shape is visible, silence otherwise."""
    rng = np.random.default_rng(spec.seed)
    n = int(round(seconds * sample_rate))
    x = family_sound(cls.sound, n, spec.extra, rng, sample_rate) * gate(spec.intervals, n, sample_rate)
    return (x * spec.loudness).astype(np.float32)
