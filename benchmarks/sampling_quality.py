"""Fewer forwards at equal quality: decoding steps, mask schedules, guidance on an interval of
the steps and number formats, each scored on the demo worlds (class agreement, timing agreement,
FAD) against the reference: fp32, 16 steps, cosine schedule, guidance on every step.

    vab demo --out /tmp/demo && vab demo --world shapes --out /tmp/shapes
    python benchmarks/sampling_quality.py --demo /tmp/demo --demo /tmp/shapes --out /tmp/sq
    python benchmarks/sampling_quality.py --demo /tmp/demo --out /tmp/sq --only fp32-16,bf16-16,s8,s8-g0-0.5

Every variant generates a soundtrack for each held-out clip of each world with that world's
trained `vab demo` model (`vab.generation.generator.Generator`, as `vab generate` does, the
files not written), scored with the demo's judge (class and timing agreement, fitted once per
world as `vab.demo.soundtracks.fit_judge` fits it) and by the FAD of log-mel statistics
against the real held-out audio.
Every variant starts from the reference (:data:`REFERENCE_SETTINGS`: 16 steps, cosine schedule,
guidance on every step, as before issue 27) with guidance 2 and temperature 0.5 (`--guidance` /
`--temperature` to change; `vab generate`'s defaults since issue 27), the mask temperature and the
rest `SamplingConfig`'s, and changes what its name says.  "forward rows" is what a variant costs in
model forwards relative to the reference: (steps + guided steps) / (16 + 16); seconds at paper
size come from `eval/speed.py` with the same settings.

A variant "holds" when neither its class nor its timing agreement is more than 0.03 below the
reference's on any world (one clip of 64 is 0.016; above it is better, not out of bounds).  Results go to OUT/<world>/<variant>.json (a
finished variant is skipped on a re-run) and the table to OUT/sampling_quality.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vab.demo.soundtracks import GENERATE_BATCH, _real_audio, fit_judge  # noqa: E402
from vab.evaluation.metrics import frechet_audio_distance  # noqa: E402
from vab.evaluation.scorers.logmel import LogMelEmbedder  # noqa: E402
from vab.generation.generator import Generator, Request  # noqa: E402
from vab.generation.sampling import SamplingConfig, guided_step  # noqa: E402

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
    "s4-g0-0.25": ({"steps": 4, "guidance_stop": 0.25}, "bf16"),
    "s4-unguided": ({"steps": 4, "guidance": 1.0}, "bf16"),
    "s2": ({"steps": 2}, "bf16"),
    "s2-g0-0.5": ({"steps": 2, "guidance_stop": 0.5}, "bf16"),
    "s2-g0-0.5-square": ({"steps": 2, "guidance_stop": 0.5, "schedule": "square"}, "bf16"),
    "s2-g0-0.5-cubic": ({"steps": 2, "guidance_stop": 0.5, "schedule": "cubic"}, "bf16"),
    "s3-g0-0.34": ({"steps": 3, "guidance_stop": 0.34}, "bf16"),  # guides steps 0 and 1 (1/3 < 0.34): 5 rows
    "s3-g0-0.3": ({"steps": 3, "guidance_stop": 0.3}, "bf16"),  # guides step 0 only: 4 rows
    "s3-unguided": ({"steps": 3, "guidance": 1.0}, "bf16"),  # 3 rows
    "int8-16": ({}, "int8"),
    # the paper's guidance 5 / temperature 1 (vab generate's defaults before issue 27), on top of the demos' 2 / 0.5
    "paper-5-1": ({"guidance": 5.0, "temperature": 1.0}, "bf16"),
    "paper-5-1-s8-g0-0.5": ({"guidance": 5.0, "temperature": 1.0, "steps": 8, "guidance_stop": 0.5}, "bf16"),
    "g3-s8-g0-0.5": ({"guidance": 3.0, "steps": 8, "guidance_stop": 0.5}, "bf16"),
    "t1-s8-g0-0.5": ({"temperature": 1.0, "steps": 8, "guidance_stop": 0.5}, "bf16"),
}
REFERENCE = "fp32-16"
#: the sampling every variant starts from (the defaults before issue 27, but guidance and temperature)
REFERENCE_SETTINGS = {"steps": 16, "schedule": "cosine", "guidance_start": 0.0, "guidance_stop": 1.0}
BOUND = 0.03


def forward_rows(sampling) -> float:
    """Model rows per window relative to the reference's 16 guided steps (32 rows)."""
    guided = sum(guided_step(sampling, i) for i in range(sampling.steps))
    return (sampling.steps + guided) / 32


class WorldScorer:
    """A demo world's judge (:func:`vab.demo.soundtracks.fit_judge`: class and timing agreement,
    fitted once per world) and the log-mel statistics of its real held-out audio for the FAD."""

    def __init__(self, world: Path, codec, seconds: float):
        self.judge = fit_judge(world, codec, seconds)
        self.held_out = self.judge.held_out
        self.sr = self.judge.sample_rate
        self.logmel = LogMelEmbedder()
        self.real = self.embed(_real_audio(self.held_out, self.sr, seconds))

    def embed(self, wavs: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([self.logmel.embed_at(w, self.sr) for w in wavs])

    def score(self, wavs: list[np.ndarray]) -> dict[str, float]:
        """Class and timing agreement and FAD of one soundtrack per held-out clip (in id order)."""
        scores = self.judge.score(wavs)
        return {"class_agreement": scores["class_agreement"], "timing_agreement": scores["timing_agreement"],
                "fad_logmel": frechet_audio_distance(self.real, self.embed(wavs))}


def generate(generator, scorer: WorldScorer, sampling) -> list[np.ndarray]:
    """One soundtrack per held-out clip of the scorer's world (id order), as `vab generate` makes it."""
    requests = [Request(source=str(r.path), key=r.id) for r in scorer.held_out]
    out = {}
    for outcome in generator.run(requests, sampling):
        if outcome.error is not None:
            raise outcome.error
        out[outcome.request.key] = outcome.result.waveform
    return [out[r.id] for r in scorer.held_out]


def run(args: argparse.Namespace, names: list[str]) -> dict[str, dict[str, dict]]:
    results: dict[str, dict[str, dict]] = {}
    for demo in args.demo:
        world = demo.name
        results[world] = {}
        generators: dict[str, Generator] = {}
        scorer = None
        for name in names:
            path = args.out / world / f"{name}.json"
            settings, precision = VARIANTS[name]
            sampling = SamplingConfig(**{**REFERENCE_SETTINGS, "guidance": args.guidance,
                                         "temperature": args.temperature, **settings})
            if path.is_file():
                row = json.loads(path.read_text())
            else:
                if precision not in generators:
                    generators[precision] = Generator.from_pretrained(demo / "model", device="cpu", precision=precision,
                                                                      batch_size=GENERATE_BATCH)
                generator = generators[precision]
                if scorer is None:
                    scorer = WorldScorer(demo / "world", generator.codec, float(generator.model.duration))
                t0, c0 = time.perf_counter(), time.process_time()
                wavs = generate(generator, scorer, sampling)
                seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
                row = {**scorer.score(wavs), "variant": name, "settings": settings, "format": precision,
                       "rows": forward_rows(sampling), "generate_seconds": seconds, "generate_cpu_seconds": cpu,
                       "clips": len(wavs)}
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
    lines += [head + " holds (no drop over 0.03 on any world) |", rule + "---|"]
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
                ok = ok and dc >= -BOUND - 1e-9 and dt >= -BOUND - 1e-9
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
