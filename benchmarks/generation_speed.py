"""Time to generate 10 s of audio: token sampling against the model forwards it cannot
avoid, codec decoding, total and real-time factor.

    python benchmarks/generation_speed.py                     # every case, big models from 3 measured steps
    python benchmarks/generation_speed.py --cases tiny        # seconds
    python benchmarks/generation_speed.py --measure-steps 0   # every step for real (~15 min on an idle 2-core CPU)

Cases (random weights throughout: timing does not depend on them):

- `tiny`: the tiny preset (4-s windows, so 10 s take several overlapping windows), its
  spectral codec fitted on 30 s of synthetic audio (seconds of k-means); decoding is Griffin-Lim.
- `vab-encodec`: the ~400M-parameter preset, T = 750 per 10-s window, EnCodec 24 kHz (random init).
- `dac`: `vab-dac` for the 4 coarse levels (T = 500) then `c2f-dac` for the 8 fine ones
  (36 steps, as generation always runs it), DAC 16 kHz decoding (random init).

Each case runs the real generation path (`vab.generation.generator.Generator` on 10 s of random
frame features, batch 1, fp32, inference mode), with every model forward timed.  In the
same run, `steps x one batched [cond ; uncond] forward` on fully masked tokens is timed
on its own (`benchmarks/sampler_overhead.py`'s forwards): the sampler overhead is
sampling time minus the time spent inside its forwards, relative to those forwards.

`--measure-steps N`: in the big cases only the first N forwards of each sampler pass run
the network; later steps get the last logits back, so the sampler still does all of its
own work on real-shaped logits (the overhead stays measured), and forward time is
extrapolated linearly from the N measured forwards to every step.  Rows say so.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sampler_overhead.py
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sampler_overhead import guided_batch, random_condition, run_forwards, visual_dim  # noqa: E402

from vab.codecs import AudioCodec, build_codec  # noqa: E402
from vab.codecs.spectral import SpectralCodec  # noqa: E402
from vab.config import VisualConfig, load_config  # noqa: E402
from vab.generation.generator import C2F_STEPS, Generator  # noqa: E402
from vab.checkpoint import build_model  # noqa: E402
from vab.model import VAB  # noqa: E402
from vab.generation.sampling import SamplingConfig  # noqa: E402
from vab.visual import build_visual_encoder  # noqa: E402

#: case -> presets of its sampler passes (coarse first)
CASES = {"tiny": ("tiny",), "vab-encodec": ("vab-encodec",), "dac": ("vab-dac", "c2f-dac")}
#: cases cheap enough to always run every step, best of --repeat
CHEAP = ("tiny",)
FIT_SECONDS = 30.0  # synthetic audio the tiny case's spectral codec is fitted on (1500 frames for 256 centroids)


def flop_counter():
    """``FlopCounterMode`` that also counts the CPU's fused attention kernel (torch has no formula
    for ``_scaled_dot_product_flash_attention_for_cpu``: QK^T and AV, as for the GPU kernels)."""
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def cpu_flash(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    return FlopCounterMode(display=False,
                           custom_mapping={torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_flash})


class ForwardClock:
    """Times every forward of `model` (set as an instance attribute, so the sampler calls it
    unchanged).  After `limit` real forwards (0 = no limit) of a given number of rows (a guided
    step runs 2B rows, an unguided one B) it hands back the last logits of that size instead of
    running the network; a read-out at the masked positions (`where`) gets as many rows as it asks."""

    def __init__(self, model: VAB, limit: int = 0):
        self.model, self.limit = model, limit
        self.real: list[float] = []  # seconds of each real forward
        self.real_cpu: list[float] = []  # CPU seconds of this process in each real forward
        self.real_rows: list[int] = []  # rows of each real forward
        self.replayed_rows: list[int] = []  # rows of each replayed forward
        self.replay_seconds = 0.0
        self._last: dict[int, torch.Tensor] = {}

    def __enter__(self) -> "ForwardClock":
        network = self.model.forward

        def forward(*args, **kwargs):
            start = time.perf_counter()
            rows = int(args[0].shape[0])
            if self.limit and self.real_rows.count(rows) >= self.limit:
                out = self._last[rows]
                where = kwargs.get("where")
                if where is not None:  # as many rows as this step reads, from the last real ones
                    out = out[torch.arange(int(where.sum())) % out.shape[0]]
                self.replayed_rows.append(rows)
                self.replay_seconds += time.perf_counter() - start
            else:
                cpu = time.process_time()
                out = self._last[rows] = network(*args, **kwargs)
                self.real.append(time.perf_counter() - start)
                self.real_cpu.append(time.process_time() - cpu)
                self.real_rows.append(rows)
            return out

        self.model.forward = forward
        return self

    def __exit__(self, *exc) -> None:
        del self.model.forward
        self.model = self._last = None  # results outlive the case's models

    @property
    def replayed(self) -> int:
        return len(self.replayed_rows)

    @property
    def calls(self) -> int:
        return len(self.real) + self.replayed

    @property
    def inside(self) -> float:
        """Wall seconds actually spent inside forward calls."""
        return sum(self.real) + self.replay_seconds

    def mean(self, rows: int, clock: str = "wall") -> float:
        """Mean seconds of the real forwards of `rows` rows (`clock`: wall or cpu)."""
        times = self.real if clock == "wall" else self.real_cpu
        picked = [t for t, r in zip(times, self.real_rows) if r == rows]
        return sum(picked) / len(picked)

    def estimate(self, clock: str = "wall") -> float:
        """Seconds every call would have taken as a real forward: the real ones, plus each
        replayed call at the mean of the real forwards of its size (linear extrapolation)."""
        times = self.real if clock == "wall" else self.real_cpu
        return sum(times) + sum(self.mean(r, clock) for r in self.replayed_rows)

    @property
    def estimated(self) -> float:
        return self.estimate("wall")


@dataclass
class Pass:
    """One sampler pass of a case and what was timed."""

    preset: str
    steps: int
    params: float  # millions
    frames: int  # T, audio tokens per window
    standalone: float = 0.0  # mean seconds of one batched forward, timed on its own
    clock: ForwardClock | None = None


@dataclass
class Result:
    case: str
    passes: list[Pass]
    seconds: float  # audio generated
    windows: int
    timings: dict[str, float] = field(default_factory=dict)
    repeat: int = 1
    cores: float = 0.0  # this process's CPU seconds per wall second over the case (contention check)

    @property
    def extra(self) -> float:
        """Forward seconds the replayed steps would have cost."""
        return sum(p.clock.estimated - p.clock.inside for p in self.passes)

    @property
    def extrapolated(self) -> bool:
        return any(p.clock.replayed for p in self.passes)

    @property
    def sampling(self) -> float:
        return self.timings["sampling"] + self.extra

    @property
    def total(self) -> float:
        return self.timings["total"] + self.extra

    @property
    def forwards(self) -> float:
        """`steps x windows` standalone batched forwards, every pass."""
        return sum(p.standalone * p.clock.calls for p in self.passes)

    @property
    def overhead(self) -> float:
        return self.timings["sampling"] - sum(p.clock.inside for p in self.passes)


# ---------------------------------------------------------------------- building
def synthetic_audio(seconds: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """Noise under a random 0.1-s loudness envelope plus a rising tone, float32 ``[N]``."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    blocks = -(-n // (sample_rate // 10))
    envelope = np.repeat(rng.uniform(0.01, 0.4, blocks), sample_rate // 10)[:n]
    t = np.arange(n) / sample_rate
    tone = 0.2 * np.sin(2 * np.pi * (200 * t + 100 * t**2))
    return (rng.standard_normal(n) * envelope + tone).astype(np.float32)


def make_codec(preset: str) -> AudioCodec:
    cfg = load_config(preset, ["codec.pretrained=false"])
    if cfg.codec.name == "spectral":
        return SpectralCodec.from_config(cfg.codec).fit([synthetic_audio(FIT_SECONDS, cfg.codec.sample_rate)])
    return build_codec(cfg.codec)


def make_model(preset: str, codec: AudioCodec) -> VAB:
    """The preset's model, seeded random weights, the codec's own codebooks."""
    cfg = load_config(preset, ["codec.pretrained=false"])
    torch.manual_seed(0)
    codebooks = [codec.codebook_vectors(k) for k in range(cfg.model.levels)]
    # TokenModel: any registered type (eval/speed.py builds the FoleyGen baseline here too)
    return build_model(cfg, codebooks, visual_dim(cfg), codec.frame_rate).eval()


def warm_up(model: VAB, guidance: float) -> None:
    """One untimed full-size guided forward: the first one pays for allocating its
    activations (about 25 % slower at the big sizes), which no later step does."""
    run_forwards(model, guided_batch(model, *random_condition(model, 1), guidance), 1)


# ---------------------------------------------------------------------- timing
def run_case(case: str, models: list[VAB], codec: AudioCodec, args: argparse.Namespace, limit: int) -> Result:
    """Standalone forwards, then the generation of `args.seconds` of audio with clocked forwards.
    `models`: the coarse model, then the coarse-to-fine one if any; `limit`: real forwards
    per pass (0 = all)."""
    passes = [
        Pass(preset, steps, sum(x.numel() for x in m.parameters()) / 1e6, m.num_audio_frames)
        for m, preset, steps in zip(models, CASES[case], (args.steps, C2F_STEPS))
    ]
    for p, model in zip(passes, models):
        n = min(limit or p.steps, p.steps)
        batch = guided_batch(model, *random_condition(model, 1), args.guidance)
        start = time.perf_counter()
        run_forwards(model, batch, n)
        p.standalone = (time.perf_counter() - start) / n

    coarse = models[0]
    torch.manual_seed(1)
    features = torch.randn(int(round(args.seconds * coarse.fps)), coarse.visual_dim)
    # features are given, so the frame encoder is never called: the weights-free pixels
    # encoder stands in for CLIP, whose weights are not needed for timing
    generator = Generator(
        coarse, codec=codec, visual=build_visual_encoder(VisualConfig(name="pixels")),
        c2f=models[1] if len(models) > 1 else None, precision="fp32",
    )
    sampling = SamplingConfig(steps=args.steps, guidance=args.guidance, seed=0)
    for p, model in zip(passes, models):
        p.clock = ForwardClock(model, limit if limit < p.steps else 0)
    with torch.inference_mode(), contextlib.ExitStack() as clocks:
        for p in passes:
            clocks.enter_context(p.clock)
        out = generator.generate(features, sampling=sampling)
    return Result(case, passes, out.seconds, out.windows, dict(out.timings))


def measure(case: str, args: argparse.Namespace) -> Result:
    presets = CASES[case]
    wall, cpu = time.perf_counter(), time.process_time()
    codec = make_codec(presets[0])
    models = [make_model(preset, codec) for preset in presets]
    for model in models:
        warm_up(model, args.guidance)
    cheap = case in CHEAP
    limit = 0 if cheap else args.measure_steps
    repeat = args.repeat if args.repeat else (3 if cheap else 1)
    runs = [run_case(case, models, codec, args, limit) for _ in range(repeat)]
    best = min(runs, key=lambda r: r.total)
    for i, p in enumerate(best.passes):  # each quantity's best: the two timings are separate runs
        p.standalone = min(r.passes[i].standalone for r in runs)
    best.repeat = repeat
    best.cores = (time.process_time() - cpu) / (time.perf_counter() - wall)
    return best


# ---------------------------------------------------------------------- report
def timing_label(r: Result) -> str:
    if not r.extrapolated:
        return f"measured, all steps, best of {r.repeat}"
    measured = sorted({len(p.clock.real) for p in r.passes})
    return f"extrapolated from {'/'.join(map(str, measured))} measured steps"


def report(results: list[Result], args: argparse.Namespace) -> None:
    print(f"\n{args.seconds:g} s of audio, {args.steps} steps (coarse-to-fine {C2F_STEPS}), guidance {args.guidance:g}, "
          "batch 1, fp32, random weights\n")
    print("| case | timing | windows | token sampling | steps x batched forward | sampler overhead | "
          "codec decode | total | RTF (audio s / wall s) | CPU cores used |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r.case} | {timing_label(r)} | {r.windows} | {r.sampling:.2f} s | {r.forwards:.2f} s | "
              f"{r.overhead:.3f} s ({100 * r.overhead / r.forwards:.2f} %) | {r.timings['decode']:.2f} s | "
              f"{r.total:.2f} s | {r.seconds / r.total:.3f} | {r.cores:.2f} of {torch.get_num_threads()} |")
    print("\nPer sampler pass (forward = one batched [cond ; uncond] forward, 2 rows):\n")
    print("| case | model | params | T | forwards (steps x windows) | run for real | forward in sampler | "
          "forward alone | steps x batched forward |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        for p in r.passes:
            c = p.clock
            print(f"| {r.case} | {p.preset} | {p.params:.{0 if p.params >= 10 else 1}f}M | {p.frames} | {c.calls} "
                  f"({p.steps} x {c.calls // p.steps}) | {len(c.real)} | {sum(c.real) / len(c.real):.3f} s | "
                  f"{p.standalone:.3f} s | {p.standalone * c.calls:.2f} s |")
    if any(r.extrapolated for r in results):
        print("\nExtrapolated rows: only the first measured steps of each pass ran the network; later steps "
              "reused their logits, so the sampler's own work is measured over every step and only forward "
              "time is scaled linearly (mean measured forward x all forwards).")
    print("\nCPU cores used: this process's CPU time / wall time over the whole case; well below the thread "
          "count means other processes shared the cores and the wall times are inflated.")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    p.add_argument("--seconds", type=float, default=10.0, help="audio to generate")
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--guidance", type=float, default=5.0)
    p.add_argument("--measure-steps", type=int, default=3,
                   help="real forwards per sampler pass in the big cases, the rest extrapolated (0 = all)")
    p.add_argument("--repeat", type=int, default=0, help="runs per case, best kept (default: 3 for tiny, 1 else)")
    args = p.parse_args()
    if args.measure_steps < 0:
        p.error("--measure-steps must be >= 0")

    started = time.perf_counter()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average at start {os.getloadavg()[0]:.2f}", flush=True)
    results = []
    for case in args.cases:
        t0 = time.perf_counter()
        results.append(measure(case, args))
        print(f"  {case}: done in {time.perf_counter() - t0:.0f} s", flush=True)
        gc.collect()  # the big models go before the next case builds its own
    report(results, args)
    print(f"\nscript wall time {time.perf_counter() - started:.0f} s, load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
