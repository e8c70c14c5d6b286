"""Class and timing agreement of the demo's model on its held-out clips, each video drawing its own
noise (the default since issue 14) against every video sharing one noise stream (before), with the
same seeds.

    vab demo --out vab-demo
    python benchmarks/per_video_noise.py --demo vab-demo --seeds 0 1 2

Shared noise is reproduced by giving every request the same noise key (`Request.noise_key`), which
is what window seeds depended on before (seed, phase, window index only)."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from vab.demo.soundtracks import generate_and_score
    from vab.generation.sampling import SamplingConfig

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--demo", required=True, help="a `vab demo --out` folder (model/ and world/)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--json", help="also write the rows here")
    args = p.parse_args(argv)
    demo = Path(args.demo)
    rows = []
    for seed in args.seeds:
        for variant, key in (("per-video", None), ("shared", "shared")):
            with tempfile.TemporaryDirectory() as out:
                r = generate_and_score(demo / "model", demo / "world", out, plots=0,
                                       sampling=SamplingConfig(seed=seed), noise_key=key)
            rows.append({"seed": seed, "noise": variant, "class_agreement": r["class_agreement"],
                         "timing_agreement": r["timing_agreement"], "clips": r["clips"]})
            print(json.dumps(rows[-1]), flush=True)
    print("| seed | noise | class agreement | timing agreement |")
    print("|---:|---|---:|---:|")
    for r in rows:
        print(f"| {r['seed']} | {r['noise']} | {r['class_agreement']:.3f} | {r['timing_agreement']:.3f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
