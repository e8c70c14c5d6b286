"""Media I/O on PyAV: probe, frames at N fps, mono audio, wav/flac output, mux.

One clock for everything, the picture's: time 0 is the first displayed video frame
(whatever the file's own timestamps say: MPEG-TS and AVCHD files start near 1.4 s, an mp4
edit list may hide frames before it, audio may start earlier or later).  Frames and audio
are read on that clock, and :func:`mux` writes the new audio so that it starts with the
first displayed frame and lasts as long as the picture.  A file without video uses its
first sample (the container's start when positive, else 0).  Frames are returned as shown:
display matrix and sample aspect ratio applied.
Every failure a user can cause surfaces as :class:`MediaError` naming the file.
"""

from __future__ import annotations

import bisect
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from vab.errors import MediaError, VabError
from vab.utils import atomic_path

__all__ = ["MediaInfo", "probe", "iter_frames", "read_frames", "read_audio", "write_audio", "mux", "picture_seconds"]

# Decoders and demuxers report broken input through these; anything else is a bug.
_AV_ERRORS = (av.error.FFmpegError, EOFError)
_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1"}
# Muxers whose edit lists trim AAC priming and padding to the exact sample count.
_EDIT_LIST_FORMATS = {"mp4", "mov", "ipod", "3gp", "3g2", "ismv", "f4v", "psp"}
_AAC_FRAME = 1024
_WRITE_CODECS = {".wav": ("wav", "pcm_s16le"), ".flac": ("flac", "flac")}
# PyAV decoder threading: frame and slice threads (benchmarks/frame_reading.py measures it)
THREAD_TYPE = "AUTO"


@dataclass(frozen=True)
class MediaInfo:
    """What `probe` learns about a file.  Sizes are display sizes (rotation and sample aspect
    ratio applied); `duration` is the picture's (first displayed frame to the end of the last)
    when there is video, else the audio's; `start` is the file timestamp of time 0."""

    path: str
    duration: float  # seconds
    has_video: bool
    has_audio: bool
    fps: float | None  # average frame rate
    width: int | None
    height: int | None
    rotation: int  # degrees, counter-clockwise, as stored in the display matrix
    num_frames: int | None  # best estimate
    audio_sample_rate: int | None  # Hz
    audio_channels: int | None
    start: float = 0.0  # seconds, in the file's own timestamps: the first displayed frame
    sample_aspect_ratio: Fraction = Fraction(1)  # stored pixel width / height (anamorphic video: != 1)


# ---------------------------------------------------------------- opening


def _open(path: str | os.PathLike) -> av.container.InputContainer:
    """Open for reading, turning every way this can fail into one clear MediaError."""
    p = Path(path)
    if not p.exists():
        raise MediaError(path, "file not found")
    if p.is_dir():
        raise MediaError(path, "is a directory, not a media file")
    if p.stat().st_size == 0:
        raise MediaError(path, "empty file")
    if not os.access(p, os.R_OK):
        raise MediaError(path, "cannot read file (permission denied)")
    try:
        return av.open(str(p), "r")
    except _AV_ERRORS as e:
        raise MediaError(path, f"not a media file (cannot open container: {_reason(e)})") from None


def _reason(e: BaseException) -> str:
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


def _container_start(container) -> float:
    """The container's start in seconds when positive (e.g. MPEG-TS), else 0."""
    start = container.start_time
    return start / av.time_base if start and start > 0 else 0.0


@dataclass(frozen=True)
class _FirstFrame:
    """The first displayed video frame: its time (file seconds) and pts (stream time base),
    and how it is shown."""

    time: float
    pts: int | None
    rotation: int
    sample_aspect_ratio: Fraction


def _first_frame(container, stream, path) -> _FirstFrame:
    """Decode the first frame a player shows (after any edit list), then rewind.  A file
    whose first frame does not decode falls back on the stream's declared start."""
    first = None
    try:
        for frame in container.decode(stream):
            first = frame
            break
    except _AV_ERRORS:
        pass
    sar = _sample_aspect_ratio(stream)
    if first is not None and first.pts is not None:
        found = _FirstFrame(float(first.pts * first.time_base), int(first.pts), _display_rotation(first), sar)
    elif stream.start_time is not None:
        rotation = _display_rotation(first) if first is not None else 0
        found = _FirstFrame(float(stream.start_time * stream.time_base), int(stream.start_time), rotation, sar)
    else:
        found = _FirstFrame(_container_start(container), None, 0, sar)
    _rewind(container, path)
    return found


def _origin(container, stream, path) -> float:
    """File timestamp (seconds) of time 0 on the picture's clock: the first displayed frame of
    `stream` (the video), or for a file without video the container's start."""
    return _first_frame(container, stream, path).time if stream is not None else _container_start(container)


def _sample_aspect_ratio(stream) -> Fraction:
    """Width / height of one stored pixel (1 when unknown or square)."""
    sar = getattr(stream, "sample_aspect_ratio", None)
    if not sar or sar.numerator <= 0 or sar.denominator <= 0:
        return Fraction(1)
    return Fraction(sar.numerator, sar.denominator)


def _display_size(width: int, height: int, sar: Fraction) -> tuple[int, int]:
    """Stored size -> shown size (before rotation): non-square pixels are stretched, never
    squeezed, so no stored detail is lost."""
    if sar > 1:
        return max(1, int(round(width * sar))), height
    if sar < 1:
        return width, max(1, int(round(height / sar)))
    return width, height


def _seek(container, stream, t: float) -> None:
    """Seek `stream` to the last keyframe at or before absolute time `t` (seconds).

    A file that cannot seek is left where it is (its start): reading then decodes
    forward to `t`, slower but the same result.
    """
    try:
        container.seek(max(0, int(math.floor(t / stream.time_base))), stream=stream, backward=True)
    except _AV_ERRORS:
        pass


def _rewind(container, path) -> None:
    try:
        container.seek(0)
    except _AV_ERRORS as e:
        raise MediaError(path, f"cannot seek back to the start ({_reason(e)})") from None


def _video_stream(container):
    """The first real video stream; cover art in music files (attached pictures) is not video."""
    for s in container.streams.video:
        if not s.disposition & av.stream.Disposition.attached_pic:
            return s
    return None


def _display_rotation(frame: av.VideoFrame) -> int:
    """Counter-clockwise quarter turns that make `frame` upright, in degrees."""
    return int(round(getattr(frame, "rotation", 0) / 90.0)) * 90 % 360


# ---------------------------------------------------------------- probe


def probe(path: str | os.PathLike) -> MediaInfo:
    """Duration, streams, frame rate, display size and audio format of a media file."""
    with _open(path) as c:
        v = _video_stream(c)
        a = c.streams.audio[0] if c.streams.audio else None
        if v is None and a is None:
            raise MediaError(path, "no audio or video stream")
        fps = width = height = num_frames = None
        rotation, start, sar = 0, _container_start(c), Fraction(1)
        duration = _duration(c)
        if v is not None:
            rate = v.average_rate or v.guessed_rate
            fps = float(rate) if rate else None
            first = _first_frame(c, v, path)
            rotation, start, sar = first.rotation, first.time, first.sample_aspect_ratio
            width, height = _display_size(v.width, v.height, sar)
            if rotation in (90, 270):
                width, height = height, width
            duration = _picture_end(c, v, path) - start
            if v.frames:
                num_frames = int(v.frames)
            elif fps:
                num_frames = int(round(duration * fps))
        return MediaInfo(
            path=str(path),
            duration=max(duration, 0.0),
            has_video=v is not None,
            has_audio=a is not None,
            fps=fps,
            width=width,
            height=height,
            rotation=rotation,
            num_frames=num_frames,
            audio_sample_rate=a.sample_rate if a is not None else None,
            audio_channels=a.channels if a is not None else None,
            start=start,
            sample_aspect_ratio=sar,
        )


def _duration(container) -> float:
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    ends = [_stream_duration(s, 0.0) for s in container.streams if s.type in ("video", "audio")]
    return max(ends, default=0.0)


#: seconds before the container's end from which the last video packets are read when the
#: stream does not state its duration (Matroska, WebM)
TAIL_SECONDS = 5.0


def _picture_end(container, stream, path) -> float:
    """File timestamp (seconds) where the last frame of `stream` ends: the stream's declared
    start + duration (mp4 and MPEG-TS state them, edit lists applied), else the end of the
    packets near the container's end, else the container's end."""
    if stream.duration and stream.start_time is not None:
        return float((stream.start_time + stream.duration) * stream.time_base)
    end_all = (container.start_time or 0) / av.time_base + _duration(container)
    end = None
    try:
        container.seek(max(0, int((end_all - TAIL_SECONDS) * av.time_base)), backward=True)
        for packet in container.demux(stream):
            if packet.pts is not None and not packet.is_discard:
                stop = float((packet.pts + (packet.duration or 0)) * stream.time_base)
                end = stop if end is None else max(end, stop)
    except _AV_ERRORS:
        pass
    _rewind(container, path)
    return end if end is not None else end_all


def _stream_duration(stream, fallback: float) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return fallback


# ---------------------------------------------------------------- frames


def _target_size(width: int, height: int, max_short_side: int | None) -> tuple[int, int]:
    """Output size before rotation, from the shown (pixel aspect applied) size: short side
    <= bound, aspect kept, even sides."""
    if max_short_side is None or min(width, height) <= max_short_side:
        return width, height
    if max_short_side < 2:
        raise ValueError(f"max_short_side must be >= 2, got {max_short_side}")
    short, long = min(width, height), max(width, height)
    new_short = max_short_side // 2 * 2
    # The long side follows the (even) short side so the aspect ratio is kept.
    new_long = max(2, 2 * round(long * new_short / short / 2))
    return (new_short, new_long) if width <= height else (new_long, new_short)


# Sparse reading skips a stretch of frames (seeking to the next sampled frame's keyframe)
# only when it spans at least this long: a seek restarts the decoder's threads.
SKIP_AT_LEAST = 0.5  # seconds (benchmarks/frame_reading.py --readers)


def iter_frames(
    path: str | os.PathLike,
    fps: float,
    t0: float = 0.0,
    t1: float | None = None,
    max_short_side: int | None = None,
    sparse: bool = True,
) -> Iterator[tuple[float, np.ndarray]]:
    """Yield `(t, frame)` for t = t0 + (i + 0.5) / fps, every t < min(t1, video end).

    `frame` is uint8 RGB [H, W, 3], upright, the picture on screen at time t (seconds):
    the last frame whose presentation time is <= t, or the first frame if t precedes it.
    Frames between samples are decoded and dropped without conversion, so memory holds
    a frame or two, whatever the video length.  Source frame times are real timestamps,
    so variable frame rate is handled; when fps exceeds the source, frames repeat.
    The file is opened (and bad input reported) at the call, not at the first `next`.

    With `sparse` (the default) a stretch of frames that no sample time needs is not
    decoded when a keyframe lies inside it: the reader seeks to the keyframe before the
    next sample time instead (frames far apart, keyframes close together).  The frames
    returned are the same as decoding every packet (`sparse=False`): decoding starts at a
    keyframe at or before each sample, and the frame on screen at a sample time is at or
    after that keyframe in presentation order.
    """
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if t0 < 0:
        raise ValueError(f"t0 must be >= 0, got {t0}")
    container = _open(path)
    try:
        stream = _video_stream(container)
        if stream is None:
            raise MediaError(path, "no video stream")
        stream.thread_type = THREAD_TYPE  # before the first decode opens the decoder
        first = _first_frame(container, stream, path)
        until = math.inf if t1 is None else t1
        keys = _keyframe_times(container, stream, first.time, t0, until) if sparse else []
    except BaseException:
        container.close()
        raise
    return _sample_frames(container, stream, path, fps, t0, t1, max_short_side, first, keys)


class _Held:
    """The decoded frame currently on screen; converted to RGB only if sampled."""

    def __init__(self, t: float, frame: av.VideoFrame, size: tuple[int, int], rotation: int,
                 reformatter: VideoReformatter):
        self.t, self.frame, self.size, self.rotation = t, frame, size, rotation
        self.reformatter = reformatter
        self.duration = _frame_seconds(frame)
        self.array: np.ndarray | None = None

    def rgb(self) -> np.ndarray:
        if self.array is not None:
            return self.array.copy()  # a repeated frame: hand out an independent array
        # Resize inside the swscale conversion; rotate the (small) result.
        rgb = self.reformatter.reformat(self.frame, width=self.size[0], height=self.size[1], format="rgb24")
        arr = rgb.to_ndarray()
        if self.rotation:
            arr = np.ascontiguousarray(np.rot90(arr, k=self.rotation // 90))
        self.array = arr
        self.frame = None  # the decoded picture is no longer needed
        return arr


def _decoded(container, stream, path, origin: float) -> Iterator[tuple[float, av.VideoFrame]]:
    """(time on the picture's clock in seconds, frame) in presentation order, `origin` being
    the file time of the first displayed frame; stops quietly at corrupt data once something
    has decoded (a truncated file gives what it has)."""
    last = None
    try:
        for frame in container.decode(stream):
            if frame.pts is None:
                # No timestamp: continue from the previous one at the nominal rate.
                rate = stream.average_rate or stream.guessed_rate or 25
                t = 0.0 if last is None else last + 1.0 / float(rate)
            else:
                t = float(frame.pts * frame.time_base) - origin
            last = t
            yield t, frame
    except _AV_ERRORS as e:
        if last is None:
            raise MediaError(path, f"cannot decode video ({_reason(e)})") from None


def _keyframe_times(container, stream, origin: float, since: float = 0.0, until: float = math.inf) -> list[float]:
    """Presentation times (seconds on the picture's clock, sorted) of the keyframes of `stream`
    from the one at or before `since` up to the first one after `until` (no other is ever
    sought: a window lies between them), from its packets alone (no decoding), then back to
    the start.  Empty when the packets do not tell or the file cannot seek back (then nothing
    is skipped).  Reading a window of a long file so costs the window's packets, not the
    file's up to it."""
    times = []
    try:
        if since > 0:
            _seek(container, stream, since + origin)
        for p in container.demux(stream):
            if p.is_keyframe and p.pts is not None:
                times.append(float(p.pts * p.time_base) - origin)
                if times[-1] > until:
                    break
        container.seek(0)
    except _AV_ERRORS:
        return []
    return sorted(times)


def _skipping(container, stream, path, frames, keys: list[float], next_sample, limit: float, origin: float):
    """`frames` (decoded, presentation order), jumping ahead by a seek when the keyframe at
    or before the next needed sample time lies well after the frame just handed out.  A
    seek that lands past that sample time (an odd index) is undone: decoding restarts
    from the keyframe before the last frame handed out, without further skips."""
    # half a tick past the keyframe: seconds -> ticks must not round to the tick before it
    nudge = 0.5 * float(stream.time_base)
    done = -math.inf  # presentation time of the last frame handed out
    sought = -math.inf  # the last keyframe sought: never seek back to it (an index that lands early)
    while True:
        try:
            t, frame = next(frames)
        except StopIteration:
            return
        if t <= done:
            continue  # decoded again after an undone seek
        done = t
        yield t, frame
        want = next_sample(t)
        k = bisect.bisect_right(keys, want) - 1
        if want >= limit or k < 0 or keys[k] - t < SKIP_AT_LEAST or keys[k] <= sought:
            continue
        sought = keys[k]
        frames.close()
        _seek(container, stream, keys[k] + origin + nudge)
        frames = _decoded(container, stream, path, origin)
        first = next(frames, None)
        if first is not None and first[0] <= want + 1e-6:
            frames = _prepend(first, frames)
            continue
        frames.close()
        _seek(container, stream, max([x for x in keys if x <= t], default=0.0) + origin)
        frames = _decoded(container, stream, path, origin)
        keys = []


def _sample_frames(container, stream, path, fps, t0, t1, max_short_side, first: _FirstFrame, keys=()):
    limit = math.inf if t1 is None else t1

    def sample_time(i: int) -> float:
        return t0 + (i + 0.5) / fps

    def next_sample(t: float) -> float:
        """The first sample time at or after `t` (those before it are handed out)."""
        return sample_time(max(0, math.ceil((t - t0) * fps - 0.5 - 1e-9)))

    with container:
        if sample_time(0) >= limit:
            return
        frames = _frames_from(container, stream, path, t0, sample_time(0), first.time)
        if keys:
            frames = _skipping(container, stream, path, frames, list(keys), next_sample, limit, first.time)
        try:
            yield from _pick(frames, sample_time, limit, max_short_side, stream, path, first.sample_aspect_ratio)
        finally:
            frames.close()


def _frames_from(container, stream, path, t0: float, first_sample: float, origin: float):
    """Decoded frames starting at or before `first_sample`, seeking when t0 > 0."""
    frames = _decoded(container, stream, path, origin)
    if t0 <= 0:
        return frames
    _seek(container, stream, t0 + origin)
    first = next(frames, None)
    if first is not None and first[0] <= first_sample + 1e-6:
        return _prepend(first, frames)
    # The seek landed after the first sample (sparse index, odd files): start over.
    frames.close()
    _rewind(container, path)
    return _decoded(container, stream, path, origin)


def _prepend(first, rest):
    yield first
    yield from rest  # closing this generator closes `rest` too


def _pick(frames, sample_time, limit: float, max_short_side, stream, path, sar: Fraction = Fraction(1)):
    """For each sample time, the frame on screen, as shown (`sar`: the stored pixels' aspect
    ratio); converts only those frames."""
    i = 0
    cur: _Held | None = None
    size = rotation = interval = None
    # This read's own converter: `frame.to_ndarray(width=...)` would use PyAV's (>= 18.1.1)
    # per-thread one, whose swscale worker threads a forked process (a decoding worker of
    # `vab extract`) inherits as a handle to threads it does not have: it waits forever.
    reformatter = VideoReformatter()
    for t, frame in frames:
        if cur is None:
            # The first frame also covers samples before it.
            size = _target_size(*_display_size(frame.width, frame.height, sar), max_short_side)
            rotation = _display_rotation(frame)
        else:
            while sample_time(i) < min(t, limit):
                yield sample_time(i), cur.rgb()
                i += 1
            if sample_time(i) >= limit:
                return
            interval = t - cur.t
        cur = _Held(t, frame, size, rotation, reformatter)
    if cur is None:
        raise MediaError(path, "no video frames could be decoded")
    # The last frame stays on screen for its own duration (else the last interval).
    end = cur.t + (cur.duration or interval or _nominal_frame_seconds(stream))
    while sample_time(i) < min(end, limit):
        yield sample_time(i), cur.rgb()
        i += 1


def _frame_seconds(frame: av.VideoFrame) -> float | None:
    if getattr(frame, "duration", None) and frame.time_base is not None:
        return float(frame.duration * frame.time_base)
    return None


def _nominal_frame_seconds(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate
    return 1.0 / float(rate) if rate else 0.0


def read_frames(
    path: str | os.PathLike,
    fps: float,
    t0: float = 0.0,
    t1: float | None = None,
    max_short_side: int | None = None,
    sparse: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """All of `iter_frames` at once: frames uint8 [F, H, W, 3] RGB, times float64 [F] (s)."""
    times, frames = [], []
    for t, frame in iter_frames(path, fps, t0, t1, max_short_side, sparse):
        times.append(t)
        frames.append(frame)
    if not frames:
        return np.zeros((0, 0, 0, 3), dtype=np.uint8), np.zeros(0, dtype=np.float64)
    return np.stack(frames), np.asarray(times, dtype=np.float64)


# ---------------------------------------------------------------- audio


def read_audio(
    path: str | os.PathLike, sample_rate: int, t0: float = 0.0, t1: float | None = None
) -> np.ndarray:
    """Mono float32 [N] at `sample_rate` Hz for the window [t0, t1) in seconds on the
    picture's clock (see the module docstring): sound before the first displayed frame is
    not part of it, and silence fills the picture's time before the sound starts.

    Channels are averaged (any layout).  With t1 given, N = round((t1 - t0) * sample_rate)
    exactly, zero-padded past the end of the stream; otherwise up to the end of the stream.
    Samples are placed by their timestamps, so a window read after a seek is aligned.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be > 0, got {sample_rate}")
    if t0 < 0:
        raise ValueError(f"t0 must be >= 0, got {t0}")
    start = int(round(t0 * sample_rate))
    n = None if t1 is None else max(0, int(round((t1 - t0) * sample_rate)))
    with _open(path) as container:
        if not container.streams.audio:
            raise MediaError(path, "no audio stream")
        stream = container.streams.audio[0]
        stream.thread_type = THREAD_TYPE
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        origin = _origin(container, _video_stream(container), path)
        chunks = _audio_chunks(container, stream, path, sample_rate, start, n, origin, seek=t0 > 0)
        if chunks and t0 > 0 and chunks[0][0] > start:
            # The seek landed after the window start: decode from the beginning instead.
            _rewind(container, path)
            chunks = _audio_chunks(container, stream, path, sample_rate, start, n, origin, seek=False)
        stream_end = _audio_end_index(stream, sample_rate, origin)
        frame_size = stream.codec_context.frame_size or 4096
        padding = int(math.ceil(frame_size * sample_rate / stream.sample_rate))
    decoded_end = max((s + len(x) for s, x in chunks), default=start)
    end = decoded_end
    # Codecs such as AAC decode a whole last frame past the true end; the stream's
    # duration says where the signal stops.  Only trust it for such a small overshoot
    # (a bitrate-estimated duration, e.g. VBR mp3, can be far off).
    if stream_end is not None and 0 < decoded_end - stream_end <= padding:
        end = stream_end
    if n is None:
        n = max(end - start, 0)
    out = np.zeros(n, dtype=np.float32)
    for s, x in chunks:
        a, b = max(s, start), min(s + len(x), start + n, end)
        if b > a:
            out[a - start : b - start] = x[a - s : b - s]
    return out


def _audio_end_index(stream, sample_rate: int, origin: float) -> int | None:
    """Sample index (output clock) where the stream's declared duration ends."""
    if not stream.duration or stream.time_base is None:
        return None
    first = stream.start_time or 0
    return int(round((float((first + stream.duration) * stream.time_base) - origin) * sample_rate))


def _audio_chunks(container, stream, path, sample_rate, start, n, origin: float, seek: bool):
    """[(first sample index on the output clock, mono float32 samples)] covering the
    window; decoding stops once the window [start, start + n) is filled.  `origin`: file
    time (s) of the output clock's 0."""
    if seek:
        # Pre-roll: decoders with overlapping frames (AAC, MP3) and the resampler
        # need some input before the window before their output is exact.
        frame_size = stream.codec_context.frame_size or 1024
        preroll = max(0.25, 8 * frame_size / (stream.sample_rate or sample_rate))
        _seek(container, stream, start / sample_rate - preroll + origin)
    # Keep every channel through the resampler and average afterwards: swresample's
    # own downmix weights channels (and drops LFE) rather than averaging them.  Packed
    # samples: PyAV cannot hand out planar frames of 8 or more channels (it crashes).
    resampler = av.AudioResampler(format="flt", rate=sample_rate)
    chunks: list[tuple[int, np.ndarray]] = []
    next_index = None

    def add(frames) -> None:
        nonlocal next_index
        for f in frames:
            x = f.to_ndarray().reshape(-1, f.layout.nb_channels).mean(axis=1, dtype=np.float32)
            if f.pts is not None and f.time_base is not None:
                index = int(round((float(f.pts * f.time_base) - origin) * sample_rate))
            else:
                index = next_index or 0
            chunks.append((index, x))
            next_index = index + len(x)

    decoded_any = False
    try:
        for frame in container.decode(stream):
            decoded_any = True
            add(resampler.resample(frame))
            if n is not None and next_index is not None and next_index >= start + n:
                break
        else:
            add(resampler.resample(None))
    except _AV_ERRORS as e:
        if not decoded_any:
            raise MediaError(path, f"cannot decode audio ({_reason(e)})") from None
        try:
            add(resampler.resample(None))
        except _AV_ERRORS:
            pass
    except ValueError as e:  # the stream changed format mid-way
        raise MediaError(path, f"cannot decode audio ({e})") from None
    if not decoded_any and not seek:
        raise MediaError(path, "no audio could be decoded")
    return chunks


def _as_channels(wav: np.ndarray) -> np.ndarray:
    """float32 [C, N] from [N] or [C, N]."""
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim == 1:
        wav = wav[None]
    if wav.ndim != 2 or wav.shape[0] == 0:
        raise VabError(f"audio must be shaped [N] or [C, N], got {tuple(wav.shape)}")
    return wav


def _layout(channels: int) -> str:
    return _LAYOUTS.get(channels) or av.AudioLayout(f"{channels}c").name


def _pcm16(wav: np.ndarray) -> np.ndarray:
    """[C, N] float in [-1, 1] -> int16 interleaved [1, N * C]."""
    # Scale by 2**15 like FFmpeg's own float->s16 conversion, so reading back
    # (which divides by 2**15) returns the input to within one quantisation step.
    x = np.clip(np.round(wav * 32768.0), -32768, 32767).astype(np.int16)
    return np.ascontiguousarray(x.T).reshape(1, -1)


def write_audio(path: str | os.PathLike, wav: np.ndarray, sample_rate: int) -> Path:
    """Write `wav` ([N] or [C, N] float32 in [-1, 1]) as 16-bit `.wav` or `.flac`, atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _WRITE_CODECS:
        raise VabError(f"{path}: cannot write audio with suffix {path.suffix!r} (use .wav or .flac)")
    fmt, codec = _WRITE_CODECS[suffix]
    wav = _as_channels(wav)
    layout = _layout(wav.shape[0])
    hop = 1 << 16
    with atomic_path(path) as tmp:
        with av.open(str(tmp), "w", format=fmt) as out:
            stream = out.add_stream(codec, rate=sample_rate, layout=layout, format="s16")
            for s in range(0, wav.shape[1], hop):
                frame = av.AudioFrame.from_ndarray(_pcm16(wav[:, s : s + hop]), format="s16", layout=layout)
                frame.sample_rate = sample_rate
                frame.pts = s
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
    return path


def mux(
    video_path: str | os.PathLike, wav: np.ndarray, sample_rate: int, out_path: str | os.PathLike,
    seconds: float | None = None,
) -> Path:
    """Copy `video_path` to `out_path` with its video packets unchanged and `wav`
    ([N] or [C, N] float32, `sample_rate` Hz) as the only audio track (AAC).

    Time is the picture's (module docstring): sample 0 of `wav` plays with the first
    displayed frame, wherever the source's timestamps start (an MPEG-TS picture at 1.4 s, an
    edit list hiding frames), and the output's timestamps start there.  The audio is cut or
    zero-padded to the picture's length, so the output is no longer than the picture (in
    containers without edit lists, .mkv and .ts, the track ends on a whole AAC frame, at most
    one frame, 21 ms at 48 kHz, before the picture does).  Frames an mp4 edit list hides
    before the first displayed one stay hidden in .mp4 / .mov; other containers cannot hide
    them, so they show, over silence.  The display matrix and pixel aspect ratio are kept
    (a container that cannot hold the rotation is refused).  With `seconds`, only the first
    `seconds` of the picture are kept (packets are copied, not re-encoded, so the cut falls
    on the first packet in decode order at or after that time; every frame shown before it
    stays decodable).  Any original audio track is dropped.  Written atomically; the
    container follows the suffix of `out_path` (.mp4, .mov, .mkv, .ts ...).
    """
    out_path = Path(out_path)
    wav = _as_channels(wav)
    if wav.shape[0] > 2:
        raise VabError(f"{out_path}: mux takes mono or stereo audio, got {wav.shape[0]} channels")
    layout = _layout(wav.shape[0])
    with _open(video_path) as src:
        vin = _video_stream(src)
        if vin is None:
            raise MediaError(video_path, "no video stream")
        first, span, start = _picture(src, vin, video_path)
        picture = float((span.end - start) * vin.time_base)
        cut = None
        if seconds is not None and seconds < picture:
            picture = float(seconds)
            cut = start + int(math.ceil(picture / vin.time_base - 1e-6))
        with atomic_path(out_path) as tmp:
            try:
                out = av.open(str(tmp), "w")
            except ValueError as e:
                raise VabError(f"{out_path}: cannot write a video file with this name ({e})") from None
            with out:
                exact = out.format.name in _EDIT_LIST_FORMATS
                try:
                    vout = out.add_stream_from_template(vin)
                    # AAC has a fixed set of rates; PyAV's encoder resamples frames to the stream rate.
                    # Without an edit list the track ends on a whole frame: 48 kHz keeps frames short.
                    aout = out.add_stream("aac", rate=_aac_rate(sample_rate if exact else max(sample_rate, 48000)),
                                          layout=layout)
                except ValueError as e:
                    raise VabError(f"{out_path}: cannot write this video into that container ({e})") from None
                # frames decoded before the first shown one (edit list): the sound starts with
                # them, in silence, so it starts with the first frame any player shows
                hidden = max(0.0, float((start - span.first) * vin.time_base))
                audio = _fit_audio(wav, sample_rate, picture, None if exact else aout.sample_rate, lead=hidden)
                frames = _audio_frames(audio, sample_rate, layout, first_pts=-int(round(hidden * sample_rate)))
                try:
                    _interleave(src, vin, out, vout, aout, frames, start, cut)
                except _AV_ERRORS as e:
                    raise MediaError(video_path, f"cannot remux into {out_path} ({_reason(e)})") from None
            _check_display_kept(tmp, out_path, first)
    return out_path


def _check_display_kept(written: Path, out_path: Path, source: _FirstFrame) -> None:
    """VabError when the muxed file would show the picture turned or stretched otherwise than
    the source (a container with no place for a display matrix, e.g. MPEG-TS)."""
    with _open(written) as c:
        got = _first_frame(c, _video_stream(c), written)
    if got.rotation != source.rotation:
        raise VabError(f"{out_path}: a {out_path.suffix or 'file of this kind'} cannot keep the video's "
                       f"{source.rotation}-degree rotation; write .mp4, .mov or .mkv")
    if got.sample_aspect_ratio != source.sample_aspect_ratio:
        raise VabError(f"{out_path}: a {out_path.suffix or 'file of this kind'} cannot keep the video's "
                       f"pixel aspect ratio ({source.sample_aspect_ratio}); write .mp4, .mov or .mkv")


def _fit_audio(wav: np.ndarray, sample_rate: int, seconds: float, aac_rate: int | None, lead: float = 0.0) -> np.ndarray:
    """[C, N]: `lead` seconds of silence, then `wav` cut or zero-padded to `seconds` (never a
    sample past them).

    Without an edit list to hide the last frame's padding (`aac_rate` given), the
    track is cut to whole AAC frames so the padded end still falls within the video.
    """
    total = lead + seconds
    if aac_rate is not None:
        total = math.floor(total * aac_rate / _AAC_FRAME + 1e-6) * _AAC_FRAME / aac_rate
    n = int(math.floor(total * sample_rate + 1e-6))
    skip = min(n, int(round(lead * sample_rate)))
    audio = np.zeros((wav.shape[0], n), dtype=np.float32)
    m = min(n - skip, wav.shape[1])
    audio[:, skip : skip + m] = np.clip(wav[:, :m], -1.0, 1.0)
    return audio


def _aac_rate(sample_rate: int) -> int:
    rates = sorted(av.Codec("aac", "w").audio_rates or [sample_rate])
    return sample_rate if sample_rate in rates else next((r for r in rates if r >= sample_rate), rates[-1])


def _interleave(
    src, vin, out, vout, aout, frames: Iterator[av.AudioFrame], start_pts: int, cut: int | None = None
) -> None:
    """Copy video packets (those decoded before `cut`, in the stream's time base, when given)
    with their timestamps moved so that the first displayed frame (`start_pts`) is at 0, and
    encode audio frames (timestamps from 0 there), in time order, so the output is
    interleaved without the muxer buffering either stream."""
    pending = next(frames, None)
    # packets that do not say how long they last (MPEG-TS) get the nominal frame interval, so
    # the output's last frame lasts as long as in the source
    nominal = int(round(_nominal_frame_seconds(vin) / vin.time_base))
    for packet in src.demux(vin):
        if packet.dts is None:  # the demuxer's end-of-stream packet
            continue
        # dts <= pts: every frame shown before the cut, and each frame it refers to, is kept
        if cut is not None and packet.dts >= cut:
            break
        t = float((packet.dts - start_pts) * vin.time_base)
        while pending is not None and pending.pts / pending.sample_rate <= t:
            out.mux(aout.encode(pending))
            pending = next(frames, None)
        packet.stream = vout
        if not packet.duration:
            packet.duration = nominal
        packet.dts -= start_pts
        if packet.pts is not None:
            packet.pts -= start_pts
        out.mux(packet)
    while pending is not None:
        out.mux(aout.encode(pending))
        pending = next(frames, None)
    out.mux(aout.encode(None))


@dataclass(frozen=True)
class _Span:
    """Packet times of a video stream, in its time base: the first packet's pts (frames an
    edit list hides included), the first shown packet's and the end of the last shown one."""

    first: int
    shown: int
    end: int


def _packet_span(container, stream, path) -> _Span:
    """The :class:`_Span` of `stream`'s packets (read without decoding), then rewind.  A
    truncated stream gives the span of what it holds."""
    first = shown = end = None
    # packets that do not say how long they last (MPEG-TS) last the nominal frame interval
    nominal = int(round(_nominal_frame_seconds(stream) / stream.time_base)) if stream.time_base else 0
    try:
        for packet in container.demux(stream):
            if packet.pts is None:
                continue
            first = packet.pts if first is None else min(first, packet.pts)
            if packet.is_discard:  # decoded, never shown (an edit list)
                continue
            shown = packet.pts if shown is None else min(shown, packet.pts)
            stop = packet.pts + (packet.duration or nominal)
            end = stop if end is None else max(end, stop)
    except _AV_ERRORS as e:
        if first is None:
            raise MediaError(path, f"cannot read video packets ({_reason(e)})") from None
    if shown is None:
        raise MediaError(path, "video stream has no packets")
    _rewind(container, path)
    return _Span(first, shown, end)


def picture_seconds(path: str | os.PathLike) -> float:
    """How long the picture lasts (seconds): from the first displayed frame to the end of the
    last, from every packet of the video stream (not decoded); the span :func:`mux` keeps.
    A truncated file gives the length of what it holds."""
    with _open(path) as c:
        stream = _video_stream(c)
        if stream is None:
            raise MediaError(path, "no video stream")
        _, span, start = _picture(c, stream, path)
        return max(0.0, float((span.end - start) * stream.time_base))


def _picture(container, stream, path) -> tuple[_FirstFrame, _Span, int]:
    """(the first displayed frame, the packet span, the pts in `stream`'s time base where the
    picture starts) of the video `stream`."""
    first = _first_frame(container, stream, path)
    span = _packet_span(container, stream, path)
    return first, span, first.pts if first.pts is not None else span.shown


def _audio_frames(
    audio: np.ndarray, sample_rate: int, layout: str, hop: int = 1024, first_pts: int = 0
) -> Iterator[av.AudioFrame]:
    for s in range(0, audio.shape[1], hop):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio[:, s : s + hop]), format="fltp", layout=layout)
        frame.sample_rate = sample_rate
        frame.pts = first_pts + s
        frame.time_base = Fraction(1, sample_rate)
        yield frame
