"""Extraction throughput: clips/s for 10-s, 25-fps, 360p clips, split into decode /
codec / visual encoder time.

    python benchmarks/extract_throughput.py --clips 8 --setups offline encodec+clip dac+clip

Setups: `offline` (spectral codec + pixels encoder), `encodec+clip` and `dac+clip`
(the paper's pipeline: EnCodec 24 kHz / DAC 16 kHz and EVA02-L-14, random weights:
the compute is the same as with trained ones).  Decode time is measured with the
decoding in the main process (`--workers 0`), so the three parts add up to the
wall time; a second run with `--overlap-workers` shows the overlapped wall time.

    python benchmarks/extract_throughput.py --readers --clips 4 --sample-fps 1 8 --gops 250 12 --repeat 3

times the offline extraction (decoding in the main process) with frames stored at each
`--sample-fps`, on clips with keyframes every `--gops` frames (x264 veryfast, B-frames),
with the frame reader before issue 19 (decoding every packet) and now (sparse reading),
interleaved, best of `--repeat`; the stored data sets are checked identical.
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


def make_clips(folder: Path, n: int, seconds: float, fps: float, height: int, gop: int | None = None) -> None:
    """`n` clips of noisy frames; with `gop`, encoded as uploads are (x264 veryfast, B-frames)
    with a keyframe every `gop` frames."""
    from tests.mediagen import make_video

    width = height * 16 // 9
    rng = np.random.default_rng(0)
    options = None if gop is None else {"preset": "veryfast", "g": str(gop), "keyint_min": str(min(gop, 25))}
    for i in range(n):
        frames = [rng.integers(0, 255, (height, width, 3), dtype=np.uint8) // 4 + 32 * (k % 4) for k in range(int(seconds * fps))]
        make_video(folder / f"clip_{i:03d}.mp4", seconds=seconds, fps=fps, width=width, height=height, frames=frames,
                   sample_rate=44100, channels=2, encoder_options=options)


def compare_readers(args) -> None:
    """Offline extraction clips/s with the frame reader before issue 19 and now (see above)."""
    import vab.media as media
    from vab.data.store import DATA_DIR, column_to_numpy, load_dataset_dir

    keyframes = media._keyframe_times
    readers = {"before (every packet)": lambda *args, **kwargs: [], "now (sparse)": keyframes}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for gop in args.gops:
            make_clips(tmp / f"clips{gop}", args.clips, args.seconds, args.fps, args.height, gop)
            manifest = read_manifest(tmp / f"clips{gop}")
            for fps in args.sample_fps:
                cfg = load_config(None, SETUPS["offline"] + [f"extract.duration={args.seconds}", f"extract.fps={fps:g}",
                                                            "extract.num_workers=0", "extract.batch_size=4"])
                fit = tmp / f"fit-{gop}-{fps:g}"
                extract(manifest, fit, cfg.codec, cfg.visual, cfg.extract, progress=False)  # fit outside timing
                cfg.codec.path = str(fit / "codec.safetensors")
                best, decode, stored = {}, {}, {}
                for r in range(args.repeat):  # interleaved: load changes hit both readers alike
                    for name, reader in readers.items():
                        media._keyframe_times = reader
                        out = tmp / f"out-{gop}-{fps:g}-{r}-{name[:3]}"
                        t0 = time.perf_counter()
                        s = extract(manifest, out, cfg.codec, cfg.visual, cfg.extract, progress=False)
                        wall = time.perf_counter() - t0
                        media._keyframe_times = keyframes
                        if wall < best.get(name, (float("inf"),))[0]:
                            best[name] = (wall, s.extracted, s.decode_seconds)
                        table = load_dataset_dir(out / DATA_DIR).data.table
                        stored[name] = column_to_numpy(table.column("features"), np.float16)
                assert np.array_equal(*stored.values()), "the readers stored different features"
                base = best["before (every packet)"][0]
                for name, (wall, n, dec) in best.items():
                    rows.append((gop, fps, name, n / wall, dec / n, base / wall))
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads; offline setup "
          f"(spectral + pixels), decoding in the main process; best of {args.repeat}, interleaved")
    print(f"clips: {args.clips} x {args.seconds:g} s, {args.fps:g} fps, {args.height}p, x264 veryfast with B-frames\n")
    print("| keyframe every | stored fps | frame reader | clips/s | decode s/clip | speed-up |")
    print("|---|---|---|---|---|---|")
    for gop, fps, name, rate, dec, ratio in rows:
        print(f"| {gop} frames ({gop / args.fps:g} s) | {fps:g} | {name} | {rate:.2f} | {dec:.3f} | {ratio:.2f}x |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=8)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--setups", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    p.add_argument("--overlap-workers", type=int, default=1, help="decoding workers for the overlapped run")
    p.add_argument("--readers", action="store_true", help="frame reader before / now, offline setup (see above)")
    p.add_argument("--sample-fps", type=float, nargs="+", default=[1.0, 8.0], help="stored frame rates, --readers")
    p.add_argument("--gops", type=int, nargs="+", default=[250, 12], help="keyframe intervals (frames), --readers")
    p.add_argument("--repeat", type=int, default=3, help="runs per reader, --readers")
    args = p.parse_args()
    if args.readers:
        return compare_readers(args)

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
