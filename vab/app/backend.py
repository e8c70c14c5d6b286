"""What the page's buttons do, with the library's own code and no Gradio.

- Generate / Edit / Continue: :meth:`Backend.plan_soundtrack` checks a request in full
  before any work (upload, settings, edit spans against the clip's length, prompt) and
  counts its windows; :meth:`Backend.soundtrack` then runs it as one
  :class:`~vab.generation.generator.Request` through the shared
  :class:`~vab.generation.generator.Generator` (window by window, frames read one window at
  a time, so a long video costs the page no more memory than the CLI), written by
  :func:`~vab.generation.outputs.write_outputs` as `vab generate` writes it, under a name
  that says what it is (``clip-vab-seed0.mp4``).  The request is the CLI's: the same file
  and seed give the same soundtrack as `vab generate` (each video's noise derives from the
  seed and a SHA-256 of the file's bytes).
- Edit's picture: the clip's own soundtrack over a time axis, the chosen spans shaded.
- Search: the query embedded by :class:`~vab.search.Embedder` with the model that built the
  index, ranked by :func:`vab.search.search`; each match gets a playable preview of its
  first model window.  :meth:`Backend.index_summary` says what the index holds.
- Classify: a classifier directory (``finetune/classification.py``) on the first model
  window of a file, its top labels with probabilities; a file that lacks what the chosen
  classifier reads goes to a loaded classifier that can read it, else one line says why.

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

from vab import media
from vab.app.uploads import check_upload
from vab.app.workspace import Workspace
from vab.demo.pipeline import Example, held_out_examples
from vab.errors import MediaError, VabError
from vab.finetuning.classification_objective import scores_from_logits
from vab.finetuning.classifier import Classifier, load_classifier
from vab.generation.conditions import check_spans, parse_spans
from vab.generation.features import video_seconds
from vab.generation.generator import GenerationResult, Generator, Request
from vab.generation.outputs import Outputs, plan_outputs, write_outputs
from vab.generation.plot import spectrogram_picture
from vab.generation.sampling import SamplingConfig
from vab.search import Embedder, Index, search
from vab.utils import pick_device

#: modalities of the inputs a classifier of each mode reads, and how the page says it
CLASSIFIER_INPUTS = {"audio": ("audio",), "visual": ("video",), "audio-visual": ("audio", "video")}
READS = {"audio": "sound only", "visual": "the picture only", "audio-visual": "sound and picture together"}
AUDIO_FORMATS = ("wav", "flac")
#: what each soundtrack kind adds to the result's name: clip-vab-seed0, clip-vab-edited-seed0 ...
KINDS = {"generate": "", "edit": "-edited", "continue": "-continued"}
#: labels listed by name before "and N more"
LISTED_LABELS = 12
#: progress(windows done, windows in total); may raise to end the job at that window
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


@dataclass(frozen=True)
class SoundtrackPlan:
    """A checked Generate / Edit / Continue request: `kind`, the upload, the settings, the
    `seconds` of soundtrack to make (the picture's length, or `duration` if shorter), the
    sampler `windows` that takes, and `name`, the stem of its files."""

    kind: str
    video: Path
    sampling: SamplingConfig
    seconds: float
    windows: int
    name: str
    audio_format: str = "wav"
    duration: float | None = None
    spans: tuple[tuple[float, float], ...] | None = None
    prompt: Path | None = None
    prompt_seconds: float | None = None


@dataclass
class Soundtrack:
    """One generated soundtrack on disk: `video` (the upload's video stream with the new
    audio), `audio` (wav or flac), `plot` (frames over the spectrogram, generated spans
    shaded, PNG), `original` (the upload's own soundtrack as wav, for Edit); `seconds` of
    audio, sampler `windows`, `wall` seconds of work."""

    video: Path
    audio: Path
    plot: Path
    seconds: float
    windows: int
    wall: float
    original: Path | None = None


@dataclass(frozen=True)
class EditPicture:
    """The Edit tab's picture of a clip's own soundtrack: the PNG, the `seconds` its time
    axis spans, and the pixel columns ``(x0, x1)`` where that axis runs from 0 to `seconds`."""

    path: Path
    seconds: float
    columns: tuple[float, float]

    def time_at(self, column: float) -> float:
        """The time (s) under pixel column `column`, clamped to the clip."""
        x0, x1 = self.columns
        return min(max((column - x0) / (x1 - x0), 0.0), 1.0) * self.seconds


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

    @property
    def labels(self) -> list[str]:
        return list(self.classifier.label_names)

    def reads(self, info: media.MediaInfo) -> bool:
        """Whether a file with `info`'s streams holds every input this classifier reads."""
        has = {"audio": info.has_audio, "video": info.has_video}
        return all(has[m] for m in CLASSIFIER_INPUTS[self.mode])

    def summary(self) -> str:
        """One line: what it reads and the labels it knows (all it can answer)."""
        return f"{self.name} reads {READS[self.mode]} and knows {len(self.labels)} labels: {_listed(self.labels)}"


@dataclass
class Classification:
    """Classify's answer: {label: probability} of the top classes, the classifier that gave
    them, and a `note` when the file went to another classifier than the one chosen."""

    scores: dict[str, float]
    classifier: LoadedClassifier
    note: str = ""


@dataclass
class Backend:
    """The models of one server and the work each tab asks of them."""

    generator: Generator
    workspace: Workspace
    limits: Limits = field(default_factory=Limits)
    index: Index | None = None
    query_embedder: Embedder | None = None  # with the model that built the index
    classifiers: dict[str, LoadedClassifier] = field(default_factory=dict)
    examples: list[Example] = field(default_factory=list)

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
        backend = cls(generator, workspace, limits.validate(), examples=held_out_examples(checkpoint))
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

    def index_summary(self) -> str:
        """What Search looks through: the index's size and where its clips come from (their
        folder, splits and labels), or why there is none."""
        if self.index is None:
            return "no index is loaded, so there is nothing to search"
        index = self.index
        try:
            folder = os.path.commonpath([str(Path(p).parent) for p in index.paths]) if index.paths else "?"
        except ValueError:  # relative and absolute paths mixed
            folder = "several folders"
        splits = sorted({s for s in index.splits if s})
        labels = sorted({label for row in index.labels for label in row})
        return (f"{len(index)} clips from {folder}" + (f" ({', '.join(splits)} split)" if splits else "")
                + (f", labelled {_listed(labels)}" if labels else ", without labels"))

    # ------------------------------------------------------------------ generate / edit / continue
    def plan_soundtrack(
        self,
        kind: str,
        video: str | os.PathLike | None,
        sampling: SamplingConfig,
        *,
        duration: float | None = None,
        edit: str | None = None,
        prompt: str | os.PathLike | None = None,
        prompt_seconds: float | None = None,
        audio_format: str = "wav",
    ) -> SoundtrackPlan:
        """Check a request in full, before any work: a VabError says what is wrong."""
        if kind not in KINDS:
            raise ValueError(f"kind {kind!r}: expected one of {sorted(KINDS)}")
        if audio_format not in AUDIO_FORMATS:
            raise VabError(f"audio format {audio_format!r}: expected wav or flac")
        if duration is not None and not duration > 0:
            raise VabError(f"seconds from the start must be > 0 (or 0 for all), got {duration:g}")
        sampling.validate()
        info = check_upload(video, "video", self.limits.max_seconds, "a video")
        video = Path(video)
        seconds = video_seconds(video)
        if duration is not None:
            seconds = min(seconds, float(duration))
        spans = None
        if kind == "edit":
            if not (edit or "").strip():
                raise VabError("no spans: type them (2.5-4.0,7-8) or click start and end on the spectrogram")
            if not info.has_audio:
                raise MediaError(video, "no soundtrack to edit (the video has no audio stream)")
            spans = tuple(parse_spans(edit))
            check_spans(spans, seconds, video)
        if kind == "continue":
            if prompt is None or str(prompt) == "":
                raise VabError("no prompt: upload or record the audio to continue")
            check_upload(prompt, "audio", self.limits.max_seconds, "a prompt")
            if prompt_seconds is not None and not prompt_seconds > 0:
                raise VabError(f"the prompt's first seconds must be > 0 (or 0 for all), got {prompt_seconds:g}")
        return SoundtrackPlan(kind, video, sampling, seconds, self.generator.windows_for(seconds),
                              f"{video.stem}-vab{KINDS[kind]}-seed{sampling.seed}", audio_format, duration, spans,
                              Path(prompt) if kind == "continue" else None, prompt_seconds)

    def soundtrack(self, plan: SoundtrackPlan, progress: Progress | None = None) -> Soundtrack:
        """Make `plan`'s soundtrack in a fresh job folder.  `progress` hears every finished
        window; an exception it raises (the page's Stop) ends the job there, with nothing
        written."""

        started = time.perf_counter()
        tokens = self.generator.tokenize_prompt(plan.prompt, plan.prompt_seconds) if plan.prompt else None
        request = Request(source=str(plan.video), duration=plan.duration, edit=plan.spans, prompt=tokens)
        outcome = next(self.generator.run([request], plan.sampling,
                                          progress=None if progress is None else lambda _, d, t: progress(d, t)))
        if outcome.error is not None:
            raise outcome.error
        job = self.workspace.new_job()
        original = self._original_soundtrack(plan, job) if plan.kind == "edit" else None
        files = _write(outcome.result, plan, job)
        return Soundtrack(files.video, files.audio, files.plot, outcome.result.seconds, outcome.result.windows,
                          time.perf_counter() - started, original)

    def _original_soundtrack(self, plan: SoundtrackPlan, job: Path) -> Path:
        wav = media.read_audio(plan.video, self.generator.sample_rate, 0.0, plan.seconds)
        return media.write_audio(job / f"{plan.video.stem}-original.wav", wav, self.generator.sample_rate)

    def edit_picture(self, video: str | os.PathLike | None, spans: str = "") -> EditPicture:
        """The upload's own soundtrack over the picture's length, with a time axis and the
        `spans` (text, may be empty) shaded; a VabError if a span is malformed or not within
        the clip."""

        info = check_upload(video, "video", self.limits.max_seconds, "a video")
        if not info.has_audio:
            raise MediaError(video, "no soundtrack to edit (the video has no audio stream)")
        seconds = video_seconds(video)
        chosen = parse_spans(spans) if spans.strip() else []
        check_spans(chosen, seconds, video)
        wav = media.read_audio(video, self.generator.sample_rate, 0.0, seconds)
        path, columns = spectrogram_picture(self.workspace.new_job() / f"{Path(video).stem}-soundtrack.png", wav,
                                            self.generator.sample_rate, chosen)
        return EditPicture(path, seconds, columns)

    # ------------------------------------------------------------------ search
    def search(self, query: str | os.PathLike | None, by: str = "auto", top: int = 5) -> list[Match]:
        """The `top` clips of the index whose other modality is closest to the query file's
        `by` modality (auto: video when the file has a video stream, else audio)."""

        if self.index is None:
            raise VabError("no index is loaded, so there is nothing to search")
        info = check_upload(query, "media", self.limits.max_seconds, "a video or audio file")
        if by == "auto":
            by = "video" if info.has_video else "audio"
        if by not in ("video", "audio"):
            raise VabError(f"search by {by!r}: expected auto, video or audio")
        if not (info.has_video if by == "video" else info.has_audio):
            raise MediaError(query, f"no {by} stream to search by")
        top = min(max(1, int(top)), len(self.index))
        within = "audio" if by == "video" else "video"
        vector = self.query_embedder.embed_media(query, by)
        hits = search(self.index, vector, within, top)
        job = self.workspace.new_job()
        matches = []
        for rank, (row, score) in enumerate(hits, start=1):
            match = Match(rank, self.index.ids[row], self.index.paths[row],
                          list(self.index.labels[row]) if self.index.labels else [], score, within)
            try:
                match.preview = self._preview(Path(match.path), within, job / f"match{rank}-{_safe(match.id)}")
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
    def classify(self, path: str | os.PathLike | None, name: str | None = None, top: int = 5) -> Classification:
        """The `top` classes the classifier `name` (default: the first loaded) gives the
        file's first model window.  A file without an input that classifier reads (an audio
        file for an audio-visual classifier) goes to the first loaded classifier that can
        read it; with none, a MediaError says why."""

        if not self.classifiers:
            raise VabError("no classifier is loaded, so there is nothing to classify with")
        chosen = self.classifiers[name] if name in self.classifiers else next(iter(self.classifiers.values()))
        info = check_upload(path, "media", self.limits.max_seconds, "a video or audio file")
        loaded, note = chosen, ""
        if not chosen.reads(info):
            fitting = [c for c in self.classifiers.values() if c.reads(info)]
            has = "sound only" if not info.has_video else "no sound"
            if not fitting:
                reads = "; ".join(f"{c.name} reads {READS[c.mode]}" for c in self.classifiers.values())
                raise MediaError(path, f"has {has}, which no loaded classifier takes ({reads})")
            loaded = fitting[0]
            note = f"it has {has}, so {loaded.name} ({READS[loaded.mode]}) answered instead of {chosen.name}"
        batch = loaded.reader.media_inputs(path, CLASSIFIER_INPUTS[loaded.mode])
        with torch.inference_mode():
            scores = scores_from_logits(loaded.classifier(batch), loaded.loss)[0].cpu()
        order = torch.argsort(scores, descending=True, stable=True)[:top]
        names = loaded.labels
        return Classification({names[int(i)]: float(scores[i]) for i in order}, loaded, note)


def _write(result: GenerationResult, plan: SoundtrackPlan, job: Path) -> Outputs:
    """The files `vab generate --plot` writes for one video, into the job folder."""

    outputs = plan_outputs(job, plan.name, plan.audio_format, mux=True, plot=True)
    write_outputs(result, plan.video, outputs, plan.duration)
    return outputs


def _listed(names: list[str]) -> str:
    """Names joined with commas, the first LISTED_LABELS of them, then how many more."""
    shown = ", ".join(names[:LISTED_LABELS])
    return shown + (f" and {len(names) - LISTED_LABELS} more" if len(names) > LISTED_LABELS else "")


def _safe(name: str) -> str:
    """A clip id as a file name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:60] or "clip"
