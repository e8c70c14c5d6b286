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
  second of audio).  Scoring time is excluded;
* **sync**: the weights-free synchronisation score of each clip's audio against the clip's
  frames and its offset (:mod:`vab.evaluation.sync`), wherever the clip's video file exists.

The field's table (``table="field"``, :class:`Scoring` with named extra scorers) adds the
Frechet distances and KL of more embedders (PaSST, PANNs, VGGish), the Inception Score of
the PANNs labels, and the video-audio scores of learnt models when given (ImageBind score,
Synchformer DeSync); each scorer's per-clip results are recorded in a store of its own.

The real audio of a clip is its original media file, read for the clip's span (the start
extraction cut it at, stored in the data set), when that file exists; otherwise the codec's decoding of the clip's stored tokens (all stored
levels), which is the codec's upper bound (paper appendix D.1) rather than the truth.
Each clip records which one was used.  Several models are scored in one run against the
same real audio (embedded once) and end up in one table.
"""

from __future__ import annotations

import csv
import io
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from vab import media
from vab.checkpoint.hub import resolve_model_dir
from vab.codecs import build_codec
from vab.config import CodecConfig
from vab.data.dataset import VABDataset, check_matches_config, load_infos
from vab.data.manifest import read_manifest
from vab.data.store import DATA_DIR, DataInfo, clip_spans, column_to_numpy, load_dataset_dir
from vab.errors import VabError
from vab.evaluation.metrics import frechet_audio_distance, inception_score, kl_divergence, logit_kl
from vab.evaluation.records import RecordStore, files_stamp, safe_name
from vab.evaluation.scorers import AudioEmbedder, clip_distribution
from vab.evaluation.scorers.imagebind import ImageBindScorer, half_fps_frames
from vab.evaluation.scorers.synchformer import FPS as DESYNC_FPS
from vab.evaluation.scorers.synchformer import SynchformerScorer
from vab.evaluation.sync import VERSION as SYNC_VERSION
from vab.evaluation.sync import sync_score
from vab.generation.codec_chunks import decode_chunked
from vab.generation.generator import Generator, Request
from vab.sharding import Shard
from vab.training.run import check_same_codec_state

REAL_MODES = ("auto", "media", "tokens")
TABLES = ("paper", "field")
#: the field table's scorers by name (`Scoring.extra` keys) and what their columns need
FIELD_SCORERS = ("passt", "panns", "vggish")
SYNC_SHORT_SIDE = 128  # pixels: frames are read this small for the sync score
# Synchformer resizes frames to 224 itself; larger pictures are read at most this small first
# (the memory of 25 full-size frames a second), a second resize av-benchmark does not make
DESYNC_SHORT_SIDE = 448
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
    starts, total = [], 0
    for path in paths:
        starts.append(total)
        total += len(load_dataset_dir(Path(path) / DATA_DIR))
    return starts


def _label_names(path: str) -> list[str]:
    return list(DataInfo.load(path).label_names)


def manifest_clips(
    manifest: str | os.PathLike, split: str | None, duration: float, *, root: str | None = None, limit: int | None = None
) -> ClipSet:
    """Clips from a manifest or folder of videos: `duration` seconds from each row's start
    (less when the video is shorter)."""
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
            start = self.start(clip)
            wav = media.read_audio(clip.video, self.sample_rate, start, start + clip.duration)
            return wav, self.sample_rate, kind

        codec = self.codec()
        wav = decode_chunked(codec, torch.from_numpy(clip.tokens.astype(np.int64)))
        return wav, int(codec.sample_rate), kind

    def codec(self):
        """The codec the stored tokens were made with (the data set's, fitted one included)."""
        if self._codec is None:
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
    if classifier is embedder:  # one forward gives both
        embeddings, probs = embedder.embed_and_label_probs_at(wav, sample_rate)
        return embeddings, clip_distribution(probs)
    dist = None if classifier is None else clip_distribution(classifier.label_probs_at(wav, sample_rate))
    return embedder.embed_at(wav, sample_rate), dist


def clip_frames(clip: Clip, fps: float | None = None,
                short_side: int = SYNC_SHORT_SIDE) -> tuple[np.ndarray, float] | None:
    """The frames ``[F, H, W, 3]`` of `clip`'s span at `fps` (None: the video's own rate), short
    side at most `short_side`, and that rate; or None when there is no readable video for it (no
    file, no picture, an unknown start)."""
    if clip.video is None or not Path(clip.video).is_file():
        return None
    try:
        info = media.probe(clip.video)
        if not info.has_video or not info.fps:
            return None
        start = clip.start
        if start is None:  # a data set of format 1: known only for files no longer than the clip
            if info.duration is None or info.duration > clip.duration + START_SLACK:
                return None
            start = 0.0
        rate = float(fps or info.fps)
        frames, _ = media.read_frames(clip.video, rate, start, start + clip.duration, max_short_side=short_side)
    except VabError:
        return None
    return (frames, rate) if len(frames) >= 3 else None


@dataclass
class Scoring:
    """What each clip's audio is scored with.  `embedder` (FAD) and `classifier` (KL, or None)
    make the paper's columns and are recorded in the ``main`` store; `extra` names more
    scorers (the field table's ``passt``, ``panns``, ``vggish``), each recorded in a store of
    its own (embeddings, and the label distribution when it has labels), fed the audio with
    its mean removed as av-benchmark's loader does; `sync`: also score the audio against the
    clip's frames (:mod:`vab.evaluation.sync`, numbers ``sync`` and ``sync_offset`` in the
    main record); `desync`: a Synchformer scorer (number ``desync`` in the main record);
    `imagebind`: an ImageBind scorer (number ``ib``, the cosine, in the main record).
    `names`: the spec of each scorer, for record keys and the report."""

    embedder: AudioEmbedder
    classifier: AudioEmbedder | None = None
    extra: dict[str, AudioEmbedder] = field(default_factory=dict)
    sync: bool = True
    names: dict[str, str | None] = field(default_factory=dict)
    desync: SynchformerScorer | None = None
    imagebind: ImageBindScorer | None = None

    @property
    def sample_rate(self) -> int:
        """The highest rate any scorer reads (real audio is read at it once)."""
        scorers = [self.embedder, self.classifier, *self.extra.values()]
        return max(int(s.sample_rate) for s in scorers if s is not None)

    @property
    def devices(self) -> list[str]:
        """The device types the scorers run on (their numbers may differ in the last bits between devices)."""
        scorers = [self.embedder, self.classifier, *self.extra.values(), self.desync, self.imagebind]
        return sorted({torch.device(getattr(s, "device", "cpu")).type for s in scorers if s is not None})

    def stores(self, records: str | os.PathLike, side: str, settings: dict[str, Any]) -> dict[str, RecordStore]:
        """One `RecordStore` per scorer (``main`` and each extra) of `side` under `settings` (and
        the scorers' devices: records are keyed by what ran)."""
        settings = {"scoring_device": self.devices, **settings}
        main = {"embedder": self.names.get("embedder"), "classifier": self.names.get("classifier"),
                "rate": self.sample_rate, **({"sync": SYNC_VERSION} if self.sync else {}),
                **({"synchformer": self.names.get("synchformer")} if self.desync is not None else {}),
                **({"imagebind": self.names.get("imagebind")} if self.imagebind is not None else {}), **settings}
        out = {"main": RecordStore(records, side, main)}
        for name in self.extra:
            out[name] = RecordStore(records, side, {"scorer": name, "spec": self.names.get(name), **settings})
        return out

    def score(self, wav: np.ndarray, sample_rate: int, clip: Clip) -> tuple[dict[str, tuple], dict[str, float]]:
        """({store name: (embeddings ``[N, D]``, distribution ``[C]`` or None)}, {numbers for the
        main record}) of one clip's audio."""
        out = {"main": _score(wav, sample_rate, self.embedder, self.classifier)}
        centred = np.asarray(wav, dtype=np.float32) - np.float32(np.mean(wav)) if self.extra else wav
        for name, scorer in self.extra.items():
            out[name] = _score(centred, sample_rate, scorer, scorer if scorer.has_labels else None)
        numbers: dict[str, float] = {}
        frames = clip_frames(clip) if self.sync else None
        if frames is not None:
            result = sync_score(wav, sample_rate, *frames)
            numbers = {"sync": result.score, "sync_offset": result.offset}
        if self.desync is not None or self.imagebind is not None:
            # one read at Synchformer's 25 fps serves ImageBind's 0.5 fps too (every 50th frame)
            frames = clip_frames(clip, DESYNC_FPS, DESYNC_SHORT_SIDE)
            if frames is not None and self.desync is not None:
                numbers["desync"] = self.desync.desync(wav, sample_rate, frames[0])
            if frames is not None and self.imagebind is not None:
                numbers["ib"] = self.imagebind.score(wav, sample_rate,
                                                     half_fps_frames(frames[0], DESYNC_FPS, clip.duration))
        return out, numbers


def write_scores(stores: dict[str, Any], clip: Clip, scores: dict[str, tuple], **numbers: Any) -> None:
    """Record one clip's scores: the extra stores first, the main one (which says the clip is
    done, with the numbers) last."""
    header = clip_header(clip)
    for name in sorted(stores, key=lambda n: n == "main"):
        embeddings, distribution = scores[name]
        stores[name].write(header, embeddings, distribution, **(numbers if name == "main" else {}))


def recorded(stores: dict[str, Any], clip: Clip) -> bool:
    """Whether every store holds a record of `clip`."""
    header = clip_header(clip)
    return all(store.read(header) is not None for store in stores.values())


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
    precision: str = ""  # the number format generation ran in (not the one asked for)
    device: str = ""  # the device type generation ran on
    audio_seconds_per_clip: float = 0.0  # mean length of the generated audio
    audio_seconds_range: tuple[float, float] = (0.0, 0.0)  # shortest and longest generated clip
    sync: float | None = None  # mean weights-free sync score (vab.evaluation.sync) over clips with one
    sync_offset: float | None = None  # mean |offset| (s) of the same
    sync_clips: int = 0  # clips with a sync score (a readable video that changes)
    field: dict[str, float | None] = field(default_factory=dict)  # the field table's columns (FIELD_COLUMNS keys)


def fad_and_kl(real: Scores, generated: Scores) -> tuple[float | None, float | None, str]:
    """(FAD, KL, note) over the clips both sides hold."""
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


#: the field table's metric columns, in the order of MMAudio's table: (key, header, lower is better)
FIELD_COLUMNS = (
    ("fd_passt", "FD_PaSST", True), ("fd_panns", "FD_PANNs", True), ("fd_vggish", "FD_VGG", True),
    ("kl_panns", "KL_PANNs", True), ("kl_passt", "KL_PaSST", True), ("is_panns", "IS", False),
    ("ib", "IB-score", False), ("desync", "DeSync", True),
)
#: what each field column needs (the eval/generation.py option), for the notes on n/a columns
FIELD_NEEDS = {"fd_passt": "--passt", "kl_passt": "--passt", "fd_panns": "--panns", "kl_panns": "--panns",
               "is_panns": "--panns (and 10 clips)", "fd_vggish": "--vggish",
               "ib": "--imagebind (and clips of 4 s)", "desync": "--synchformer (and clips of 4.8 s)"}


def _log_probs(distributions: Sequence[np.ndarray]) -> np.ndarray:
    """log of stored float64 label distributions ``[N, C]``: the log-softmax of the logits they
    came from (exact but for underflow, floored at the smallest float)."""
    return np.log(np.maximum(np.stack(distributions), np.finfo(np.float64).tiny))


def field_columns(real: dict[str, Scores], generated: dict[str, Scores],
                  numbers: Sequence[dict[str, Any]] = ()) -> tuple[dict[str, float | None], list[str]]:
    """The field table's columns of one model ({FIELD_COLUMNS key: value or None}) and notes,
    from the extra scorers' recorded scores (`real` / `generated` by scorer name) and the main
    records' per-clip numbers (``ib``, ``desync``).  KL is av-benchmark's softmax KL(real ||
    generated) from log-probabilities, IS av-benchmark's (:func:`vab.evaluation.metrics.inception_score`)."""
    out: dict[str, float | None] = {key: None for key, _, _ in FIELD_COLUMNS}
    notes = []
    for name in FIELD_SCORERS:
        gen = generated.get(name)
        if gen is None or not gen.ids:
            continue
        ref = real[name].of(gen.ids)
        r, g = np.concatenate(ref.embeddings), np.concatenate(gen.embeddings)
        if min(len(r), len(g)) >= 2:
            out[f"fd_{name}"] = frechet_audio_distance(r, g)
        else:
            notes.append(f"FD_{name} needs at least 2 clips")
        if gen.distributions and name != "vggish":
            out[f"kl_{name}"] = logit_kl(_log_probs(ref.distributions), _log_probs(gen.distributions))
        if name == "panns":
            if len(gen.distributions) >= 10:
                out["is_panns"] = inception_score(_log_probs(gen.distributions))[0]
            else:
                notes.append("IS needs at least 10 clips (10 splits)")
    for key in ("ib", "desync"):
        values = [float(n[key]) for n in numbers if n.get(key) is not None and math.isfinite(float(n[key]))]
        if values:  # the IB-score as the published tables show it: the mean cosine times 100
            out[key] = float(np.mean(values)) * (100.0 if key == "ib" else 1.0)
    return out, notes


def sync_means(records: Sequence[dict[str, Any]]) -> tuple[float | None, float | None, int]:
    """(mean sync score, mean |offset| s, clips) over the records that have a finite score."""
    pairs = [(float(r["sync"]), abs(float(r["sync_offset"]))) for r in records
             if r.get("sync") is not None and math.isfinite(float(r["sync"]))]
    if not pairs:
        return None, None, 0
    scores, offsets = zip(*pairs)
    return float(np.mean(scores)), float(np.nanmean(offsets)), len(pairs)


# ---------------------------------------------------------------------- the loop
Progress = Callable[[str, int, int], None]  # (what, done, total)


def load_generator(checkpoint: str | os.PathLike, *, device: str = "cpu", precision: str = "auto",
                   batch_size: int = 1) -> Any:
    """The generator of a model directory or Hugging Face Hub id.  `vab.generation.generator.Generator.from_pretrained`
    is the one entry point `vab generate` uses too, so any model type it generates with (VAB, and the
    autoregressive baseline, ``model.type=foleygen``) is scored the same way."""
    return Generator.from_pretrained(checkpoint, device=device, precision=precision, batch_size=batch_size)


def stored_features(generator: Any, clips: ClipSet) -> Callable[[int], torch.Tensor]:
    """A reader of features ``[F, D]`` at the model's fps by data-set row, checked against
    the model's config (codec, encoder, fps).  Rows are read when asked for, so memory
    does not grow with the number of clips."""
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
    scoring: Scoring,
    stores: dict[str, Any],
    *,
    source: str = "auto",
    save_audio: str | os.PathLike | None = None,
    progress: Progress | None = None,
    label: str = "generate",
    warmup: bool = True,
) -> list[tuple[str, str]]:
    """Generate every clip with `generator`, score the result with `scoring` and record it in
    `stores` (:meth:`Scoring.stores`; the main record also holds the generation wall seconds
    ``wall``, ``audio_seconds`` and the sync numbers).  Clips already recorded are skipped (a
    re-run continues).

    `source`: `features` (stored features, data sets only), `video` (the media file) or
    `auto` (features for data sets, video files for manifests).  With `warmup` the first
    clip is generated once, untimed, before the timed run.  Returns the failures
    [(clip id, problem)]."""
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

    todo = [c for c in chosen if not recorded(stores, c)
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
                media.write_audio(wav_path(clip), r.waveform, r.sample_rate)
            scores, numbers = scoring.score(r.waveform, r.sample_rate, clip)
            write_scores(stores, clip, scores, wall=wall, audio_seconds=float(r.seconds), **numbers)
        done += 1
        if progress is not None:
            progress(label, done, len(chosen))
        start = time.perf_counter()
    return failures


def _safe_name(clip_id: str) -> str:
    return safe_name(clip_id)


def score_real(
    clips: ClipSet, real: RealAudio, scoring: Scoring, stores: dict[str, Any], progress: Progress | None = None,
) -> list[tuple[str, str]]:
    """Score the real audio of every clip not yet recorded in `stores` and record it (with
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
        if not recorded(stores, clip):
            try:
                wav, rate, kind = real.read(clip)
                scores, numbers = scoring.score(wav, rate, clip)
                write_scores(stores, clip, scores, kind=kind, **numbers)
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
    device: str  # where the models generated (the device type, e.g. cpu or cuda)
    models: list[ModelResult]
    failures: list[dict[str, str]]
    table: str = "paper"  # TABLES: the paper's columns, or the field's (FIELD_COLUMNS)
    scorers: dict[str, str | None] = field(default_factory=dict)  # field scorer -> spec (None: not given)
    real_sync: float | None = None  # the weights-free sync score of the real audio (reference)
    real_sync_offset: float | None = None
    scoring_device: str = "cpu"  # where the scorers ran (the device type)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for m in out["models"]:
            for key in ("fad", "kl", "sync", "sync_offset"):
                if m[key] is not None and not math.isfinite(m[key]):
                    m[key] = None
            m["field"] = {k: (v if v is None or math.isfinite(v) else None) for k, v in m["field"].items()}
        return out

    def rows(self) -> tuple[list[str], list[list[str]]]:
        """(header, one row per model) of the table `table` asks for (Markdown and CSV)."""
        sync = ["sync (weights-free)", "sync offset s"]
        tail = ["s / clip", "audio s / clip", "precision", "device"]
        if self.table == "field":
            header = ["model", "clips", *[h for _, h, _ in FIELD_COLUMNS], *sync, *tail]
        else:
            header = ["model", "type", "clips", f"FAD ({short_spec(self.embedder)})",
                      f"KL ({short_spec(self.classifier)})", *sync, "s / clip", "RTF", "audio s / clip", "precision",
                      "device"]
        rows = []
        for m in self.models:
            clips = f"{m.clips}" + (f" ({m.failed} failed)" if m.failed else "")
            timing = [f"{m.seconds_per_clip:.3f}"]
            length = f"{m.audio_seconds_per_clip:.3f}"
            if self.table == "field":
                rows.append([m.name, clips, *[_fmt(m.field.get(k)) for k, _, _ in FIELD_COLUMNS], _fmt(m.sync),
                             _fmt(m.sync_offset), *timing, length, m.precision, m.device])
            else:
                rows.append([m.name, m.model_type, clips, _fmt(m.fad), _fmt(m.kl), _fmt(m.sync), _fmt(m.sync_offset),
                             *timing, f"{m.real_time_factor:.3f}", length, m.precision, m.device])
        return header, rows

    def csv(self) -> str:
        """The table as CSV (the same header and cells as the Markdown table)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        header, rows = self.rows()
        writer.writerow(header)
        writer.writerows(rows)
        return buffer.getvalue()

    def markdown(self) -> str:
        header, rows = self.rows()
        lines = [
            f"Generation: {self.clips} clips of {self.data}" + (f" (split {self.split})" if self.split else ""),
            f"real audio: {self.real_audio}; generated from: {self.source}; generated on: {self.device}; "
            f"scored on: {self.scoring_device}",
            (f"field scorers: " + "; ".join(f"{k}: {v or 'not given'}" for k, v in self.scorers.items())
             if self.table == "field" else
             f"FAD embedder: {self.embedder}; KL classifier: {self.classifier or 'none'}"),
            f"sampling: {_settings(self.sampling)}",
            *[f"sampling of {m.name}: {_settings(m.sampling)}" for m in self.models
              if m.sampling and m.sampling != self.sampling],
            "",
            "| " + " | ".join(header) + " |",
            "|" + "|".join("---" if h in ("model", "type", "precision", "device") else "---:" for h in header) + "|",
            *["| " + " | ".join(row) + " |" for row in rows],
        ]
        notes = [f"- {m.name}: {m.note}" for m in self.models if m.note]
        if self.table == "field":
            lines += ["", "FD: Frechet distance of embedding Gaussians (PaSST 768-d, PANNs 2048-d, VGGish 128-d); KL: "
                      "mean over clips of KL(real || generated) softmax label distributions (nats); IS: Inception "
                      "Score of the PANNs labels (10 splits); IB-score: ImageBind video-audio cosine x 100; DeSync: "
                      "Synchformer's |offset| (s). Lower is better for FD, KL, DeSync and the sync offset; higher for "
                      "IS, IB-score and the sync score."]
            missing = [key for key, _, _ in FIELD_COLUMNS if all(m.field.get(key) is None for m in self.models)]
            if missing:
                headers = dict((key, h) for key, h, _ in FIELD_COLUMNS)
                lines.append("n/a: " + "; ".join(f"{headers[k]} needs {FIELD_NEEDS[k]}" for k in missing) + ".")
        else:
            lines += ["", "FAD: Frechet distance of embedding Gaussians (lower is better); KL: mean over clips of "
                      "KL(real || generated) label distributions, nats (lower is better); RTF: wall seconds per "
                      "second of audio."]
        lines += ["Sync: the weights-free synchronisation score of the generated audio against the clip's frames "
                  "(correlation of sound change and picture change, higher is better; chance about 0), and the mean "
                  "|audio delay| (s) where that correlation peaks (lower is better)"
                  + (f"; the real audio scores {_fmt(self.real_sync)} / {_fmt(self.real_sync_offset)} s"
                     if self.real_sync is not None else "")
                  + ". s / clip: generation wall seconds per clip; audio s / clip: mean length of the generated "
                  "audio; precision and device: what generation ran in."]
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
    table: str = "paper",
    extra: dict[str, AudioEmbedder] | None = None,
    extra_names: dict[str, str | None] | None = None,
    desync: SynchformerScorer | None = None,
    imagebind: ImageBindScorer | None = None,
) -> Report | None:
    """Score every model in `checkpoints` on `clips` against the same real audio.

    `table`: ``paper`` (FAD / KL of `embedder` / `classifier`) or ``field`` (FIELD_COLUMNS from
    the `extra` scorers, by FIELD_SCORERS name, DeSync from `desync` (a Synchformer scorer) and
    the IB-score from `imagebind` (an ImageBind scorer);
    `extra_names` gives the spec of every field scorer, None for one not given).  Both tables
    carry the weights-free sync score.

    `real_codec`: codec settings (CodecConfig fields, e.g. ``griffin_lim_iters``) for decoding
    stored real tokens, over the data set's own.  `ar_sampling`: the sampling settings for
    autoregressive models (the baseline; FoleyGen decodes with guidance 3 and top-k 256),
    `sampling` for the others.

    Per-clip scores are recorded under `records`/records/ (`vab.evaluation.records`; a
    temporary folder when None), so a re-run with the same settings scores only the clips
    without a record.  With a `vab.sharding.Shard` of several processes, each scores its
    block of the clips and the main process merges every clip's records: it returns the
    report (the same as one process's), the others None."""
    shard = shard or Shard()
    if records is None:
        with tempfile.TemporaryDirectory(prefix="vab-eval-") as tmp:
            return evaluate(checkpoints, clips, sampling, embedder, classifier, embedder_name=embedder_name,
                            classifier_name=classifier_name, labels=labels, real_mode=real_mode,
                            real_codec=real_codec, source=source, device=device, precision=precision,
                            batch_size=batch_size, save_audio=save_audio, progress=progress,
                            ar_sampling=ar_sampling, records=tmp, shard=shard, table=table, extra=extra,
                            extra_names=extra_names, desync=desync, imagebind=imagebind)

    if table not in TABLES:
        raise VabError(f"--table {table!r}: expected one of {', '.join(TABLES)}")
    names = model_labels(checkpoints, labels)
    if len(clips.clips) < 2:  # known now, not after the real audio is scored and recorded
        raise VabError(f"{clips.source}: {len(clips.clips)} clip to evaluate; FAD needs at least 2 "
                       "(more clips, or a larger --limit)")
    scoring = Scoring(embedder, classifier, dict(extra or {}), sync=True,
                      names={"embedder": embedder_name, "classifier": classifier_name, **(extra_names or {})},
                      desync=desync, imagebind=imagebind)
    real = RealAudio(clips, real_mode, sample_rate=scoring.sample_rate, codec_settings=real_codec)
    real_stores = scoring.stores(records, "real", {"mode": real_mode, "codec": real.codec_settings,
                                                   "data": clips.source})
    real_store = real_stores["main"]
    mine = ClipSet(shard.take(clips.clips), clips.source, clips.split, clips.data_paths, clips.sample_rate)
    failures = _joined(shard.gather(score_real(mine, real, scoring, real_stores, progress)))
    failed = {c for c, _ in failures}
    usable = [c for c in clips.clips if c.id not in failed]
    if len(usable) < 2:
        raise VabError(f"{clips.source}: real audio for fewer than 2 clips" +
                       (f" ({failures[0][0]}: {failures[0][1]})" if failures else ""))
    subset = ClipSet([c for c in mine.clips if c.id not in failed], clips.source, clips.split, clips.data_paths,
                     clips.sample_rate)
    results = []
    all_failures = [{"model": "", "clip": c, "problem": p} for c, p in failures]
    sources, devices = set(), set()
    for checkpoint, name in zip(checkpoints, names):
        generator = load_generator(checkpoint, device=shard.device(device), precision=precision,
                                   batch_size=batch_size)
        autoregressive = bool(getattr(getattr(generator, "model", None), "autoregressive", False))
        settings = ar_sampling if autoregressive and ar_sampling is not None else sampling
        kind = "stored features" if clips.data_paths and source in ("auto", "features") else "video files"
        sources.add(kind)
        # what ran, not what was asked: `auto` is bf16 on one machine and fp32 on another; the
        # batch size enters the recorded generation times (and, on some GPU kernels, the last bits)
        ran_in, ran_on = generator.precision, generator.device.type
        devices.add(ran_on)
        stores = scoring.stores(records, name, {
            "checkpoint": str(checkpoint), "files": files_stamp(resolve_model_dir(checkpoint)),
            "sampling": _sampling_dict(settings), "source": kind, "precision": ran_in,
            "device": ran_on, "batch_size": int(batch_size), "data": clips.source,
        })
        store = stores["main"]
        out_dir = Path(save_audio) / _safe_name(name.replace("/", "__")) if save_audio is not None else None
        failed_here = _joined(shard.gather(generate_and_score(
            generator, subset, settings, scoring, stores, source=source, save_audio=out_dir,
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
        field_values, field_notes = field_columns(
            {k: Scores.load(real_stores[k], usable) for k in scoring.extra},
            {k: Scores.load(stores[k], usable) for k in scoring.extra}, timing)
        for s in stores.values():
            s.remove_temporaries()  # left by a killed run; every process is past its writes
        wall, audio_seconds = sum(t["wall"] for t in timing), sum(t["audio_seconds"] for t in timing)
        lengths = [float(t["audio_seconds"]) for t in timing] or [0.0]
        sync, offset, sync_clips = sync_means(timing)
        n = len(scores.ids)
        results.append(ModelResult(
            name=name, checkpoint=str(checkpoint), model_type=model_type, clips=n, failed=len(failed_here),
            fad=fad, kl=kl, seconds_per_clip=wall / max(n, 1),
            real_time_factor=wall / max(audio_seconds, 1e-9), audio_seconds=audio_seconds,
            embeddings=int(sum(len(e) for e in scores.embeddings)), sampling=_sampling_dict(settings),
            note="; ".join(x for x in [note, *(field_notes if table == "field" else [])] if x),
            precision=ran_in, device=ran_on, audio_seconds_per_clip=float(np.mean(lengths)),
            audio_seconds_range=(min(lengths), max(lengths)), sync=sync, sync_offset=offset, sync_clips=sync_clips,
            field=field_values,
        ))
    if not shard.is_main:
        return None
    for s in real_stores.values():
        s.remove_temporaries()
    real_records = [real_store.read(clip_header(c)) for c in usable]
    used = [r["kind"] for r in real_records]
    counts = {"media": used.count("media"), "tokens": used.count("tokens")}
    real_sync, real_offset, _ = sync_means(real_records)
    return Report(
        data=clips.source, split=clips.split, clips=len(usable), embedder=embedder_name, classifier=classifier_name,
        real_audio=describe_real(counts), real_audio_counts=counts, sampling=_sampling_dict(sampling),
        source=", ".join(sorted(sources)), device=", ".join(sorted(devices)), models=results, failures=all_failures,
        table=table,
        scorers={k: (extra_names or {}).get(k) for k in (*FIELD_SCORERS, "imagebind", "synchformer")}
        if table == "field" else {},
        real_sync=real_sync, real_sync_offset=real_offset,
        scoring_device=", ".join(scoring.devices),
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
    "FIELD_COLUMNS",
    "REAL_MODES",
    "TABLES",
    "Clip",
    "ClipSet",
    "ModelResult",
    "RealAudio",
    "Report",
    "Scores",
    "Scoring",
    "field_columns",
    "dataset_clips",
    "evaluate",
    "fad_and_kl",
    "generate_and_score",
    "load_generator",
    "manifest_clips",
    "score_real",
]
