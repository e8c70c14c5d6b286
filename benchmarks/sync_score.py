"""Validate the weights-free synchronisation score on a synthetic world.

    vab synth /tmp/w-demo --train 1 --valid 0 --test 64 --seconds 4 --fps 8
    vab synth /tmp/w-shapes --world shapes --train 1 --valid 0 --test 64 --seconds 3 --fps 8
    vab synth /tmp/w-words --world words --train 1 --valid 0 --test 64 --seconds 4 --fps 8  # kept out of the choice
    python benchmarks/sync_score.py /tmp/w-demo /tmp/w-shapes /tmp/w-words
    python benchmarks/sync_score.py --demo /tmp/demo-quick /tmp/demo-shapes-quick   # finished `vab demo` folders

For every test clip of each world (`vab synth` folders) the clip's own audio is scored
against its frames (`vab.evaluation.sync`) as recorded, moved later and earlier by 0.1 /
0.2 / 0.5 / 1 s (silence filled in), and replaced by another clip's audio (a fixed
derangement).  Printed per world and condition: the mean score, the mean absolute offset
estimate, and the share of clips whose own audio scores above the moved one; then the mean
score by the size of the move (both directions) and whether it falls with every step.

With --demo, each folder is a finished `vab demo` run: its generated soundtracks
(DIR/generated/<id>.wav) are scored against their clips' frames, beside the real audio and
against another clip's frames (chance), as the demo's report does, with the demo's own
timing agreement for comparison.
"""

from __future__ import annotations

import argparse
import itertools
import sys

import numpy as np

from vab import media
from vab.data.synthetic import iter_split, read_truth
from vab.evaluation.sync import shifted, sync_score

SHIFTS = (0.1, 0.2, 0.5, 1.0)
RATE = 16000


def world_scores(folder: str, split: str = "test") -> dict[str, list]:
    rows = sorted(iter_split(read_truth(folder), split), key=lambda r: r.id)
    clips = []
    for r in rows:
        info = media.probe(r.path)
        frames, _ = media.read_frames(r.path, info.fps)
        wav = media.read_audio(r.path, RATE, 0.0, len(frames) / info.fps)
        clips.append((wav, frames, info.fps))
    order = np.roll(np.arange(len(clips)), 1)  # clip i hears clip i - 1
    out: dict[str, list] = {}

    def add(name, wav, frames, fps):
        out.setdefault(name, []).append(sync_score(wav, RATE, frames, fps))

    for i, (wav, frames, fps) in enumerate(clips):
        add("own audio", wav, frames, fps)
        for s in SHIFTS:
            add(f"{s:g} s later", shifted(wav, s, RATE), frames, fps)
            add(f"{s:g} s earlier", shifted(wav, -s, RATE), frames, fps)
        other = clips[order[i]][0]
        add("another clip's audio", other[: len(wav)] if len(other) >= len(wav) else np.pad(other, (0, len(wav) - len(other))),
            frames, fps)
    return out


def demo_scores(folder: str) -> None:
    """The sync numbers of a finished demo run (generated, real, chance) and its timing agreement."""
    import json
    from pathlib import Path

    from vab.demo import quality

    out = Path(folder)
    rows = sorted(iter_split(read_truth(out / "world"), "test"), key=lambda r: r.id)
    fps = media.probe(rows[0].path).fps
    seconds = len(media.read_frames(rows[0].path, fps)[0]) / fps
    frames = [media.read_frames(r.path, fps, 0.0, seconds)[0] for r in rows]
    generated = [media.read_audio(out / "generated" / f"{r.id}.wav", RATE, 0.0, seconds) for r in rows]
    real = [media.read_audio(r.path, RATE, 0.0, seconds) for r in rows]
    gen, ref = quality.sync_scores(generated, RATE, frames, fps), quality.sync_scores(real, RATE, frames, fps)
    g = json.loads((out / "stages" / "generate.json").read_text())["results"]
    print(f"\n{folder}: {len(rows)} test clips")
    print("| audio | sync score | chance (another clip's frames) | sync offset s | chance | timing agreement |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| generated | {gen.score:.3f} | {gen.shuffled_score:.3f} | {gen.offset:.3f} | {gen.shuffled_offset:.3f} | "
          f"{g['timing_agreement']:.3f} |")
    print(f"| real | {ref.score:.3f} | {ref.shuffled_score:.3f} | {ref.offset:.3f} | {ref.shuffled_offset:.3f} | "
          f"{g['timing_real']:.3f} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("worlds", nargs="+", help="folders written by `vab synth` (or `vab demo` with --demo)")
    p.add_argument("--split", default="test")
    p.add_argument("--demo", action="store_true", help="the folders are finished `vab demo` runs")
    args = p.parse_args(argv)
    if args.demo:
        for folder in args.worlds:
            demo_scores(folder)
        return 0
    for folder in args.worlds:
        scores = world_scores(folder, args.split)
        own = np.array([r.score for r in scores["own audio"]])
        print(f"\n{folder}: {len(own)} clips")
        print("| audio | mean score | clips scored | mean abs offset (s) | own audio scores higher |")
        print("|---|---:|---:|---:|---:|")
        for name, results in scores.items():
            s = np.array([r.score for r in results])
            off = np.array([abs(r.offset) for r in results])
            ok = np.isfinite(s)
            better = "" if name == "own audio" else f"{np.mean(own[ok & np.isfinite(own)] > s[ok & np.isfinite(own)]):.1%}"
            print(f"| {name} | {np.nanmean(s):.3f} | {ok.sum()} | {np.nanmean(off):.3f} | {better} |")
        ladder = [np.nanmean(own)] + [
            np.nanmean([r.score for key in (f"{s:g} s later", f"{s:g} s earlier") for r in scores[key]]) for s in SHIFTS]
        steady = all(a > b for a, b in itertools.pairwise(ladder))
        print(f"\nmean score own / moved {' / '.join(f'{s:g}' for s in SHIFTS)} s (both ways): "
              f"{' / '.join(f'{x:.3f}' for x in ladder)}; monotonically lower: {'yes' if steady else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
