"""Synthetic media for tests: h264 + aac files written with PyAV.

Frames carry their own index: frame i is filled with a grey level and a bar whose
position encodes i, so tests can tell which source frame a reader returned.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def frame_pattern(i: int, width: int, height: int) -> np.ndarray:
    """uint8 [H, W, 3]: value (i * 7) % 200 + 30 in the red channel, constant green/blue."""
    img = np.zeros((height, width, 3), dtype=np.uint8)
    img[..., 0] = (i * 7) % 200 + 30
    img[..., 1] = 90
    img[..., 2] = 160
    return img


def tone(seconds: float, sample_rate: int, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    x = 0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return np.repeat(x[None], channels, axis=0)


def make_video(
    path: str | Path,
    *,
    seconds: float = 2.0,
    fps: float = 25.0,
    width: int = 64,
    height: int = 48,
    audio: bool = True,
    video: bool = True,
    sample_rate: int = 16000,
    channels: int = 1,
    freq: float = 440.0,
    frame_times: list[float] | None = None,
    frames: list[np.ndarray] | None = None,
    wav: np.ndarray | None = None,
    rotation: int = 0,
    gop: int | None = None,
    container_options: dict[str, str] | None = None,
    encoder_options: dict[str, str] | None = None,
) -> Path:
    """Write an mp4 (h264 + aac).  `frame_times` gives explicit presentation times in
    seconds (variable frame rate); otherwise frames are at i / fps.  `frames` and `wav`
    ([C, N] float32) override the generated picture and tone.  `gop` caps the keyframe
    interval (frames; for seek tests).  `rotation` stores a display matrix
    (degrees counter-clockwise, as phones do); `container_options` go to the muxer
    (e.g. {"movflags": "faststart"}); `encoder_options` replace the x264 settings (default
    ultrafast, zerolatency: no B-frames)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if frame_times is None:
        n = int(round(seconds * fps))
        frame_times = [i / fps for i in range(n)]
    time_base = Fraction(1, 90000)
    with av.open(str(path), "w", options=container_options or {}) as out:
        vs = None
        if video:
            vs = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            vs.width, vs.height = width, height
            vs.pix_fmt = "yuv420p"
            vs.time_base = time_base
            # a fine codec time base keeps explicit (variable) frame times exact
            vs.codec_context.time_base = time_base
            vs.options = encoder_options or {"preset": "ultrafast", "tune": "zerolatency"}
            if gop is not None:
                vs.codec_context.gop_size = gop
            if rotation:
                vs.set_display_rotation(rotation)
        aus = None
        if audio:
            aus = out.add_stream("aac", rate=sample_rate)
            aus.layout = {1: "mono", 2: "stereo", 6: "5.1"}[channels]
        if vs is not None:
            for i, t in enumerate(frame_times):
                img = frames[i] if frames is not None else frame_pattern(i, width, height)
                frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                frame.pts = int(round(t / time_base))
                frame.time_base = time_base
                for packet in vs.encode(frame):
                    out.mux(packet)
            for packet in vs.encode():
                out.mux(packet)
        if aus is not None:
            samples = wav if wav is not None else tone(seconds, sample_rate, freq, channels)
            samples = np.ascontiguousarray(samples, dtype=np.float32)
            hop = 1024
            for start in range(0, samples.shape[1], hop):
                chunk = np.ascontiguousarray(samples[:, start : start + hop])
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=aus.layout.name)
                frame.sample_rate = sample_rate
                frame.pts = start
                for packet in aus.encode(frame):
                    out.mux(packet)
            for packet in aus.encode():
                out.mux(packet)
    return path


class _Cycle:
    """Garbage only the cycle collector frees."""

    def __init__(self, held):
        self.me, self.held = self, held


def leave_ffmpeg_garbage() -> None:
    """Leave an unreachable, used `av.AudioResampler` (a filter graph with threads) for the
    cycle collector: a forked process that frees it waits for threads it does not have."""
    resampler = av.AudioResampler(format="flt", rate=16000)
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 4096), np.float32), format="flt", layout="mono")
    frame.sample_rate = 44100
    resampler.resample(frame)
    _Cycle(resampler)
