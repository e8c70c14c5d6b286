"""Quality of each generation number format against fp32, on the same inputs and seeds.

    python benchmarks/precision_quality.py --demo /tmp/demo          # a finished `vab demo --out /tmp/demo`
    python benchmarks/precision_quality.py --demo DIR --skip-paper   # the demo model only (minutes)

Formats: fp32 (the reference), bf16 (autocast; the final norm, the heads and the guidance
arithmetic stay fp32), int8 (the Transformer's linear layers dynamically quantized,
:mod:`vab.model.quantize`), and, when torchao is installed, ``int8-torchao``
(``quantize_(Int8DynamicActivationInt8WeightConfig())`` on the same layers, the candidate
kernel the issue asked to compare; never used by vab itself).

1. Logits of one guided forward (``[cond ; uncond]`` rows, half the audio tokens masked at
   random): max abs error, signal-to-quantization-noise ratio in dB
   (``10 log10(sum ref^2 / sum (x - ref)^2)``), and argmax agreement, both for the raw
   logits of the conditional rows and for the guided logits ``u + 5 (c - u)`` the sampler
   reads.  Models: the demo's trained model on held-out frame features, and a random-init
   `vab-encodec` (paper size, EnCodec codebooks of a random-init codec) on random features.
2. Sampled tokens at temperature 0 (argmax, guidance 5, the same seeds and Gumbel noise
   on the confidences): the share of tokens equal to fp32's, 16 steps for the demo model
   (all held-out clips) and `--paper-steps` steps for vab-encodec (one clip).
3. The demo world, what users hear: `vab.demo.soundtracks.generate_and_score` on the held-out
   clips with each format at 16 steps (class agreement, timing agreement), FAD of log-mel
   statistics between the real test audio and the generated soundtracks, and the stage's
   wall time.  A format may become a default only if class and timing agreement stay within
   0.03 of fp32.

Writes OUT/precision_quality.json and .md (default runs/bench/precision).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

FORMATS = ("fp32", "bf16", "int8")
GUIDANCE = 5.0


# ---------------------------------------------------------------------- formats
def torchao_available() -> bool:
    try:
        import torchao  # noqa: F401
    except Exception:
        return False
    return True


def variant(model: torch.nn.Module, name: str) -> tuple[torch.nn.Module, torch.dtype | None]:
    """(model to run, autocast dtype) of format `name`, converted as `Generator.from_pretrained`
    converts it (copies: bf16 weights in the Transformer's linears, or int8 layers)."""
    import copy
    import warnings

    from vab.model.quantize import prepare_for_inference

    if name == "bf16":
        return prepare_for_inference(model, "bf16"), torch.bfloat16
    if name == "int8":
        return prepare_for_inference(model, "int8"), None
    if name == "int8-torchao":
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

        target = copy.deepcopy(model).eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_(target.layers, Int8DynamicActivationInt8WeightConfig(set_inductor_config=False))
        return target, None
    return model, None


def autocast(dtype: torch.dtype | None):
    return torch.autocast("cpu", dtype=dtype) if dtype is not None else contextlib.nullcontext()


# ---------------------------------------------------------------------- 1. logits
def logit_errors(ref: torch.Tensor, x: torch.Tensor) -> dict[str, float]:
    """max |x - ref|, SQNR in dB, argmax agreement over the last dimension."""
    ref, x = ref.double(), x.double()
    noise = (x - ref).pow(2).sum().item()
    return {
        "max_abs": (x - ref).abs().max().item(),
        "sqnr_db": float("inf") if noise == 0 else 10 * np.log10(ref.pow(2).sum().item() / noise),
        "argmax": (x.argmax(-1) == ref.argmax(-1)).double().mean().item(),
    }


def one_forward(model, tokens, features, formats) -> dict[str, dict]:
    """Errors of each format's conditional and guided logits against fp32's."""
    from vab.generation.sampling import guide_logits

    b = tokens.shape[0]
    drop = torch.arange(2 * b) >= b
    outputs, seconds = {}, {}
    for name in formats:
        run, dtype = variant(model, name)
        with torch.inference_mode(), autocast(dtype):
            t0 = time.process_time()
            both = run(torch.cat([tokens, tokens]), torch.cat([features, features]), drop_visual=drop)
            seconds[name] = time.process_time() - t0
        outputs[name] = both.float()
    ref = outputs["fp32"]
    ref_guided = guide_logits(ref[:b], ref[b:], GUIDANCE)
    rows = {}
    for name, out in outputs.items():
        rows[name] = {
            "cond": logit_errors(ref[:b], out[:b]),
            "guided": logit_errors(ref_guided, guide_logits(out[:b], out[b:], GUIDANCE)),
            "seconds": seconds[name],
        }
    return rows


def half_masked(model, batch: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, model.codebook_size, (batch, model.levels, model.num_audio_frames), generator=gen)
    return torch.where(torch.rand(tokens.shape, generator=gen) < 0.5, model.mask_id, tokens)


# ---------------------------------------------------------------------- 2. sampled tokens
def token_agreement(model, features: torch.Tensor, steps: int, formats) -> dict[str, float]:
    """Share of tokens each format samples equal to fp32's at temperature 0."""
    from vab.generation.sampling import SamplingConfig, sample_tokens

    cfg = SamplingConfig(steps=steps, guidance=GUIDANCE, temperature=0.0, seed=0)
    seeds = list(range(features.shape[0]))
    out = {}
    for name in formats:
        run, dtype = variant(model, name)
        with torch.inference_mode(), autocast(dtype):
            out[name] = sample_tokens(run, features, cfg=cfg, seeds=seeds)
    return {name: (tokens == out["fp32"]).double().mean().item() for name, tokens in out.items()}


# ---------------------------------------------------------------------- 3. the demo world
def demo_world(demo: Path, out: Path, formats) -> dict[str, dict]:
    """generate_and_score per format, plus FAD (log-mel) against the real held-out audio."""
    from vab import media
    from vab.data.synthetic import iter_split, read_truth
    from vab.demo.soundtracks import generate_and_score
    from vab.evaluation.metrics import frechet_audio_distance
    from vab.evaluation.scorers.logmel import LogMelEmbedder

    scorer = LogMelEmbedder()
    held_out = sorted(iter_split(read_truth(demo / "world"), "test"), key=lambda r: r.id)
    sr = scorer.sample_rate

    def embed(paths: list[Path], seconds: float | None = None) -> np.ndarray:
        return np.concatenate([scorer.embed_at(media.read_audio(p, sr, 0.0, seconds), sr) for p in paths])

    real = embed([r.path for r in held_out], 4.0)
    rows = {}
    for name in formats:
        folder = out / f"generated-{name}"
        t0, c0 = time.perf_counter(), time.process_time()
        result = generate_and_score(demo / "model", demo / "world", folder, plots=0, precision=name)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        generated = embed([folder / f"{r.id}.wav" for r in held_out])
        rows[name] = {
            "class_agreement": result["class_agreement"], "timing_agreement": result["timing_agreement"],
            "fad_logmel": frechet_audio_distance(real, generated), "stage_seconds": seconds, "stage_cpu_seconds": cpu,
            "precision": result["precision"],
        }
        print(f"  demo world {name}: {rows[name]}", flush=True)
    return rows


def demo_features(demo: Path, count: int) -> tuple[torch.Tensor, "object"]:
    """(frame features [count, F, D] of the first held-out clips as evaluation reads them, the demo model)."""
    from vab.data.dataset import VABDataset
    from vab.checkpoint import load_model as load_pretrained

    model = load_pretrained(demo / "model").eval()
    data = VABDataset([demo / "data"], split="test", fps=model.fps, duration=model.duration, train=False)
    features = torch.stack([data[i]["features"] for i in range(min(count, len(data)))]).float()
    return features, model


# ---------------------------------------------------------------------- report
def markdown(results: dict) -> str:
    lines = [f"`{results['command']}`", "", results["machine"], ""]
    lines += ["| model | format | cond. max abs err | cond. SQNR dB | cond. argmax agree | guided max abs err | "
              "guided SQNR dB | guided argmax agree | forward CPU s |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for model, rows in results["logits"].items():
        for name, r in rows.items():
            c, g = r["cond"], r["guided"]
            lines.append(f"| {model} | {name} | {c['max_abs']:.3g} | {c['sqnr_db']:.1f} | {c['argmax']:.4f} | "
                         f"{g['max_abs']:.3g} | {g['sqnr_db']:.1f} | {g['argmax']:.4f} | {r['seconds']:.2f} |")
    lines += ["", "| model | steps | " + " | ".join(f"{n} token agreement" for n in results["formats"]) + " |",
              "|---|---:|" + "---:|" * len(results["formats"])]
    for model, r in results["tokens"].items():
        lines.append(f"| {model} | {r['steps']} | " + " | ".join(f"{r['agreement'][n]:.4f}" for n in results["formats"]) + " |")
    if results.get("demo"):
        ref = results["demo"]["fp32"]
        lines += ["", "| demo world, 16 steps | class agreement | timing agreement | FAD (log-mel) | stage wall s | "
                  "stage CPU s | class / timing vs fp32 |", "|---|---:|---:|---:|---:|---:|---|"]
        for name, r in results["demo"].items():
            dc, dt = r["class_agreement"] - ref["class_agreement"], r["timing_agreement"] - ref["timing_agreement"]
            ok = "within 0.03" if abs(dc) <= 0.03 and abs(dt) <= 0.03 else "NOT within 0.03"
            lines.append(f"| {name} | {r['class_agreement']:.3f} | {r['timing_agreement']:.3f} | {r['fad_logmel']:.1f} | "
                         f"{r['stage_seconds']:.1f} | {r['stage_cpu_seconds']:.1f} | {dc:+.3f} / {dt:+.3f} ({ok}) |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--demo", type=Path, help="a finished `vab demo` folder (its model, world and data)")
    p.add_argument("--skip-paper", action="store_true", help="no vab-encodec rows")
    p.add_argument("--skip-world", action="store_true", help="no demo-world generation")
    p.add_argument("--paper-steps", type=int, default=4, help="decoding steps of the vab-encodec token check")
    p.add_argument("--clips", type=int, default=16, help="held-out clips in the demo logits / token checks")
    p.add_argument("--out", type=Path, default=Path("runs/bench/precision"))
    args = p.parse_args(argv)
    from generation_speed import make_codec, make_model
    from pretrain_throughput import machine_line

    formats = list(FORMATS) + (["int8-torchao"] if torchao_available() else [])
    results: dict = {"command": "python benchmarks/precision_quality.py " + " ".join(argv or sys.argv[1:]),
                     "machine": machine_line(), "formats": formats, "logits": {}, "tokens": {}}
    if args.demo is not None:
        features, model = demo_features(args.demo, args.clips)
        results["logits"]["demo model"] = one_forward(model, half_masked(model, len(features), 0), features, formats)
        print("  demo logits", results["logits"]["demo model"], flush=True)
        results["tokens"]["demo model"] = {"steps": 16, "agreement": token_agreement(model, features, 16, formats)}
        print("  demo tokens", results["tokens"]["demo model"], flush=True)
    if not args.skip_paper:
        codec = make_codec("vab-encodec")
        model = make_model("vab-encodec", codec)
        torch.manual_seed(1)
        features = torch.randn(1, model.num_frames, model.visual_dim)
        results["logits"]["vab-encodec (random init)"] = one_forward(model, half_masked(model, 1, 0), features, formats)
        print("  paper logits", results["logits"]["vab-encodec (random init)"], flush=True)
        results["tokens"]["vab-encodec (random init)"] = {
            "steps": args.paper_steps, "agreement": token_agreement(model, features, args.paper_steps, formats)}
        print("  paper tokens", results["tokens"]["vab-encodec (random init)"], flush=True)
        del model, codec
    if args.demo is not None and not args.skip_world:
        results["demo"] = demo_world(args.demo, args.out, [f for f in formats if f != "int8-torchao"])
    write_results(args.out, "precision_quality", results, markdown(results))
    return 0


def write_results(out: Path, stem: str, results: dict, text: str) -> None:
    """OUT/<stem>.json (the numbers) and OUT/<stem>.md (the table), and the table on stdout."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(results, indent=1))
    (out / f"{stem}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.exit(main())
