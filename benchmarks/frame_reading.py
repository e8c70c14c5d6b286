"""Frame reading at 1 fps (`vab.media.read_frames`) against the naive reader that
converts every decoded frame to an RGB array and keeps the ones it needs.

    python benchmarks/frame_reading.py --seconds 10 --fps 25 --height 360 --repeat 3

Makes one h264 test clip (moving gradient and box, light noise) in a temporary folder,
then times both readers in the same run (best of `--repeat`) and prints a markdown table.
Both decode with PyAV's automatic threading, so the difference is the conversion work
skipped for frames that are never returned.

    python benchmarks/frame_reading.py --readers --gops 250 50 12 --sample-fps 1 8 --repeat 5

compares, on clips encoded like uploads (x264 veryfast, B-frames) with keyframes every
`--gops` frames, in one run with the repeats interleaved (best of `--repeat`):
decoding every packet with frame + slice threads (`sparse=False`, the reader before
issue 19), the same without decoder threads, and sparse reading (`sparse=True`: skip
stretches no sample needs by seeking to the next sample's keyframe).  It checks that
all three return identical frames.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test-media helpers live in tests/
from tests.mediagen import make_video  # noqa: E402
from vab.media import read_frames  # noqa: E402


class MovingScene:
    """Frames made on demand (a 10-s 360p clip would be ~170 MB as a list)."""

    def __init__(self, n: int, width: int, height: int):
        self.n, self.width, self.height = n, width, height
        yy, xx = np.mgrid[0:height, 0:width]
        self.base = np.stack([xx * 255 // width, yy * 255 // height, (xx + yy) * 127 // (width + height)], -1)
        self.noise = np.random.default_rng(0).integers(0, 12, (height, width, 3))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> np.ndarray:
        img = (self.base + 3 * i + self.noise) % 256
        x = (i * 7) % (self.width - 64)
        img[self.height // 3 : self.height // 3 + 64, x : x + 64] = (240, 40, 40)
        return img.astype(np.uint8)


def naive(path: Path, fps: float) -> np.ndarray:
    """Decode and convert every frame, then keep the frame on screen at each sample time."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        decoded = [(float(f.time), f.to_ndarray(format="rgb24")) for f in c.decode(stream)]
    times = np.array([t for t, _ in decoded])
    end = times[-1] + (times[-1] - times[-2])
    samples = (np.arange(int(end * fps)) + 0.5) / fps
    idx = np.maximum(np.searchsorted(times, samples[samples < end], side="right") - 1, 0)
    return np.stack([decoded[i][1] for i in idx])


def best_time(fn, repeat: int):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def compare_readers(args) -> None:
    """Decode threading and sparse reading against decoding every packet (see the docstring)."""
    import vab.media as media

    def without_threads(path, fps):
        media.THREAD_TYPE = "NONE"
        try:
            return read_frames(path, fps, sparse=False)[0]
        finally:
            media.THREAD_TYPE = "AUTO"

    readers = {
        "every packet, threads (before)": lambda path, fps: read_frames(path, fps, sparse=False)[0],
        "every packet, no threads": without_threads,
        "sparse, threads (now)": lambda path, fps: read_frames(path, fps, sparse=True)[0],
    }
    width = args.height * 16 // 9
    n = int(round(args.seconds * args.fps))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for gop in args.gops:
            path = make_video(Path(tmp) / f"gop{gop}.mp4", seconds=args.seconds, fps=args.fps, width=width,
                              height=args.height, frames=MovingScene(n, width, args.height),
                              encoder_options={"preset": "veryfast", "g": str(gop), "keyint_min": str(min(gop, 25))})
            for fps in args.sample_fps:
                best = {name: float("inf") for name in readers}
                out = {}
                for _ in range(args.repeat):  # interleaved: load changes hit every reader alike
                    for name, read in readers.items():
                        t = time.perf_counter()
                        out[name] = read(path, fps)
                        best[name] = min(best[name], time.perf_counter() - t)
                ref = out["every packet, threads (before)"]
                assert all(np.array_equal(ref, f) for f in out.values()), "the readers disagree"
                base = best["every packet, threads (before)"]
                for name in readers:
                    rows.append((gop, fps, name, len(ref), best[name], base / best[name]))
    print(f"{args.seconds:g}-s {args.fps:g}-fps {width}x{args.height} h264 (x264 veryfast, B-frames) clips; "
          f"best of {args.repeat}, interleaved; {platform.processor() or platform.machine()}, PyAV {av.__version__}\n")
    print("| keyframe every | sample fps | reader | frames | seconds | speed-up vs before |")
    print("|---|---|---|---|---|---|")
    for gop, fps, name, frames, seconds, ratio in rows:
        print(f"| {gop} frames ({gop / args.fps:g} s) | {fps:g} | {name} | {frames} | {seconds:.3f} | {ratio:.2f}x |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--fps", type=float, default=25.0, help="frame rate of the test clip")
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--sample-fps", type=float, nargs="+", default=[1.0], help="rate(s) read_frames samples at")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--readers", action="store_true", help="compare threading and sparse reading (see above)")
    p.add_argument("--gops", type=int, nargs="+", default=[250, 50, 12], help="keyframe intervals (frames), --readers")
    args = p.parse_args()
    if args.readers:
        return compare_readers(args)
    args.sample_fps = args.sample_fps[0]

    width = args.height * 16 // 9
    n = int(round(args.seconds * args.fps))
    with tempfile.TemporaryDirectory() as tmp:
        path = make_video(Path(tmp) / "clip.mp4", seconds=args.seconds, fps=args.fps, width=width,
                          height=args.height, frames=MovingScene(n, width, args.height))
        t_fast, (frames, _) = best_time(lambda: read_frames(path, args.sample_fps), args.repeat)
        t_naive, ref = best_time(lambda: naive(path, args.sample_fps), args.repeat)
    assert np.array_equal(frames, ref), "the two readers disagree"

    print(f"{args.seconds:g}-s {args.fps:g}-fps {width}x{args.height} h264 clip, {n} frames; "
          f"best of {args.repeat}; {platform.processor() or platform.machine()}, PyAV {av.__version__}\n")
    print("| reader | frames returned | seconds | frames decoded / s |")
    print("|---|---|---|---|")
    print(f"| `read_frames(fps={args.sample_fps:g})` | {len(frames)} | {t_fast:.3f} | {n / t_fast:.0f} |")
    print(f"| decode + convert every frame | {len(ref)} | {t_naive:.3f} | {n / t_naive:.0f} |")
    print(f"\nspeed-up: {t_naive / t_fast:.2f}x")


if __name__ == "__main__":
    main()
