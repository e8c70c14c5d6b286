"""A synthetic audio-visual world written as real media files (the `vab demo` data).

Class c is one visual object (a shape in a colour) and one sound (a tone, a chord,
a noise band, a chirp, a click train ...).  Every clip holds the object of ONE class
(single label per clip): it appears and disappears 1-3 times, each time at a new
random place and size, and its sound plays exactly while it is visible.  So the
class can be learnt from either modality, and *when* something sounds can only
be learnt from the picture.  Clips of one class differ in their timing (when, how
often and how long the object is visible), their loudness, the object's place and
size, and the background (plain or noisy), so retrieving a clip's own partner needs
timing, not only the class.

Visibility changes on video frames: interval ``[a / fps, b / fps)`` for whole frame
numbers a < b, and the audio is gated on the same instants (5-ms ramps against
clicks).  The ground truth is kept in the manifest (`visible` column: ``t0-t1;t0-t1``
seconds) and in ``world.json`` (classes and their parameters).

Files: ``OUT/clips/<id>.mp4`` (h264 + aac, written with PyAV through `vab.media.mux`),
``OUT/manifest.csv`` (``path,id,label,split,visible``, the format `vab extract` reads)
and ``OUT/world.json``.  Everything is deterministic for a seed.
"""

from __future__ import annotations

import csv
import json
import math
import tempfile
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Callable, Iterator, NamedTuple

import av
import numpy as np

from vab import media
from vab.data import events, shapes, tunes, words
from vab.data.clip_spec import SAMPLE_RATE, SHAPES, ClipSpec, ObjectClass, gate
from vab.data.glyphs import GLYPHS, glyph_mask
from vab.errors import VabError
from vab.utils import atomic_path, check_writable_dir

SPLITS = ("train", "valid", "test")
MANIFEST = "manifest.csv"
WORLD = "world.json"
CLIPS_DIR = "clips"

COLOURS = {
    "red": (230, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 240), "yellow": (240, 220, 40),
    "magenta": (220, 50, 220), "cyan": (40, 220, 230), "orange": (250, 140, 20), "white": (245, 245, 245),
}
SOUNDS = ("tone", "chord", "low-noise", "high-noise", "chirp", "clicks", "buzz", "warble")
MAX_CLASSES = len(SHAPES)
#: the worlds `vab synth --world` writes: ``demo`` (this module: colour and shape name the class,
#: fixed clean sounds), ``shapes`` (:mod:`vab.data.shapes`: only the shape names the class,
#: colours and sounds vary per clip) and ``words`` (:mod:`vab.data.words`: a symbol and its spoken
#: word, a sequence of syllables whose order names the class, by a new speaker in every clip) and
#: ``events`` (:mod:`vab.data.events`: a symbol and its three sound events, thump, whistle,
#: hiss or buzz, whose order names the class, each sounding differently in every clip) and
#: ``tunes`` (:mod:`vab.data.tunes`: a symbol and its four-note tune, in a key and on an instrument
#: new in every clip)
WORLDS = ("demo", "shapes", "words", "events", "tunes")


class SequenceWorld(NamedTuple):
    """A symbol-and-sequence world: its module (clip_variation, render_audio, SHORTEST_SPAN), its
    classes and the salt of the seed of its per-clip draws."""

    module: ModuleType
    classes: Callable[[int], list[ObjectClass]]
    salt: int


SEQUENCE_WORLDS = {"words": SequenceWorld(words, words.word_classes, 2),
                   "events": SequenceWorld(events, events.event_classes, 3),
                   "tunes": SequenceWorld(tunes, tunes.tune_classes, 4)}


@dataclass
class SynthSummary:
    out: Path
    manifest: Path
    clips: dict[str, int]  # split -> count
    classes: list[str]
    written: int  # clips written by this call (the others existed)


def world_classes(classes: int = 8, world: str = "demo") -> list[ObjectClass]:
    """The first `classes` classes (2 .. MAX_CLASSES): class c pairs shape c, colour c, sound c
    (world ``shapes``: shape c and sound family c, see :mod:`vab.data.shapes`)."""
    if world not in WORLDS:
        raise VabError(f"--world {world}: unknown world (choose from {', '.join(WORLDS)})")
    if world == "shapes":
        return shapes.shape_classes(classes)
    if world in SEQUENCE_WORLDS:
        return SEQUENCE_WORLDS[world].classes(classes)
    if not 2 <= classes <= MAX_CLASSES:
        raise VabError(f"--classes must be between 2 and {MAX_CLASSES}, got {classes}")
    names = list(COLOURS)
    return [
        ObjectClass(f"{names[c]}-{SHAPES[c]}", SHAPES[c], COLOURS[names[c]], SOUNDS[c]) for c in range(classes)
    ]


# ---------------------------------------------------------------------- sounds
def _sound(kind: str, n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """float32 ``[n]`` of the class sound at unit peak level (before gating)."""
    t = np.arange(n) / sample_rate
    if kind == "tone":
        x = np.sin(2 * np.pi * 440.0 * t)
    elif kind == "chord":  # C major triad, an octave up
        x = sum(np.sin(2 * np.pi * f * t) for f in (523.3, 659.3, 784.0))
    elif kind in ("low-noise", "high-noise"):
        lo, hi = (150.0, 500.0) if kind == "low-noise" else (3000.0, 5500.0)
        spec = np.fft.rfft(rng.standard_normal(n))
        freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
        spec[(freqs < lo) | (freqs > hi)] = 0.0
        x = np.fft.irfft(spec, n)
    elif kind == "chirp":  # 600 -> 2400 Hz, sweeping up 4 times a second
        period = 0.25
        phase = (t % period) / period
        inst = 600.0 * (4.0 ** phase)
        x = np.sin(2 * np.pi * np.cumsum(inst) / sample_rate)
    elif kind == "clicks":  # 12 Hz train of short decaying 2-kHz bursts
        local = t % (1.0 / 12.0)
        x = np.sin(2 * np.pi * 2000.0 * t) * np.exp(-local / 0.004)
    elif kind == "buzz":  # 110-Hz sawtooth-like: many harmonics
        x = sum(np.sin(2 * np.pi * 110.0 * k * t) / k for k in range(1, 16))
    elif kind == "warble":  # 1200-Hz tone, frequency-modulated at 7 Hz
        x = np.sin(2 * np.pi * 1200.0 * t + 25.0 * np.sin(2 * np.pi * 7.0 * t))
    else:
        raise VabError(f"unknown sound {kind!r}")
    x = np.asarray(x, dtype=np.float64)
    return (x / max(np.abs(x).max(), 1e-9)).astype(np.float32)


def render_audio(spec: ClipSpec, cls: ObjectClass, seconds: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """float32 ``[N]``: the class sound while visible, silence otherwise (no background hiss:
    a codec fitted on this world then spends one token on silence, not dozens on noise)."""
    rng = np.random.default_rng(spec.seed)
    n = int(round(seconds * sample_rate))
    x = _sound(cls.sound, n, sample_rate, rng) * gate(spec.intervals, n, sample_rate) * spec.loudness
    return x.astype(np.float32)


# ---------------------------------------------------------------------- pictures
def _shape_mask(shape: str, size: int, half: int, cx: int, cy: int, width: int) -> np.ndarray:
    """bool ``[size, width]`` (height = `size`): the object's pixels (a shape or a glyph)."""
    if shape in GLYPHS:
        return glyph_mask(shape, size, half, cx, cy, width)
    yy, xx = np.mgrid[0:size, 0:width]
    dx, dy = xx - cx, yy - cy
    r = half
    if shape == "square":
        return (np.abs(dx) <= r) & (np.abs(dy) <= r)
    if shape == "disc":
        return dx**2 + dy**2 <= r**2
    if shape == "triangle":
        return (dy <= r) & (dy >= -r) & (np.abs(dx) <= (dy + r) / 2)
    if shape == "cross":
        arm = max(1, r // 3)
        return ((np.abs(dx) <= arm) & (np.abs(dy) <= r)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= r))
    if shape == "ring":
        d2 = dx**2 + dy**2
        return (d2 <= r**2) & (d2 >= (0.55 * r) ** 2)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= r
    if shape == "hbar":
        return (np.abs(dx) <= r) & (np.abs(dy) <= max(1, r // 3))
    if shape == "vbar":
        return (np.abs(dy) <= r) & (np.abs(dx) <= max(1, r // 3))
    raise VabError(f"unknown shape {shape!r}")


def render_frames(spec: ClipSpec, cls: ObjectClass, seconds: float, fps: float, width: int, height: int) -> np.ndarray:
    """uint8 ``[F, H, W, 3]``: frame i shows time ``i / fps``.  The object's colour and the
    background's are the class's and a grey level, unless the clip's ``extra`` names them
    (``colour``, ``background_colour``: the shapes world)."""
    rng = np.random.default_rng(spec.seed + 1)
    count = int(round(seconds * fps))
    base = np.empty((height, width, 3), dtype=np.float32)
    base[:] = np.asarray(spec.extra.get("background_colour", [spec.background_level] * 3), dtype=np.float32)
    masks = [_shape_mask(cls.shape, height, half, cx, cy, width) for cx, cy, half in spec.places]
    frames = np.empty((count, height, width, 3), dtype=np.uint8)
    colour = np.asarray(spec.extra.get("colour", cls.colour), dtype=np.float32)
    for i in range(count):
        img = base.copy()
        if spec.background == "noisy":
            img += rng.normal(0.0, 24.0, size=img.shape).astype(np.float32)
        t = i / fps
        for (t0, t1), mask in zip(spec.intervals, masks):
            if t0 <= t < t1:
                img[mask] = colour
        frames[i] = np.clip(img, 0, 255).astype(np.uint8)
    return frames


def write_video(path: Path, frames: np.ndarray, fps: float) -> Path:
    """A silent h264 mp4 of ``[F, H, W, 3]`` uint8 frames at `fps`."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.height, stream.width = frames.shape[1], frames.shape[2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "18"}
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def write_clip(
    path: Path, spec: ClipSpec, cls: ObjectClass, seconds: float, fps: float, width: int, height: int,
    world: str = "demo",
) -> Path:
    """Render and write one clip (h264 + aac) of `world`, atomically."""
    frames = render_frames(spec, cls, seconds, fps, width, height)  # colours from spec.extra when set
    if world == "shapes":
        wav = shapes.render_audio(spec, cls, seconds)
    elif world in SEQUENCE_WORLDS:
        wav = SEQUENCE_WORLDS[world].module.render_audio(spec, cls, seconds)
    else:
        wav = render_audio(spec, cls, seconds)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".silent-") as tmp:
        silent = write_video(Path(tmp) / "video.mp4", frames, fps)
        media.mux(silent, wav, SAMPLE_RATE, path)
    return path


# ---------------------------------------------------------------------- the plan
def _intervals(rng: np.random.Generator, frames: int, fps: float, shortest_s: float = 0.5) -> list[tuple[float, float]]:
    """1-3 visible spans of whole frames, at least `shortest_s` long (at most the clip), separated by at least 0.25 s."""
    shortest = min(frames, max(1, math.ceil(shortest_s * fps - 1e-9)))
    gap = max(1, math.ceil(0.25 * fps))
    for _ in range(100):
        count = int(rng.integers(1, 4))
        lengths = rng.integers(shortest, max(shortest + 1, frames // 2 + 1), size=count)
        free = frames - int(lengths.sum()) - gap * (count - 1)
        if free < 0:
            continue
        # spread the free frames over the count + 1 gaps (before, between, after)
        cuts = np.sort(rng.integers(0, free + 1, size=count))
        spans, start = [], 0
        previous = 0
        for k in range(count):
            start = previous + int(cuts[k] - (cuts[k - 1] if k else 0)) + (gap if k else 0)
            spans.append((start, start + int(lengths[k])))
            previous = start + int(lengths[k])
        return [(a / fps, b / fps) for a, b in spans]
    return [(0.0, frames / fps)]  # pragma: no cover - the loop always succeeds for clips >= 1 s


def plan_clips(
    classes: int, counts: dict[str, int], seconds: float, fps: float, width: int, height: int, seed: int,
    world: str = "demo",
) -> list[ClipSpec]:
    """Every clip's specification; split s holds ``counts[s]`` clips with classes in turn.
    The ``shapes``, ``words`` and ``events`` worlds add their per-clip colours and sound parameters in ``extra``."""
    rng = np.random.default_rng(seed)
    frames = int(round(seconds * fps))
    short = min(width, height)
    shortest = SEQUENCE_WORLDS[world].module.SHORTEST_SPAN if world in SEQUENCE_WORLDS else 0.5
    specs = []
    for split in SPLITS:
        for k in range(counts.get(split, 0)):
            intervals = _intervals(rng, frames, fps, shortest)
            places = []
            for _ in intervals:
                # large enough to fill several cells of a coarse (8 x 8) frame encoder
                half = int(rng.integers(max(2, short // 5), max(3, short // 3) + 1))
                cx = int(rng.integers(half, width - half))
                cy = int(rng.integers(half, height - half))
                places.append((cx, cy, half))
            specs.append(ClipSpec(
                id=f"{split}-{k:05d}", split=split, label=k % classes, intervals=intervals, places=places,
                loudness=float(rng.uniform(0.25, 0.6)),
                background="noisy" if rng.random() < 0.5 else "plain",
                background_level=int(rng.integers(0, 60)),
                seed=int(rng.integers(0, 2**31 - 1)),
            ))
    if world == "shapes":  # drawn after the demo world's plan: the same timing for the same seed
        vary = np.random.default_rng([seed, 1])
        for spec in specs:
            spec.extra = shapes.clip_variation(vary)
    elif world in SEQUENCE_WORLDS:  # symbols on a noisy background, a new speaker / new sounds per clip
        sequence = SEQUENCE_WORLDS[world]
        vary = np.random.default_rng([seed, sequence.salt])
        for spec in specs:
            spec.extra, spec.background = sequence.module.clip_variation(vary), "noisy"
    return specs


def format_intervals(intervals: list[tuple[float, float]]) -> str:
    return ";".join(f"{a:.4f}-{b:.4f}" for a, b in intervals)


def parse_intervals(text: str) -> list[tuple[float, float]]:
    """``"0.5-1.25;2-3"`` -> [(0.5, 1.25), (2.0, 3.0)] (seconds)."""
    out = []
    for part in filter(None, (p.strip() for p in str(text).split(";"))):
        a, _, b = part.partition("-")
        out.append((float(a), float(b)))
    return out


def visibility(intervals: list[tuple[float, float]], frames: int, frame_rate: float) -> np.ndarray:
    """bool ``[frames]``: whether the object is visible at the centre of each audio frame
    (frame j spans ``[j, j + 1) / frame_rate`` seconds)."""
    centres = (np.arange(frames) + 0.5) / frame_rate
    out = np.zeros(frames, dtype=bool)
    for a, b in intervals:
        out |= (centres >= a) & (centres < b)
    return out


# ---------------------------------------------------------------------- the data set
def synthesize(
    out: str | Path,
    *,
    classes: int = 8,
    train: int = 512,
    valid: int = 32,
    test: int = 64,
    seconds: float = 4.0,
    fps: float = 8.0,
    width: int = 64,
    height: int = 64,
    seed: int = 0,
    world: str = "demo",
    progress: Callable[[int, int], None] | None = None,
) -> SynthSummary:
    """Write the world into `out` (see the module docstring); returns what was written.

    Re-running with the same parameters keeps finished clips (resumable); a folder made
    with other parameters is refused.  `progress(done, total)` is called after each clip."""
    out = Path(out)
    params, classes_ = check_synthesis(out, classes=classes, train=train, valid=valid, test=test, seconds=seconds,
                                       fps=fps, width=width, height=height, seed=seed, world=world)
    kind, world = world, classes_
    _claim(out, params, world)
    specs = plan_clips(classes, {"train": train, "valid": valid, "test": test}, seconds, fps, width, height, seed,
                       kind)
    clips = out / CLIPS_DIR
    clips.mkdir(parents=True, exist_ok=True)
    written = 0
    for i, spec in enumerate(specs):
        path = clips / f"{spec.id}.mp4"
        if not path.exists():
            write_clip(path, spec, world[spec.label], seconds, fps, width, height, kind)
            written += 1
        if progress is not None:
            progress(i + 1, len(specs))
    manifest = write_manifest(out / MANIFEST, specs, world)
    return SynthSummary(out, manifest, {s: sum(c.split == s for c in specs) for s in SPLITS},
                        [c.name for c in world], written)


#: the range of each option of `vab synth` (inclusive; fps above 0): wide enough for any use
#: of a synthetic world, narrow enough that a typo is refused at once, not after an hour
#: or an out-of-memory kill
LIMITS = {"train": (1, 1_000_000), "valid": (0, 1_000_000), "test": (0, 1_000_000), "seconds": (1, 3600),
          "fps": (0, 240), "size": (16, 4096), "seed": (0, 2**63 - 1)}
#: a clip's frames are rendered in memory before they are encoded
MAX_CLIP_BYTES = 4 << 30


def check_world_options(*, train: int, valid: int, test: int, seconds: float, fps: float,
                        width: int, height: int, seed: int) -> None:
    """One-line VabError naming the `vab synth` option that is out of range (:data:`LIMITS`),
    not finite, or makes clips that do not fit in memory; called before anything is written."""
    values = {"train": train, "valid": valid, "test": test, "seconds": seconds, "fps": fps, "size": width,
              "seed": seed}
    if height != width:
        values["height"] = height
    for name, value in values.items():
        low, high = LIMITS["size" if name == "height" else name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise VabError(f"--{name} must be a finite number, got {value!r}")
        if not (low < value <= high if name == "fps" else low <= value <= high):
            span = f"in ({low}, {high}]" if name == "fps" else f"in [{low}, {high}]"
            raise VabError(f"--{name} must be {span}, got {value}")
    if width % 2 or height % 2:
        raise VabError(f"--size must be even (h264 stores whole 2 x 2 colour blocks), got {width if width % 2 else height}")
    frames = seconds * fps
    if abs(frames - round(frames)) > 1e-6 or round(frames) < 1:
        raise VabError(f"--seconds x --fps must be a whole number of frames, at least one (got {seconds} x {fps})")
    needed = round(frames) * width * height * 3
    if needed > MAX_CLIP_BYTES:
        raise VabError(f"--seconds {seconds:g} x --fps {fps:g} frames of {width} x {height} pixels need "
                       f"{needed / 2**30:.1f} GiB per clip (at most {MAX_CLIP_BYTES >> 30} GiB); "
                       "choose a shorter clip, a lower --fps or a smaller --size")


def check_synthesis(
    out: str | Path, *, classes: int = 8, train: int = 512, valid: int = 32, test: int = 64, seconds: float = 4.0,
    fps: float = 8.0, width: int = 64, height: int = 64, seed: int = 0, world: str = "demo",
) -> tuple[dict, list[ObjectClass]]:
    """(the parameters world.json records, the world's classes) of a :func:`synthesize` call,
    after every check that needs no write: the options, the world, a folder that can be
    written and holds no world made with other parameters.  One-line VabError otherwise
    (`vab synth` calls it before its progress bar starts)."""
    out = Path(out)
    check_world_options(train=train, valid=valid, test=test, seconds=seconds, fps=fps, width=width, height=height,
                        seed=seed)
    classes_ = world_classes(classes, world)
    params = dict(classes=classes, train=train, valid=valid, test=test, seconds=seconds, fps=fps,
                  width=width, height=height, seed=seed, sample_rate=SAMPLE_RATE)
    if world != "demo":  # folders of the demo world made before worlds existed stay valid
        params["world"] = world
    check_writable_dir(out, "the synthetic world")
    path = out / WORLD
    if path.exists():
        try:
            old = json.loads(path.read_text())["params"]
        except (ValueError, KeyError, TypeError, OSError):
            raise VabError(f"{path}: unreadable; remove {out} or choose another folder") from None
        if old != params:
            diff = ", ".join(f"{k} {old.get(k)} -> {v}" for k, v in params.items() if old.get(k) != v)
            raise VabError(f"{out}: holds a synthetic world made with other parameters ({diff}); use another folder")
    return params, classes_


def _claim(out: Path, params: dict, world: list[ObjectClass]) -> None:
    """Write world.json unless the folder has it (:func:`check_synthesis` compared it)."""
    record = {"params": params, "classes": [asdict(c) for c in world]}
    path = out / WORLD
    if path.exists():
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(record, indent=1))
    except OSError as exc:
        raise VabError(f"{out}: cannot write here ({exc.strerror or exc})") from None


def write_manifest(path: Path, specs: list[ClipSpec], world: list[ObjectClass]) -> Path:
    """``path,id,label,split,visible`` (paths relative to the manifest's folder)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "id", "label", "split", "visible"])
        for s in specs:
            writer.writerow([f"{CLIPS_DIR}/{s.id}.mp4", s.id, world[s.label].name, s.split, format_intervals(s.intervals)])
    return path


@dataclass
class TruthRow:
    id: str
    path: Path
    label: str
    split: str
    intervals: list[tuple[float, float]]


def read_truth(folder: str | Path) -> dict[str, TruthRow]:
    """id -> ground truth, from a synthetic world's manifest."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise VabError(f"{path}: missing (not a synthetic world made by `vab synth`)")
    with open(path, newline="") as fh:
        return {
            r["id"]: TruthRow(r["id"], path.parent / r["path"], r["label"], r["split"], parse_intervals(r["visible"]))
            for r in csv.DictReader(fh)
        }


def iter_split(truth: dict[str, TruthRow], split: str) -> Iterator[TruthRow]:
    return (r for r in truth.values() if r.split == split)
