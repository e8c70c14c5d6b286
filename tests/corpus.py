"""A corpus of real-world media properties, written with PyAV (no downloads, no ffmpeg CLI).

Phone, camera and screen files differ from the clips the project makes for itself: streams
that start late (MPEG-TS and AVCHD ``.mts`` offsets, an mp4 edit list that hides the first
frames, audio and video that start at different times), display matrices, non-square
pixels, variable and high frame rates, 10-bit and 4:4:4 video, interlacing, surround and
unusual sample rates, audio longer or shorter than the picture, no audio, letterboxing,
long GOPs, very short and very long files, dark, fading and noisy pictures.

Every file carries its own ground truth on the *picture's clock* (seconds from the first
displayed frame): its picture flashes white on a few frames at known times
(:attr:`Item.flashes`), and its soundtrack (if any) clicks at those same times.  Tests can
then check any output for synchronisation without knowing anything about a model.

Files are tiny (64 x 48 or smaller, about 2 s) so the whole corpus is written in a few
seconds; the 30-minute file is a 10-s piece at 1 frame per second copied 180 times
(packets, not re-encoded).  Use :func:`build_corpus` once per test session.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

TB = Fraction(1, 90000)  # a fine time base keeps explicit (variable) frame times exact
FLASH = 255  # grey level of a flash frame
CLICK_HZ = 1000.0  # the click is a short tone burst (below Nyquist at 8 kHz)
CLICK_SECONDS = 0.01


@dataclass(frozen=True)
class Spec:
    """How to write one corpus file.  Times are seconds on the picture's clock unless said.

    `video_start`: file timestamp of the first displayed frame; `hidden`: seconds of frames
    before it that an mp4 edit list hides (written with negative timestamps);
    `audio_start`: when the soundtrack starts on the picture's clock (negative: before the
    picture); `audio_seconds`: its length (default: the picture's)."""

    name: str
    suffix: str = ".mp4"
    seconds: float = 2.0
    fps: float | Fraction = 25.0
    frame_times: tuple[float, ...] | None = None
    width: int = 64
    height: int = 48
    vcodec: str = "libx264"
    pix_fmt: str = "yuv420p"
    vopts: dict = field(default_factory=lambda: {"preset": "ultrafast", "tune": "zerolatency"})
    gop: int | None = None
    sar: Fraction | None = None
    rotation: int = 0
    video_start: float = 0.0
    hidden: float = 0.0
    audio: bool = True
    acodec: str = "aac"
    rate: int = 16000
    layout: str = "mono"
    audio_start: float = 0.0
    audio_seconds: float | None = None
    fmt: str | None = None
    copts: dict = field(default_factory=dict)
    picture: str = "plain"  # plain, letterbox, dark, fade, noisy, portrait
    flash_at: tuple[float, ...] = (0.3, 0.92, 1.56)
    flash_seconds: float = 0.04  # a flash lasts the frames shown within this long (at least one)
    about: str = ""


@dataclass(frozen=True)
class Item:
    """One written corpus file and its ground truth (picture clock, seconds)."""

    spec: Spec
    path: Path
    seconds: float  # the picture: first displayed frame to the end of the last one
    flashes: tuple[float, ...]  # start times of the flash frames
    frame_times: tuple[float, ...]  # every displayed frame
    display: tuple[int, int]  # (width, height) as shown, rotation and pixel aspect applied

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def has_audio(self) -> bool:
        return self.spec.audio

    def audio_span(self) -> tuple[float, float]:
        """Where the soundtrack lies on the picture's clock."""
        s = self.spec
        return s.audio_start, s.audio_start + (s.audio_seconds if s.audio_seconds is not None else self.seconds)


# ---------------------------------------------------------------------- pictures and sound
def picture(kind: str, i: int, t: float, seconds: float, width: int, height: int, rng) -> np.ndarray:
    """uint8 RGB [height, width, 3] of frame `i` at time `t` (not a flash)."""
    y, x = np.mgrid[0:height, 0:width]
    if kind == "dark":  # night: black with one grey level of sensor noise
        img = np.full((height, width, 3), 16, np.int16) + rng.integers(-1, 2, (height, width, 1))
        return img.astype(np.uint8).repeat(1, axis=2)
    if kind == "noisy":  # a static scene under sensor noise
        img = 60 + (x * 2 + y)[..., None] % 120 + rng.integers(-2, 3, (height, width, 3))
        return np.clip(img, 0, 255).astype(np.uint8)
    img = np.zeros((height, width, 3), np.int16)
    img[..., 0] = 40 + (i * 7) % 160  # the frame's index in red, as tests/mediagen.py does
    img[..., 1] = 70 + (x * 3) % 60
    img[..., 2] = 120
    box = (slice(height // 8, height // 8 + max(2, height // 5)), slice(width // 8, width // 8 + max(2, width // 5)))
    img[box] = (230, 40, 40)  # a red square near the top-left of the picture as shown
    if kind == "fade":  # from black to the picture over the clip
        img = img * min(1.0, t / max(seconds, 1e-6))
    if kind == "letterbox":  # a 2.39:1 picture inside a 4:3 frame
        bar = int(round(height * (1 - (width / 2.39) / height) / 2))
        img[:bar] = 0
        img[height - bar :] = 0
    return np.clip(img, 0, 255).astype(np.uint8)


def flash_frame(kind: str, width: int, height: int) -> np.ndarray:
    img = np.full((height, width, 3), FLASH, np.uint8)
    if kind == "letterbox":  # the bars stay black
        bar = int(round(height * (1 - (width / 2.39) / height) / 2))
        img[:bar] = 0
        img[height - bar :] = 0
    return img


def clicks(times, seconds: float, rate: int, start: float = 0.0) -> np.ndarray:
    """float32 [N]: silence with a tone burst beginning at each of `times` (picture clock);
    sample 0 is at `start`."""
    n = max(0, int(round(seconds * rate)))
    wav = np.zeros(n, np.float32)
    m = int(round(CLICK_SECONDS * rate))
    burst = (0.8 * np.sin(2 * np.pi * CLICK_HZ * np.arange(m) / rate)).astype(np.float32)
    for t in times:
        a = int(round((t - start) * rate))
        if 0 <= a < n:
            wav[a : a + m] = burst[: n - a]
    return wav


def onsets(wav: np.ndarray, rate: int, threshold: float = 0.25, gap: float = 0.1) -> list[float]:
    """Seconds at which `wav` ([N] or [C, N]) first rises above `threshold` of its peak after
    at least `gap` seconds below it: the click onsets."""
    x = np.abs(np.asarray(wav, np.float32))
    if x.ndim == 2:
        x = x.max(axis=0)
    if x.size == 0 or x.max() <= 1e-4:
        return []
    above = np.flatnonzero(x > threshold * x.max())
    out = [above[0]]
    for a, b in zip(above, above[1:]):
        if b - a > gap * rate:
            out.append(b)
    return [i / rate for i in out]


# ---------------------------------------------------------------------- writing
def _frame_times(spec: Spec) -> list[float]:
    """Every frame's picture-clock time, hidden ones (negative) included."""
    if spec.frame_times is not None:
        return list(spec.frame_times)
    first = -int(round(spec.hidden * spec.fps))
    return [float(i / spec.fps) for i in range(first, int(round(spec.seconds * spec.fps)))]


def _flash_indices(times: list[float], spec: Spec) -> tuple[set[int], list[float]]:
    """(indices of the flash frames, start time of each flash)."""
    shown = [i for i, t in enumerate(times) if t >= 0]
    frames, starts = set(), []
    for f in spec.flash_at:
        if f < spec.seconds:
            first = min(shown, key=lambda i: abs(times[i] - f))
            starts.append(times[first])
            frames.update(i for i in shown if times[first] <= times[i] < times[first] + spec.flash_seconds)
            frames.add(first)
    return frames, starts


def _stored(img: np.ndarray, rotation: int) -> np.ndarray:
    """The stored picture that shows as `img` once turned `rotation` degrees counter-clockwise."""
    return np.ascontiguousarray(np.rot90(img, k=-(rotation // 90)))


def _audio_frames(wav: np.ndarray, layout: str, rate: int, first_pts: int, size: int = 1024):
    """Packed float frames (PyAV cannot build planar frames of more than 8 channels' worth)."""
    channels = av.AudioLayout(layout).nb_channels
    x = np.repeat(wav[None], channels, axis=0)
    x[1:] *= 0.5  # channels differ a little
    for s in range(0, x.shape[1], size):
        chunk = np.ascontiguousarray(x[:, s : s + size].T).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout=layout)
        frame.sample_rate = rate
        frame.pts = first_pts + s
        frame.time_base = Fraction(1, rate)
        yield frame


def write(spec: Spec, folder: Path) -> Item:
    """Write `spec` into `folder` and return its :class:`Item`."""
    path = folder / f"{spec.name}{spec.suffix}"
    rng = np.random.default_rng(abs(hash(spec.name)) % 2**32)
    times = _frame_times(spec)
    flashes, starts = _flash_indices(times, spec)
    portrait = spec.rotation in (90, 270)
    shown_w, shown_h = (spec.height, spec.width) if portrait else (spec.width, spec.height)
    with av.open(str(path), "w", format=spec.fmt, options=dict(spec.copts)) as out:
        vs = out.add_stream(spec.vcodec, rate=Fraction(spec.fps).limit_denominator(1001))
        vs.width, vs.height, vs.pix_fmt = spec.width, spec.height, spec.pix_fmt
        vs.time_base = TB
        vs.codec_context.time_base = TB
        if spec.vcodec == "libx264":
            vs.options = dict(spec.vopts)
        if spec.gop is not None:
            vs.codec_context.gop_size = spec.gop
        if spec.sar is not None:
            vs.codec_context.sample_aspect_ratio = spec.sar
        if spec.rotation:
            vs.set_display_rotation(spec.rotation)
        aus = out.add_stream(spec.acodec, rate=spec.rate, layout=spec.layout) if spec.audio else None
        for i, t in enumerate(times):
            kind = spec.picture
            img = flash_frame(kind, shown_w, shown_h) if i in flashes else picture(
                kind, i, t, spec.seconds, shown_w, shown_h, rng)
            frame = av.VideoFrame.from_ndarray(_stored(img, spec.rotation), format="rgb24")
            frame.pts = int(round((spec.video_start + t) / TB))
            frame.time_base = TB
            for packet in vs.encode(frame.reformat(format=spec.pix_fmt)):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
        if aus is not None:
            a0, a1 = spec.audio_start, spec.audio_start + (spec.audio_seconds or spec.seconds)
            wav = clicks(starts, a1 - a0, spec.rate, a0)
            first = int(round((spec.video_start + a0) * spec.rate))
            size = aus.codec_context.frame_size or 1024
            for frame in _audio_frames(wav, spec.layout, spec.rate, first, size):
                for packet in aus.encode(frame):
                    out.mux(packet)
            for packet in aus.encode():
                out.mux(packet)
    shown = [t for t in times if t >= 0]
    end = shown[-1] + float(1 / spec.fps) if spec.frame_times is None else _written_end(path) - spec.video_start
    display = (shown_w, shown_h)
    if spec.sar is not None:
        display = (int(round(shown_w * spec.sar)), shown_h) if spec.sar >= 1 else (shown_w, int(round(shown_h / spec.sar)))
    return Item(spec, path, float(end), tuple(starts), tuple(shown), display)


def _written_end(path: Path) -> float:
    """End of the last video packet as written (a variable-rate file's last frame lasts as
    long as its packet says)."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return max(float((p.pts + p.duration) * s.time_base) for p in c.demux(s) if p.pts is not None)


def loop(piece: Item, copies: int, path: Path) -> Item:
    """`piece` repeated `copies` times by copying its packets with shifted timestamps."""
    with av.open(str(piece.path)) as src, av.open(str(path), "w") as out:
        ins = [s for s in (src.streams.video[0], *src.streams.audio)]
        outs = {s.index: out.add_stream_from_template(s) for s in ins}
        packets = [p for p in src.demux(*ins) if p.dts is not None]
        span = {s.index: int(round(piece.seconds / s.time_base)) for s in ins}
        pieces = [(p.stream.index, p.pts, p.dts, p.duration, bytes(p), p.is_keyframe) for p in packets]
        for k in range(copies):
            for index, pts, dts, duration, data, key in pieces:
                if pts + duration > span[index] or (pts < 0 and k > 0):
                    continue  # an audio frame reaching into the next copy (or the encoder's priming)
                p = av.Packet(data)
                p.stream = outs[index]
                p.time_base = ins[0].time_base if index == ins[0].index else ins[1].time_base
                p.pts, p.dts = pts + k * span[index], dts + k * span[index]
                p.duration = duration
                p.is_keyframe = key
                out.mux(p)
    seconds = piece.seconds * copies
    flashes = tuple(f + k * piece.seconds for k in range(copies) for f in piece.flashes)
    times = tuple(t + k * piece.seconds for k in range(copies) for t in piece.frame_times)
    spec = replace(piece.spec, name=path.stem, suffix=path.suffix, seconds=seconds,
                   about=f"{piece.spec.about}, copied {copies} times")
    return Item(spec, path, seconds, flashes, times, piece.display)


# ---------------------------------------------------------------------- the corpus
SPECS: list[Spec] = [
    Spec("reference", about="h264 + AAC mp4 starting at 0 (what the project makes itself)"),
    Spec("mpegts_3s", ".ts", copts={"output_ts_offset": "3"}, about="MPEG-TS whose picture starts at 3.0 s"),
    Spec("avchd_camera", ".mts", fmt="mpegts", copts={"mpegts_m2ts_mode": "1", "output_ts_offset": "1.4"},
         vopts={"preset": "veryfast"}, gop=12, acodec="ac3", rate=48000, layout="5.1",
         about="AVCHD-style M2TS: starts at 1.4 s, B-frames, AC-3 5.1 at 48 kHz"),
    Spec("edit_list_trim", hidden=0.4, gop=25,
         about="mp4 whose edit list hides the first 0.4 s (decoded, never shown)"),
    Spec("audio_starts_late", audio_start=0.5, audio_seconds=1.5, about="audio starts 0.5 s after the picture"),
    Spec("video_starts_late", ".mkv", video_start=0.6, audio_start=-0.6, audio_seconds=2.6,
         about="Matroska: audio from 0, picture from 0.6 s"),
    Spec("phone_portrait_90", ".mov", width=64, height=36, rotation=90, rate=48000, layout="stereo",
         about="portrait phone video stored landscape, display matrix 90"),
    Spec("phone_portrait_270", width=64, height=36, rotation=270, rate=44100, layout="stereo",
         about="portrait phone video stored landscape, display matrix 270"),
    Spec("anamorphic_sar", width=48, height=48, sar=Fraction(4, 3), about="48x48 stored, 4:3 pixels: 64x48 shown"),
    Spec("vfr_screen", frame_times=(0.0, 0.1, 0.15, 0.3, 0.6, 0.65, 0.92, 1.2, 1.56, 1.6, 1.9), fps=10.0,
         about="variable frame rate (screen recording)"),
    Spec("fps_50", fps=50.0, about="50 fps"),
    Spec("fps_59.94", fps=60000 / 1001, about="59.94 fps (60000/1001)"),
    Spec("fps_60", fps=60.0, about="60 fps"),
    Spec("fps_120", fps=120.0, seconds=1.0, flash_at=(0.3, 0.75), about="120 fps"),
    Spec("ten_bit", pix_fmt="yuv420p10le", about="10-bit 4:2:0 h264"),
    Spec("chroma_444", pix_fmt="yuv444p", about="8-bit 4:4:4 h264"),
    Spec("interlaced", vopts={"preset": "ultrafast", "flags": "+ildct+ilme"}, about="interlaced h264 (top field first)"),
    Spec("surround_5.1", rate=48000, layout="5.1", about="AAC 5.1 at 48 kHz"),
    Spec("eight_channel", ".mkv", rate=48000, layout="7.1", about="AAC 7.1 (8 channels) in Matroska"),
    Spec("rate_8k", rate=8000, about="8 kHz audio"),
    Spec("rate_22k", rate=22050, about="22.05 kHz audio"),
    Spec("rate_48k_pcm", ".mov", acodec="pcm_s16le", rate=48000, layout="stereo", about="PCM 48 kHz stereo in .mov"),
    Spec("rate_96k", rate=96000, layout="stereo", about="96 kHz audio"),
    Spec("audio_longer", audio_seconds=3.0, about="audio 1 s longer than the picture"),
    Spec("audio_shorter", audio_seconds=1.2, flash_at=(0.3, 0.92), about="audio ends 0.8 s before the picture"),
    Spec("no_audio", audio=False, about="video stream only"),
    Spec("letterboxed", picture="letterbox", about="2.39:1 picture with black bars in a 4:3 frame"),
    Spec("long_gop", seconds=6.0, gop=300, flash_at=(0.3, 2.5, 5.2), about="one keyframe in 6 s"),
    Spec("short_0.3s", seconds=0.3, fps=30.0, flash_at=(0.12,), about="0.3-s clip (9 frames at 30 fps)"),
    Spec("dark_noisy", picture="dark", about="night: black with one grey level of noise"),
    Spec("fade_in", picture="fade", about="fades in from black"),
    Spec("static_noisy", picture="noisy", about="static scene with sensor noise"),
]
# 10.24 s holds whole AAC frames at 8 kHz, so the copies join without a gap: 8 frames of 1.28 s
LONG = Spec("long_30min_piece", seconds=10.24, fps=Fraction(25, 32), width=32, height=24, rate=8000, gop=8,
            flash_at=(3.84,), about="about 30 minutes (10.24-s piece, 8 frames of 1.28 s)")
LONG_COPIES = 176


def build_corpus(folder: str | Path, long: bool = True) -> dict[str, Item]:
    """Write every corpus file: the short ones into ``folder/clips``, the 30-minute one into
    ``folder/long`` (with `long`).  Returns ``{name: Item}``."""
    folder = Path(folder)
    clips = folder / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    items = {spec.name: write(spec, clips) for spec in SPECS}
    if long:
        (folder / "long").mkdir(exist_ok=True)
        piece = write(LONG, folder)
        items["long_30min"] = loop(piece, LONG_COPIES, folder / "long" / "long_30min.mp4")
        piece.path.unlink()
    return items


def picture_flashes(path: str | Path) -> tuple[list[float], float, float]:
    """(start times of flash frames, first displayed frame, end of the picture), in the file's
    own timestamps (seconds), straight from PyAV's decoder, as a player shows them."""
    with av.open(str(path)) as c:
        times, bright = [], []
        for f in c.decode(c.streams.video[0]):
            gray = f.to_ndarray(format="gray")
            times.append(float(f.time))
            bright.append(float(np.percentile(gray, 75)))
    times_arr = np.array(times)
    step = float(np.median(np.diff(times_arr))) if len(times) > 1 else 0.0
    out = []
    for i, b in enumerate(bright):
        if b > 200 and (i == 0 or bright[i - 1] <= 200):
            out.append(times[i])
    return out, times[0], times[-1] + step


def sound_clicks(path: str | Path) -> tuple[list[float], float, float]:
    """(click onsets, first sample, end of the last sample) of the first audio stream, in
    the file's own timestamps (seconds), straight from PyAV's decoder; samples are placed
    by their timestamps."""
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        rate = stream.sample_rate
        # packed samples: PyAV cannot hand out planar frames of 8 channels (it crashes)
        resampler = av.AudioResampler(format="flt")
        chunks = []
        for f in c.decode(stream):
            start = float(f.time)
            for g in resampler.resample(f):
                x = g.to_ndarray().reshape(-1, g.layout.nb_channels)
                chunks.append((start, np.abs(x).max(axis=1).astype(np.float32)))
                start += len(x) / rate
    first = chunks[0][0]
    end = max(t + len(x) / rate for t, x in chunks)
    wav = np.zeros(int(round((end - first) * rate)) + 1, np.float32)
    for t, x in chunks:
        a = int(round((t - first) * rate))
        wav[a : a + len(x)] = x[: len(wav) - a]
    return [first + t for t in onsets(wav, rate)], first, end


def video_end(path: str | Path) -> float:
    """File time (s) where the last shown frame ends, from PyAV's packets (a packet that does
    not say how long it lasts lasts the nominal frame interval)."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        nominal = 1 / float(s.average_rate or s.guessed_rate)
        return max(float(p.pts * s.time_base) + (float(p.duration * s.time_base) if p.duration else nominal)
                   for p in c.demux(s) if p.pts is not None and not p.is_discard)


def declared_audio_end(path: str | Path) -> float:
    """File time (s) where the audio track ends as the container states it (an mp4 edit list
    trims the AAC padding that a decoder still hands out)."""
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        return float((s.start_time + s.duration) * s.time_base)


@dataclass(frozen=True)
class Sync:
    """How a muxed file's sound lines up with its picture, in its own timestamps (seconds)."""

    flashes: list[float]  # start of each flash as shown
    clicks: list[float]  # each click onset heard (with `marker`: the first is the marker)
    first: float  # the first displayed frame
    picture_end: float
    sound_end: float  # as declared (edit-list containers) or as decoded

    def offsets(self, marker: bool) -> list[float]:
        """Click minus flash, for each flash (the marker click left out)."""
        heard = self.clicks[1:] if marker else self.clicks
        return [c - f for f, c in zip(self.flashes, heard)]


def measure_sync(path: str | Path, declared_end: bool) -> Sync:
    """Decode `path` with PyAV alone and measure (see :class:`Sync`); `declared_end`: take the
    sound's end from the container (mp4, mov) rather than from the decoded samples."""
    flashes, first, _ = picture_flashes(path)
    clicks_heard, _, decoded_end = sound_clicks(path)
    return Sync(flashes, clicks_heard, first, video_end(path), declared_audio_end(path) if declared_end else decoded_end)


__all__ = ["Item", "Spec", "SPECS", "Sync", "build_corpus", "clicks", "declared_audio_end", "measure_sync", "onsets",
           "picture_flashes", "sound_clicks", "video_end"]
