"""Extraction throughput: clips/s for 10-s, 25-fps, 360p clips, split into decode /
codec / visual encoder time.

    python benchmarks/extract_throughput.py --clips 8 --setups offline encodec+clip dac+clip

Setups: `offline` (spectral codec + pixels encoder), `encodec+clip` and `dac+clip`
(the paper's pipeline: EnCodec 24 kHz / DAC 16 kHz and EVA02-L-14, random weights:
the compute is the same as with trained ones).  Decode time is measured with the
decoding in the main process (`--workers 0`), so the three parts add up to the
wall time; a second run with `--overlap-workers` shows the overlapped wall time.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.mediagen makes the clips

from vab.config import load_config
from vab.data.extract import extract
from vab.data.manifest import read_manifest

SETUPS = {
    "offline": ["codec.name=spectral", "visual.name=pixels"],
    "encodec+clip": ["codec.name=encodec", "codec.pretrained=false", "visual.name=clip", "visual.pretrained=null"],
    "dac+clip": ["codec.name=dac", "codec.pretrained=false", "visual.name=clip", "visual.pretrained=null"],
}


def make_clips(folder: Path, n: int, seconds: float, fps: float, height: int) -> None:
    from tests.mediagen import make_video

    width = height * 16 // 9
    rng = np.random.default_rng(0)
    for i in range(n):
        frames = [rng.integers(0, 255, (height, width, 3), dtype=np.uint8) // 4 + 32 * (k % 4) for k in range(int(seconds * fps))]
        make_video(folder / f"clip_{i:03d}.mp4", seconds=seconds, fps=fps, width=width, height=height, frames=frames,
                   sample_rate=44100, channels=2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=8)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--setups", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    p.add_argument("--overlap-workers", type=int, default=1, help="decoding workers for the overlapped run")
    args = p.parse_args()

    torch.manual_seed(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_clips(tmp / "clips", args.clips, args.seconds, args.fps, args.height)
        manifest = read_manifest(tmp / "clips")
        for setup in args.setups:
            for workers in (0, args.overlap_workers):
                cfg = load_config(None, SETUPS[setup] + [f"extract.duration={args.seconds}", "extract.fps=1",
                                                        f"extract.num_workers={workers}", "extract.batch_size=4"])
                out = tmp / f"out-{setup}-{workers}"
                if setup == "offline":  # fit the spectral codec outside the timed run
                    extract(manifest, out / "fit", cfg.codec, cfg.visual, cfg.extract, progress=False)
                    cfg.codec.path = str(out / "fit" / "codec.safetensors")
                t0 = time.perf_counter()
                s = extract(manifest, out, cfg.codec, cfg.visual, cfg.extract, progress=False)
                wall = time.perf_counter() - t0
                rows.append((setup, workers, s.extracted, wall, s.decode_seconds, s.codec_seconds, s.visual_seconds))
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    print(f"clips: {args.clips} x {args.seconds:g} s, {args.fps:g} fps, {args.height}p; features stored at 1 fps\n")
    print("| setup | decode workers | clips/s | decode s/clip | codec s/clip | visual s/clip | wall s/clip |")
    print("|---|---|---|---|---|---|---|")
    for setup, workers, n, wall, dec, cod, vis in rows:
        print(f"| {setup} | {workers} | {n / wall:.2f} | {dec / n:.3f} | {cod / n:.3f} | {vis / n:.3f} | {wall / n:.3f} |")


if __name__ == "__main__":
    main()
