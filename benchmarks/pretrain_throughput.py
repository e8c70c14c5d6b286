"""Pretraining throughput, model FLOP utilisation, peak memory and data-loader headroom.

    python benchmarks/pretrain_throughput.py                      # tiny and vab-dac-test
    python benchmarks/pretrain_throughput.py --presets tiny --steps 50 --batch-size 32

Each preset runs in a fresh subprocess (so peak-memory numbers do not mix) with
random weights and random codebooks of the codec's shape (geometry from
`vab info`'s helper, nothing downloaded): real optimizer steps of
`PretrainObjective` (augment, mask, forward, backward, clipping, AdamW), fp32.

1. Throughput: clips/s and audio tokens/s (tokens = clips x levels x T) from the
   median step time over `--steps` timed steps (defaults: tiny 20 steps of 16
   clips, vab-dac-test 3 steps of 2 clips of 10 s), after one FLOP-counting step
   and `--warmup` warm-up steps.  The CPU share (process CPU time / wall time /
   threads) shows whether other work on the machine took cores.
2. Model FLOP utilisation: FLOPs of one training step counted by
   `torch.utils.flop_counter.FlopCounterMode` (forward + backward matmuls,
   including the attention's score and value products; element-wise work and
   the optimizer are not counted) divided by the median step time, against an
   fp32 2048 x 2048 `torch.mm` (2 n^3 FLOPs) peak measured in the same
   subprocess on the same threads: the best rate seen (before, between and
   after the timed steps), and per step against the rate measured right after
   that step (robust to a machine whose load changes during the run).  The
   analytic cross-check printed next to the counted FLOPs is

       3 x 2 x [B L n_layers (4 W^2 + 2 W ffn)          dense layers (one expert per token)
               + B T W V levels + B F D W + levels V d W  heads, visual / audio projections
               + 2 B n_layers L^2 W]                       attention scores and values

   with L = F + T positions, W width, V codebook size, d codebook dim, D visual dim
   (3 = forward + backward for inputs and weights).
3. Peak memory: the subprocess's RSS high-water mark (`ru_maxrss`), before and
   after training (parameters + gradients + two AdamW moments = 16 bytes/param).
4. Data loader: items/s through `DataLoader(num_workers=0, collate_fn=collate)`
   over (a) a small data set really extracted with the tiny preset's settings
   (spectral codec with a 32-entry codebook to keep the k-means fit short:
   stored shapes do not depend on it) and (b) synthetic stored data sets with
   vab-dac-test shapes (12 x 500 int16 tokens, 768-d float16 features at 1 and
   5 fps), compared with the clips/s a training step consumes (target >= 10x).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ("tiny", "vab-dac-test")
DEFAULT_BATCH = {"tiny": 16, "vab-dac-test": 2}
DEFAULT_STEPS = {"tiny": 20, "vab-dac-test": 3}


# ----------------------------------------------------------------------------- helpers
def per_preset(values: list[str], defaults: dict[str, int]) -> dict[str, int]:
    """``["8"]`` (all presets) or ``["tiny=16", "vab-dac-test=2"]`` -> {preset: n}."""
    out = dict(defaults)
    for v in values or []:
        if "=" in v:
            key, n = v.split("=", 1)
            out[key] = int(n)
        else:
            out = {k: int(v) for k in out}
    return out


def rss_mb() -> float:
    """RSS high-water mark of this process in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class MatmulProbe:
    """fp32 ``torch.mm`` of two n x n matrices (2 n^3 FLOPs), the peak the model is measured
    against; the matrices are allocated once (3 x 16 MB for n = 2048)."""

    def __init__(self, n: int = 2048):
        self.n = n
        self.a, self.b, self.out = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
        torch.mm(self.a, self.b, out=self.out)

    def gflops(self, reps: int = 3) -> float:
        """Best rate of `reps` products, GFLOP/s."""
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            torch.mm(self.a, self.b, out=self.out)
            best = min(best, time.perf_counter() - t0)
        return 2 * self.n**3 / best / 1e9


def machine_line() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{cpu}; {os.cpu_count()} cores; torch {torch.__version__}; {torch.get_num_threads()} torch threads; "
            f"load average {load}")


# ----------------------------------------------------------------------------- training (subprocess)
def build_random_model(preset: str):
    """(cfg, model) for a preset with random weights and random codebooks of the codec's shape."""
    from vab.commands.info import model_inputs
    from vab.config import load_config
    from vab.model import VAB

    cfg = load_config(preset)
    shape, vdim, frame_rate = model_inputs(preset, cfg)
    torch.manual_seed(0)
    return cfg, VAB.from_config(cfg, torch.randn(shape), vdim, frame_rate)


def random_batch(model, batch_size: int, classes: int, gen: torch.Generator) -> dict:
    """A collated batch as the loader yields it: int16 tokens, float16 features, float32 labels."""
    tokens = torch.randint(0, model.codebook_size, (batch_size, model.levels, model.num_audio_frames), generator=gen)
    features = torch.randn(batch_size, model.num_frames, model.visual_dim, generator=gen)
    labels = torch.nn.functional.one_hot(torch.randint(0, classes, (batch_size,), generator=gen), classes)
    return {"tokens": tokens.to(torch.int16), "features": features.half(), "labels": labels.float(),
            "id": [str(i) for i in range(batch_size)]}


def analytic_flops(model, batch_size: int) -> float:
    """The formula of the module docstring, FLOPs per training step."""
    m = model.config.model
    W, ffn, layers = int(m.width), int(m.ffn), int(m.layers)
    Fr, T = model.num_frames, model.num_audio_frames
    L, V = Fr + T, model.codebook_size
    d = model.codebooks.shape[2]
    predicted = model.levels - model.given_levels
    fwd = (2 * batch_size * L * layers * (4 * W * W + 2 * W * ffn)
           + 2 * batch_size * T * W * V * predicted + 2 * batch_size * Fr * model.visual_dim * W
           + 2 * model.levels * V * d * W + 4 * batch_size * layers * L * L * W)
    return 3.0 * fwd


def train_worker(preset: str, batch_size: int, steps: int, warmup: int) -> dict:
    """Measure one preset in this (fresh) process; returns the numbers as a dict."""
    from torch.utils.flop_counter import FlopCounterMode

    rss_torch = rss_mb()  # torch is imported at module level; this is the empty-process baseline
    from vab.training.objective import PretrainObjective
    from vab.training.optim import build_adamw

    cfg, model = build_random_model(preset)
    t = cfg.train
    model.train()
    optimizer = build_adamw(model, float(t.lr), float(t.weight_decay), t.betas)
    objective = PretrainObjective(cfg)
    gen = torch.Generator().manual_seed(0)
    data_gen = torch.Generator().manual_seed(1)
    params = [p for p in model.parameters() if p.requires_grad]
    rss_built = rss_mb()

    def step(batch: dict) -> tuple[float, float]:
        """(wall seconds, process CPU seconds) of one optimizer step."""
        t0, c0 = time.perf_counter(), time.process_time()
        loss, _ = objective(model, batch, gen)
        loss.backward()
        if t.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(params, float(t.clip_grad))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - t0, time.process_time() - c0

    probe = MatmulProbe()
    # the first step, with the FLOP counter on, doubles as a warm-up step
    with FlopCounterMode(display=False) as counter:
        step(random_batch(model, batch_size, 8, data_gen))
    flops = float(counter.get_total_flops())
    for _ in range(warmup):
        step(random_batch(model, batch_size, 8, data_gen))
    # other work on the machine changes both numbers: probe the peak right after every step
    # so each step's utilisation is taken against the peak available at that moment
    times, cpu, peaks = [], [], [probe.gflops(10)]
    for _ in range(steps):
        wall, c = step(random_batch(model, batch_size, 8, data_gen))
        times.append(wall)
        cpu.append(c)
        peaks.append(probe.gflops())
    rss_trained = rss_mb()
    peaks.append(probe.gflops(10))
    median = statistics.median(times)
    threads = torch.get_num_threads()
    return {
        "preset": preset,
        "params": sum(p.numel() for p in params),
        "batch": batch_size,
        "levels": model.levels,
        "T": model.num_audio_frames,
        "F": model.num_frames,
        "steps": steps,
        "step_median": median,
        "step_min": min(times),
        "step_max": max(times),
        "cpu_share": sum(cpu) / (sum(times) * threads),
        "clips_per_s": batch_size / median,
        "clips_per_s_fastest": batch_size / min(times),
        "tokens_per_s": batch_size * model.levels * model.num_audio_frames / median,
        "flops": flops,
        "flops_analytic": analytic_flops(model, batch_size),
        "achieved_gflops": flops / median / 1e9,
        "peak_gflops": max(peaks),
        "peak_adjacent_gflops": statistics.median(peaks[1:-1]),
        "mfu_per_step": statistics.median(flops / w / 1e9 / p for w, p in zip(times, peaks[1:-1])),
        "rss_torch_mb": rss_torch,
        "rss_built_mb": rss_built,
        "rss_peak_mb": rss_trained,
        "threads": threads,
    }


def run_preset(preset: str, batch_size: int, steps: int, warmup: int, script: str | Path = __file__) -> dict:
    """`script --worker PRESET` (its measuring function) in a fresh Python process; its JSON result."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, str(Path(script).resolve()), "--worker", preset, "--worker-out", str(out),
               "--batch-size", str(batch_size), "--steps", str(steps), "--warmup", str(warmup)]
        subprocess.run(cmd, check=True)
        return json.loads(out.read_text())


# ----------------------------------------------------------------------------- data loader
def loader_rate(dataset, batch_size: int, min_seconds: float = 2.0) -> tuple[float, int]:
    """(items/s, items) through a shuffled single-process DataLoader, whole epochs until
    at least `min_seconds` have passed."""
    from vab.data.dataset import collate

    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=True, num_workers=0, collate_fn=collate,
        generator=torch.Generator().manual_seed(0),
    )
    for _ in loader:  # first pass: opens the Arrow files, warms the page cache
        pass
    items, epoch, t0 = 0, 1, time.perf_counter()
    while True:
        dataset.set_epoch(epoch)
        for batch in loader:
            items += batch["tokens"].shape[0]
        epoch += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds:
            return items / elapsed, items


def extract_tiny_dataset(folder: Path, clips: int) -> tuple[Path, object]:
    """Synthetic videos -> a real `vab extract` output with the tiny preset's settings."""
    from tests.mediagen import make_video
    from vab.config import load_config
    from vab.data.extract import extract
    from vab.data.manifest import read_manifest

    for i in range(clips):
        make_video(folder / "clips" / f"clip_{i:03d}.mp4", seconds=4.0, fps=10, width=64, height=48,
                   freq=220.0 * (1 + i % 7))
    cfg = load_config("tiny", ["codec.codebook_size=32", "extract.num_workers=0", "extract.device=cpu"])
    extract(read_manifest(folder / "clips"), folder / "data", cfg.codec, cfg.visual, cfg.extract, progress=False)
    return folder / "data", cfg


def synthetic_dac_dataset(folder: Path, rows: int, stored_fps: float) -> Path:
    """A stored data set with vab-dac-test shapes: tokens int16 [12, 500], features float16 [10 x fps, 768]."""
    from vab.commands.info import DAC_16KHZ
    from vab.config import load_config, to_dict
    from vab.data.dataset import check_matches_config
    from vab.data.store import DATA_DIR, DataInfo, write_part

    cfg = load_config("vab-dac-test")
    size, _, frame_rate, levels = DAC_16KHZ
    info = DataInfo(
        codec=to_dict(cfg.codec), num_codebooks=levels, codebook_size=size, sample_rate=16000,
        frame_rate=frame_rate, duration=float(cfg.data.duration), has_visual=True, visual=to_dict(cfg.visual),
        visual_dim=768, fps=stored_fps, label_names=[f"class{i}" for i in range(8)],
    )
    check_matches_config(info, cfg, source=str(folder))
    rng = np.random.default_rng(0)
    data = {
        "index": list(range(rows)),
        "id": [f"clip{i:05d}" for i in range(rows)],
        "path": [f"clip{i:05d}.mp4" for i in range(rows)],
        "split": ["train"] * rows,
        "labels": [[int(i % 8)] for i in range(rows)],
        "start": [0.0] * rows,
        "source_duration": [info.duration] * rows,
        "tokens": rng.integers(0, size, (rows, levels, info.num_tokens), dtype=np.int16),
        "features": rng.standard_normal((rows, info.num_frames, 768), dtype=np.float32).astype(np.float16),
    }
    folder.mkdir(parents=True, exist_ok=True)
    info.save(folder)
    write_part(folder / DATA_DIR, info, data)
    return folder


def measure_loaders(batch: dict[str, int], tiny_clips: int, dac_rows: int) -> list[dict]:
    import datasets

    from vab.config import load_config
    from vab.data.dataset import VABDataset

    datasets.disable_progress_bars()
    # known, harmless here: read-only Arrow buffers wrapped by torch.from_numpy; a pyarrow deprecation
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    warnings.filterwarnings("ignore", message="Specifying null_placement", category=FutureWarning)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        path, cfg = extract_tiny_dataset(tmp / "tiny", tiny_clips)
        extract_s = time.perf_counter() - t0
        ds = VABDataset(path, None, fps=cfg.data.fps, duration=cfg.data.duration, levels=cfg.model.levels)
        rate, n = loader_rate(ds, batch["tiny"])
        out.append({"preset": "tiny", "name": f"tiny, extracted ({tiny_clips} clips, {extract_s:.0f} s to extract)",
                    "stored": "tokens [4, 200] int16, features [8, 192] f16", "batch": batch["tiny"],
                    "rate": rate, "items": n})
        dac = load_config("vab-dac-test")
        for fps in (1.0, 5.0):
            path = synthetic_dac_dataset(tmp / f"dac-{fps:g}fps", dac_rows, fps)
            ds = VABDataset(path, "train", fps=dac.data.fps, duration=dac.data.duration, levels=dac.model.levels)
            rate, n = loader_rate(ds, batch["vab-dac-test"])
            out.append({"preset": "vab-dac-test",
                        "name": f"vab-dac-test shapes, synthetic, {fps:g} fps stored ({dac_rows} clips)",
                        "stored": f"tokens [12, 500] int16, features [{int(10 * fps)}, 768] f16 "
                                  "-> model reads 4 x 500, 10 frames",
                        "batch": batch["vab-dac-test"], "rate": rate, "items": n})
    return out


# ----------------------------------------------------------------------------- report
def print_tables(results: list[dict], loaders: list[dict]) -> None:
    print("\n### Training throughput (fp32, CPU, AdamW steps of PretrainObjective)\n")
    print("| preset | params | batch | T x levels | timed steps | step s (median [min-max]) | CPU share | clips/s "
          "| audio tokens/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['preset']} | {r['params'] / 1e6:.1f}M | {r['batch']} | {r['T']} x {r['levels']} | {r['steps']} | "
              f"{r['step_median']:.3f} [{r['step_min']:.3f}-{r['step_max']:.3f}] | {100 * r['cpu_share']:.0f}% | "
              f"{r['clips_per_s']:.2f} | {r['tokens_per_s']:,.0f} |")
    print("\nCPU share: process CPU time / (wall time x torch threads) over the timed steps; "
          "below ~90% means other work took cores.")
    print("\n### Model FLOP utilisation (FlopCounterMode FLOPs / median step time vs. best fp32 2048^3 torch.mm)\n")
    print("| preset | GFLOP/step (counted) | GFLOP/step (analytic) | achieved GFLOP/s | mm peak GFLOP/s (best) "
          "| MFU vs best peak | mm peak after each step (median) | MFU per step (median) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['preset']} | {r['flops'] / 1e9:,.1f} | {r['flops_analytic'] / 1e9:,.1f} | "
              f"{r['achieved_gflops']:.1f} | {r['peak_gflops']:.1f} | "
              f"{100 * r['achieved_gflops'] / r['peak_gflops']:.0f}% | "
              f"{r['peak_adjacent_gflops']:.1f} | {100 * r['mfu_per_step']:.0f}% |")
    print("\n### Peak memory (RSS high-water mark, one fresh process per preset; "
          "includes 48 MB of matmul-probe matrices)\n")
    print("| preset | batch | params + grads + AdamW (16 B/param) | RSS after `import torch` | RSS after model build "
          "| RSS peak after training |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['preset']} | {r['batch']} | {16 * r['params'] / 2**20:,.0f} MB | {r['rss_torch_mb']:,.0f} MB | "
              f"{r['rss_built_mb']:,.0f} MB | {r['rss_peak_mb']:,.0f} MB |")
    if loaders:
        consumed = {r["preset"]: (r["clips_per_s"], r["clips_per_s_fastest"]) for r in results}
        print("\n### Data loader (DataLoader num_workers=0, VABDataset + collate) vs. what training consumes\n")
        print("| data set | stored per clip | batch | loader items/s | training clips/s (median step / fastest step) "
              "| ratio (vs fastest step) |")
        print("|---|---|---|---|---|---|")
        for x in loaders:
            need = consumed.get(x["preset"])
            ratio = f"{x['rate'] / need[0]:,.0f}x ({x['rate'] / need[1]:,.0f}x)" if need else "n/a"
            need_s = f"{need[0]:.2f} / {need[1]:.2f}" if need else "n/a"
            print(f"| {x['name']} | {x['stored']} | {x['batch']} | {x['rate']:,.0f} | {need_s} | {ratio} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    p.add_argument("--steps", nargs="+", default=[], metavar="N|PRESET=N",
                   help=f"timed steps (default {DEFAULT_STEPS})")
    p.add_argument("--batch-size", nargs="+", default=[], metavar="N|PRESET=N",
                   help=f"clips per step, also the loader batch (default {DEFAULT_BATCH})")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps after the FLOP-counting step")
    p.add_argument("--tiny-clips", type=int, default=32, help="clips extracted for the tiny loader measurement")
    p.add_argument("--dac-rows", type=int, default=128, help="clips in each synthetic vab-dac-test data set")
    p.add_argument("--skip-loader", action="store_true")
    p.add_argument("--worker", choices=list(PRESETS), help=argparse.SUPPRESS)
    p.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = p.parse_args()
    steps = per_preset(args.steps, DEFAULT_STEPS)
    batch = per_preset(args.batch_size, DEFAULT_BATCH)

    if args.worker:
        result = train_worker(args.worker, batch[args.worker], steps[args.worker], args.warmup)
        Path(args.worker_out).write_text(json.dumps(result))
        return

    print(f"machine: {machine_line()}")
    t0 = time.perf_counter()
    results = []
    for preset in args.presets:
        results.append(run_preset(preset, batch[preset], steps[preset], args.warmup))
        r = results[-1]
        print(f"  {preset}: {r['step_median']:.3f} s/step, {r['clips_per_s']:.2f} clips/s", flush=True)
    loaders = [] if args.skip_loader else measure_loaders(batch, args.tiny_clips, args.dac_rows)
    print_tables(results, loaders)
    print(f"\nafter the run: {machine_line()}; total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    # `tests.mediagen` (synthetic videos) lives beside the package, not inside it
    sys.path.insert(0, str(ROOT))
    main()
