"""Peak memory of `vab generate` and of `vab app` on a short and a long video: does it stay flat?

    python benchmarks/generate_memory.py                       # 10 s vs 10 min, CLI and page
    python benchmarks/generate_memory.py --long 1200 --steps 16
    python benchmarks/generate_memory.py --no-app               # the CLI only

Builds the `tiny` preset with random weights (spectral codec fitted on a few seconds of
noise) and two generated h264 + AAC videos (64 x 48, 5 fps, a tone), then runs
`vab generate` on each in a fresh subprocess and reads that process's high-water mark
(`resource.getrusage(RUSAGE_SELF).ru_maxrss`).  The target: the long video's peak at
most 1.5 x the short one's.  Sampling steps do not change memory, only time, so the
default uses few.  "after start" is the child's peak before generating anything (imports
for the CLI; imports, models and the page for the app).

The app cases start `vab app` in a fresh process per video and generate through the page
itself: headless chromium (Debian's, driven by Playwright as in tests/test_app.py) uploads
the video, sets the steps and presses Generate; the server's high-water mark is read from
/proc/PID/status (VmHWM) once the page shows the result.

Linux keeps a process's high-water mark across fork and exec, so a child started by a
big parent reports at least the parent's size: this script keeps its own process small
(no torch) and builds the model and videos in a subprocess too.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, resource, sys
import torch, vab.generation.generator, vab.commands.generate  # imports first, so 'after imports' is comparable
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
from vab.cli import main
rc = main(sys.argv[1:])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"rc": rc, "base_kb": base, "peak_kb": peak}))
"""


def setup(directory: Path, short: float, long: float) -> None:
    """(In a subprocess) the model directory and the two videos."""
    import numpy as np
    import torch

    sys.path.insert(0, str(ROOT))  # the test-media helpers live in tests/
    from tests.mediagen import make_video

    from vab.checkpoint import save_model
    from vab.codecs.spectral import SpectralCodec
    from vab.config import load_config
    from vab.model.vab import VAB
    from vab.visual import build_visual_encoder

    cfg = load_config("tiny", ["codec.codebook_size=32"])
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(16000 * 8).astype(np.float32) * np.repeat(rng.uniform(0.01, 0.5, 80), 1600)
    codec = SpectralCodec.from_config(cfg.codec).fit([noise])
    encoder = build_visual_encoder(cfg.visual)
    torch.manual_seed(0)
    books = [codec.codebook_vectors(k) for k in range(cfg.model.levels)]
    model = VAB.from_config(cfg, books, visual_dim=encoder.dim, frame_rate=codec.frame_rate)
    save_model(model, directory / "model")
    codec.save(directory / "model")
    for seconds in (short, long):
        make_video(directory / f"video_{seconds:g}s.mp4", seconds=seconds, fps=5.0, width=64, height=48)


def run_case(video: Path, model: Path, out: Path, steps: int) -> dict:
    args = ["generate", str(video), "--checkpoint", str(model), "--out", str(out), "--steps", str(steps),
            "--device", "cpu", "--overwrite"]
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"vab generate failed on {video}:\n{proc.stderr}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    if report["rc"] != 0:
        sys.exit(f"vab generate returned {report['rc']} on {video}:\n{proc.stderr}")
    report["seconds"] = seconds
    return report


def run_app_case(video: Path, model: Path, steps: int, log: Path) -> dict:
    """`vab app` in a fresh process; the video generated through the page in headless chromium."""
    sys.path.insert(0, str(ROOT))  # the browser helpers live in tests/
    from tests.browser import AppServer, chromium, open_page, peak_rss_mb, set_number, upload, wait_text
    from tests.conftest import free_port

    server = AppServer(["--checkpoint", str(model), "--port", str(free_port()), "--device", "cpu",
                        "--max-seconds", "86400"], log=log)
    try:
        base = peak_rss_mb(server.pid)
        with chromium() as context:
            page = open_page(context, server.url)
            set_number(page, "steps", steps)
            upload(page, "generate-video", video)
            wait_text(page, "#generate-status p", video.name)
            t0 = time.perf_counter()
            page.click("#generate-button")
            wait_text(page, "#generate-status p", "generated:", timeout=3_600_000)
            seconds = time.perf_counter() - t0
        peak = peak_rss_mb(server.pid)
    finally:
        server.stop()
    return {"base_kb": base * 1024, "peak_kb": peak * 1024, "seconds": seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--short", type=float, default=10.0, help="short video, seconds")
    p.add_argument("--long", type=float, default=600.0, help="long video, seconds")
    p.add_argument("--steps", type=int, default=4, help="sampling steps (memory does not depend on them)")
    p.add_argument("--no-app", action="store_true", help="measure `vab generate` only, not the page")
    p.add_argument("--setup", help=argparse.SUPPRESS)  # internal: build model and videos in this folder
    args = p.parse_args()
    if args.setup:
        setup(Path(args.setup), args.short, args.long)
        return

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subprocess.run([sys.executable, __file__, "--setup", str(tmp), "--short", str(args.short),
                        "--long", str(args.long)], check=True, capture_output=True)
        rows = {}
        for seconds in (args.short, args.long):
            video = tmp / f"video_{seconds:g}s.mp4"
            rows[("vab generate", seconds)] = (video.stat().st_size, run_case(video, tmp / "model", tmp / "out",
                                                                              args.steps))
        if not args.no_app:
            for seconds in (args.short, args.long):
                video = tmp / f"video_{seconds:g}s.mp4"
                report = run_app_case(video, tmp / "model", args.steps, tmp / f"app_{seconds:g}s.log")
                rows[("vab app (page)", seconds)] = (video.stat().st_size, report)

    print(f"`python benchmarks/generate_memory.py --short {args.short:g} --long {args.long:g} --steps {args.steps}"
          f"{' --no-app' if args.no_app else ''}` ({platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()})\n")
    print("| run | video | file | after start | peak RSS | wall time |")
    print("|---|---|---:|---:|---:|---:|")
    for (run, seconds), (size, r) in rows.items():
        print(f"| {run} | {seconds:g} s | {size / 1e6:.1f} MB | {r['base_kb'] / 1024:.0f} MB "
              f"| {r['peak_kb'] / 1024:.0f} MB | {r['seconds']:.0f} s |")
    print()
    for run in dict.fromkeys(run for run, _ in rows):
        ratio = rows[(run, args.long)][1]["peak_kb"] / rows[(run, args.short)][1]["peak_kb"]
        print(f"{run}: peak RSS ratio long / short {ratio:.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()
