"""Generation evaluation (paper Table 1): generate for held-out clips, score against the real audio.

For every clip of a split of an extracted data set (or of a manifest / folder of videos)
each model generates a soundtrack as long as the clip; the generated and the real audio
are scored with an :class:`~vab.evaluation.scorers.AudioEmbedder`:

* **FAD**: Frechet distance between Gaussians fitted to the embeddings of all real and of
  all generated segments (:func:`vab.evaluation.metrics.frechet_audio_distance`);
* **KL**: KL(real || generated) between the label distributions of each clip's real and
  generated audio, averaged over clips (:func:`vab.evaluation.metrics.kl_divergence`);
* **speed**: generation wall time (sampling + decoding, plus reading and encoding frames
  when the source is a video file) per clip, and the real-time factor (wall seconds per
  second of audio).  Scoring time is excluded.

The real audio of a clip is its original media file, read for the clip's span (the start
extraction cut it at, stored in the data set), when that file exists; otherwise the codec's decoding of the clip's stored tokens (all stored
levels), which is the codec's upper bound (paper appendix D.1) rather than the truth.
Each clip records which one was used.  Several models are scored in one run against the
same real audio (embedded once) and end up in one table.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vab.evaluation.scorers import AudioEmbedder, clip_distribution
from vab.errors import VabError

REAL_MODES = ("auto", "media", "tokens")
# a file this much longer than its clip still leaves no room for another start (container
# durations round up to whole audio / video frames)
START_SLACK = 0.1


# ---------------------------------------------------------------------- clips
@dataclass
class Clip:
    """One clip to generate for.  `video`: the media file (may not exist for stored data);
    `start`: seconds into it (None: a data set of format 1, which did not store it);
    `duration`: seconds to generate; `row`: index in the data set (None for videos from a
    manifest); `tokens`: the stored real tokens ``[K, T]`` if any; `source`: the data set
    directory the clip comes from."""

    id: str
    video: str | None
    start: float | None
    duration: float
    row: int | None = None
    tokens: np.ndarray | None = None
    labels: list[str] = field(default_factory=list)
    source: str | None = None


@dataclass
class ClipSet:
    """Clips and where they came from: `data_paths` (extracted data sets) or `manifest`."""

    clips: list[Clip]
    source: str
    split: str | None
    data_paths: list[str] = field(default_factory=list)
    sample_rate: int | None = None  # the stored tokens' codec rate (data sets)


def dataset_clips(paths: Sequence[str | os.PathLike], split: str | None, limit: int | None = None) -> ClipSet:
    """The clips of `split` in extracted data sets (first `limit` of them)."""
    from vab.data.dataset import load_infos
    from vab.data.store import DATA_DIR, clip_spans, column_to_numpy, load_dataset_dir
    from vab.training.run import check_same_codec_state

    paths = [str(p) for p in paths]
    info = load_infos(paths)
    check_same_codec_state(paths)  # stored real tokens are decoded with one codec
    clips: list[Clip] = []
    row = 0
    for path in paths:
        data_dir = Path(path) / DATA_DIR
        if not data_dir.exists():
            raise VabError(f"{path}: extraction has not finished (no {DATA_DIR}/); re-run `vab extract`")
        table = load_dataset_dir(data_dir).data.table
        names = [str(n) for n in _label_names(path)]
        splits, ids, files = (table.column(c).to_pylist() for c in ("split", "id", "path"))
        labels = table.column("labels").to_pylist()
        starts, _ = clip_spans(table)
        for i in range(len(ids)):
            if split is None or splits[i] == split:
                tokens = column_to_numpy(table.column("tokens").slice(i, 1), np.int16)[0]
                clips.append(Clip(ids[i], files[i], starts[i], float(info.duration), row, tokens,
                                  [names[c] for c in labels[i] if c < len(names)], path))
            row += 1
            if limit and len(clips) >= limit:
                break
        if limit and len(clips) >= limit:
            break
    if not clips:
        raise VabError(f"{', '.join(paths)}: no clips" + (f" in split {split!r}" if split else ""))
    _unique_ids(clips, paths)
    return ClipSet(clips, ", ".join(paths), split, paths, int(info.sample_rate))


def _unique_ids(clips: list[Clip], paths: list[str]) -> None:
    """Clip ids pair real and generated scores: ids repeated across data sets get the data
    set's folder name in front (``vggsound/abc``)."""
    seen: dict[str, int] = {}
    for c in clips:
        seen[c.id] = seen.get(c.id, 0) + 1
    if len(seen) == len(clips):
        return
    starts = _row_starts(paths)
    for c in clips:
        if seen[c.id] > 1:
            which = max(i for i, start in enumerate(starts) if start <= c.row)
            c.id = f"{Path(paths[which]).name}/{c.id}"
    if len({c.id for c in clips}) != len(clips):
        raise VabError(f"{', '.join(paths)}: clip ids repeat within a data set; they must be unique")


def _row_starts(paths: list[str]) -> list[int]:
    from vab.data.store import DATA_DIR, load_dataset_dir

    starts, total = [], 0
    for path in paths:
        starts.append(total)
        total += len(load_dataset_dir(Path(path) / DATA_DIR))
    return starts


def _label_names(path: str) -> list[str]:
    from vab.data.store import DataInfo

    return list(DataInfo.load(path).label_names)


def manifest_clips(
    manifest: str | os.PathLike, split: str | None, duration: float, *, root: str | None = None, limit: int | None = None
) -> ClipSet:
    """Clips from a manifest or folder of videos: `duration` seconds from each row's start
    (less when the video is shorter)."""
    from vab import media
    from vab.data.manifest import read_manifest

    m = read_manifest(manifest, root=root)
    rows = m.select(split).rows if split and any(r.split for r in m.rows) else m.rows
    if limit:
        rows = rows[:limit]
    clips = []
    for r in rows:
        seconds = duration
        try:
            length = media.probe(r.path).duration
        except VabError:
            length = None  # reported when the clip is generated
        if length is not None:
            seconds = max(0.0, min(duration, length - r.start))
        clips.append(Clip(r.id, r.path, r.start, seconds, labels=list(r.labels)))
    if not clips:
        raise VabError(f"{manifest}: no clips" + (f" in split {split!r}" if split else ""))
    return ClipSet(clips, str(manifest), split)


# ---------------------------------------------------------------------- real audio
class RealAudio:
    """The real audio of clips: the media file (`media`), the codec's decoding of the stored
    tokens (`tokens`), or the media file when it exists and else the tokens (`auto`)."""

    def __init__(self, clips: ClipSet, mode: str = "auto", sample_rate: int = 16000,
                 codec_settings: dict[str, Any] | None = None):
        if mode not in REAL_MODES:
            raise VabError(f"--real {mode!r}: expected one of {', '.join(REAL_MODES)}")
        self.mode = mode
        self.sample_rate = int(sample_rate)
        self.clips = clips
        self.codec_settings = dict(codec_settings or {})  # e.g. griffin_lim_iters for the spectral codec
        self._codec = None

    def source(self, clip: Clip) -> str:
        """`media` or `tokens`: what :meth:`read` uses for `clip`."""
        has_media = clip.video is not None and Path(clip.video).is_file()
        if self.mode == "media" or (self.mode == "auto" and has_media):
            if not has_media:
                raise VabError(f"{clip.video}: the real audio file does not exist (use --real tokens or auto)")
            return "media"
        if clip.tokens is None:
            raise VabError(f"{clip.id}: no stored tokens to decode (the clip comes from a video manifest)")
        return "tokens"

    def start(self, clip: Clip) -> float:
        """Seconds into `clip.video` where the clip starts.  A data set of format 1 did not store
        it: it is 0 when the file is no longer than the clip (nothing else to cut), and unknown
        otherwise, which is refused (one line) rather than scoring the wrong seconds."""
        if clip.start is not None:
            return clip.start
        from vab import media

        length = media.probe(clip.video).duration
        if length is not None and length <= clip.duration + START_SLACK:
            return 0.0
        raise VabError(
            f"{clip.source}: made before vab stored clip starts, and {clip.video} is longer than its "
            f"{clip.duration:g}-s clip, so which seconds were extracted is unknown; re-extract it with "
            "`vab extract`, or score against the stored tokens (--real tokens)"
        )

    def read(self, clip: Clip) -> tuple[np.ndarray, int, str]:
        """(mono float32 ``[S]``, sample rate Hz, `media` | `tokens`)."""
        kind = self.source(clip)
        if kind == "media":
            from vab import media

            start = self.start(clip)
            wav = media.read_audio(clip.video, self.sample_rate, start, start + clip.duration)
            return wav, self.sample_rate, kind
        from vab.generation.codec_chunks import decode_chunked

        codec = self.codec()
        wav = decode_chunked(codec, torch.from_numpy(clip.tokens.astype(np.int64)))
        return wav, int(codec.sample_rate), kind

    def codec(self):
        """The codec the stored tokens were made with (the data set's, fitted one included)."""
        if self._codec is None:
            from omegaconf import OmegaConf

            from vab.codecs import build_codec
            from vab.config import CodecConfig
            from vab.data.store import DataInfo

            directory = self.clips.data_paths[0]
            fields = {k: v for k, v in DataInfo.load(directory).codec.items() if k in CodecConfig.__dataclass_fields__}
            fields.update(self.codec_settings)
            self._codec = build_codec(OmegaConf.structured(CodecConfig(**fields)), directory=directory)
        return self._codec


# ---------------------------------------------------------------------- scores
def clip_header(clip: Clip) -> dict[str, Any]:
    """What a record names its clip by: a record for another span or file of an id is stale."""
    return {"id": clip.id, "video": clip.video, "start": None if clip.start is None else float(clip.start), "duration": float(clip.duration),
            "row": clip.row}


def _score(wav: np.ndarray, sample_rate: int, embedder: AudioEmbedder,
           classifier: AudioEmbedder | None) -> tuple[np.ndarray, np.ndarray | None]:
    """(FAD embeddings ``[N, D]``, KL label distribution ``[C]`` or None) of one clip's audio."""
    dist = None if classifier is None else clip_distribution(classifier.label_probs_at(wav, sample_rate))
    return embedder.embed_at(wav, sample_rate), dist


@dataclass
class Scores:
    """Per-clip scorer outputs of one side (real or one model), in clip order of `ids`."""

    ids: list[str] = field(default_factory=list)
    embeddings: list[np.ndarray] = field(default_factory=list)  # each [N_i, D]
    distributions: list[np.ndarray] = field(default_factory=list)  # each [C]

    @classmethod
    def load(cls, store: Any, clips: Sequence[Clip]) -> Scores:
        """The recorded scores (`vab.evaluation.records.RecordStore`) of those `clips` that have
        one, in the order of `clips`."""
        out = cls()
        for clip in clips:
            record = store.read(clip_header(clip))
            if record is not None:
                out.ids.append(clip.id)
                out.embeddings.append(record["embeddings"])
                if record["distribution"] is not None:
                    out.distributions.append(record["distribution"])
        return out

    def of(self, ids: Sequence[str]) -> Scores:
        where = {k: i for i, k in enumerate(self.ids)}
        pick = [where[k] for k in ids]
        return Scores(list(ids), [self.embeddings[i] for i in pick],
                      [self.distributions[i] for i in pick] if self.distributions else [])


@dataclass
class ModelResult:
    """One model's row of the table (FAD / KL are None when they cannot be computed)."""

    name: str
    checkpoint: str
    model_type: str
    clips: int
    failed: int
    fad: float | None
    kl: float | None
    seconds_per_clip: float
    real_time_factor: float
    audio_seconds: float
    embeddings: int
    sampling: dict[str, Any] = field(default_factory=dict)
    note: str = ""


def fad_and_kl(real: Scores, generated: Scores) -> tuple[float | None, float | None, str]:
    """(FAD, KL, note) over the clips both sides hold."""
    from vab.evaluation.metrics import frechet_audio_distance, kl_divergence

    real = real.of(generated.ids)
    notes = []
    fad = None
    if generated.ids:
        r, g = np.concatenate(real.embeddings), np.concatenate(generated.embeddings)
        if len(r) < 2 or len(g) < 2:
            notes.append("FAD needs at least 2 embeddings per side")
        else:
            fad = frechet_audio_distance(r, g)
            if min(len(r), len(g)) <= r.shape[1]:
                notes.append(f"only {min(len(r), len(g))} embeddings for {r.shape[1]} dimensions: FAD is biased")
    kl = None
    if generated.distributions:
        kl = kl_divergence(np.stack(real.distributions), np.stack(generated.distributions))
    return fad, kl, "; ".join(notes)


# ---------------------------------------------------------------------- the loop
Progress = Callable[[str, int, int], None]  # (what, done, total)


def load_generator(checkpoint: str | os.PathLike, *, device: str = "cpu", precision: str = "auto",
                   batch_size: int = 1) -> Any:
    """The generator of a model directory or Hugging Face Hub id.  `vab.generation.generator.Generator.from_pretrained`
    is the one entry point `vab generate` uses too, so any model type it generates with (VAB, and the
    autoregressive baseline, ``model.type=foleygen``) is scored the same way."""
    from vab.generation.generator import Generator

    return Generator.from_pretrained(checkpoint, device=device, precision=precision, batch_size=batch_size)


def stored_features(generator: Any, clips: ClipSet) -> Callable[[int], torch.Tensor]:
    """A reader of features ``[F, D]`` at the model's fps by data-set row, checked against
    the model's config (codec, encoder, fps).  Rows are read when asked for, so memory
    does not grow with the number of clips."""
    from vab.data.dataset import VABDataset, check_matches_config, load_infos

    cfg = generator.model.config
    check_matches_config(load_infos(clips.data_paths), cfg, source=clips.source)
    data = VABDataset(clips.data_paths, None, fps=float(cfg.data.fps), train=False)
    if not data.info.has_visual:
        raise VabError(f"{clips.source}: audio-only data has no frame features to generate from")
    return lambda row: data[row]["features"].float()


def generate_and_score(
    generator: Any,
    clips: ClipSet,
    sampling: Any,
    embedder: AudioEmbedder,
    classifier: AudioEmbedder | None,
    store: Any,
    *,
    source: str = "auto",
    save_audio: str | os.PathLike | None = None,
    progress: Progress | None = None,
    label: str = "generate",
    warmup: bool = True,
) -> list[tuple[str, str]]:
    """Generate every clip with `generator`, score the result and record it in `store`
    (`vab.evaluation.records.RecordStore`: embeddings, distribution, generation wall seconds
    ``wall`` and ``audio_seconds``).  Clips already recorded are skipped (a re-run continues).

    `source`: `features` (stored features, data sets only), `video` (the media file) or
    `auto` (features for data sets, video files for manifests).  With `warmup` the first
    clip is generated once, untimed, before the timed run.  Returns the failures
    [(clip id, problem)]."""
    from vab.generation.generator import Request

    use_features = clips.data_paths and source in ("auto", "features")
    if source == "features" and not clips.data_paths:
        raise VabError("--source features needs an extracted data set (data.path=...)")
    features = stored_features(generator, clips) if use_features else None
    chosen: list[Clip] = []
    failures: list[tuple[str, str]] = []
    for clip in clips.clips:
        if use_features:
            chosen.append(clip)
        elif clip.video is None or not Path(clip.video).is_file():
            failures.append((clip.id, f"{clip.video}: video file not found"))
        elif clip.start > 0:
            failures.append((clip.id, "clips starting after 0 s cannot be generated from the video; "
                             "use the extracted data set (stored features)"))
        elif clip.duration <= 0:
            failures.append((clip.id, "no audio to generate (empty clip)"))
        else:
            chosen.append(clip)
    if save_audio is not None:
        Path(save_audio).mkdir(parents=True, exist_ok=True)

    def wav_path(clip: Clip) -> Path:
        return Path(save_audio) / f"{_safe_name(clip.id)}.wav"

    todo = [c for c in chosen if store.read(clip_header(c)) is None
            or (save_audio is not None and not wav_path(c).is_file())]

    def request(clip: Clip) -> Request:
        source = features(clip.row) if features is not None else clip.video
        return Request(source, duration=clip.duration, key=clip)

    if warmup and todo:
        # one untimed run first: lazy initialisation and first-call costs would otherwise
        # be charged to whichever model is scored first
        for _ in generator.run([request(todo[0])], sampling):
            pass
    done = len(chosen) - len(todo)
    start = time.perf_counter()
    for outcome in generator.run((request(c) for c in todo), sampling):
        wall = time.perf_counter() - start  # this clip's share: scoring below is not counted
        clip = outcome.request.key
        if outcome.error is not None:
            failures.append((clip.id, str(outcome.error)))
        else:
            r = outcome.result
            if save_audio is not None:
                from vab import media

                media.write_audio(wav_path(clip), r.waveform, r.sample_rate)
            embeddings, distribution = _score(r.waveform, r.sample_rate, embedder, classifier)
            store.write(clip_header(clip), embeddings, distribution, wall=wall, audio_seconds=float(r.seconds))
        done += 1
        if progress is not None:
            progress(label, done, len(chosen))
        start = time.perf_counter()
    return failures


def _safe_name(clip_id: str) -> str:
    from vab.evaluation.records import safe_name

    return safe_name(clip_id)


def score_real(
    clips: ClipSet, real: RealAudio, embedder: AudioEmbedder, classifier: AudioEmbedder | None, store: Any,
    progress: Progress | None = None,
) -> list[tuple[str, str]]:
    """Score the real audio of every clip not yet recorded in `store` and record it (with
    ``kind``: `media` | `tokens`, what `real` read).  Returns the failures [(clip id, problem)]."""
    failures: list[tuple[str, str]] = []
    for clip in clips.clips:  # an unknown start refuses the run, before any scoring
        try:
            uses_media = real.source(clip) == "media"
        except VabError:
            continue  # reported with the clip below
        if uses_media:
            real.start(clip)
    for i, clip in enumerate(clips.clips):
        if store.read(clip_header(clip)) is None:
            try:
                wav, rate, kind = real.read(clip)
                embeddings, distribution = _score(wav, rate, embedder, classifier)
                store.write(clip_header(clip), embeddings, distribution, kind=kind)
            except VabError as exc:
                failures.append((clip.id, f"real audio: {exc}"))
        if progress is not None:
            progress("real audio", i + 1, len(clips.clips))
    return failures


# ---------------------------------------------------------------------- report
@dataclass
class Report:
    """Everything `eval/generation.py` writes."""

    data: str
    split: str | None
    clips: int
    embedder: str
    classifier: str | None
    real_audio: str
    real_audio_counts: dict[str, int]
    sampling: dict[str, Any]
    source: str
    device: str
    models: list[ModelResult]
    failures: list[dict[str, str]]

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for m in out["models"]:
            for key in ("fad", "kl"):
                if m[key] is not None and not math.isfinite(m[key]):
                    m[key] = None
        return out

    def markdown(self) -> str:
        lines = [
            f"Generation: {self.clips} clips of {self.data}" + (f" (split {self.split})" if self.split else ""),
            f"real audio: {self.real_audio}; generated from: {self.source}; device: {self.device}",
            f"FAD embedder: {self.embedder}; KL classifier: {self.classifier or 'none'}",
            f"sampling: {_settings(self.sampling)}",
            *[f"sampling of {m.name}: {_settings(m.sampling)}" for m in self.models
              if m.sampling and m.sampling != self.sampling],
            "",
            f"| model | type | clips | FAD ({short_spec(self.embedder)}) | KL ({short_spec(self.classifier)}) "
            "| s / clip | RTF |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for m in self.models:
            lines.append(
                f"| {m.name} | {m.model_type} | {m.clips}" + (f" ({m.failed} failed)" if m.failed else "")
                + f" | {_fmt(m.fad)} | {_fmt(m.kl)} | {m.seconds_per_clip:.3f} | {m.real_time_factor:.3f} |"
            )
        notes = [f"- {m.name}: {m.note}" for m in self.models if m.note]
        lines += ["", "FAD: Frechet distance of embedding Gaussians (lower is better); KL: mean over clips of "
                  "KL(real || generated) label distributions, nats (lower is better); s / clip: generation wall "
                  "seconds per clip; RTF: wall seconds per second of audio."]
        if notes:
            lines += ["", *notes]
        return "\n".join(lines) + "\n"


def _settings(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


def short_spec(spec: str | None) -> str:
    """A scorer spec without its path (``own:/a/b/model`` -> ``own``), for table headers."""
    return "none" if spec is None else spec.split(":", 1)[0]


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.3f}"


def describe_real(counts: dict[str, int]) -> str:
    """'original media files', 'codec decoding of the stored tokens' or a mix with counts."""
    words = {"media": "original media files", "tokens": "codec decoding of the stored real tokens"}
    used = {k: v for k, v in counts.items() if v}
    if len(used) == 1:
        return words[next(iter(used))]
    return "; ".join(f"{words[k]} for {v} clips" for k, v in used.items()) or "none"


def model_labels(checkpoints: Sequence[str], labels: Sequence[str] | None = None) -> list[str]:
    """A distinct table label per checkpoint: given labels, else the shortest distinct path tails."""
    if labels:
        if len(labels) != len(checkpoints):
            raise VabError(f"--label given {len(labels)} times for {len(checkpoints)} checkpoints")
        return list(labels)
    parts = [Path(os.path.abspath(c)).parts for c in checkpoints]
    for depth in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [f"{c} ({i + 1})" for i, c in enumerate(checkpoints)]


def evaluate(
    checkpoints: Sequence[str],
    clips: ClipSet,
    sampling: Any,
    embedder: AudioEmbedder,
    classifier: AudioEmbedder | None,
    *,
    embedder_name: str,
    classifier_name: str | None,
    labels: Sequence[str] | None = None,
    real_mode: str = "auto",
    real_codec: dict[str, Any] | None = None,
    source: str = "auto",
    device: str = "cpu",
    precision: str = "auto",
    batch_size: int = 1,
    save_audio: str | os.PathLike | None = None,
    progress: Progress | None = None,
    ar_sampling: Any = None,
    records: str | os.PathLike | None = None,
    shard: Any = None,
) -> Report | None:
    """Score every model in `checkpoints` on `clips` against the same real audio.

    `real_codec`: codec settings (CodecConfig fields, e.g. ``griffin_lim_iters``) for decoding
    stored real tokens, over the data set's own.  `ar_sampling`: the sampling settings for
    autoregressive models (the baseline; FoleyGen decodes with guidance 3 and top-k 256),
    `sampling` for the others.

    Per-clip scores are recorded under `records`/records/ (`vab.evaluation.records`; a
    temporary folder when None), so a re-run with the same settings scores only the clips
    without a record.  With a `vab.sharding.Shard` of several processes, each scores its
    block of the clips and the main process merges every clip's records: it returns the
    report (the same as one process's), the others None."""
    import tempfile

    from vab.sharding import Shard

    shard = shard or Shard()
    if records is None:
        with tempfile.TemporaryDirectory(prefix="vab-eval-") as tmp:
            return evaluate(checkpoints, clips, sampling, embedder, classifier, embedder_name=embedder_name,
                            classifier_name=classifier_name, labels=labels, real_mode=real_mode,
                            real_codec=real_codec, source=source, device=device, precision=precision,
                            batch_size=batch_size, save_audio=save_audio, progress=progress,
                            ar_sampling=ar_sampling, records=tmp, shard=shard)
    from vab.evaluation.records import RecordStore, files_stamp
    from vab.model.hub import resolve_model_dir
    from vab.utils import pick_device

    names = model_labels(checkpoints, labels)
    rate = max(embedder.sample_rate, classifier.sample_rate if classifier is not None else 0)
    real = RealAudio(clips, real_mode, sample_rate=rate, codec_settings=real_codec)
    scorers = {"embedder": embedder_name, "classifier": classifier_name, "rate": rate}
    real_store = RecordStore(records, "real", {**scorers, "mode": real_mode, "codec": real.codec_settings,
                                               "data": clips.source})
    mine = ClipSet(shard.take(clips.clips), clips.source, clips.split, clips.data_paths, clips.sample_rate)
    failures = _joined(shard.gather(score_real(mine, real, embedder, classifier, real_store, progress)))
    failed = {c for c, _ in failures}
    usable = [c for c in clips.clips if c.id not in failed]
    if len(usable) < 2:
        raise VabError(f"{clips.source}: real audio for fewer than 2 clips" +
                       (f" ({failures[0][0]}: {failures[0][1]})" if failures else ""))
    subset = ClipSet([c for c in mine.clips if c.id not in failed], clips.source, clips.split, clips.data_paths,
                     clips.sample_rate)
    results = []
    all_failures = [{"model": "", "clip": c, "problem": p} for c, p in failures]
    sources = set()
    for checkpoint, name in zip(checkpoints, names):
        generator = load_generator(checkpoint, device=shard.device(device), precision=precision,
                                   batch_size=batch_size)
        autoregressive = bool(getattr(getattr(generator, "model", None), "autoregressive", False))
        settings = ar_sampling if autoregressive and ar_sampling is not None else sampling
        kind = "stored features" if clips.data_paths and source in ("auto", "features") else "video files"
        sources.add(kind)
        store = RecordStore(records, name, {
            **scorers, "checkpoint": str(checkpoint), "files": files_stamp(resolve_model_dir(checkpoint)),
            "sampling": _sampling_dict(settings), "source": kind, "precision": precision,
            "device": pick_device(shard.device(device)).type, "data": clips.source,
        })
        out_dir = Path(save_audio) / _safe_name(name.replace("/", "__")) if save_audio is not None else None
        failed_here = _joined(shard.gather(generate_and_score(
            generator, subset, settings, embedder, classifier, store, source=source, save_audio=out_dir,
            progress=progress, label=f"generate {name}",
        )))
        model_type = str(generator.model.config.model.type)
        del generator
        all_failures += [{"model": name, "clip": c, "problem": p} for c, p in failed_here]
        if not shard.is_main:
            continue
        scores = Scores.load(store, usable)
        fad, kl, note = fad_and_kl(Scores.load(real_store, usable), scores)
        scored = set(scores.ids)
        timing = [store.read(clip_header(c)) for c in usable if c.id in scored]
        store.remove_temporaries()  # left by a killed run; every process is past its writes
        wall, audio_seconds = sum(t["wall"] for t in timing), sum(t["audio_seconds"] for t in timing)
        n = len(scores.ids)
        results.append(ModelResult(
            name=name, checkpoint=str(checkpoint), model_type=model_type, clips=n, failed=len(failed_here),
            fad=fad, kl=kl, seconds_per_clip=wall / max(n, 1),
            real_time_factor=wall / max(audio_seconds, 1e-9), audio_seconds=audio_seconds,
            embeddings=int(sum(len(e) for e in scores.embeddings)), sampling=_sampling_dict(settings), note=note,
        ))
    if not shard.is_main:
        return None
    real_store.remove_temporaries()
    used = [real_store.read(clip_header(c))["kind"] for c in usable]
    counts = {"media": used.count("media"), "tokens": used.count("tokens")}
    return Report(
        data=clips.source, split=clips.split, clips=len(usable), embedder=embedder_name, classifier=classifier_name,
        real_audio=describe_real(counts), real_audio_counts=counts, sampling=_sampling_dict(sampling),
        source=", ".join(sorted(sources)), device=device, models=results, failures=all_failures,
    )


def _joined(parts: list[list[tuple[str, str]]]) -> list[tuple[str, str]]:
    """The per-process lists of `Shard.gather` as one list (tuples again after the transfer)."""
    return [tuple(item) for part in parts for item in part]


def _sampling_dict(sampling: Any) -> dict[str, Any]:
    try:
        return asdict(sampling)
    except TypeError:
        return dict(vars(sampling))


__all__ = [
    "REAL_MODES",
    "Clip",
    "ClipSet",
    "ModelResult",
    "RealAudio",
    "Report",
    "Scores",
    "dataset_clips",
    "evaluate",
    "fad_and_kl",
    "generate_and_score",
    "load_generator",
    "manifest_clips",
    "score_real",
]
