"""The demo's generation stage: soundtracks for the held-out clips, written the way
`vab generate` writes them (wav + muxed mp4 + PNG), then scored against the world's
ground truth with :mod:`vab.demo.quality`, and against their frames with the weights-free
sync score (:mod:`vab.evaluation.sync`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import Progress

from vab import media
from vab.data.synthetic import TruthRow, iter_split, read_truth, visibility
from vab.demo import quality
from vab.errors import VabError
from vab.generation.generator import Generator, Request
from vab.generation.outputs import Outputs, write_outputs
from vab.generation.sampling import SamplingConfig

GENERATE_BATCH = 16  # held-out clips sampled together
JUDGE_CLIPS = 160  # real training clips the judge and the energy threshold are fitted on


def _real_audio(rows, sample_rate: int, seconds: float) -> list[np.ndarray]:
    return [media.read_audio(r.path, sample_rate, 0.0, seconds) for r in rows]


@dataclass
class WorldJudge:
    """What scoring a world's held-out clips needs that no generated audio changes: the judge
    (fitted on real training audio and its codec round trip), the energy threshold, the held-out
    clips' classes and visibility, and the real audio's own scores.  Fitted once per world and
    codec (:func:`fit_judge`), it scores any number of models' soundtracks (:meth:`score`)."""

    held_out: list[TruthRow]  # the scored split, sorted by id
    classifier: quality.SoundClassifier
    threshold: float  # dB
    sample_rate: int
    visible: list  # bool [frames] per held-out clip at quality.FRAME_RATE
    pictures: list  # uint8 [F, H, W, 3] frames per held-out clip, at `fps`
    fps: float
    classes: int
    reference: dict[str, float]  # the real and codec-round-trip audio's own scores

    def score(self, wavs: list[np.ndarray]) -> dict[str, float]:
        """Class and timing agreement of one soundtrack per held-out clip (in `held_out` order)."""
    
        shown = [r.label for r in self.held_out]
        timing = quality.timing_scores([quality.frame_energy_db(w, self.sample_rate) for w in wavs], self.visible,
                                       self.threshold)
        # the weights-free sync score needs no ground truth: the clips' own frames, at their own rate
        sync = quality.sync_scores(wavs, self.sample_rate, self.pictures, self.fps)
        return {
            "clips": len(self.held_out), "classes": self.classes,
            "class_agreement": quality.agreement(self.classifier.predict(wavs), shown),
            "class_chance": 1.0 / self.classes,
            "timing_agreement": timing.agreement, "timing_chance": timing.chance,
            "timing_majority": timing.majority, "timing_shuffled": timing.shuffled,
            "sync_score": sync.score, "sync_chance": sync.shuffled_score, "sync_offset": sync.offset,
            "sync_offset_chance": sync.shuffled_offset,
            **self.reference, "energy_threshold_db": self.threshold,
        }


def fit_judge(world: str | Path, codec: Any, seconds: float, split: str = "test") -> WorldJudge:
    """The :class:`WorldJudge` of the synthetic world in `world` for soundtracks of `seconds` made
    through `codec` (an AudioCodec), scoring the clips of `split`."""

    truth = read_truth(world)
    held_out = sorted(iter_split(truth, split), key=lambda r: r.id)
    train = sorted(iter_split(truth, "train"), key=lambda r: r.id)[:JUDGE_CLIPS]  # classes take turns
    if not held_out or not train:
        raise VabError(f"{world}: the world needs train and {split} clips")
    sr = int(codec.sample_rate)

    # The judge and the energy threshold see REAL training audio only: as recorded and after
    # the codec's round trip (encode + decode), because generated audio leaves through the same
    # decoder (its silence is the decoder's noise floor, not digital zero).
    def roundtrip(wavs: list[np.ndarray]) -> list[np.ndarray]:
        with torch.no_grad():
            codes = codec.encode(torch.from_numpy(np.stack(wavs))[:, None])
            return list(codec.decode(codes)[:, 0].numpy())

    real_train = _real_audio(train, sr, seconds)
    coded_train = roundtrip(real_train)
    classifier = quality.SoundClassifier(sr).fit(real_train + coded_train, [r.label for r in train] * 2)
    frames = int(round(seconds * quality.FRAME_RATE))
    vis_train = [visibility(r.intervals, frames, quality.FRAME_RATE) for r in train]
    threshold = quality.fit_threshold([quality.frame_energy_db(w, sr) for w in coded_train], vis_train)
    fps = media.probe(held_out[0].path).fps
    judge = WorldJudge(held_out, classifier, threshold, sr,
                       [visibility(r.intervals, frames, quality.FRAME_RATE) for r in held_out],
                       [media.read_frames(r.path, fps, 0.0, seconds)[0] for r in held_out], fps,
                       len({r.label for r in train}), {})
    real_test = _real_audio(held_out, sr, seconds)
    real, coded = judge.score(real_test), judge.score(roundtrip(real_test))
    judge.reference = {
        "judge_on_real_test": real["class_agreement"], "judge_on_codec_test": coded["class_agreement"],
        "timing_real": real["timing_agreement"], "timing_codec": coded["timing_agreement"],
        "sync_real": real["sync_score"], "sync_offset_real": real["sync_offset"],
    }
    return judge


def generate_for(
    generator: Generator, rows: list[TruthRow], out: str | Path, sampling: SamplingConfig | None = None, plots: int = 0, noise_key: str | None = None,
) -> list[np.ndarray]:
    """Soundtracks for the world clips `rows` (TruthRow) with `generator` (vab Generator), written
    as OUT/<id>.wav, OUT/<id>.mp4 (and OUT/<id>.png for the first `plots`) as `vab generate` writes
    them; returns the waveforms in `rows` order.  `noise_key`: see :func:`generate_and_score`."""

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    requests = []
    for k, row in enumerate(rows):
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
    return [generated[r.id] for r in rows]


def generate_and_score(
    model_dir: str | Path, world: str | Path, out: str | Path, plots: int = 8, split: str = "test",
    sampling: Any = None, noise_key: str | None = None, precision: str = "auto", judge: WorldJudge | None = None,
) -> dict[str, Any]:
    """Generate for every clip of `split` of the synthetic world in `world` with the model
    directory `model_dir`; write OUT/<id>.wav, OUT/<id>.mp4 (and OUT/<id>.png for the first
    `plots`); return the class-agreement and timing numbers with their chance levels.
    `noise_key`: None, each video draws its own noise (as `vab generate`); a string, every video
    draws the same (the shared noise of before issue 14, for benchmarks/per_video_noise.py).
    `precision`: the generation number format (`vab generate --precision`).  `judge`: the
    world's fitted :class:`WorldJudge` for this model's codec, to score many models of one data
    set without fitting it again (by default fitted here)."""
    generator = Generator.from_pretrained(model_dir, device="cpu", batch_size=GENERATE_BATCH, precision=precision)
    seconds = float(generator.model.duration)
    if judge is None:
        judge = fit_judge(world, generator.codec, seconds, split)
    wavs = generate_for(generator, judge.held_out, out, sampling, plots, noise_key)
    out = Path(out)
    return {
        **judge.score(wavs), "precision": generator.precision, "folder": str(out),
        "examples": [str(p) for r in judge.held_out[:plots] for p in (out / f"{r.id}.mp4", out / f"{r.id}.png")],
    }
