"""Guided logits under bf16 autocast against fp32: the read-out (final norm + heads) in bf16, as
before issue 14, against the read-out in fp32 (`vab.model.multiway.token_logits`).

    python benchmarks/readout_precision.py --model vab-demo/model --paper vab-encodec

For each model, one batch of inputs (every audio token masked, as at the first MaskGIT step, and
half masked, as mid-way) goes through the model in fp32 and under bf16 autocast (the trunk in bf16
either way); the guided logits ``u + w (c - u)`` (w = 5, computed in fp32 from the read-out's
output, as the sampler does) are compared with the fp32 ones at the masked positions: max
|error| and the share of positions whose most likely token changes.  "whole model": against the
model run in fp32 (the bf16 trunk's own rounding included); "read-out alone": the same hidden
states through each read-out, against an fp32 read-out of them.  `--paper` builds a random-init model of that preset
(meta-free, on the CPU: several GB of memory for vab-encodec)."""

from __future__ import annotations

import argparse
import contextlib
import json
import time

import torch
from torch import nn

import vab.model.vab as vab_module
from vab.generation.sampling import guide_logits


def bf16_readout(norm: nn.LayerNorm, heads: nn.ModuleList, h: torch.Tensor) -> torch.Tensor:
    """The read-out before the fix: the modules called under whatever autocast is active."""
    x = norm(h)
    return torch.stack([head(x) for head in heads], dim=1)


@contextlib.contextmanager
def readout(kind: str):
    """`fp32` (the library's) or `bf16` (before the fix) read-out for VAB.forward."""
    saved = vab_module.token_logits
    if kind == "bf16":
        vab_module.token_logits = bf16_readout
    try:
        yield
    finally:
        vab_module.token_logits = saved


def guided(model, tokens, features, guidance: float, autocast: bool, kind: str) -> torch.Tensor:
    """Guided logits ``[B, L, T, V]`` float32."""
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    with torch.no_grad(), ctx, readout(kind):
        both = model(torch.cat([tokens, tokens]), torch.cat([features, features]),
                     drop_visual=torch.tensor([False] * len(tokens) + [True] * len(tokens)))
    cond, uncond = both.float().chunk(2)
    return guide_logits(cond, uncond, guidance)


def readout_alone(model, tokens, features, guidance: float) -> dict[str, torch.Tensor]:
    """Guided logits from the SAME hidden states (the trunk run once under bf16 autocast): the
    read-out in fp32 outside autocast (reference), in bf16 (before) and the library's under
    autocast (after), so the read-out's own share of the error is isolated."""
    captured = {}
    saved = vab_module.token_logits

    def capture(norm, heads, h):
        captured["h"] = h
        return saved(norm, heads, h)

    vab_module.token_logits = capture
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            model(torch.cat([tokens, tokens]), torch.cat([features, features]),
                  drop_visual=torch.tensor([False] * len(tokens) + [True] * len(tokens)))
    finally:
        vab_module.token_logits = saved
    h = captured["h"]
    out = {}
    with torch.no_grad():
        out["reference"] = guide_logits(*saved(model.final_norm, model.heads, h.float()).chunk(2), guidance)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out["bf16"] = guide_logits(*bf16_readout(model.final_norm, model.heads, h).float().chunk(2), guidance)
            out["fp32"] = guide_logits(*saved(model.final_norm, model.heads, h).float().chunk(2), guidance)
    return out


def inputs(model, batch: int, masked: float, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    shape = (batch, model.levels, model.num_audio_frames)
    tokens = torch.randint(0, model.codebook_size, shape, generator=g)
    tokens[torch.rand(shape, generator=g) < masked] = model.mask_id
    features = torch.rand(batch, model.num_frames, model.visual_dim, generator=g)
    return tokens, features


def measure(model, name: str, batch: int, guidance: float) -> list[dict]:
    model = model.eval()
    rows = []
    for masked in (1.0, 0.5):
        tokens, features = inputs(model, batch, masked)
        t0 = time.perf_counter()
        ref = guided(model, tokens, features, guidance, autocast=False, kind="fp32")
        where = (tokens[:, model.given_levels:] == model.mask_id)  # the positions the sampler reads
        alone = readout_alone(model, tokens, features, guidance)
        for scope in ("whole model", "read-out alone"):
            for kind in ("bf16", "fp32"):
                if scope == "whole model":
                    out, base = guided(model, tokens, features, guidance, autocast=True, kind=kind), ref
                else:
                    out, base = alone[kind], alone["reference"]
                err = (out - base).abs()[where]
                changed = (out.argmax(-1) != base.argmax(-1))[where].float().mean().item()
                rows.append({"model": name, "masked": masked, "scope": scope, "readout": kind,
                             "max_error": err.max().item(), "mean_error": err.mean().item(),
                             "top_token_changed": changed, "logit_range": float(base.max() - base.min())})
        rows[-1]["seconds"] = time.perf_counter() - t0
    return rows


def paper_model(preset: str):
    from vab.config import load_config
    from vab.model import VAB

    cfg = load_config(preset)
    torch.manual_seed(0)  # codebooks and weights: the same model on every run
    if cfg.codec.name == "encodec":
        books, rate = [torch.randn(1024, 128) for _ in range(cfg.model.levels)], 75.0
    else:
        books, rate = [torch.randn(1024, 8) for _ in range(cfg.model.levels)], 50.0
    return VAB.from_config(cfg, books, 768, rate)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="a model directory (e.g. the demo's)")
    p.add_argument("--paper", help="a preset built with random weights (e.g. vab-encodec)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--guidance", type=float, default=5.0)
    p.add_argument("--json", help="also write the rows here")
    args = p.parse_args(argv)
    rows = []
    if args.model:
        from vab.checkpoint import load_model as load_pretrained

        rows += measure(load_pretrained(args.model, device="cpu"), args.model, args.batch, args.guidance)
    if args.paper:
        rows += measure(paper_model(args.paper), f"{args.paper} (random init)", 1, args.guidance)
    print("| model | audio masked | compared | read-out under bf16 | max abs error | mean abs error | top token changed |")
    print("|---|---:|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['masked']:.0%} | {r['scope']} | {r['readout']} | {r['max_error']:.4f} "
              f"| {r['mean_error']:.5f} | {r['top_token_changed']:.2%} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
