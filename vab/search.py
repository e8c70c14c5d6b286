"""Cross-modal search over clip embeddings (docs/ARCHITECTURE.md, "Algorithms", issue 5).

An index is a folder::

    INDEX/embeddings.safetensors   audio [N, W], video [N, W] float32, L2-normalised
    INDEX/index.json               ids, paths, labels, splits, the model directory (or Hub id),
                                   the digest of that model's weights, the input embedded

Embeddings are the mean-pooled first expert layers (`vab.finetuning.pooling`),
audio and video from two separate passes, so the cosine between a video row and
an audio row says how well that sound fits that picture.  Clips come from an
extracted data set (tokens + features stored) or from media files, tokenized and
encoded on the fly with the model's own codec and frame encoder.

Embeddings of two models are not comparable, even when their shapes agree: a query is
embedded only by the model whose weights digest (:func:`model_digest`) the index records
(:meth:`Embedder.for_index`), and `vab embed` does not replace an index of other data or
another model without ``--replace``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from rich import progress as rich_progress
from rich.console import Console
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from vab import media
from vab.checkpoint import Checkpoint, load
from vab.checkpoint.hub import hub_id, resolve_model_dir
from vab.codecs import AudioCodec
from vab.config import ExtractConfig
from vab.data.dataset import VABDataset, check_matches_config, collate, load_infos
from vab.data.extract import decode_clip
from vab.data.manifest import MEDIA_SUFFIXES, ManifestRow, read_manifest
from vab.data.store import META_FILE
from vab.errors import MediaError, VabError
from vab.finetuning.pooling import embeddings, pooled
from vab.generation.inputs import expand_inputs, unique_names
from vab.model import VAB
from vab.sharding import Shard
from vab.utils import atomic_path
from vab.weights import tensors_digest
from vab.visual import VisualEncoder

EMBEDDINGS_FILE = "embeddings.safetensors"
INDEX_FILE = "index.json"
MODALITIES = ("audio", "video")

Progress = Callable[[int], None]  # called with the number of clips just finished


@dataclass
class Index:
    """Clip embeddings with their ids: `audio` / `video` ``[N, W]`` L2-normalised float32."""

    ids: list[str]
    paths: list[str]
    audio: torch.Tensor
    video: torch.Tensor
    labels: list[list[str]] = field(default_factory=list)
    splits: list[str | None] = field(default_factory=list)
    model_dir: str = ""
    #: SHA-256 of the weights that made the embeddings (:func:`model_digest`); "" in indexes
    #: written before vab recorded it
    model_digest: str = ""
    #: what was embedded: the input (a resolved path) and the split chosen ("" / None: unknown, all)
    source: str = ""
    source_split: str | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def embeddings(self, modality: str) -> torch.Tensor:
        """``[N, W]`` audio or video embeddings."""
        if modality not in MODALITIES:
            raise VabError(f"modality {modality!r}: expected audio or video")
        return self.audio if modality == "audio" else self.video

    @classmethod
    def concat(cls, parts: list["Index"]) -> "Index":
        """One index holding the rows of `parts` in their order (the blocks of a sharded run)."""
        if not parts:
            raise VabError("no index parts to join")
        if len({(p.model_dir, p.model_digest) for p in parts}) > 1:
            raise VabError(f"index parts come from different models: {sorted({p.model_dir for p in parts})}")

        def listed(name: str) -> list:
            return [x for p in parts for x in (getattr(p, name) or [None] * len(p))]

        return cls(ids=listed("ids"), paths=listed("paths"), audio=torch.cat([p.audio for p in parts]),
                   video=torch.cat([p.video for p in parts]),
                   labels=[x or [] for x in listed("labels")], splits=listed("splits"), model_dir=parts[0].model_dir,
                   model_digest=parts[0].model_digest, source=parts[0].source, source_split=parts[0].source_split)

    def position(self, clip_id: str) -> int | None:
        try:
            return self.ids.index(clip_id)
        except ValueError:
            return None

    def save(self, directory: str | Path) -> Path:
        """Write both files atomically (the JSON last: an index without it is incomplete).
        Refuses (VabError naming the clip) embeddings that are not finite."""
        self.check_finite(str(directory))
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {"audio": self.audio.float().contiguous().cpu(), "video": self.video.float().contiguous().cpu()}
        with atomic_path(directory / EMBEDDINGS_FILE) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "vab-index"})
        record = {
            "model_dir": self.model_dir, "model_digest": self.model_digest, "source": self.source,
            "source_split": self.source_split, "ids": self.ids, "paths": self.paths,
            "labels": self.labels or [[] for _ in self.ids], "splits": self.splits or [None for _ in self.ids],
        }
        with atomic_path(directory / INDEX_FILE) as tmp:
            tmp.write_text(json.dumps(record, indent=1))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "Index":
        directory = Path(directory)
        meta, weights = directory / INDEX_FILE, directory / EMBEDDINGS_FILE
        if not meta.is_file() or not weights.is_file():
            raise VabError(f"{directory}: not an embedding index (needs {INDEX_FILE} and {EMBEDDINGS_FILE}; "
                           "make one with `vab embed`)")
        try:
            record = json.loads(meta.read_text())
            ids, paths = list(record["ids"]), list(record["paths"])
        except (ValueError, KeyError, TypeError) as exc:
            raise VabError(f"{meta}: unreadable index ({type(exc).__name__})") from None
        try:
            tensors = load_file(str(weights))
            audio, video = tensors["audio"], tensors["video"]
        except (SafetensorError, KeyError, OSError) as exc:
            raise VabError(f"{weights}: unreadable embeddings ({type(exc).__name__})") from None
        if not (audio.shape == video.shape and audio.ndim == 2 and len(audio) == len(ids) == len(paths)):
            raise VabError(f"{directory}: {INDEX_FILE} lists {len(ids)} clips but {EMBEDDINGS_FILE} holds "
                           f"{tuple(audio.shape)} / {tuple(video.shape)}")
        index = cls(ids=ids, paths=paths, audio=audio, video=video, labels=record.get("labels") or [],
                    splits=record.get("splits") or [], model_dir=str(record.get("model_dir", "")),
                    model_digest=str(record.get("model_digest") or ""), source=str(record.get("source") or ""),
                    source_split=record.get("source_split"))
        index.check_finite(str(weights))
        return index

    def check_model(self, digest: str, model: str, where: str | Path) -> None:
        """VabError unless the model of weights digest `digest` (named `model`) made this index
        (stored at `where`): another model's embeddings rank with the wrong geometry, silently."""
        if not self.model_digest:
            raise VabError(f"{where}: the index records no model digest (written by an older vab), so the "
                           f"model that made it cannot be checked; embed it again with `vab embed`")
        if digest != self.model_digest:
            raise VabError(f"{model}: not the model that built the index {where} (its weights differ: "
                           f"{digest[:12]} vs {self.model_digest[:12]} recorded, from {self.model_dir or 'unknown'}); "
                           "query with that model, or embed the index again with this one")

    def check_finite(self, where: str) -> None:
        """VabError naming the first clip whose audio or video embedding holds NaN or inf."""
        bad = ~(torch.isfinite(self.audio).all(dim=-1) & torch.isfinite(self.video).all(dim=-1))
        if bool(bad.any()):
            first = int(bad.nonzero()[0])
            more = f" (and {int(bad.sum()) - 1} more)" if int(bad.sum()) > 1 else ""
            raise VabError(f"{where}: the embedding of clip {self.ids[first]!r} is not finite (NaN or inf){more}")


def search(index: Index, query: torch.Tensor, within: str, top: int = 5) -> list[tuple[int, float]]:
    """The `top` clips whose `within` embeddings are closest to `query` ``[W]`` (L2-normalised):
    [(row, cosine)], best first; ties keep index order."""
    if top < 1:
        raise VabError(f"--top must be at least 1, got {top}")
    bank = index.embeddings(within)
    if query.shape != bank.shape[1:]:
        raise VabError(f"query embedding has shape {tuple(query.shape)}, the index {tuple(bank.shape[1:])} "
                       "(embedded with another model?)")
    scores = bank.float() @ query.float()
    order = torch.argsort(-scores, stable=True)[:top]
    return [(int(i), float(scores[i])) for i in order]


def model_digest(model: torch.nn.Module) -> str:
    """SHA-256 of a model's weights (names, dtypes, shapes, bytes): what an index records of
    the model that made it."""
    return tensors_digest({k: v.detach().cpu() for k, v in model.state_dict().items()})


def read_index_record(directory: str | Path) -> dict[str, Any] | None:
    """The JSON record of the index in `directory` (None when there is none or it is unreadable):
    enough to say what it holds without loading its embeddings."""
    try:
        record = json.loads((Path(directory) / INDEX_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def refuse_other_index(out: Path, source: str, split: str | None, embedder: "Embedder | None" = None) -> None:
    """VabError when `out` holds an index of other data (another input or split) or, given the
    `embedder`, of another model (its weights digest): `vab embed` replaces only its own
    index of the same data without --replace."""
    record = read_index_record(out)
    if record is None:
        return
    hint = "pass --replace to replace it, or choose another --out"
    if (record.get("source"), record.get("source_split")) != (source, split):
        made = record.get("source") or "unrecorded data"
        made += f" (split {record['source_split']})" if record.get("source_split") else ""
        raise VabError(f"{out}: holds an index of other data ({made}); {hint}")
    if embedder is not None and record.get("model_digest") != embedder.digest:
        raise VabError(f"{out}: holds an index made by another model ({record.get('model_dir') or 'unrecorded'}); "
                       f"{hint}")


def pair_scores(index: Index) -> torch.Tensor:
    """``[N]`` cosine between each clip's own audio and video embeddings."""
    return (index.audio.float() * index.video.float()).sum(dim=-1)


class Embedder:
    """A model directory (eval mode) turned into a clip -> embeddings function.

    The codec and frame encoder are built only when media files are embedded."""

    def __init__(self, model_dir: str | Path, device: str = "cpu", batch_size: int = 16, model: VAB | None = None):
        """`model_dir`: a model directory or Hub id; `model`: the VAB already loaded from it (a
        classifier's backbone, say), so it is not loaded twice."""
        if model is None:
            self.checkpoint = load(model_dir, device, kind=VAB)
        else:
            self.checkpoint = Checkpoint(model, resolve_model_dir(model_dir), str(model_dir))
        self.model_dir = self.checkpoint.directory
        # what an index records: a Hub id as given (it resolves anywhere), else the folder's absolute path
        self.source = str(model_dir) if hub_id(model_dir) is not None else str(self.model_dir.resolve())
        self.model = self.checkpoint.model.eval()
        self.digest = model_digest(self.model)  # of the weights that embed, a classifier's backbone too
        self.cfg = self.model.config
        self.batch_size = int(batch_size)

    @classmethod
    def for_index(cls, index: Index, where: str | Path, checkpoint: str | Path | None = None,
                  device: str = "cpu") -> "Embedder":
        """The embedder of queries for `index` (stored at `where`): the model it records, or
        `checkpoint`, which must be that model (the same weights digest)."""
        model_dir = checkpoint or index.model_dir
        if not model_dir:
            raise VabError(f"{where}: the index records no model directory; pass --checkpoint for file queries")
        embedder = cls(model_dir, device=device)
        index.check_model(embedder.digest, str(model_dir), where)
        return embedder

    # ------------------------------------------------------------------ tensors
    def embed_batch(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """(audio ``[B, W]``, video ``[B, W]``) for ``tokens`` ``[B, K, T]`` and ``features`` ``[B, F, D]``."""
        with torch.inference_mode():
            a, v = embeddings(self.model, batch)
        return a.float().cpu(), v.float().cpu()

    def embed_one(self, modality: str, value: torch.Tensor) -> torch.Tensor:
        """``[W]`` embedding of tokens ``[K, T]`` (audio) or features ``[F, D]`` (video)."""
        if modality == "audio":
            mode, batch = "audio", {"tokens": value[None]}
        else:
            mode, batch = "visual", {"features": value[None]}
        with torch.inference_mode():
            h = pooled(self.model, batch, mode)
        return F.normalize(h.float(), dim=-1)[0].cpu()

    # ------------------------------------------------------------------ extracted data sets
    def embed_dataset(self, data_dir: str | Path, split: str | None = None,
                      progress: Progress | None = None, block: tuple[int, int] | None = None) -> Index:
        """Every clip (of `split`) of a `vab extract` output, as the model reads it; with
        `block` = [start, stop) only those positions of the split (one process's share)."""
        info = load_infos([data_dir])
        check_matches_config(info, self.cfg, source=str(data_dir))
        if not info.has_visual:
            raise VabError(f"{data_dir}: audio-only data set; embedding needs videos")
        data = VABDataset([data_dir], split, fps=self.cfg.data.fps, duration=self.cfg.data.duration,
                          train=False, levels=self.model.levels)
        positions = range(*(block or (0, len(data))))
        loader = torch.utils.data.DataLoader(torch.utils.data.Subset(data, positions), batch_size=self.batch_size,
                                             collate_fn=collate)
        audio, video, ids = [], [], []
        for batch in loader:
            a, v = self.embed_batch(batch)
            audio.append(a)
            video.append(v)
            ids += batch["id"]
            if progress:
                progress(len(batch["id"]))
        paths, labels, splits = [], [], []
        for n, i in (data.index[k] for k in positions):
            table, _ = data.tables[n]
            paths.append(table.column("path")[i].as_py())
            splits.append(table.column("split")[i].as_py())
            labels.append([info.label_names[c] for c in table.column("labels")[i].as_py()])
        index = Index(ids=ids, paths=paths, audio=torch.cat(audio), video=torch.cat(video), labels=labels,
                      splits=splits, model_dir=self.source, model_digest=self.digest,
                      source=str(Path(data_dir).resolve()), source_split=split)
        index.check_finite(str(data_dir))
        return index

    # ------------------------------------------------------------------ media files
    @property
    def codec(self) -> AudioCodec:
        return self.checkpoint.codec

    @property
    def visual(self) -> VisualEncoder:
        return self.checkpoint.visual

    def _window(self):
        return ExtractConfig(duration=float(self.cfg.data.duration), fps=float(self.cfg.data.fps),
                             max_short_side=int(self.cfg.extract.max_short_side))

    def tokens_of(self, wav: np.ndarray) -> torch.Tensor:
        """Waveform ``[N]`` at the codec's rate -> tokens ``[levels, T]`` (T fixed by the model window)."""
        with torch.inference_mode():
            codes = self.codec.encode(torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)).view(1, 1, -1))
        t = int(self.model.num_audio_frames)
        codes = codes[0, : self.model.levels, :t]
        if codes.shape[-1] < t:  # codecs may drop a trailing partial frame
            codes = torch.cat([codes, codes[:, -1:].expand(-1, t - codes.shape[-1])], dim=-1)
        return codes

    def features_of(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 frames ``[F, H, W, 3]`` -> features ``[F, D]``."""
        return self.visual.encode(frames).float()

    def embed_media(self, path: str | Path, modality: str) -> torch.Tensor:
        """``[W]`` embedding of one modality of a media file (first model window)."""
        batch = self.media_inputs(path, [modality])
        return self.embed_one(modality, batch["tokens" if modality == "audio" else "features"][0])

    def media_inputs(self, path: str | Path, modalities: Iterable[str]) -> dict[str, torch.Tensor]:
        """The first model window of a media file as a batch of one: ``tokens`` ``[1, levels, T]``
        (with "audio" in `modalities`) and ``features`` ``[1, F, D]`` (with "video"); a short
        file's audio is zero-padded and its last frame repeated, as extraction does."""
        path = str(path)
        modalities = set(modalities)
        if not modalities or not modalities <= set(MODALITIES):
            raise VabError(f"modalities {sorted(modalities)}: expected audio and / or video")
        window = self._window()
        info = media.probe(path)  # MediaError names the file and the problem
        batch = {}
        if "audio" in modalities:
            if not info.has_audio:
                raise MediaError(path, "no audio stream")
            wav = media.read_audio(path, self.codec.sample_rate, 0.0, window.duration)
            batch["tokens"] = self.tokens_of(wav)[None]
        if "video" in modalities:
            if not info.has_video:
                raise MediaError(path, "no video stream")
            frames, _ = media.read_frames(path, window.fps, 0.0, window.duration, max_short_side=window.max_short_side)
            if len(frames) == 0 and 0 < info.duration < window.duration:  # shorter than half a frame interval
                frames, _ = media.read_frames(path, 1.0 / info.duration, 0.0, info.duration, window.max_short_side)
            if len(frames) == 0:
                raise MediaError(path, "no decodable video frames")
            want = int(round(window.duration * window.fps))
            if len(frames) < want:  # as extraction does: repeat the last frame
                frames = np.concatenate([frames, np.repeat(frames[-1:], want - len(frames), axis=0)])
            batch["features"] = self.features_of(frames[:want])[None]
        return batch

    def embed_files(self, rows: Iterable[Any], progress: Progress | None = None) -> tuple[Index | None, list[tuple[str, str]]]:
        """Manifest rows (``id``, ``path``, ``labels``, ``split``, ``start``) -> (index of the clips that
        worked or None, [(path, one-line reason)] for the others)."""
        window = self._window()
        _ = (self.codec, self.visual)  # a broken codec or encoder is one error, not one per file
        audio, video, ids, paths, labels, splits = [], [], [], [], [], []
        problems: list[tuple[str, str]] = []
        for row in rows:
            try:
                wav, frames = decode_clip(row.path, window, self.codec.sample_rate, row.start)
                batch = {"tokens": self.tokens_of(wav)[None], "features": self.features_of(frames)[None]}
                a, v = self.embed_batch(batch)
                if not bool(torch.isfinite(a).all() and torch.isfinite(v).all()):
                    raise VabError(f"{row.path}: the embedding of clip {row.id!r} is not finite (NaN or inf)")
            except MediaError as exc:
                problems.append((row.path, exc.problem))
            except VabError as exc:
                problems.append((row.path, str(exc).removeprefix(f"{row.path}: ")))
            except Exception as exc:  # an exotic file or a model failure must not stop a folder
                problems.append((row.path, f"unexpected {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"))
            else:
                audio.append(a)
                video.append(v)
                ids.append(row.id)
                paths.append(row.path)
                labels.append(list(row.labels))
                splits.append(row.split)
            if progress:
                progress(1)
        if not ids:
            return None, problems
        index = Index(ids=ids, paths=paths, audio=torch.cat(audio), video=torch.cat(video), labels=labels,
                      splits=splits, model_dir=self.source, model_digest=self.digest)
        return index, problems


def build_index(source: str, checkpoint: str, *, split: str | None = None, device: str = "cpu",
                batch_size: int = 16, console: Console | None = None, shard: Shard | None = None,
                embedder: Embedder | None = None) -> tuple[Index | None, list[tuple[str, str]]]:
    """(Index | None, [(path, reason)]) for any INPUT `vab embed` accepts; with a
    `vab.sharding.Shard`, of that process's block of the clips only.  `embedder`: the
    :class:`Embedder` of `checkpoint` when the caller built it already."""
    shard = shard or Shard()
    path = Path(source).expanduser()
    if not path.exists():
        raise VabError(f"{source}: no such file or folder")
    embedder = embedder or Embedder(checkpoint, device=device, batch_size=batch_size)
    if is_dataset_dir(path):
        total = len(VABDataset([path], split, train=False))
        if shard.world_size > 1 and console is not None:
            console.print(shard.describe(total, "clips", batch_size), highlight=False)
        start, stop = shard.bounds(total, batch_size)  # whole batches: the batches one process forms
        if start == stop:
            return None, []
        with ClipBar(console, stop - start) as advance:
            return embedder.embed_dataset(path, split, progress=advance, block=(start, stop)), []
    rows, problems = media_rows(path, split)
    if shard.world_size > 1 and console is not None:
        console.print(shard.describe(len(rows), "clips"), highlight=False)
    rows = shard.take(rows)
    problems = problems if shard.is_main else []  # input problems are reported once
    with ClipBar(console, len(rows)) as advance:
        index, failed = embedder.embed_files(rows, progress=advance)
    return index, problems + failed


def media_rows(path: Path, split: str | None) -> tuple[list[ManifestRow], list[tuple[str, str]]]:
    """Manifest rows for a video file, a folder of videos or a manifest file."""
    if path.is_dir() or path.suffix.lower() in MEDIA_SUFFIXES:
        videos, problems = expand_inputs([str(path)])
        names = unique_names(videos)
        rows = [ManifestRow(index=i, id=names[v], path=str(v)) for i, v in enumerate(videos)]
        return rows, problems
    manifest = read_manifest(path)
    if split is not None:
        manifest = manifest.select(split)
    if not manifest.rows:
        raise VabError(f"{path}: no clips" + (f" in split {split!r}" if split else ""))
    return list(manifest.rows), []


class ClipBar:
    """A rich progress bar over clips; yields ``advance(n)``."""

    def __init__(self, console: Console | None, total: int):
        columns = (rich_progress.TextColumn("[bold]clips"), rich_progress.BarColumn(),
                   rich_progress.MofNCompleteColumn(), rich_progress.TimeElapsedColumn())
        self.progress = rich_progress.Progress(*columns, console=console, disable=console is None)
        self.task = self.progress.add_task("clips", total=total)

    def __enter__(self):
        self.progress.start()
        return lambda n: self.progress.advance(self.task, n)

    def __exit__(self, *exc) -> None:
        self.progress.stop()


def is_dataset_dir(path: str | Path) -> bool:
    return (Path(path) / META_FILE).is_file()


def is_index_dir(path: str | Path) -> bool:
    return (Path(path) / INDEX_FILE).is_file()
