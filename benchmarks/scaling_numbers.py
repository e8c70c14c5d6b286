"""The measured inputs of docs/SCALING.md that no other benchmark prints: the FLOPs of one
pretraining step and of one generation forward at the paper's sizes (the analytic formula
of benchmarks/pretrain_throughput.py, which agrees with torch's counter within 0.5%), and
exact-search latency and memory of `vab.search.search` over N random clip embeddings.

    python benchmarks/scaling_numbers.py --presets vab-encodec vab-dac --batch 60 --rows 10000 100000 300000

Search: one query against N L2-normalised float32 rows of the model width (1024 for the
paper's models), best of `--repeat`; the time is a matrix-vector product plus a sort, so
it grows linearly with N (the table gives seconds per million rows).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.pretrain_throughput import analytic_flops, build_random_model  # noqa: E402


def generation_forward_flops(model) -> float:
    """FLOPs of one batched [cond; uncond] forward for one clip (2 rows): a third of the
    training step's 3x-forward formula at batch 2."""
    return analytic_flops(model, 2) / 3.0


def search_seconds(rows: int, width: int, repeat: int) -> float:
    from vab.search import Index, search

    g = torch.Generator().manual_seed(0)
    bank = torch.nn.functional.normalize(torch.randn(rows, width, generator=g), dim=-1)
    index = Index(ids=[str(i) for i in range(rows)], paths=[""] * rows, audio=bank, video=bank)
    query = bank[rows // 2].clone()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        search(index, query, "audio", top=10)
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["vab-encodec", "vab-dac"])
    p.add_argument("--batch", type=int, default=60, help="the paper's pretraining batch (Table 8)")
    p.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 300_000])
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads\n")
    print("| preset | params | TFLOP / pretraining step (batch %d) | GFLOP / generation forward ([cond; uncond], 1 clip) |"
          % args.batch)
    print("|---|---|---|---|")
    for preset in args.presets:
        _, model = build_random_model(preset)
        params = sum(t.numel() for t in model.parameters())
        print(f"| {preset} | {params / 1e6:.1f}M | {analytic_flops(model, args.batch) / 1e12:.1f} | "
              f"{generation_forward_flops(model) / 1e9:.1f} |")
        del model
    print("\n| rows | embedding MB (one modality, float32) | exact search s (best) | s per million rows |")
    print("|---|---|---|---|")
    for rows in args.rows:
        s = search_seconds(rows, args.width, args.repeat)
        print(f"| {rows:,} | {rows * args.width * 4 / 1e6:,.0f} | {s:.4f} | {s / rows * 1e6:.3f} |")


if __name__ == "__main__":
    main()
