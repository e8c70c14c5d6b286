"""What the page's buttons do, with the library's own code and no Gradio.

- Generate / Edit / Continue: one :class:`~vab.generation.generator.Request` through the
  shared :class:`~vab.generation.generator.Generator` (window by window, frames read one
  window at a time, so a long video costs the page no more memory than the CLI), written
  by :func:`~vab.generation.outputs.write_outputs` as `vab generate` writes it.  The
  request is the CLI's: the same file and seed give the same soundtrack as `vab generate`
  (each video's noise derives from the seed and a SHA-256 of the file's bytes).
- Search: the query embedded by :class:`~vab.search.Embedder` with the model that built the
  index, ranked by :func:`vab.search.search`; each match gets a playable preview of its
  first model window.
- Classify: a classifier directory (``finetune/classification.py``) on the first model
  window of a file, its top labels with probabilities.

Every user error is a :class:`~vab.errors.VabError`; the page shows it as one line.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from matplotlib import colormaps

from vab import media
from vab.app.uploads import check_upload
from vab.app.workspace import Workspace
from vab.demo.pipeline import held_out_clips
from vab.errors import VabError
from vab.finetuning.classification_objective import scores_from_logits
from vab.finetuning.classifier import Classifier, load_classifier
from vab.generation.conditions import parse_spans
from vab.generation.generator import GenerationResult, Generator, Request
from vab.generation.outputs import plan_outputs, write_outputs
from vab.generation.plot import log_spectrogram
from vab.generation.sampling import SamplingConfig
from vab.search import Embedder, Index, search
from vab.utils import pick_device

#: modalities of the inputs a classifier of each mode reads
CLASSIFIER_INPUTS = {"audio": ("audio",), "visual": ("video",), "audio-visual": ("audio", "video")}
AUDIO_FORMATS = ("wav", "flac")
#: progress(windows done, windows in total)
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Limits:
    """What one server accepts: jobs run at once, jobs waiting, upload size (MB), media
    length (seconds) and how long results are kept (seconds)."""

    concurrency: int = 1
    queue_size: int = 16
    max_upload_mb: int = 500
    max_seconds: float = 1800.0
    keep_seconds: float = 3600.0

    def validate(self) -> "Limits":
        problems = []
        if self.concurrency < 1:
            problems.append(f"--concurrency must be >= 1, got {self.concurrency}")
        if self.queue_size < 1:
            problems.append(f"--queue-size must be >= 1, got {self.queue_size}")
        if self.max_upload_mb < 1:
            problems.append(f"--max-upload-mb must be >= 1, got {self.max_upload_mb}")
        if not self.max_seconds > 0:
            problems.append(f"--max-seconds must be > 0, got {self.max_seconds:g}")
        if not self.keep_seconds > 0:
            problems.append(f"--keep-minutes must be > 0, got {self.keep_seconds / 60:g}")
        if problems:
            raise VabError("; ".join(problems))
        return self


class Stopped(VabError):
    """The user pressed Stop."""


@dataclass
class Soundtrack:
    """One generated soundtrack on disk: `video` (the upload's video stream with the new
    audio), `audio` (wav or flac), `plot` (frames over the spectrogram, PNG), `original`
    (the upload's own soundtrack as wav, for Edit); `seconds` of audio, sampler `windows`."""

    video: Path
    audio: Path
    plot: Path
    seconds: float
    windows: int
    wall: float
    original: Path | None = None


@dataclass
class Match:
    """One search result: its rank, the index's id / path / labels, the cosine `score`, and a
    playable `preview` of its first window (wav for audio matches, mp4 for video ones), or
    None with the reason in `note`."""

    rank: int
    id: str
    path: str
    labels: list[str]
    score: float
    modality: str
    preview: Path | None = None
    note: str = ""


@dataclass
class LoadedClassifier:
    """A classifier directory loaded once, with the reader that turns files into its inputs."""

    name: str
    classifier: Classifier
    loss: str
    reader: Embedder  # over the classifier's backbone

    @property
    def mode(self) -> str:
        return self.classifier.mode


@dataclass
class Backend:
    """The models of one server and the work each tab asks of them."""

    generator: Generator
    workspace: Workspace
    limits: Limits = field(default_factory=Limits)
    index: Index | None = None
    query_embedder: Embedder | None = None  # with the model that built the index
    classifiers: dict[str, LoadedClassifier] = field(default_factory=dict)
    examples: list[Path] = field(default_factory=list)

    @classmethod
    def load(
        cls,
        checkpoint: str | os.PathLike,
        c2f_checkpoint: str | os.PathLike | None = None,
        *,
        workspace: Workspace,
        limits: Limits = Limits(),
        index: str | os.PathLike | None = None,
        classifiers: Sequence[str | os.PathLike] = (),
        device: str = "auto",
        precision: str = "auto",
    ) -> "Backend":
        """Load every model once: the generator (as `vab generate` does), the index and the
        model that embeds queries for it (as `vab search` does), and each classifier."""
        torch_device = str(pick_device(device))
        generator = Generator.from_pretrained(checkpoint, c2f_checkpoint, device=device, precision=precision)
        backend = cls(generator, workspace, limits.validate(), examples=held_out_clips(checkpoint))
        if index is not None:
            backend.index = Index.load(index)
            if not backend.index.model_dir:
                raise VabError(f"{index}: the index records no model directory to embed queries with")
            backend.query_embedder = Embedder.for_index(backend.index, index, device=torch_device)
        for directory in classifiers:
            classifier, meta = load_classifier(directory, device=torch_device)
            name = Path(directory).name or str(directory)
            if name in backend.classifiers:
                name = str(directory)
            reader = Embedder(directory, device=torch_device, model=classifier.backbone)
            backend.classifiers[name] = LoadedClassifier(name, classifier, meta["loss"], reader)
        return backend

    # ------------------------------------------------------------------ facts for the page
    @property
    def window_seconds(self) -> float:
        return float(self.generator.model.duration)

    def describe(self) -> str:
        """One line on the generation model: window, rates, device."""
        g = self.generator
        return (f"{g.model.config.model.type} model, {self.window_seconds:g}-s windows, {g.codec.name} codec at "
                f"{g.sample_rate} Hz, {g.levels} levels, on {g.device}"
                + (", with a coarse-to-fine model" if g.c2f is not None else ""))

    # ------------------------------------------------------------------ generate / edit / continue
    def soundtrack(
        self,
        video: str | os.PathLike | None,
        sampling: SamplingConfig,
        *,
        duration: float | None = None,
        edit: str | None = None,
        prompt: str | os.PathLike | None = None,
        prompt_seconds: float | None = None,
        audio_format: str = "wav",
        progress: Progress | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Soundtrack:
        """A new soundtrack for `video` (or its `edit` spans regenerated, or `prompt` audio
        continued), written to a fresh job folder.  `progress` hears every finished window;
        when `should_stop()` turns true the job ends at the next window with :class:`Stopped`."""
        started = time.perf_counter()
        if audio_format not in AUDIO_FORMATS:
            raise VabError(f"audio format {audio_format!r}: expected wav or flac")
        if duration is not None and not duration > 0:
            raise VabError(f"duration must be > 0 seconds, got {duration:g}")
        sampling.validate()
        info = check_upload(video, "video", self.limits.max_seconds, "a video")
        spans = None
        if edit is not None:
            spans = parse_spans(edit)
            if not info.has_audio:
                raise VabError(f"{Path(video).name}: no soundtrack to edit (the video has no audio stream)")
        tokens = None
        if prompt is not None:
            check_upload(prompt, "audio", self.limits.max_seconds, "a prompt")
            tokens = self.generator.tokenize_prompt(prompt, prompt_seconds)

        def on_window(_request, done: int, total: int) -> None:
            if should_stop is not None and should_stop():
                raise Stopped(f"stopped after window {done} of {total}")
            if progress is not None:
                progress(done, total)

        if should_stop is not None and should_stop():
            raise Stopped("stopped before the first window")
        request = Request(source=str(video), duration=duration, edit=spans, prompt=tokens)
        outcome = next(self.generator.run([request], sampling, progress=on_window))
        if outcome.error is not None:
            raise outcome.error
        job = self.workspace.new_job()
        original = self._original_soundtrack(video, job, duration) if edit is not None else None
        files = _write(outcome.result, Path(video), job, audio_format, duration)
        return Soundtrack(files.video, files.audio, files.plot, outcome.result.seconds, outcome.result.windows,
                          time.perf_counter() - started, original)

    def _original_soundtrack(self, video: str | os.PathLike, job: Path, duration: float | None) -> Path:
        info = media.probe(video)
        seconds = info.duration if duration is None else min(duration, info.duration)
        wav = media.read_audio(video, self.generator.sample_rate, 0.0, seconds)
        return media.write_audio(job / f"{Path(video).stem}-original.wav", wav, self.generator.sample_rate)

    def spectrogram(self, video: str | os.PathLike | None, height: int = 160) -> tuple[np.ndarray, float]:
        """(uint8 ``[height, W, 3]`` picture of the upload's own soundtrack, seconds): x pixel
        ``i`` of ``W`` is time ``i / W * seconds``, so two clicks on it give an edit span."""
        info = check_upload(video, "video", self.limits.max_seconds, "a video")
        if not info.has_audio:
            raise VabError(f"{Path(video).name}: no soundtrack to edit (the video has no audio stream)")
        wav = media.read_audio(video, self.generator.sample_rate, 0.0, info.duration)
        return spectrogram_image(wav, self.generator.sample_rate, height), len(wav) / self.generator.sample_rate

    # ------------------------------------------------------------------ search
    def search(self, query: str | os.PathLike | None, by: str = "auto", top: int = 5) -> list[Match]:
        """The `top` clips of the index whose other modality is closest to the query file's
        `by` modality (auto: video when the file has a video stream, else audio)."""
        if self.index is None:
            raise VabError("no index: start vab app with --index DIR (made by vab embed)")
        info = check_upload(query, "media", self.limits.max_seconds, "a video or audio file")
        if by == "auto":
            by = "video" if info.has_video else "audio"
        if by not in ("video", "audio"):
            raise VabError(f"search by {by!r}: expected auto, video or audio")
        within = "audio" if by == "video" else "video"
        vector = self.query_embedder.embed_media(query, by)
        hits = search(self.index, vector, within, top)
        job = self.workspace.new_job()
        matches = []
        for rank, (row, score) in enumerate(hits, start=1):
            match = Match(rank, self.index.ids[row], self.index.paths[row],
                          list(self.index.labels[row]) if self.index.labels else [], score, within)
            try:
                match.preview = self._preview(Path(match.path), within, job / f"{rank:02d}-{_safe(match.id)}")
            except VabError as exc:
                match.note = str(exc)
            matches.append(match)
        return matches

    def _preview(self, path: Path, modality: str, stem: Path) -> Path:
        """The first window of a match: its audio as wav, or its video with its own audio as mp4."""
        if not path.is_file():
            raise VabError(f"{path}: not found on this machine (the index was made elsewhere?)")
        seconds = float(self.query_embedder.cfg.data.duration)
        rate = int(self.query_embedder.codec.sample_rate)
        info = media.probe(path)
        wav = (media.read_audio(path, rate, 0.0, min(seconds, info.duration)) if info.has_audio
               else np.zeros(int(rate * seconds), dtype=np.float32))
        if modality == "audio":
            return media.write_audio(stem.with_suffix(".wav"), wav, rate)
        return media.mux(path, wav, rate, stem.with_suffix(".mp4"), seconds)

    # ------------------------------------------------------------------ classify
    def classify(self, path: str | os.PathLike | None, name: str | None = None, top: int = 5) -> dict[str, float]:
        """{label: probability} of the `top` classes the classifier `name` gives the file's
        first model window."""
        if not self.classifiers:
            raise VabError("no classifier: start vab app with --classifier DIR (from finetune/classification.py)")
        loaded = self.classifiers[name] if name in self.classifiers else next(iter(self.classifiers.values()))
        check_upload(path, "media", self.limits.max_seconds, "a video or audio file")
        batch = loaded.reader.media_inputs(path, CLASSIFIER_INPUTS[loaded.mode])
        with torch.inference_mode():
            scores = scores_from_logits(loaded.classifier(batch), loaded.loss)[0].cpu()
        order = torch.argsort(scores, descending=True, stable=True)[:top]
        names = loaded.classifier.label_names
        return {names[int(i)]: float(scores[i]) for i in order}


def _write(result: GenerationResult, video: Path, job: Path, audio_format: str, duration: float | None):
    """The files `vab generate --plot` writes for one video, into the job folder."""
    outputs = plan_outputs(job, video.stem, audio_format, mux=True, plot=True)
    write_outputs(result, video, outputs, duration)
    return outputs


def spectrogram_image(waveform: np.ndarray, sample_rate: int, height: int = 160) -> np.ndarray:
    """uint8 ``[height, columns, 3]``: the dB spectrogram of `waveform` (float32 ``[N]``), low
    frequencies at the bottom, -80..0 dB on the magma colour map; one column per STFT hop."""
    db, _ = log_spectrogram(waveform, sample_rate)
    rows = np.linspace(0, db.shape[0] - 1, height).round().astype(int)
    level = np.clip((db[rows[::-1]] + 80.0) / 80.0, 0.0, 1.0)
    return (colormaps["magma"](level)[..., :3] * 255).astype(np.uint8)


def _safe(name: str) -> str:
    """A clip id as a file name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:60] or "clip"
