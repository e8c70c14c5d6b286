"""Generation speed end to end: VAB (parallel masked decoding) against the autoregressive
FoleyGen baseline at the same width and depth, on the same machine, in the same run, from
video files to written soundtracks.

    python eval/speed.py --pairs tiny                                   # about a minute on an idle machine
    python eval/speed.py --pairs paper --batch-sizes 1 --precisions fp32 bf16 int8
    python eval/speed.py --pairs paper --batch-sizes 1 4 8 --clips 8 --models vab   # clips per minute
    python eval/speed.py --pairs paper --steps 16 --guidance-stop 1                   # a sampling variant

What is timed is what `vab generate clips/ --out out/` does for each clip after the models are
loaded: read the frames of the 10-s video (PyAV, at the model's fps), encode them with the
preset's frame encoder (`vab-encodec`: EVA02-L-14 through open_clip; `tiny`: hog-colour), sample
the tokens, decode them with the codec, and write the wav and the muxed mp4
(`vab.generation.generator.Generator` and `vab.generation.outputs.write_outputs`).  Each stage
is reported per clip; "end to end" is the wall time from the first frame read to the last file
written, over the number of clips.  The videos (--clips of them, distinct, 640x360 H.264 at
25 fps, no audio track) are made once per run in OUT/videos.

Pairs (random weights everywhere, codec and frame encoder included: timing does not depend on them):

- `tiny`: `tiny` against `foleygen-tiny` (4-s windows, so a 10-s clip takes 3 overlapping
  windows; spectral codec fitted on synthetic audio, Griffin-Lim decoding).
- `paper`: `vab-encodec` (24 layers, 1024 wide, 12 with modality experts) against
  `foleygen-encodec` (the same 24 x 1024 decoder, no experts); EnCodec 24 kHz, T = 750 tokens
  per 10-s window; EVA02-L-14 (304M) on 10 frames.

Each model and format runs in a fresh subprocess (peak resident memory is that process's
high-water mark).  Formats: the generation's `--precision` (fp32, bf16, int8); the frame
encoder runs in fp32 in the fp32 rows and in its `auto` format (bf16 on a CPU with native bf16)
in the others.  VAB samples with `vab generate`'s defaults unless its options (the same flags:
--steps, --cfg, --guidance-start, --guidance-stop, --schedule ...) say otherwise; FoleyGen with guidance 3, top-k 256 (its
paper's), one step per delayed token (T + K - 1 = 753 for EnCodec).

--measure-steps N (VAB) and --ar-measure-steps N (FoleyGen): only the first N forwards of each
size run the network, later calls reuse their logits, so the sampler still does all of its own
work and only forward time is extrapolated (a VAB forward costs the same at every step; a
FoleyGen step attends to a cache that grows with the position, so the same number of steps is
also timed at the end of the sequence and the mean of start and end is used).  0 = every
forward for real (the default for VAB; FoleyGen's default is 8, as its 753 steps dominate the
run).  The table says which rows were extrapolated.

The forward's achieved rate (FLOPs of one forward counted by ``FlopCounterMode``, over the CPU
seconds of the real forwards) is set against the peak of the format's own kernel measured in
the same process with the same threads (a 2048^3 ``torch.mm`` in fp32 / bf16, the dynamic int8
Linear vab uses): "of peak".  The frame encoder's likewise.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from vab.generation.sampling import (  # noqa: E402
    SamplingConfig,
    add_sampling_arguments,
    sampling_from_args,
    sampling_options,
)

PAIRS = {"tiny": ("tiny", "foleygen-tiny"), "paper": ("vab-encodec", "foleygen-encodec")}
MODELS = ("vab", "foleygen")  # --models: which of each pair
CHEAP = ("tiny",)  # pairs whose FoleyGen runs every step by default
FORMATS = ("fp32", "bf16", "int8")  # --precisions (explicit formats: auto would hide which one ran)
#: stages of one clip, in the order the work happens, and the key of each in a row
STAGES = {"decode video": "decode_video_s", "encode frames": "encode_s", "sample": "sample_s",
          "decode audio": "decode_audio_s", "write": "write_s"}
VIDEO_SIZE, VIDEO_FPS = (640, 360), 25


# ---------------------------------------------------------------------- the input videos
def make_videos(folder: Path, count: int, seconds: float) -> list[Path]:
    """`count` distinct silent H.264 clips of `seconds` (a moving square over a gradient, each
    clip its own colours and path), made once and reused."""
    import av
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    w, h = VIDEO_SIZE
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(count):
        path = folder / f"clip{i:02d}-{seconds:g}s.mp4"
        paths.append(path)
        if path.is_file():
            continue
        rng = np.random.default_rng(i)
        base = (rng.uniform(0, 255, 3)[None, None] * (0.5 + 0.5 * xx[..., None] / w)).astype(np.uint8)
        colour = rng.integers(0, 256, 3, dtype=np.uint8)
        tmp = path.with_suffix(".tmp.mp4")
        with av.open(str(tmp), "w") as out:
            stream = out.add_stream("libx264", rate=Fraction(VIDEO_FPS))
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.options = {"preset": "veryfast"}
            for f in range(int(round(seconds * VIDEO_FPS))):
                img = base.copy()
                cx = int((0.1 + 0.8 * (0.5 + 0.5 * np.sin(f / 20 + i))) * w)
                cy = int((0.1 + 0.8 * (0.5 + 0.5 * np.cos(f / 15 + i))) * h)
                img[max(cy - 40, 0) : cy + 40, max(cx - 40, 0) : cx + 40] = colour
                for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        tmp.rename(path)
    return paths


# ---------------------------------------------------------------------- child: one measurement
def encoder_config(preset: str, precision: str):
    """The preset's frame encoder with random weights (no download), in fp32 for the fp32 rows
    and in its `auto` format otherwise."""
    from vab.config import load_config

    cfg = load_config(preset).visual
    cfg.pretrained, cfg.path, cfg.device = None, None, "cpu"
    cfg.precision = "fp32" if precision == "fp32" else "auto"
    return cfg


def forward_flops(model, batch: int, rows: int) -> float:
    """FLOPs of one forward of `rows` rows (of `batch` examples) on fully masked tokens."""
    import torch

    from generation_speed import flop_counter
    from sampler_overhead import random_condition

    features, given, given_mask = random_condition(model, batch)
    tokens = torch.full((batch, model.levels, model.num_audio_frames), model.mask_id, dtype=torch.long)
    if given is not None:
        tokens = torch.where(given_mask, given, tokens)
    k = rows // batch
    with torch.inference_mode(), flop_counter() as counter:
        model(tokens.repeat(k, 1, 1), features.repeat(k, 1, 1), drop_visual=torch.arange(rows) >= batch)
    return float(counter.get_total_flops())


def encoder_flops(visual, frame) -> float:
    """FLOPs of encoding one frame."""
    from generation_speed import flop_counter

    with flop_counter() as counter:
        visual.encode(frame)
    return float(counter.get_total_flops())


class Clocked:
    """Wraps a callable and adds up its wall and CPU seconds."""

    def __init__(self, fn):
        self.fn, self.wall, self.cpu = fn, 0.0, 0.0

    def __get__(self, obj, owner=None):  # set on a class, it clocks the method of each instance
        return self if obj is None else functools.partial(self, obj)

    def __call__(self, *args, **kwargs):
        w, c = time.perf_counter(), time.process_time()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.wall += time.perf_counter() - w
            self.cpu += time.process_time() - c


def measure(preset: str, batch: int, args: argparse.Namespace, limit: int) -> dict:
    """Generate soundtracks for `args.clips` videos with `preset` (random weights) at `batch`
    videos at a time, writing them as `vab generate` does; `limit` real forwards per size
    (0 = all).  Returns per-clip stage times, memory and what was extrapolated."""
    import resource

    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from generation_speed import ForwardClock, make_codec, make_model, warm_up
    from precision_speed import peaks

    import vab.generation.generator as generator_module
    from vab.generation.features import VideoFeatures
    from vab.generation.generator import Generator, Request
    from vab.generation.outputs import plan_outputs, write_outputs
    from vab.model.quantize import prepare_for_inference
    from vab.visual import build_visual_encoder

    if args.threads:
        torch.set_num_threads(args.threads)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    codec = make_codec(preset)
    model = make_model(preset, codec)
    autoregressive = bool(getattr(model, "autoregressive", False))
    guidance = args.ar_guidance if autoregressive else args.guidance
    vab_sampling = sampling_from_args(args, seed=0)
    visual = build_visual_encoder(encoder_config(preset, args.precision))
    params_m = sum(p.numel() for p in model.parameters()) / 1e6  # before int8 layers hide theirs
    # FLOPs counted on the float model: FlopCounterMode does not see the int8 kernels' products
    with autocast(args.precision):
        flops = {} if autoregressive else {rows: forward_flops(model, batch, rows) for rows in (batch, 2 * batch)}
    # as Generator.from_pretrained loads a model for this format (int8 layers, or bf16 weights), before
    # the clock wraps the forward: the Generator then keeps this very model
    model = prepare_for_inference(model, args.precision, inplace=True)
    generator = Generator(model, codec=codec, visual=visual, precision=args.precision, batch_size=batch)
    videos = sorted(Path(args.videos).glob("clip*.mp4"))[: args.clips]
    frame = torch.zeros(1, 64, 64, 3, dtype=torch.uint8)
    with autocast(args.precision):
        warm_up(model, guidance)  # the first forward allocates its activations; no later one does
        visual.encode(frame)
    frame_flops = encoder_flops(visual, frame)
    built_s = time.perf_counter() - wall0
    built_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if autoregressive:
        sampling = SamplingConfig(guidance=guidance, top_k=min(args.ar_top_k, model.codebook_size), seed=0)
    else:
        sampling = vab_sampling

    out = Path(args.out) / "outputs" / f"{preset}-b{batch}-{args.precision}"
    requests = [Request(v, key=plan_outputs(out, v.stem)) for v in videos]
    # a clock (wall and CPU seconds) on each stage of the Generator's own path
    features = VideoFeatures.window = Clocked(VideoFeatures.window)  # reading frames, then encoding them
    encode = visual.encode = Clocked(visual.encode)
    sample = generator._sample = Clocked(generator._sample)
    decode = generator_module.decode_chunked = Clocked(generator_module.decode_chunked)
    write = Clocked(write_outputs)
    clock = ForwardClock(model, limit)
    results = []
    with clock:
        start, cpu_start = time.perf_counter(), time.process_time()
        for outcome in generator.run(requests, sampling):
            if outcome.error is not None:
                raise outcome.error
            write(outcome.result, Path(outcome.request.source), outcome.request.key)
            results.append(outcome.result)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    # forwards the clock replayed, at what they would have cost
    if autoregressive:
        mean_start = sum(clock.real) / len(clock.real)
        mean_end = mean_start
        if clock.replayed:
            with autocast(args.precision):
                mean_end = time_last_steps(model, batch, guidance, len(clock.real))
        scale = (mean_start + mean_end) / 2 / mean_start
        extra = clock.calls * mean_start * scale - clock.inside
        extra_cpu = clock.replayed * sum(clock.real_cpu) / len(clock.real_cpu) * scale
    else:
        extra = clock.estimate("wall") - clock.inside
        extra_cpu = clock.estimate("cpu") - sum(clock.real_cpu)
    n = len(results)
    stages, cpu_stages = {}, {}
    for key, (w, c) in {
        "decode_video_s": (features.wall - encode.wall, features.cpu - encode.cpu),
        "encode_s": (encode.wall, encode.cpu),
        "sample_s": (sample.wall + extra, sample.cpu + extra_cpu),
        "decode_audio_s": (decode.wall, decode.cpu),
        "write_s": (write.wall, write.cpu),
    }.items():
        stages[key], cpu_stages[f"cpu_{key}"] = w / n, c / n
    total = wall + extra
    row = {
        "preset": preset,
        "model": "FoleyGen (autoregressive)" if autoregressive else "VAB (masked, parallel)",
        "params_m": params_m,
        "batch": batch,
        "clips": n,
        "precision": args.precision,
        "encoder": getattr(visual, "name", "?"),
        "encoder_precision": getattr(visual, "precision", "fp32"),
        "sampling": {k: v for k, v in vars(sampling).items()},
        "clip_seconds": results[0].seconds,
        "windows": results[0].windows,
        "forwards": clock.calls,
        "forwards_real": len(clock.real),
        "extrapolated": bool(clock.replayed),
        **stages,
        **cpu_stages,
        "other_s": total / n - sum(stages.values()),
        "wall_s": wall,
        "total_s": total,
        "seconds_per_clip": total / n,
        "clips_per_minute": 60 * n / total,
        "cpu_seconds_per_clip": (cpu + extra_cpu) / n,
        "build_s": built_s,
        "built_rss_mb": built_kb / 1024,
        "peak_rss_mb": peak_kb / 1024,
        "cores_used": (time.process_time() - cpu0) / (time.perf_counter() - wall0),
        "threads": torch.get_num_threads(),
    }
    # achieved rates: FLOPs per CPU second of the real forwards and of the encoder calls, against
    # the format's kernel peak in the same process (CPU seconds too, so a shared machine's
    # scheduling does not count as slowness)
    peak = peaks(reps=args.peak_reps) if args.peak_reps else {}
    kernel = args.precision if args.precision in peak else None
    if flops and clock.real_cpu:
        done = sum(flops[r] for r in clock.real_rows)
        row["forward_gflops"] = done / sum(clock.real_cpu) / 1e9
        row["forward_of_peak"] = row["forward_gflops"] / peak[kernel] if kernel else None
    frames = sum(int(round(r.seconds * model.fps)) for r in results)  # frames encoded (one window: all of them)
    row["encoder_gflops"] = frame_flops * frames / max(encode.cpu, 1e-9) / 1e9 if frame_flops else None
    encoder_kernel = {"bf16": "bf16", "fp32": "fp32"}.get(row["encoder_precision"])
    row["encoder_of_peak"] = (
        row["encoder_gflops"] / peak[encoder_kernel] if row["encoder_gflops"] and peak and encoder_kernel else None
    )
    row["peaks_gflops"] = peak
    return row


def autocast(precision: str):
    """The autocast the Generator runs its sampler under for `precision` (none for fp32 / int8)."""
    import contextlib

    import torch

    from vab.precision import autocast_dtype

    dtype = autocast_dtype(precision)
    return torch.autocast("cpu", dtype=dtype) if dtype is not None else contextlib.nullcontext()


def time_last_steps(model, batch: int, guidance: float, n: int) -> float:
    """Mean seconds of one guided FoleyGen step at the end of a window: the cache is prefilled
    with all but the last `n` positions (random tokens), then `n` single steps are timed."""
    import torch

    rows = 2 * batch if guidance not in (0.0, 1.0) else batch
    steps = model.num_audio_frames + model.levels - 1
    features = torch.randn(rows, model.num_frames, model.visual_dim)
    drop = torch.arange(rows) >= batch
    tokens = torch.randint(0, model.codebook_size, (rows, model.levels, steps))
    with torch.inference_mode():
        cache = model.new_cache(rows, steps)
        model(tokens[:, :, : steps - n], features, drop, cache=cache)
        start = time.perf_counter()
        for s in range(steps - n, steps):
            model(tokens[:, :, s : s + 1], features, drop, cache=cache)
        return (time.perf_counter() - start) / n


def child_main(args: argparse.Namespace) -> int:
    if args.child.startswith("foleygen"):
        cheap = args.child in {PAIRS[p][1] for p in CHEAP}
        limit = args.ar_measure_steps if args.ar_measure_steps is not None else (0 if cheap else 8)
    else:
        limit = args.measure_steps
    print(json.dumps(measure(args.child, args.child_batch, args, limit)))
    return 0


# ---------------------------------------------------------------------- parent: run, report
def child_command(preset: str, batch: int, precision: str, args: argparse.Namespace) -> list[str]:
    cmd = [sys.executable, __file__, "--child", preset, "--child-batch", str(batch), "--precision", precision,
           "--videos", str(args.videos), "--clips", str(args.clips), "--out", str(args.out),
           *[str(part) for o in sampling_options() for part in (o.flag, getattr(args, o.name))],
           "--ar-guidance", str(args.ar_guidance), "--ar-top-k", str(args.ar_top_k),
           "--measure-steps", str(args.measure_steps), "--threads", str(args.threads),
           "--peak-reps", str(args.peak_reps)]
    if args.ar_measure_steps is not None:
        cmd += ["--ar-measure-steps", str(args.ar_measure_steps)]
    return cmd


def run_child(preset: str, batch: int, precision: str, args: argparse.Namespace) -> dict:
    proc = subprocess.run(child_command(preset, batch, precision, args), capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise SystemExit(f"measuring {preset} at batch {batch} in {precision} failed:\n{tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def timing_label(r: dict) -> str:
    if not r["extrapolated"]:
        return "measured, all steps"
    return f"extrapolated from {r['forwards_real']} of {r['forwards']} forwards"


CLOCKS = {"wall": "seconds_per_clip", "cpu": "cpu_seconds_per_clip"}


def speedups(rows: list[dict], clock: str = "wall") -> dict[tuple[str, int, str], float]:
    """(pair, batch, precision) -> FoleyGen seconds / VAB seconds, both in that format, by `clock`."""
    key = CLOCKS[clock]
    out = {}
    for pair, (vab, ar) in PAIRS.items():
        for r in rows:
            if r["preset"] == vab:
                other = [x for x in rows if x["preset"] == ar and x["batch"] == r["batch"]
                         and x["precision"] == r["precision"]]
                if other:
                    out[(pair, r["batch"], r["precision"])] = other[0][key] / r[key]
    return out


def lead_over_fastest(rows: list[dict], default: str, clock: str = "wall") -> dict[tuple[str, int], tuple[float, str]]:
    """(pair, batch) -> (FoleyGen's fastest format's seconds / VAB's in the `default` format,
    that FoleyGen format)."""
    key = CLOCKS[clock]
    out = {}
    for pair, (vab, ar) in PAIRS.items():
        for r in rows:
            if r["preset"] == vab and r["precision"] == default:
                theirs = [x for x in rows if x["preset"] == ar and x["batch"] == r["batch"]]
                if theirs:
                    best = min(theirs, key=lambda x: x[key])
                    out[(pair, r["batch"])] = (best[key] / r[key], best["precision"])
    return out


def format_gains(rows: list[dict], clock: str = "wall") -> dict[tuple[str, int, str], float]:
    """(preset, batch, precision) -> fp32 seconds / this format's seconds (same preset and batch)."""
    key = CLOCKS[clock]
    out = {}
    for r in rows:
        base = [x for x in rows if x["preset"] == r["preset"] and x["batch"] == r["batch"] and x["precision"] == "fp32"]
        if base:
            out[(r["preset"], r["batch"], r["precision"])] = base[0][key] / r[key]
    return out


def _rate(r: dict, kind: str) -> str:
    rate, share = r.get(f"{kind}_gflops"), r.get(f"{kind}_of_peak")
    if rate is None:
        return ""
    return f"{rate:.0f}" + (f" ({share:.0%})" if share is not None else "")


def markdown(rows: list[dict], header: dict, gains: dict) -> str:
    clock = header.get("clock", "wall")
    default = header.get("default_format", "bf16")
    lines = [
        f"`{header['command']}`",
        "",
        f"{header['machine']}; load average {header['load_start']:.2f} at the start, {header['load_end']:.2f} "
        f"at the end. {header['seconds']:g}-s videos ({VIDEO_SIZE[0]}x{VIDEO_SIZE[1]} H.264) to written wav + mp4, "
        f"random weights; seconds per clip ({clock}) end to end and by stage; \"vs fp32\" is the same model and batch "
        f"in fp32 over this format; GFLOP/s per CPU second (\"of peak\": over the format's own kernel).",
        "",
        "| pair | model | batch | format (encoder) | timing | end to end s / clip | "
        + " | ".join(STAGES) + " | clips / min | forward GFLOP/s (of peak) | encoder GFLOP/s (of peak) | "
        "peak RSS | CPU cores used | vs fp32 | FoleyGen / VAB |",
        "|---|---|---:|---|---|---:|" + "---:|" * len(STAGES) + "---:|---:|---:|---:|---:|---:|---:|",
    ]
    faster = format_gains(rows, clock)
    for r in rows:
        gain = gains.get((r["pair"], r["batch"], r["precision"])) if r["preset"] == PAIRS[r["pair"]][0] else None
        vs = faster.get((r["preset"], r["batch"], r["precision"]))
        prefix = "cpu_" if clock == "cpu" else ""
        stages = " | ".join(f"{r.get(prefix + key, float('nan')):.2f}" for key in STAGES.values())
        lines.append(
            f"| {r['pair']} | {r['model']} [{r['preset']}] | {r['batch']} | {r['precision']} "
            f"({r.get('encoder', '?')} {r.get('encoder_precision', '?')}) | {timing_label(r)} | "
            f"**{r[CLOCKS[clock]]:.2f}** | {stages} | {r.get('clips_per_minute', float('nan')):.1f} | "
            f"{_rate(r, 'forward')} | {_rate(r, 'encoder')} | {r['peak_rss_mb']:.0f} MB | "
            f"{r['cores_used']:.2f} of {r['threads']} | {f'{vs:.2f}x' if vs is not None else ''} | "
            f"{f'{gain:.2f}x' if gain is not None else ''} |"
        )
    leads = lead_over_fastest(rows, default, clock)
    if leads:
        lines.append("")
        for (pair, batch), (lead, fmt) in sorted(leads.items()):
            lines.append(f"- {pair}, batch {batch}: VAB in the default format ({default}) is **{lead:.2f}x** "
                         f"ahead of FoleyGen's fastest format here ({fmt}).")
    lines += ["", header["notes"]]
    return "\n".join(lines) + "\n"


NOTES = """\
"FoleyGen / VAB" is FoleyGen's seconds per clip over VAB's at the same batch size and format: above
1, VAB is faster.  Both pay the same video decoding, frame encoding, audio decoding and writing;
they differ in sampling.  VAB's forwards each process all [frames ; tokens] positions (about 16x
FoleyGen's arithmetic at 16 guided steps), FoleyGen's 753 cached steps one position each: a CPU
runs a big forward at close to its peak and a one-position step far below it, so VAB's lead is
that its matrix products use the cores, and grows as its steps and guided rows shrink.  Rows with
"CPU cores used" well below the thread count ran while other processes shared the cores; their
wall times are inflated (FoleyGen's ~750 steps x ~250 small operations pay that most)."""


def parent_main(args: argparse.Namespace, argv: list[str]) -> int:
    from vab.errors import VabError

    check_args(args)
    from vab.precision import resolve_generation_precision  # imports torch: not before the checks

    header = {
        "command": " ".join(["python eval/speed.py", *argv]).strip(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
                   f"{platform.python_version()}",
        "load_start": os.getloadavg()[0],
        "seconds": args.seconds,
        "clock": args.clock,
        "default_format": resolve_generation_precision("auto", "cpu"),
    }
    out = Path(args.out)
    args.videos = out / "videos"
    make_videos(args.videos, args.clips, args.seconds)
    rows = []
    presets = [(pair, preset) for pair in args.pairs for preset, kind in zip(PAIRS[pair], MODELS)
               if kind in args.models]
    for pair, preset in presets:
        # the two models and the formats alternate, so a change of machine load hits them alike
        for batch in args.batch_sizes:
            for precision in args.precisions:
                t0 = time.perf_counter()
                runs = [run_child(preset, batch, precision, args) for _ in range(args.repeat)]
                row = min(runs, key=lambda r: r[CLOCKS[args.clock]])
                row["pair"], row["repeat"] = pair, args.repeat
                rows.append(row)
                print(f"  {preset} batch {batch} {precision}: {row['seconds_per_clip']:.2f} s per clip end to end "
                      f"({timing_label(row)}, best of {args.repeat}; measured in {time.perf_counter() - t0:.0f} s)",
                      flush=True)
    if not rows:
        raise VabError("nothing measured: check --pairs and --models")
    header["load_end"] = os.getloadavg()[0]
    header["notes"] = NOTES
    gains = speedups(rows, args.clock)
    text = markdown(rows, header, gains)
    print(text)
    from vab.utils import atomic_path

    with atomic_path(out / "speed.json") as tmp:
        tmp.write_text(json.dumps({"header": header, "rows": rows,
                                   "speedups": {f"{p}@batch{b}@{f}": g for (p, b, f), g in gains.items()}}, indent=2))
    with atomic_path(out / "speed.md") as tmp:
        tmp.write_text(text)
    print(f"written: {out / 'speed.json'}, {out / 'speed.md'}")
    return 0


def check_args(args: argparse.Namespace) -> None:
    """One-line errors for bad options, before anything is made."""
    from vab.errors import VabError

    if args.measure_steps < 0 or (args.ar_measure_steps is not None and args.ar_measure_steps < 2):
        raise VabError("--measure-steps must be >= 0 and --ar-measure-steps >= 2")
    if args.threads < 0:
        raise VabError("--threads must be >= 0")
    if args.repeat < 1:
        raise VabError("--repeat must be >= 1")
    if any(b < 1 for b in args.batch_sizes):
        raise VabError("--batch-sizes must be >= 1")
    if args.clips < 1:
        raise VabError("--clips must be >= 1")
    if not args.seconds > 0:
        raise VabError("--seconds must be > 0")
    bad = [p for p in args.precisions if p not in FORMATS]
    if bad:
        raise VabError(f"--precisions: {', '.join(bad)} not among {', '.join(FORMATS)}")
    sampling_from_args(args)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", nargs="+", choices=list(PAIRS), default=list(PAIRS))
    p.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS),
                   help="which model of each pair (default both)")
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[1])
    p.add_argument("--clips", type=int, default=1,
                   help="videos generated per measurement (a folder of that many clips); clips per minute "
                   "at a batch size needs at least that many")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each video")
    add_sampling_arguments(p.add_argument_group("VAB sampling (vab generate's options and defaults)"))
    p.add_argument("--ar-guidance", type=float, default=3.0, help="FoleyGen guidance")
    p.add_argument("--ar-top-k", type=int, default=256, help="FoleyGen top-k")
    p.add_argument("--measure-steps", type=int, default=0,
                   help="real VAB forwards of each size, the rest extrapolated (0 = all, the default)")
    p.add_argument("--ar-measure-steps", type=int, default=None,
                   help="real FoleyGen steps (and as many at the end of the window); default 8 for the paper "
                   "pair, all for tiny")
    p.add_argument("--repeat", type=int, default=1, help="runs per model and batch size, the fastest kept")
    p.add_argument("--threads", type=int, default=0, help="torch threads per measurement (0 = torch's default)")
    p.add_argument("--precisions", nargs="+", default=["bf16"], metavar="FORMAT",
                   help=f"generation number formats to measure, each for both models ({', '.join(FORMATS)}; "
                   "default bf16)")
    p.add_argument("--peak-reps", type=int, default=3,
                   help="repetitions of each kernel-peak measurement in every child (0 = no peaks)")
    p.add_argument("--clock", choices=list(CLOCKS), default="wall",
                   help="what the ratios compare: wall seconds, or the process's CPU seconds (robust when "
                   "other jobs share the machine)")
    p.add_argument("--out", default="runs/eval/speed", help="folder for the videos, outputs, speed.json and speed.md")
    p.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)  # internal: the child's format
    p.add_argument("--child", help=argparse.SUPPRESS)  # internal: measure one preset in this process
    p.add_argument("--child-batch", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--videos", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    from vab.cli import run_script

    argv = sys.argv[1:] if argv is None else argv
    return run_script(parser(), lambda args: child_main(args) if args.child else parent_main(args, argv), argv)


if __name__ == "__main__":
    sys.exit(main())
