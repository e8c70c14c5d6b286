"""int8 with one activation scale per example (batch-independent) against one per call.

    python benchmarks/int8_batch.py                       # tiny and a mid-size model, batch 1 and 8
    python benchmarks/int8_batch.py --presets vab-encodec --batches 8 --rounds 2

`--precision int8` quantizes the Transformer's linear layers dynamically.  The kernel takes
one activation scale per call; called on a whole batch, one video's loud frames coarsen the
others' rounding and a soundtrack depends on its batch.  vab calls it once per example
(``vab.model.quantize.PerExampleInt8Linear``).  This script times one guided
``[cond ; uncond]`` forward (fully masked tokens, random weights and features) of each model
in fp32, in int8 with one scale per call (``per-call``: the kernel on the whole batch, as
before) and in int8 per example (``per-example``: what vab runs), and counts how many of
one example's argmax tokens change when it is batched with 2B - 1 others (0 for a
batch-independent format).

In one process, variants interleaved (each round runs every variant once, the best round is
kept); times are the process's CPU time with one torch thread (see precision_speed.py for
why on a shared machine).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from generation_speed import make_codec, make_model  # noqa: E402
from precision_quality import write_results  # noqa: E402
from pretrain_throughput import machine_line  # noqa: E402
from sampler_overhead import guided_batch, random_condition  # noqa: E402

from vab.checkpoint import build_model  # noqa: E402
from vab.config import load_config  # noqa: E402
from vab.model.quantize import PerExampleInt8Linear, prepare_for_inference  # noqa: E402

MID = ["model.width=512", "model.layers=8", "model.expert_layers=4", "model.heads=8", "model.ffn=2048"]


def per_call_int8(model: nn.Module) -> nn.Module:
    """The int8 model with the kernel called on the whole batch (one activation scale per call)."""
    quantized = prepare_for_inference(model, "int8")
    for module in list(quantized.layers.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, PerExampleInt8Linear):
                setattr(module, name, child.quantized)
    return quantized


def cpu_seconds(model: nn.Module, batch: tuple) -> float:
    start = time.process_time()
    with torch.inference_mode():
        model(*batch)
    return time.process_time() - start


def changed_tokens(model: nn.Module, batch: tuple, rows: int) -> int:
    """Argmax tokens of the first row that differ between the row alone and the row in the batch."""
    tokens, features, drop = batch
    with torch.inference_mode():
        together = model(tokens, features, drop)[:1].argmax(-1)
        alone = model(tokens[:1], features[:1], drop[:1]).argmax(-1)
    return int((together != alone).sum()) if rows > 1 else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["tiny", "mid"], help="tiny, mid (width 512, 8 layers) or a preset")
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8], help="videos per forward (2x rows, guided)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default="runs/benchmarks/int8_batch")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    results, lines = [], [machine_line(), "",
                          "| model | videos (rows) | fp32 s | int8 per-call s | int8 per-example s | "
                          "per-example / per-call | tokens changed by the batch: per-call / per-example |",
                          "|---|---:|---:|---:|---:|---:|---|"]
    for preset in args.presets:
        base, extra = ("tiny", MID) if preset == "mid" else (preset, [])
        codec = make_codec(base)
        model = make_model(base, codec)
        if extra:  # the preset's codec and data, a wider, deeper Transformer
            cfg = load_config(base, ["codec.pretrained=false", *extra])
            torch.manual_seed(0)
            model = build_model(cfg, [codec.codebook_vectors(k) for k in range(cfg.model.levels)],
                                model.visual_dim, codec.frame_rate).eval()
        variants = {"fp32": model, "per-call": per_call_int8(model), "per-example": prepare_for_inference(model, "int8")}
        for videos in args.batches:
            torch.manual_seed(1)
            features, given, mask = random_condition(model, videos)
            features = features * torch.logspace(-1, 1, videos)[:, None, None]  # loud and quiet videos
            batch = guided_batch(model, features, given, mask, 5.0)
            best = {name: min(cpu_seconds(m, batch) for _ in range(args.rounds)) for name, m in variants.items()}
            rows = len(batch[0])
            changed = {name: changed_tokens(variants[name], batch, rows) for name in ("per-call", "per-example")}
            total = model.levels * model.num_audio_frames
            results.append({"model": preset, "videos": videos, "rows": rows, "cpu_seconds": best,
                            "changed_tokens": changed, "tokens": total})
            lines.append(f"| {preset} | {videos} ({rows}) | {best['fp32']:.3f} | {best['per-call']:.3f} | "
                         f"{best['per-example']:.3f} | {best['per-example'] / best['per-call']:.2f} | "
                         f"{changed['per-call']} / {changed['per-example']} of {total} |")
    write_results(Path(args.out), "int8_batch", {"results": results}, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
