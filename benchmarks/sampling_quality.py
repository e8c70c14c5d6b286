"""Fewer forwards at equal quality: decoding steps, mask schedules, guidance on an interval of
the steps and number formats, each scored on the demo worlds (class agreement, timing agreement,
FAD) against the reference: fp32, 16 steps, cosine schedule, guidance on every step.

    vab demo --out /tmp/demo && vab demo --world shapes --out /tmp/shapes
    python benchmarks/sampling_quality.py --demo /tmp/demo --demo /tmp/shapes --out /tmp/sq
    python benchmarks/sampling_quality.py --demo /tmp/demo --out /tmp/sq --only fp32-16,bf16-16,s8,s8-g0-0.5

Every variant generates a soundtrack for each held-out clip of each world with that world's
trained `vab demo` model (`vab.demo.generation.generate_and_score`: the demo's judge for class
and timing agreement) and measures the FAD of log-mel statistics against the real held-out audio.
Guidance and temperature are the demos' (2 and 0.5; `--guidance` / `--temperature` to change),
the rest of the sampling settings `SamplingConfig`'s.  "forward rows" is what a variant costs in
model forwards relative to the reference: (steps + guided steps) / (16 + 16); seconds at paper
size come from `eval/speed.py` with the same settings.

A variant is "within bounds" when its class and timing agreement are within 0.03 of the
reference on every world (one clip of 64 is 0.016).  Results go to OUT/<world>/<variant>.json (a
finished variant is skipped on a re-run) and the table to OUT/sampling_quality.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: name -> (SamplingConfig settings on top of the demos', generation format)
VARIANTS: dict[str, tuple[dict, str]] = {
    "fp32-16": ({}, "fp32"),  # the reference
    "bf16-16": ({}, "bf16"),
    "g0-0.5": ({"guidance_stop": 0.5}, "bf16"),
    "g0-0.25": ({"guidance_stop": 0.25}, "bf16"),
    "g0.25-0.75": ({"guidance_start": 0.25, "guidance_stop": 0.75}, "bf16"),
    "g0.5-1": ({"guidance_start": 0.5}, "bf16"),
    "s12": ({"steps": 12}, "bf16"),
    "s8": ({"steps": 8}, "bf16"),
    "s6": ({"steps": 6}, "bf16"),
    "s4": ({"steps": 4}, "bf16"),
    "s8-linear": ({"steps": 8, "schedule": "linear"}, "bf16"),
    "s8-square": ({"steps": 8, "schedule": "square"}, "bf16"),
    "s8-cubic": ({"steps": 8, "schedule": "cubic"}, "bf16"),
    "s8-arccos": ({"steps": 8, "schedule": "arccos"}, "bf16"),
    "s8-g0-0.5": ({"steps": 8, "guidance_stop": 0.5}, "bf16"),
    "s8-g0-0.25": ({"steps": 8, "guidance_stop": 0.25}, "bf16"),
    "s6-g0-0.5": ({"steps": 6, "guidance_stop": 0.5}, "bf16"),
    "s4-g0-0.5": ({"steps": 4, "guidance_stop": 0.5}, "bf16"),
    "int8-16": ({}, "int8"),
}
REFERENCE = "fp32-16"
BOUND = 0.03


def forward_rows(sampling) -> float:
    """Model rows per window relative to the reference's 16 guided steps (32 rows)."""
    from vab.generation.sampling import guided_step

    guided = sum(guided_step(sampling, i) for i in range(sampling.steps))
    return (sampling.steps + guided) / 32


def score_world(demo: Path, folder: Path, sampling, precision: str) -> dict:
    """Generate for the held-out clips of the demo folder `demo` (its world and model) into
    `folder` and score them (`sampling` None: `SamplingConfig()`): class and timing agreement (the demo's judge), FAD of log-mel
    statistics against the real held-out audio, and the stage's wall and CPU seconds."""
    from vab import media
    from vab.data.synthetic import iter_split, read_truth
    from vab.demo.generation import generate_and_score
    from vab.evaluation.metrics import frechet_audio_distance
    from vab.evaluation.scorers.logmel import LogMelEmbedder

    scorer = LogMelEmbedder()
    sr = scorer.sample_rate
    held_out = sorted(iter_split(read_truth(demo / "world"), "test"), key=lambda r: r.id)

    def embed(paths: list[Path]) -> np.ndarray:
        return np.concatenate([scorer.embed_at(media.read_audio(p, sr, 0.0, None), sr) for p in paths])

    t0, c0 = time.perf_counter(), time.process_time()
    result = generate_and_score(demo / "model", demo / "world", folder, plots=0, sampling=sampling, precision=precision)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    real = embed([r.path for r in held_out])
    generated = embed([folder / f"{r.id}.wav" for r in held_out])
    return {
        "class_agreement": result["class_agreement"], "timing_agreement": result["timing_agreement"],
        "fad_logmel": frechet_audio_distance(real, generated), "stage_seconds": seconds, "stage_cpu_seconds": cpu,
        "precision": result["precision"], "clips": result["clips"],
    }


def run(args: argparse.Namespace, names: list[str]) -> dict[str, dict[str, dict]]:
    from vab.generation.sampling import SamplingConfig

    results: dict[str, dict[str, dict]] = {}
    for demo in args.demo:
        world = demo.name
        results[world] = {}
        for name in names:
            path = args.out / world / f"{name}.json"
            settings, precision = VARIANTS[name]
            sampling = SamplingConfig(**{"guidance": args.guidance, "temperature": args.temperature, **settings})
            if path.is_file():
                row = json.loads(path.read_text())
            else:
                row = score_world(demo, args.out / world / name, sampling, precision)
                row.update(variant=name, settings=settings, format=precision, rows=forward_rows(sampling))
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(row, indent=1))
            results[world][name] = row
            print(f"  {world} {name}: class {row['class_agreement']:.3f} timing {row['timing_agreement']:.3f} "
                  f"FAD {row['fad_logmel']:.0f}", flush=True)
    return results


def markdown(results: dict[str, dict[str, dict]], names: list[str], command: str) -> str:
    worlds = list(results)
    lines = [f"`{command}`", ""]
    head = "| variant | format | change | forward rows |"
    rule = "|---|---|---|---:|"
    for w in worlds:
        head += f" {w}: class | timing | FAD | Δ class / timing |"
        rule += "---:|---:|---:|---|"
    lines += [head + " within 0.03 on every world |", rule + "---|"]
    for name in names:
        first = results[worlds[0]][name]
        change = ", ".join(f"{k}={v}" for k, v in first["settings"].items()) or "(reference settings)"
        line = f"| {name} | {first['format']} | {change} | {first['rows']:.2f} |"
        ok = True
        for w in worlds:
            r, ref = results[w][name], results[w].get(REFERENCE)
            delta = ""
            if ref is not None:
                dc = r["class_agreement"] - ref["class_agreement"]
                dt = r["timing_agreement"] - ref["timing_agreement"]
                ok = ok and abs(dc) <= BOUND + 1e-9 and abs(dt) <= BOUND + 1e-9
                delta = f"{dc:+.3f} / {dt:+.3f}"
            line += f" {r['class_agreement']:.3f} | {r['timing_agreement']:.3f} | {r['fad_logmel']:.0f} | {delta} |"
        lines.append(line + (" yes |" if ok else " **no** |"))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--demo", type=Path, action="append", required=True,
                   help="a finished `vab demo` folder (its world and model); repeat for each world")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--only", default=",".join(VARIANTS), help=f"comma-separated variants (default all: {', '.join(VARIANTS)})")
    p.add_argument("--guidance", type=float, default=2.0, help="guidance of every variant (default the demos' 2)")
    p.add_argument("--temperature", type=float, default=0.5, help="sampling temperature (default the demos' 0.5)")
    args = p.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    if REFERENCE not in names:
        names.insert(0, REFERENCE)
    if len({d.name for d in args.demo}) != len(args.demo):
        p.error("the --demo folders must have different names (they name the worlds in the table)")
    results = run(args, names)
    command = "python benchmarks/sampling_quality.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = markdown(results, names, command)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sampling_quality.md").write_text(text)
    (args.out / "sampling_quality.json").write_text(json.dumps(results, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
