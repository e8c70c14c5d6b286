"""Speed of each number format against fp32 and against the machine's peak for that format.

    python benchmarks/precision_speed.py                                   # everything below
    python benchmarks/precision_speed.py --forward-presets tiny --train-presets demo

In one process, variants interleaved (each round runs every variant once, the best round
is kept), so a change of machine load hits them alike.  Times are the process's CPU time
(`time.process_time`, one torch thread): on a machine shared with other jobs the wall time
of a single-threaded run mostly measures how often the scheduler gave it the core (our runs
got 10-20% of a core at load 10-14), while its CPU time measures the work; both are kept in
the JSON, ratios use CPU time.

1. Peaks: a 2048^3 matrix product in fp32 and in bf16 (``torch.mm``), and the int8 kernel
   vab's int8 layers use (a dynamically quantized ``Linear(2048, 2048)`` on 2048 rows:
   activation quantization included), in GFLOP/s; measured before and after the rest, the
   best kept.
2. One batched ``[cond ; uncond]`` forward (fully masked tokens, 10 s of random features,
   random weights) of `tiny` and `vab-encodec` at batch 1 and 8 (2 and 16 rows), in fp32,
   bf16 autocast and int8 (and torchao's int8 when installed): seconds, ratio to fp32,
   achieved GFLOP/s (FLOPs counted once by ``FlopCounterMode`` on the fp32 forward) and
   that over the peak of the format's own kernel.  (The whole 10-s clip and peak memory per
   format come from ``eval/speed.py --precisions``, one subprocess per case.)
3. A pretraining step (``PretrainObjective`` forward + backward + AdamW) in fp32 and under
   bf16 autocast (what ``train.precision=bf16`` does through Accelerate): the demo's model
   and batch (`demo`: tiny preset with the demo's overrides, batch 32), a mid-size
   variant (`wide`: width 512, 8 layers, batch 8) and `vab-dac-test` (batch 1).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from generation_speed import make_codec, make_model  # noqa: E402
from precision_quality import autocast, torchao_available, variant, write_results  # noqa: E402
from pretrain_throughput import machine_line, random_batch  # noqa: E402
from sampler_overhead import guided_batch, random_condition  # noqa: E402

DEMO = ["codec.frame_rate=25", "codec.codebook_size=64", "train.mask_mean=0.75", "data.fps=8.0",
        "data.duration=4.0", "extract.fps=8.0", "extract.duration=4.0"]
TRAIN_CASES = {
    "demo": ("tiny", DEMO, 32),
    "wide": ("tiny", DEMO + ["model.width=512", "model.layers=8", "model.expert_layers=4", "model.heads=8",
                             "model.ffn=2048"], 8),
    "vab-dac-test": ("vab-dac-test", [], 1),
}
#: which peak each format is held against
KERNEL = {"fp32": "fp32", "bf16": "bf16", "int8": "int8", "int8-torchao": "int8"}


def best_time(fn, reps: int) -> float:
    """Least CPU seconds of `reps` calls of `fn` (see the module docstring)."""
    best = float("inf")
    for _ in range(reps):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def peaks(n: int = 2048, reps: int = 3) -> dict[str, float]:
    """GFLOP/s of fp32 and bf16 mm and of the dynamic int8 Linear, best of `reps`."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    ab, bb = a.bfloat16(), b.bfloat16()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(torch.nn.Linear(n, n)), {torch.nn.Linear},
                                                   dtype=torch.qint8)
    flops = 2 * n**3 / 1e9
    with torch.inference_mode():
        a @ b, ab @ bb, q(a)  # warm-up
        return {"fp32": flops / best_time(lambda: a @ b, reps), "bf16": flops / best_time(lambda: ab @ bb, reps),
                "int8": flops / best_time(lambda: q(a), reps)}


def forward_rows(preset: str, batches: list[int], formats: list[str], rounds: int, peak: dict) -> list[dict]:
    from torch.utils.flop_counter import FlopCounterMode

    codec = make_codec(preset)
    model = make_model(preset, codec)
    variants = {name: variant(model, name) for name in formats}
    rows = []
    for batch in batches:
        torch.manual_seed(0)
        tokens, features, drop = guided_batch(model, *random_condition(model, batch), 5.0)
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            model(tokens, features, drop_visual=drop)
        flops = float(counter.get_total_flops())
        times = {name: float("inf") for name in formats}
        walls = dict(times)
        for _ in range(rounds):
            for name, (run, dtype) in variants.items():
                with torch.inference_mode(), autocast(dtype):
                    t0, w0 = time.process_time(), time.perf_counter()
                    run(tokens, features, drop_visual=drop)
                    times[name] = min(times[name], time.process_time() - t0)
                    walls[name] = min(walls[name], time.perf_counter() - w0)
        for name in formats:
            achieved = flops / times[name] / 1e9
            rows.append({"preset": preset, "batch": batch, "rows": tokens.shape[0], "format": name,
                         "seconds": times[name], "wall_seconds": walls[name], "vs_fp32": times["fp32"] / times[name],
                         "gflops": achieved, "of_peak": achieved / peak[KERNEL[name]]})
            print(f"  forward {preset} batch {batch} {name}: {times[name]:.3f} CPU s ({walls[name]:.1f} wall s)",
                  flush=True)
    return rows


def train_rows(cases: list[str], rounds: int, steps: int, peak: dict) -> list[dict]:
    from torch.utils.flop_counter import FlopCounterMode

    from vab.commands.info import model_inputs
    from vab.config import load_config
    from vab.model import VAB
    from vab.training.objective import PretrainObjective
    from vab.training.optim import build_adamw

    rows = []
    for case in cases:
        preset, overrides, batch = TRAIN_CASES[case]
        cfg = load_config(preset, overrides)
        shape, vdim, frame_rate = model_inputs(preset, cfg)
        torch.manual_seed(0)
        model = VAB.from_config(cfg, torch.randn(shape), vdim, frame_rate).train()
        optimizer = build_adamw(model, 1e-4, 0.01, cfg.train.betas)
        objective = PretrainObjective(cfg)
        gen, data = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)

        def step(dtype):
            batch_data = random_batch(model, batch, 8, data)
            t0 = time.process_time()
            with autocast(dtype):
                loss, _ = objective(model, batch_data, gen)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return time.process_time() - t0

        with FlopCounterMode(display=False) as counter:
            step(None)
        step(torch.bfloat16)
        flops = float(counter.get_total_flops())
        times = {"fp32": float("inf"), "bf16": float("inf")}
        for _ in range(rounds):
            for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
                times[name] = min(times[name], min(step(dtype) for _ in range(steps)))
        params = sum(p.numel() for p in model.parameters())
        for name in times:
            achieved = flops / times[name] / 1e9
            rows.append({"case": case, "preset": preset, "params_m": params / 1e6, "batch": batch, "format": name,
                         "seconds": times[name], "vs_fp32": times["fp32"] / times[name], "gflops": achieved,
                         "of_peak": achieved / peak[name]})
            print(f"  train {case} {name}: {times[name]:.3f} s", flush=True)
        del model, optimizer
    return rows


def markdown(r: dict) -> str:
    p = r["peaks"]
    lines = [f"`{r['command']}`", "", r["machine"], "",
             f"Peaks (best of before / after): fp32 mm {p['fp32']:.0f} GFLOP/s, bf16 mm {p['bf16']:.0f} GFLOP/s "
             f"({p['bf16'] / p['fp32']:.1f}x fp32), int8 dynamic Linear {p['int8']:.0f} GFLOP/s "
             f"({p['int8'] / p['fp32']:.1f}x fp32).", "",
             "| preset | batch (rows) | format | one forward, CPU s | vs fp32 | GFLOP/s | of its format's peak |",
             "|---|---|---|---:|---:|---:|---:|"]
    for x in r["forward"]:
        lines.append(f"| {x['preset']} | {x['batch']} ({x['rows']}) | {x['format']} | {x['seconds']:.3f} | "
                     f"{x['vs_fp32']:.2f}x | {x['gflops']:.0f} | {100 * x['of_peak']:.0f}% |")
    if r["train"]:
        lines += ["", "| training case | params | batch | format | step, CPU s | vs fp32 | GFLOP/s | of its format's peak |",
                  "|---|---:|---:|---|---:|---:|---:|---:|"]
        for x in r["train"]:
            lines.append(f"| {x['case']} ({x['preset']}) | {x['params_m']:.1f}M | {x['batch']} | {x['format']} | "
                         f"{x['seconds']:.3f} | {x['vs_fp32']:.2f}x | {x['gflops']:.0f} | {100 * x['of_peak']:.0f}% |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--forward-presets", nargs="*", default=["tiny", "vab-encodec"])
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8])
    p.add_argument("--train-presets", nargs="*", default=list(TRAIN_CASES), choices=list(TRAIN_CASES))
    p.add_argument("--rounds", type=int, default=1, help="rounds of interleaved variants, best kept")
    p.add_argument("--train-steps", type=int, default=3, help="training steps per variant and round")
    p.add_argument("--out", type=Path, default=Path("runs/bench/precision"))
    args = p.parse_args(argv)
    formats = ["fp32", "bf16", "int8"] + (["int8-torchao"] if torchao_available() else [])
    before = peaks()
    result = {"command": "python benchmarks/precision_speed.py " + " ".join(argv or sys.argv[1:]),
              "machine": machine_line(), "forward": [], "train": []}
    for preset in args.forward_presets:
        result["forward"] += forward_rows(preset, args.batch_sizes, formats, args.rounds, before)
    result["train"] = train_rows(args.train_presets, args.rounds, args.train_steps, before)
    after = peaks()
    result["peaks"] = {k: max(before[k], after[k]) for k in before}
    for row in result["forward"] + result["train"]:  # against the best peak seen
        row["of_peak"] = row["gflops"] / result["peaks"][KERNEL[row["format"]]]
    write_results(args.out, "precision_speed", result, markdown(result))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
