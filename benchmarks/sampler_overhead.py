"""The MaskGIT sampler's own overhead: `vab.generation.sampling.sample_tokens` against the model
forwards it cannot avoid, in the same run.

    python benchmarks/sampler_overhead.py                                  # tiny preset
    python benchmarks/sampler_overhead.py --preset vab-encodec --repeat 1  # 403M, T = 750

Builds the preset's model with random weights (codec codebooks are random tensors
of the codec's shape, so no codec or encoder weights are needed), one window of
random frame features, then times (best of `--repeat`):

- `forwards`: `steps` x one batched [cond ; uncond] forward on fully masked tokens;
- `sample_tokens` with `steps` steps and the given guidance, and the time spent
  inside its own model forwards (measured by a thin wrapper).

Overhead = sample_tokens time minus its forward time, relative to `forwards`; the
target is under 5 % for the `vab-encodec` size.  Prints a markdown table.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from vab.config import load_config  # noqa: E402
from vab.model import VAB  # noqa: E402
from vab.generation.sampling import SamplingConfig, sample_tokens  # noqa: E402
from vab.visual import visual_dim as vab_visual_dim  # noqa: E402

# (frame rate Hz, codebook size, codebook vector dim) of each codec's token space
CODEC_SHAPES = {"encodec": (75.0, 1024, 128), "dac": (50.0, 1024, 8)}


def codec_shape(cfg) -> tuple[float, int, int]:
    if cfg.codec.name == "spectral":
        return float(cfg.codec.frame_rate), int(cfg.codec.codebook_size), cfg.codec.n_fft // 2 + 1
    return CODEC_SHAPES[cfg.codec.name]


def visual_dim(cfg) -> int:
    """The preset's frame-feature size (its own encoder's, without weights)."""
    return vab_visual_dim(cfg.visual)


class TimedModel(nn.Module):
    """Passes forwards through to `inner` and adds up their wall time."""

    ATTRS = ("levels", "given_levels", "mask_id", "codebook_size", "fps", "frame_rate", "num_frames",
             "num_audio_frames")

    def __init__(self, inner: VAB):
        super().__init__()
        self.inner = inner
        for name in self.ATTRS:
            setattr(self, name, getattr(inner, name))
        self.seconds = 0.0
        self.calls = 0

    def forward(self, *args, **kwargs):
        start = time.perf_counter()
        out = self.inner(*args, **kwargs)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out


def random_model(cfg) -> VAB:
    """The preset's model, seeded random weights, random codebooks of the codec's shape."""
    frame_rate, codebook_size, dim = codec_shape(cfg)
    torch.manual_seed(0)
    codebooks = [torch.randn(codebook_size, dim) for _ in range(cfg.model.levels)]
    return VAB.from_config(cfg, codebooks, visual_dim(cfg), frame_rate).eval()


def random_condition(model: VAB, batch: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(features ``[B, F, D]``, given ``[B, K, T]`` or None, given_mask or None) for one window:
    random frame features, and for a coarse-to-fine model random coarse tokens as given."""
    b, t = batch, model.num_audio_frames
    features = torch.randn(b, model.num_frames, model.visual_dim)
    given = given_mask = None
    if model.given_levels:  # coarse-to-fine: the coarse levels are given
        given = torch.randint(0, model.codebook_size, (b, model.levels, t))
        given_mask = torch.zeros(b, model.levels, t, dtype=torch.bool)
        given_mask[:, : model.given_levels] = True
    return features, given, given_mask


def guided_batch(
    model: VAB, features: torch.Tensor, given: torch.Tensor | None, given_mask: torch.Tensor | None, guidance: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(tokens, features, drop_visual) of one forward as the sampler runs it on fully masked
    tokens: ``[cond ; uncond]`` stacked (2B rows) when guided, else the B rows alone."""
    b, t = features.shape[0], model.num_audio_frames
    masked = torch.full((b, model.levels, t), model.mask_id, dtype=torch.long)
    if given is not None:
        masked = torch.where(given_mask, given, masked)
    rows = 2 * b if guidance not in (0.0, 1.0) else b
    drop = torch.arange(rows) >= b
    return masked.repeat(rows // b, 1, 1), features.repeat(rows // b, 1, 1), drop


def run_forwards(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], steps: int) -> None:
    """`steps` forwards of the `guided_batch` output, in inference mode."""
    tokens, features, drop = batch
    with torch.inference_mode():
        for _ in range(steps):
            model(tokens, features, drop_visual=drop)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--guidance", type=float, default=5.0)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()

    cfg = load_config(args.preset)
    model = random_model(cfg)
    b, t = args.batch, model.num_audio_frames
    features, given, given_mask = random_condition(model, b)
    sampling = SamplingConfig(steps=args.steps, guidance=args.guidance)
    batch = guided_batch(model, features, given, given_mask, args.guidance)

    def forwards() -> None:
        run_forwards(model, batch, args.steps)

    timed = TimedModel(model)
    best_fwd = best_total = best_inside = float("inf")
    for _ in range(args.repeat):
        start = time.perf_counter()
        forwards()
        best_fwd = min(best_fwd, time.perf_counter() - start)
        timed.seconds, timed.calls = 0.0, 0
        start = time.perf_counter()
        sample_tokens(timed, features, given=given, given_mask=given_mask, cfg=sampling)
        total = time.perf_counter() - start
        if total < best_total:
            best_total, best_inside = total, timed.seconds
    overhead = best_total - best_inside

    params = sum(x.numel() for x in model.parameters()) / 1e6
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
          f"fp32 CPU, batch {b}, best of {args.repeat}\n")
    print("| preset | params | T | steps | guidance | steps x batched forward | sample_tokens | "
          "its forwards | sampler overhead | overhead / forwards |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.preset} | {params:.1f}M | {t} | {args.steps} | {args.guidance:g} | {best_fwd:.3f} s | "
          f"{best_total:.3f} s | {best_inside:.3f} s | {overhead * 1e3:.1f} ms | {100 * overhead / best_fwd:.2f} % |")


if __name__ == "__main__":
    main()
