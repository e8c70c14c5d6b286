"""Validate the weights-free synchronisation score on a synthetic world.

    vab synth /tmp/w-demo --train 1 --valid 0 --test 64 --seconds 4 --fps 8
    vab synth /tmp/w-shapes --world shapes --train 1 --valid 0 --test 64 --seconds 3 --fps 8
    python benchmarks/sync_score.py /tmp/w-demo /tmp/w-shapes

For every test clip of each world (`vab synth` folders) the clip's own audio is scored
against its frames (`vab.evaluation.sync`) as recorded, moved later and earlier by 0.1 /
0.2 / 0.5 / 1 s (silence filled in), and replaced by another clip's audio (a fixed
derangement).  Printed per world and condition: the mean score, the mean absolute offset
estimate, and the share of clips whose own audio scores above the moved one.
"""

from __future__ import annotations

import argparse
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("worlds", nargs="+", help="folders written by `vab synth`")
    p.add_argument("--split", default="test")
    args = p.parse_args(argv)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
