"""The demo's generation stage: soundtracks for the held-out clips, written the way
`vab generate` writes them (wav + muxed mp4 + PNG), then scored against the world's
ground truth with :mod:`vab.demo.quality`, and against their frames with the weights-free
sync score (:mod:`vab.evaluation.sync`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import Progress

from vab import media
from vab.data.synthetic import iter_split, read_truth, visibility
from vab.demo import quality
from vab.errors import VabError
from vab.generation.generator import Generator, Request
from vab.generation.outputs import Outputs, write_outputs
from vab.generation.sampling import SamplingConfig

GENERATE_BATCH = 16  # held-out clips sampled together
JUDGE_CLIPS = 160  # real training clips the judge and the energy threshold are fitted on


def _real_audio(rows, sample_rate: int, seconds: float) -> list[np.ndarray]:
    return [media.read_audio(r.path, sample_rate, 0.0, seconds) for r in rows]


def generate_and_score(
    model_dir: str | Path, world: str | Path, out: str | Path, plots: int = 8, split: str = "test",
    sampling: Any = None, noise_key: str | None = None, precision: str = "auto",
) -> dict[str, Any]:
    """Generate for every clip of `split` of the synthetic world in `world` with the model
    directory `model_dir`; write OUT/<id>.wav, OUT/<id>.mp4 (and OUT/<id>.png for the first
    `plots`); return the class-agreement and timing numbers with their chance levels.
    `noise_key`: None, each video draws its own noise (as `vab generate`); a string, every video
    draws the same (the shared noise of before issue 14, for benchmarks/per_video_noise.py).
    `precision`: the generation number format (`vab generate --precision`)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    truth = read_truth(world)
    held_out = sorted(iter_split(truth, split), key=lambda r: r.id)
    train = sorted(iter_split(truth, "train"), key=lambda r: r.id)[:JUDGE_CLIPS]  # classes take turns
    if not held_out or not train:
        raise VabError(f"{world}: the world needs train and {split} clips")
    generator = Generator.from_pretrained(model_dir, device="cpu", batch_size=GENERATE_BATCH, precision=precision)
    sr = generator.sample_rate
    seconds = float(generator.model.duration)

    requests = []
    for k, row in enumerate(held_out):
        outputs = Outputs(out / f"{row.id}.wav", out / f"{row.id}.mp4", out / f"{row.id}.png" if k < plots else None)
        requests.append(Request(source=str(row.path), key=(row, outputs), noise_key=noise_key))
    generated: dict[str, np.ndarray] = {}
    failures = []

    with Progress(transient=False) as bar:
        task = bar.add_task("generating held-out soundtracks", total=len(requests))
        for outcome in generator.run(requests, sampling or SamplingConfig()):
            row, outputs = outcome.request.key
            if outcome.error is not None:
                failures.append(f"{row.path}: {outcome.error}")
            else:
                write_outputs(outcome.result, Path(row.path), outputs)
                generated[row.id] = outcome.result.waveform
            bar.advance(task)
    if failures:
        raise VabError(f"generation failed for {len(failures)} held-out clip(s): {failures[0]}")

    # The judge and the energy threshold see REAL training audio only: as recorded and after
    # the codec's round trip (encode + decode), because generated audio leaves through the same
    # decoder (its silence is the decoder's noise floor, not digital zero).
    def roundtrip(wavs: list[np.ndarray]) -> list[np.ndarray]:
        with torch.no_grad():
            codes = generator.codec.encode(torch.from_numpy(np.stack(wavs))[:, None])
            return list(generator.codec.decode(codes)[:, 0].numpy())

    real_train = _real_audio(train, sr, seconds)
    coded_train = roundtrip(real_train)
    judge = quality.SoundClassifier(sr).fit(real_train + coded_train, [r.label for r in train] * 2)
    real_test = _real_audio(held_out, sr, seconds)
    coded_test = roundtrip(real_test)
    shown = [r.label for r in held_out]
    wavs = [generated[r.id] for r in held_out]
    classes = sorted({r.label for r in train})

    frames = int(round(seconds * quality.FRAME_RATE))
    vis_train = [visibility(r.intervals, frames, quality.FRAME_RATE) for r in train]
    vis_test = [visibility(r.intervals, frames, quality.FRAME_RATE) for r in held_out]
    threshold = quality.fit_threshold([quality.frame_energy_db(w, sr) for w in coded_train], vis_train)

    def timing(waves):
        return quality.timing_scores([quality.frame_energy_db(w, sr) for w in waves], vis_test, threshold)

    gen_timing, real_timing, codec_timing = timing(wavs), timing(real_test), timing(coded_test)

    # the weights-free sync score needs no ground truth: the clips' own frames, at their own rate
    fps = media.probe(held_out[0].path).fps
    pictures = [media.read_frames(r.path, fps, 0.0, seconds)[0] for r in held_out]
    gen_sync, real_sync = (quality.sync_scores(w, sr, pictures, fps) for w in (wavs, real_test))
    return {
        "clips": len(held_out),
        "precision": generator.precision,
        "classes": len(classes),
        "class_agreement": quality.agreement(judge.predict(wavs), shown),
        "class_chance": 1.0 / len(classes),
        "judge_on_real_test": quality.agreement(judge.predict(real_test), shown),
        "judge_on_codec_test": quality.agreement(judge.predict(coded_test), shown),
        "timing_agreement": gen_timing.agreement,
        "timing_chance": gen_timing.chance,
        "timing_majority": gen_timing.majority,
        "timing_shuffled": gen_timing.shuffled,
        "timing_real": real_timing.agreement,
        "timing_codec": codec_timing.agreement,
        "energy_threshold_db": threshold,
        "sync_score": gen_sync.score,
        "sync_chance": gen_sync.shuffled_score,
        "sync_real": real_sync.score,
        "sync_offset": gen_sync.offset,
        "sync_offset_chance": gen_sync.shuffled_offset,
        "sync_offset_real": real_sync.offset,
        "folder": str(out),
        "examples": [str(p) for r in held_out[:plots] for p in (out / f"{r.id}.mp4", out / f"{r.id}.png")],
    }
