"""`vab synth OUT`: write the synthetic audio-visual world (real mp4 files + manifest)."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from vab.data.synthetic import WORLDS, check_synthesis, synthesize

EPILOG = """\
examples:
  vab synth world/                                   # 8 classes, 512 / 32 / 64 train / valid / test clips
  vab synth small/ --classes 4 --train 64 --valid 8 --test 16 --seconds 2 --fps 10 --size 96
  vab extract world/manifest.csv --out data/world --duration 4 --fps 8
  vab synth hard/ --world shapes --train 320 --test 64 --seconds 3  # the class is the shape, not the colour
  vab synth words/ --world words --train 800 --valid 64 --test 128  # a symbol and its spoken word
  vab synth events/ --world events --train 800 --valid 64 --test 128  # a symbol and its three sounds in order
  vab synth tunes/ --world tunes --train 800 --valid 64 --test 128    # a symbol and its four-note tune

Each clip shows one object (a shape in a colour: its class) that appears and disappears
1-3 times at random places; its sound (tone, chord, noise band, chirp, clicks ...) plays
exactly while it is visible.  OUT/manifest.csv has path,id,label,split,visible (the
visible spans in seconds); OUT/world.json describes the classes.  A re-run with the
same settings keeps finished clips; a folder made with other settings is refused.

--world shapes is harder: only the shape names the class (colours, background, size and
place are random per clip) and each class's sound varies per clip in pitch, speed, timbre
and loudness (four speech-like vowels share one band, then a fricative, plucked notes, a
whistle and knocks).

--world words asks for a sequence: a letter-like symbol names the class and, while it is
visible, its word is spoken (three syllables of ba / si / mu / ke; the eight words share two
sets of syllables in four orders each, so only the order names the class) by a new speaker
in every clip (pitch, vocal-tract length, speaking rate, voice).

--world events asks for a sequence of another kind: while the symbol is visible three sound
events play in a row (a thump, a whistle, a hiss or a buzz; the eight classes are four
sequences and the same ones backwards, so only the order names the class), each sounding
differently in every clip (pitch, brightness, length, tempo).

--world tunes asks for a melody: while the symbol is visible a tune of four notes plays (the
eight classes are four tunes and the same ones backwards, so only the order names the class),
in a key, at a tempo and on an instrument (brightness, attack, decay, vibrato) new in every
clip, so only the steps between the notes tell the class.

Clips are drawn split after split (train, valid, test) from the one stream of --seed: the
first N training clips are the same for any --train >= N, but the valid and test clips move
with --train. To compare training-set sizes on the same held-out clips, make the largest
training set once and give each size the first N training rows of its manifest beside one
world's valid and test rows (docs/BENCHMARKS.md, issue 30's eighth measurement).
"""


def register(sub, help: str) -> None:
    p = sub.add_parser(
        "synth",
        help=help,
        description="Write a synthetic audio-visual world: objects whose sounds play exactly while they are visible.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("out", help="output folder")
    p.add_argument("--classes", type=int, default=8, help="number of classes, 2-8 (default 8)")
    p.add_argument("--train", type=int, default=512, help="training clips (default 512)")
    p.add_argument("--valid", type=int, default=32, help="validation clips (default 32)")
    p.add_argument("--test", type=int, default=64, help="test clips (default 64)")
    p.add_argument("--seconds", type=float, default=4.0, help="clip length in seconds (default 4)")
    p.add_argument("--fps", type=float, default=8.0, help="video frames per second (default 8)")
    p.add_argument("--size", type=int, default=64, help="frame width and height in pixels (default 64)")
    p.add_argument("--world", choices=WORLDS, default="demo",
                   help="demo: colour + shape + fixed sound per class (default); shapes: shape only, varied sounds; "
                   "words: a symbol and its spoken word (order of syllables), a new speaker per clip; "
                   "events: a symbol and three sound events in an order, new sounds per clip; "
                   "tunes: a symbol and its four-note tune, a new key and instrument per clip")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0): same seed, same files")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    options = dict(classes=args.classes, train=args.train, valid=args.valid, test=args.test, seconds=args.seconds,
                   fps=args.fps, width=args.size, height=args.size, seed=args.seed, world=args.world)
    check_synthesis(args.out, **options)  # one line before the progress bar or the folder exists
    console = Console(stderr=True)
    with Progress(TextColumn("[bold]clips"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as bar:
        task = bar.add_task("clips", total=None)
        summary = synthesize(args.out, **options,
                             progress=lambda done, total: bar.update(task, completed=done, total=total))
    counts = ", ".join(f"{n} {s}" for s, n in summary.clips.items())
    console.print(f"{summary.written} clip(s) written ({counts}); classes: {', '.join(summary.classes)}")
    console.print(f"manifest: {summary.manifest}")
    return 0
