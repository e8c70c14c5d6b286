"""Awkward and broken media for the reliability suite (docs/RELIABILITY.md).

`make_bad_media(folder)` writes every case of the suite into one folder and returns
``{case: Case}``.  Each case says whether a usable result is expected (`usable`) and,
for a bad file, a fragment of the one-line reason (`problem`).  Files stay tiny (a few
frames of 32x24 except the "4K" one, which has 2 frames) so a whole batch runs in seconds.
Builds on tests/mediagen.py; the odd-size video is written here because libx264 with
yuv420p refuses odd dimensions (it uses yuv444p).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from tests.mediagen import frame_pattern, make_video, tone

SMALL = {"width": 32, "height": 24, "fps": 4.0}
#: a file name with spaces and non-ASCII characters (Latin, Greek, CJK)
UNICODE_NAME = "my clip ünïcødé αβγ 日本.mp4"


@dataclass(frozen=True)
class Case:
    """One file of the suite.  `usable`: a correct result is expected (for a command that
    needs video and audio); otherwise `problem` is a fragment of the expected reason."""

    name: str
    path: Path
    usable: bool
    problem: str = ""
    seconds: float | None = None  # media duration when usable
    has_audio: bool = True
    has_video: bool = True


def odd_size_video(path: Path, width: int = 33, height: int = 17, seconds: float = 1.0, fps: float = 4.0) -> Path:
    """An h264 (yuv444p, which allows odd sizes) + aac mp4 of `width` x `height` pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv444p"
        vs.options = {"preset": "ultrafast"}
        aus = out.add_stream("aac", rate=16000)
        aus.layout = "mono"
        for i in range(round(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(frame_pattern(i, width, height), format="rgb24")
            frame.pts = i
            for packet in vs.encode(frame.reformat(format="yuv444p")):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
        samples = tone(seconds, 16000)
        for start in range(0, samples.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, start : start + 1024]), format="fltp",
                                               layout="mono")
            frame.sample_rate, frame.pts = 16000, start
            for packet in aus.encode(frame):
                out.mux(packet)
        for packet in aus.encode():
            out.mux(packet)
    return path


def truncated(source: Path, path: Path, keep: float) -> Path:
    """The first `keep` fraction of `source`'s bytes."""
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def make_bad_media(folder: str | Path) -> dict[str, Case]:
    """Write every case into `folder` (created); see the module docstring."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    scratch = folder.parent / f".{folder.name}-sources"  # complete files the truncated ones are cut from
    cases: list[Case] = []

    def good(name: str, seconds: float, **kwargs) -> None:
        path = make_video(folder / f"{name}.mp4", seconds=seconds, **{**SMALL, **kwargs})
        cases.append(Case(name, path, True, seconds=seconds))

    def bad(name: str, path: Path, problem: str, **kwargs) -> None:
        cases.append(Case(name, path, False, problem, **kwargs))

    # broken files
    (folder / "zero_bytes.mp4").write_bytes(b"")
    bad("zero_bytes", folder / "zero_bytes.mp4", "empty file")
    (folder / "text.mp4").write_text("this is a text file, not a video\n")
    bad("text", folder / "text.mp4", "not a media file")
    # moov at the end (the mp4 default): cutting the file loses the index -> cannot open
    whole = make_video(scratch / "whole.mp4", seconds=2.0, **SMALL)
    bad("truncated", truncated(whole, folder / "truncated.mp4", 0.5), "not a media file")
    # moov first (faststart): the index survives, the media data after the cut is gone
    fast = make_video(scratch / "fast.mp4", seconds=4.0, container_options={"movflags": "faststart"}, **SMALL)
    cases.append(Case("truncated_faststart", truncated(fast, folder / "truncated_faststart.mp4", 0.6), True,
                      seconds=None))
    # streams missing
    bad("audio_only", make_video(folder / "audio_only.mp4", seconds=1.0, video=False), "no video stream",
        has_video=False)
    bad("silent", make_video(folder / "silent.mp4", seconds=1.0, audio=False, **SMALL), "no audio stream",
        has_audio=False)
    # short, long frame rates, big, rotated, odd
    good("one_frame", 1 / 25, frame_times=[0.0], fps=25.0)
    good("short_0.3s", 0.3, fps=10.0)
    good("uhd_4k", 2 / 25, fps=25.0, width=3840, height=2160)
    good("fps_240", 0.5, fps=240.0)
    good("vfr", 2.0, frame_times=[0.0, 0.1, 0.15, 0.6, 0.65, 0.7, 1.4, 1.9])
    # the last frame stays on screen for the nominal interval: the video ends at 1.9 + 1 / 3.72 s
    cases[-1] = Case("vfr", cases[-1].path, True, seconds=2.15)
    good("rotated_90", 1.0, width=32, height=24, rotation=90)
    odd_size_video(folder / "odd_33x17.mp4")
    cases.append(Case("odd_33x17", folder / "odd_33x17.mp4", True, seconds=1.0))
    # audio layouts and rates
    good("mono_16k", 1.0, channels=1, sample_rate=16000)
    good("stereo_44k", 1.0, channels=2, sample_rate=44100)
    good("surround_5.1", 1.0, channels=6, sample_rate=48000)
    good("rate_8k", 1.0, sample_rate=8000)
    good("rate_48k", 1.0, sample_rate=48000)
    # names
    path = make_video(folder / UNICODE_NAME, seconds=1.0, **SMALL)
    cases.append(Case("unicode_name", path, True, seconds=1.0))
    return {c.name: c for c in cases}


def stem(case: Case) -> str:
    return case.path.stem


__all__ = ["UNICODE_NAME", "Case", "make_bad_media", "odd_size_video", "stem", "truncated"]
