"""What the stored frame features tell of the class: `pixels` against `hog` at several grids (issue 15).

For each encoder and grid the world is extracted as `vab extract` does (the demo's codec settings),
then a linear probe (vab.demo.probe.visual_probe: mean + max over the visible frames, standardised
logistic regression) is fitted on the training split and scored on the test split.

    vab synth /tmp/w --world shapes --train 320 --valid 32 --test 64 --seconds 3
    python benchmarks/visual_probe.py --world /tmp/w --out /tmp/probe --grids 4,8,16
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", type=Path, required=True, help="a synthetic world (vab synth)")
    p.add_argument("--out", type=Path, required=True, help="folder for the extracted data sets and the table")
    p.add_argument("--encoders", default="pixels,hog")
    p.add_argument("--grids", default="4,8,16")
    p.add_argument("--fps", type=float, default=8.0)
    args = p.parse_args()

    from vab.config import load_config
    from vab.data.extract import extract
    from vab.data.manifest import read_manifest
    from vab.data.synthetic import MANIFEST
    from vab.demo.pipeline import TINY_OVERRIDES
    from vab.demo.probe import visual_probe

    duration = json.loads((args.world / "world.json").read_text())["params"]["seconds"]
    manifest = read_manifest(args.world / MANIFEST)
    lines = ["| encoder | grid | features | probe accuracy (test) | chance | extraction s |", "|---|---:|---:|---:|---:|---:|"]
    for name in args.encoders.split(","):
        for grid in (int(g) for g in args.grids.split(",")):
            data = args.out / f"{name}{grid}"
            cfg = load_config("tiny", [*TINY_OVERRIDES, f"visual.name={name}", f"visual.grid={grid}",
                                       f"extract.fps={args.fps}", f"extract.duration={duration}", "extract.num_workers=0"])
            t0 = time.perf_counter()
            extract(manifest, data, cfg.codec, cfg.visual, cfg.extract)
            seconds = time.perf_counter() - t0
            result = visual_probe(data, args.world)
            from vab.data.store import DataInfo

            dim = DataInfo.load(data).visual_dim
            lines.append(f"| {name} | {grid} | {dim} | {result['accuracy']:.3f} | {result['chance']:.3f} | {seconds:.0f} |")
            print(lines[-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
