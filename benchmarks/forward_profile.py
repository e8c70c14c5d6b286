"""Where one paper-size forward spends its time: seconds per kind of operation against the
FLOPs it does, and the machine's peak for the format.

    python benchmarks/forward_profile.py                       # vab-encodec, bf16, 2 rows ([cond ; uncond])
    python benchmarks/forward_profile.py --threads 2 --rows 1 --format fp32
    python benchmarks/forward_profile.py --compile             # plus torch.compile of one expert layer

Builds `vab-encodec` with random weights in the format as generation loads it
(`vab.model.quantize.prepare_for_inference`; bf16 runs under autocast as the Generator does),
runs one forward on fully masked tokens with 10 s of random frame features, and reports:

- one forward, CPU seconds and wall seconds (best of --repeat), the FLOPs counted by
  ``FlopCounterMode``, achieved GFLOP/s per CPU second and that over the peak of the format's
  own kernel measured in the same process (`precision_speed.peaks`: a 2048^3 ``torch.mm`` in
  fp32 / bf16, the dynamic int8 Linear);
- the profiler's self CPU time per kind of operation (matrix products, attention, casts,
  element-wise, norms, the rest) with each kind's FLOPs and achieved rate;
- "before": the same forward with the attention through SDPA's fused kernel, as before issue 27
  (in bf16 on a CPU without AMX it multiplies in float32; the model now takes
  `vab.model.multiway.blocked_attention` there);
- with --compile: one expert layer eager against ``torch.compile`` (inductor, freezing) and its
  compile time.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, record_function
from torch.profiler import profile as torch_profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from generation_speed import flop_counter, make_codec, make_model  # noqa: E402
from precision_speed import peaks  # noqa: E402

from vab.model import multiway  # noqa: E402
from vab.model.quantize import prepare_for_inference  # noqa: E402
from vab.precision import autocast_dtype  # noqa: E402

#: operation kind -> aten names (self time and FLOPs are summed per kind)
KINDS = {
    "matrix products": ("aten::addmm", "aten::mm", "aten::bmm", "aten::matmul", "aten::linear",
                        "quantized::linear_dynamic", "aten::baddbmm"),
    "attention": ("aten::_scaled_dot_product_flash_attention_for_cpu", "aten::scaled_dot_product_attention",
                  "aten::_scaled_dot_product_attention_math"),
    "casts and copies": ("aten::copy_", "aten::_to_copy", "aten::to", "aten::clone", "aten::contiguous"),
    "element-wise": ("aten::gelu", "aten::add", "aten::add_", "aten::mul", "aten::where", "aten::sub", "aten::div"),
    "norms": ("aten::native_layer_norm", "aten::layer_norm"),
    "concatenation, gathers": ("aten::cat", "aten::index", "aten::index_select", "aten::embedding", "aten::stack",
                               "aten::nonzero", "aten::index_put_"),
}
FLOP_KINDS = {"mm": "matrix products", "addmm": "matrix products", "bmm": "matrix products",
              "baddbmm": "matrix products", "_scaled_dot_product_flash_attention_for_cpu": "attention",
              "_scaled_dot_product_flash_attention": "attention", "_scaled_dot_product_efficient_attention": "attention",
              "convolution": "matrix products"}


def kind_of(name: str) -> str:
    for kind, names in KINDS.items():
        if name in names:
            return kind
    return "other"


def autocast(fmt: str):
    dtype = autocast_dtype(fmt)
    return torch.autocast("cpu", dtype=dtype, enabled=dtype is not None)


def inputs(model, rows: int):
    torch.manual_seed(0)
    batch = 1
    tokens = torch.full((rows, model.levels, model.num_audio_frames), model.mask_id, dtype=torch.long)
    features = torch.randn(batch, model.num_frames, model.visual_dim).repeat(rows, 1, 1)
    return tokens, features, torch.arange(rows) >= batch


def best(fn, repeat: int) -> tuple[float, float]:
    """(least CPU seconds, least wall seconds) of `repeat` calls."""
    cpu = wall = float("inf")
    for _ in range(repeat):
        c, w = time.process_time(), time.perf_counter()
        fn()
        cpu, wall = min(cpu, time.process_time() - c), min(wall, time.perf_counter() - w)
    return cpu, wall


def flops_by_kind(model, args_) -> dict[str, float]:
    with torch.inference_mode(), flop_counter() as counter:
        model(*args_[:2], drop_visual=args_[2])
    out: dict[str, float] = defaultdict(float)
    for op, n in counter.get_flop_counts()["Global"].items():
        out[FLOP_KINDS.get(str(op).split(".")[-1], "other")] += float(n)
    return dict(out)


def profile(model, args_, fmt: str) -> dict[str, float]:
    """Self CPU seconds per kind of operation in one forward; every operation inside the blocked
    attention (its products, mask and softmax) counts as attention."""
    original = multiway.blocked_attention

    def labelled(*a, **k):
        with record_function(ATTENTION_RANGE):
            return original(*a, **k)

    multiway.blocked_attention = labelled
    try:
        with torch.inference_mode(), autocast(fmt), torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            model(*args_[:2], drop_visual=args_[2])
    finally:
        multiway.blocked_attention = original
    out: dict[str, float] = defaultdict(float)
    for event in prof.events():
        kind, parent = kind_of(event.name), event.cpu_parent
        while parent is not None:
            if parent.name == ATTENTION_RANGE:
                kind = "attention"
            parent = parent.cpu_parent
        out[kind] += event.self_cpu_time_total / 1e6
    return dict(out)


ATTENTION_RANGE = "vab::blocked_attention"


@contextlib.contextmanager
def fused_attention():
    """Attention through SDPA's fused kernel everywhere, as before issue 27's blocks."""
    original = multiway.blocked_attention_pays
    multiway.blocked_attention_pays = lambda q: False
    try:
        yield
    finally:
        multiway.blocked_attention_pays = original


def compile_layer(model, args_, fmt: str, repeat: int) -> dict[str, float]:
    """One expert layer (the first) eager against torch.compile (inductor with freezing)."""
    import torch._inductor.config as inductor

    layer = model.layers[0]
    with torch.inference_mode(), autocast(fmt):
        tokens, features, drop = args_
        audio = model.embed_audio(tokens)
        visual = model.embed_visual(features, drop, batch=audio.shape[0])
        h = torch.cat([visual, audio], dim=1)
        bias = model.attention_mask(visual.shape[1], audio.shape[1], h.device, h.dtype if fmt != "bf16" else torch.bfloat16)
        eager = best(lambda: layer(h, visual.shape[1], bias), repeat)
        inductor.freezing = True
        compiled = torch.compile(layer)
        t0 = time.perf_counter()
        compiled(h, visual.shape[1], bias)
        seconds = time.perf_counter() - t0
        fast = best(lambda: compiled(h, visual.shape[1], bias), repeat)
    return {"eager_cpu_s": eager[0], "compiled_cpu_s": fast[0], "compile_wall_s": seconds,
            "speedup": eager[0] / fast[0]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="vab-encodec")
    p.add_argument("--format", default="bf16", choices=["fp32", "bf16", "int8"])
    p.add_argument("--rows", type=int, default=2, help="rows of the forward (2: one guided step at batch 1)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--compile", action="store_true", help="also torch.compile one expert layer")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = make_model(args.preset, make_codec(args.preset))
    flops_kind = flops_by_kind(model, inputs(model, args.rows))  # counted on the float model
    model = prepare_for_inference(model, args.format, inplace=True)
    args_ = inputs(model, args.rows)
    peak = peaks(reps=args.repeat)
    with torch.inference_mode(), autocast(args.format):
        model(*args_[:2], drop_visual=args_[2])  # warm-up: the first forward allocates
        cpu, wall = best(lambda: model(*args_[:2], drop_visual=args_[2]), args.repeat)
        with fused_attention():
            before = best(lambda: model(*args_[:2], drop_visual=args_[2]), args.repeat)
    kinds = profile(model, args_, args.format)
    total_flops = sum(flops_kind.values())
    kernel = {"fp32": "fp32", "bf16": "bf16", "int8": "int8"}[args.format]
    blocked = multiway.blocked_attention_pays(torch.ones(1, dtype=autocast_dtype(args.format) or torch.float32))
    print(f"{args.preset}, {args.format}, {args.rows} rows, {torch.get_num_threads()} thread(s), attention "
          f"{'in blocks' if blocked else 'SDPA'}; "
          f"peaks GFLOP/s: " + ", ".join(f"{k} {v:.0f}" for k, v in peak.items()))
    print(f"\none forward: {cpu:.3f} CPU s ({wall:.3f} wall s), {total_flops / 1e9:.0f} GFLOP, "
          f"{total_flops / cpu / 1e9:.0f} GFLOP/s per CPU s = {total_flops / cpu / 1e9 / peak[kernel]:.0%} of the "
          f"{kernel} peak; with SDPA's fused attention (before issue 27): {before[0]:.3f} CPU s "
          f"({before[0] / cpu:.2f}x the time)\n")
    # the profiler's self times are wall time (inflated alike on a shared machine): their shares
    # apportion the forward's CPU seconds
    profiled = sum(kinds.values())
    print("| kind | share of the time | CPU s | GFLOP | GFLOP/s | of peak |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind in [*KINDS, "other"]:
        share, f = kinds.get(kind, 0.0) / profiled, flops_kind.get(kind, 0.0)
        s = share * cpu
        rate = f"{f / s / 1e9:.0f} | {f / s / 1e9 / peak[kernel]:.0%}" if f and s else " | "
        print(f"| {kind} | {share:.1%} | {s:.3f} | {f / 1e9:.1f} | {rate} |")
    print(f"| all | 100% | {cpu:.3f} | {total_flops / 1e9:.1f} | {total_flops / cpu / 1e9:.0f} | "
          f"{total_flops / cpu / 1e9 / peak[kernel]:.0%} |")
    if args.compile:
        c = compile_layer(model, args_, args.format, args.repeat)
        print(f"\ntorch.compile of one expert layer: eager {c['eager_cpu_s']:.3f} CPU s, compiled "
              f"{c['compiled_cpu_s']:.3f} CPU s ({c['speedup']:.2f}x), compile {c['compile_wall_s']:.0f} s wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
