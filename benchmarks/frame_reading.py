"""Frame reading at 1 fps (`vab.media.read_frames`) against the naive reader that
converts every decoded frame to an RGB array and keeps the ones it needs.

    python benchmarks/frame_reading.py --seconds 10 --fps 25 --height 360 --repeat 3

Makes one h264 test clip (moving gradient and box, light noise) in a temporary folder,
then times both readers in the same run (best of `--repeat`) and prints a markdown table.
Both decode with PyAV's automatic threading, so the difference is the conversion work
skipped for frames that are never returned.
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--fps", type=float, default=25.0, help="frame rate of the test clip")
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--sample-fps", type=float, default=1.0, help="rate read_frames samples at")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()

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
