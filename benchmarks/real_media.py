"""Every file of the real-media corpus (tests/corpus.py) through each path that outputs sound
for a picture, with the offsets measured: the table of docs/RELIABILITY.md.

Each corpus picture flashes at known times.  For each file:

- mux: a click track (a click on the first displayed frame, then one on each flash) muxed
  into .mp4 / .mov / .mkv / .ts by `vab.media.mux`; the worst |click - flash| in ms, decoded
  with PyAV alone on the output's own timestamps, or the one-line refusal;
- generate: the click generator of tests/clicksync.py (the library's Generator, frames read
  on the picture's clock, a click wherever a frame flashes) written as `vab generate` writes
  (wav + mp4): the wav's length minus the picture's, and the mp4's worst offset;
- extract: `decode_clip` (what `vab extract` and `vab embed` decode) at 50 fps: the worst
  |click onset - flash| in the clip's own sound, and whether each flash falls on the frame
  sampled just after it;
- app: the web page's backend (`Backend.soundtrack`) with the click generator: worst offset.

    python benchmarks/real_media.py --out /tmp/real-media
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/corpus.py, tests/clicksync.py

from tests.clicksync import click_generator  # noqa: E402
from tests.corpus import build_corpus, clicks, measure_sync, onsets  # noqa: E402
from vab import media  # noqa: E402
from vab.errors import VabError  # noqa: E402

CONTAINERS = (".mp4", ".mov", ".mkv", ".ts")
RATE = 16000


def ms(x: float) -> str:
    return f"{1000 * x:.0f}"


def refusal(exc: Exception) -> str:
    text = str(exc)
    return "refused: " + (text.split(": ", 1)[1] if ": " in text else text)


def worst(sync, marker: bool, expected_first: float | None = None) -> str:
    offsets = sync.offsets(marker)
    if marker and expected_first is not None:
        offsets.append(sync.clicks[0] - expected_first)
    if len(sync.clicks) != len(sync.flashes) + marker:
        return f"{len(sync.clicks) - marker} clicks for {len(sync.flashes)} flashes"
    return ms(max(map(abs, offsets))) if offsets else "-"


def mux_column(item, out: Path, suffix: str) -> str:
    track = clicks((0.0, *item.flashes), item.seconds, RATE)
    try:
        path = media.mux(item.path, track, RATE, out / f"{item.name}{suffix}")
    except VabError as exc:
        return refusal(exc)
    sync = measure_sync(path, declared_end=suffix in (".mp4", ".mov"))
    hidden = item.spec.hidden if suffix in (".mkv", ".ts") else 0.0
    path.unlink()
    return worst(sync, True, sync.first + hidden)


def generate_column(item, generator, out: Path) -> str:
    from vab.generation.generator import Request
    from vab.generation.outputs import plan_outputs, write_outputs

    outcome = next(generator.run([Request(source=str(item.path))]))
    if outcome.error is not None:
        return refusal(outcome.error)
    outputs = plan_outputs(out, item.name)
    try:
        write_outputs(outcome.result, item.path, outputs)
    except VabError as exc:
        return refusal(exc)
    sync = measure_sync(outputs.video, declared_end=True)
    length = outcome.result.seconds - item.seconds
    for p in outputs.paths():
        p.unlink()
    return f"{ms(length)} / {worst(sync, False)}"


def extract_column(item) -> str:
    from vab.config import ExtractConfig
    from vab.data.extract import decode_clip

    cfg = ExtractConfig(duration=min(item.seconds, 10.0), fps=50.0, max_short_side=32)
    try:
        wav, frames = decode_clip(str(item.path), cfg, RATE)
    except VabError as exc:
        return refusal(exc)
    a0, a1 = item.audio_span()
    shown = [f for f in item.flashes if f < cfg.duration]
    heard = onsets(wav, RATE)
    truth = [f for f in shown if a0 <= f < a1]
    sound = ms(max(abs(h - t) for h, t in zip(heard, truth))) if len(heard) == len(truth) and truth else "-"
    bright = [float(np.percentile(x.mean(axis=-1), 75)) > 200 for x in frames]
    seen = [i for i, b in enumerate(bright) if b and (i == 0 or not bright[i - 1])]
    frames_ok = seen == [int(np.ceil(f * cfg.fps - 0.5 - 1e-9)) for f in shown]
    return f"{sound} / {'yes' if frames_ok else 'NO'}"


def app_column(item, generator, folder: Path) -> str:
    from vab.app.backend import Backend
    from vab.app.workspace import Workspace
    from vab.generation.sampling import SamplingConfig

    with Workspace(parent=folder) as workspace:
        try:
            result = Backend(generator, workspace).soundtrack(str(item.path), SamplingConfig(steps=1))
        except VabError as exc:
            return refusal(exc)
        return worst(measure_sync(result.video, declared_end=True), False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, help="folder for the corpus and outputs (default: a temporary one)")
    p.add_argument("--only", default="mux,generate,extract,app", help="columns to measure")
    p.add_argument("--no-long", action="store_true", help="leave out the 30-minute file")
    p.add_argument("--files", help="only these corpus files (names, comma-separated)")
    args = p.parse_args()
    columns = args.only.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.out or Path(tmp)
        items = build_corpus(folder / "corpus", long=not args.no_long)
        out = folder / "outputs"
        out.mkdir(parents=True, exist_ok=True)
        generator = click_generator()
        header = ["file", "what it is"]
        header += [f"mux {s}" for s in CONTAINERS] if "mux" in columns else []
        header += ["generate: wav - picture / mp4"] if "generate" in columns else []
        header += ["extract: sound / frames"] if "extract" in columns else []
        header += ["app"] if "app" in columns else []
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for item in items.values():
            if args.files and item.name not in args.files.split(","):
                continue
            t0 = time.perf_counter()
            row = [f"`{item.path.name}`", item.spec.about]
            if "mux" in columns:
                row += [mux_column(item, out, s) for s in CONTAINERS]
            if "generate" in columns:
                row.append(generate_column(item, generator, out))
            if "extract" in columns:
                row.append(extract_column(item))
            if "app" in columns:
                row.append(app_column(item, generator, out))
            print("| " + " | ".join(row) + " |", flush=True)
            print(f"  ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
