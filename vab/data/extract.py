"""Videos -> audio tokens + frame features, stored once (docs/ARCHITECTURE.md, "Data contracts").

One function, :func:`extract`, serves `vab extract` (one process) and
`accelerate launch recipes/extract.py` (many): each process takes a disjoint
shard of the clips not done yet, decodes them in loader workers, runs the codec
and the visual encoder on batches, and writes a part every `chunk_size` clips.
The main process merges the parts into ``DIR/data`` at the end.

Resumable: a part is the unit of work; it is written atomically, and a re-run
skips every clip already in ``data/``, in a part, or in ``failures.jsonl``.
A killed run therefore loses at most the clips of its unwritten parts, and a
re-run redoes exactly those.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import datasets
import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from vab import media
from vab.codecs import build_codec
from vab.config import CodecConfig, ExtractConfig, VisualConfig, to_dict
from vab.data.manifest import AUDIO_SUFFIXES, Manifest, ManifestRow
from vab.data.store import (
    DATA_DIR,
    FAILURES_FILE,
    META_FILE,
    PARTS_DIR,
    DataInfo,
    describe_difference,
    load_dataset_dir,
    quiet_datasets,
    read_failures,
    write_part,
)
from vab.errors import MediaError, VabError, describe
from vab.filenames import CODEC_FILE
from vab.files import same_file
from vab.utils import atomic_path, check_writable_dir, pick_device
from vab.visual import build_visual_encoder
from vab.workers import start_workers


@dataclass
class ExtractSummary:
    total: int = 0  # clips in the manifest
    skipped: int = 0  # already done by an earlier run
    extracted: int = 0  # written by this run
    failed: int = 0  # failed in this run
    failed_before: int = 0  # recorded by an earlier run (not retried)
    seconds: float = 0.0
    decode_seconds: float = 0.0  # summed over clips (in loader workers when num_workers > 0)
    codec_seconds: float = 0.0
    visual_seconds: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def clips_per_second(self) -> float:
        return (self.extracted + self.failed) / self.seconds if self.seconds > 0 else 0.0


def is_audio_only(manifest: Manifest) -> bool:
    """A manifest whose every file is an audio file gives tokens without features."""
    return bool(manifest.rows) and all(Path(r.path).suffix.lower() in AUDIO_SUFFIXES for r in manifest.rows)


class _ClipDecoder(torch.utils.data.Dataset):
    """Decodes one manifest row into a fixed-length waveform and frame window."""

    def __init__(self, rows: list[ManifestRow], cfg: ExtractConfig, sample_rate: int, audio_only: bool):
        self.rows, self.cfg, self.sample_rate, self.audio_only = rows, cfg, sample_rate, audio_only

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = self.rows[i]
        t0 = time.perf_counter()
        out: dict[str, Any] = {"row": row, "wav": None, "frames": None, "error": None, "source_duration": None}
        try:
            not_utf8 = [name for name, text in (("file name", row.path), ("id", row.id)) if not _is_utf8(text)]
            if not_utf8:  # the data set stores text as UTF-8: this clip fails, not the whole part
                raise MediaError(row.path, f"the {not_utf8[0]} is not valid UTF-8 (rename the file)")
            info = media.probe(row.path)
            out["source_duration"] = info.duration
            out["wav"], out["frames"] = decode_clip(row.path, self.cfg, self.sample_rate, row.start, self.audio_only,
                                                    info=info)
        except MediaError as exc:
            out["error"] = exc.problem
        except Exception as exc:  # a decoder bug or an exotic file must not stop a long run
            out["error"] = describe(exc)
        out["decode_seconds"] = time.perf_counter() - t0
        return out


def _is_utf8(text: str) -> bool:
    """False for a str holding lone surrogates (a file name that was not UTF-8 on disk)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def decode_clip(
    path: str, cfg: ExtractConfig, sample_rate: int, start: float = 0.0, audio_only: bool = False, *, info=None
) -> tuple[np.ndarray, np.ndarray | None]:
    """The clip's waveform ``[N]`` float32 at `sample_rate` (zero-padded to the duration) and
    its frames ``[F, H, W, 3]`` uint8 at ``cfg.fps`` (the last frame repeated when short).
    `info`: the file's :func:`vab.media.probe`, when the caller has it already."""
    info = info if info is not None else media.probe(path)
    if not info.has_audio:
        raise MediaError(path, "no audio stream")
    if not audio_only and not info.has_video:
        raise MediaError(path, "no video stream")
    if info.duration is not None and info.duration <= start:
        raise MediaError(path, f"clip start {start:g} s is past the end ({info.duration:.2f} s)")
    t1 = start + cfg.duration
    wav = media.read_audio(path, sample_rate, start, t1)
    if audio_only:
        return wav, None
    frames, _ = media.read_frames(path, cfg.fps, start, t1, max_short_side=cfg.max_short_side)
    want = int(round(cfg.duration * cfg.fps))
    if len(frames) == 0 and info.duration is not None and 0 < info.duration - start < cfg.duration:
        # a video shorter than half a frame interval (one frame, a blink): no sample time falls
        # inside it, so take the frame at its middle (repeated below like any short video's)
        span = info.duration - start
        frames, _ = media.read_frames(path, 1.0 / span, start, start + span, max_short_side=cfg.max_short_side)
    if len(frames) == 0:
        raise MediaError(path, "no decodable video frames")
    if len(frames) < want:  # short video: repeat the last frame, as the paper does
        frames = np.concatenate([frames, np.repeat(frames[-1:], want - len(frames), axis=0)])
    return wav, frames[:want]


def _collate(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return items


def _die_with_parent(_worker_id: int) -> None:
    """A decoding worker whose parent was killed would block forever on a full result
    pipe (holding its memory); on Linux, ask the kernel to kill it with the parent."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def _done_ids(out: Path) -> tuple[set[str], set[str]]:
    """Ids already stored (data/ and parts/) and ids recorded as failures."""
    stored: set[str] = set()
    for d in _stored_dirs(out):
        stored.update(load_dataset_dir(d)["id"])
    failed = {f["id"] for f in read_failures(out)}
    return stored, failed


def refuse_changed_rows(out: Path, manifest: Manifest, label_ids: dict[str, int]) -> None:
    """VabError listing the clips stored under an id whose manifest row now gives another
    path, labels or split (keeping them would keep stale labels silently)."""
    rows = {r.id: r for r in manifest.rows}
    changed: list[str] = []
    for d in _stored_dirs(out):
        table = load_dataset_dir(d).select_columns(["id", "path", "labels", "split"]).to_dict()
        for clip_id, path, labels, split in zip(table["id"], table["path"], table["labels"], table["split"]):
            row = rows.get(clip_id)
            if row is None:
                continue
            what = [name for name, old, new in (
                ("path", path, path if path == row.path or same_file(path, row.path) else row.path),
                ("labels", sorted(labels), sorted(label_ids[n] for n in row.labels if n in label_ids)),
                ("split", split or "", row.split or ""),
            ) if old != new]
            if what:
                changed.append(f"{clip_id} ({', '.join(what)})")
    if changed:
        shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        raise VabError(f"{out}: {len(changed)} manifest row(s) changed since they were extracted: {shown}; "
                       "extract into another --out (or delete the folder) to use the new rows")


def changed_failures(out: Path, manifest: Manifest) -> set[str]:
    """Ids recorded as failures whose manifest row now names another file: tried again."""
    paths = {r.id: r.path for r in manifest.rows}
    return {f["id"] for f in read_failures(out)
            if f["id"] in paths and f.get("path") != paths[f["id"]] and not same_file(f.get("path", ""), paths[f["id"]])}


def _holds_clips(out: Path) -> bool:
    return any(len(load_dataset_dir(d)) for d in _stored_dirs(out))


def _start_over_if_empty(out: Path, manifest: Manifest, codec_cfg: CodecConfig, visual_cfg: VisualConfig,
                         cfg: ExtractConfig, audio_only: bool) -> None:
    """A folder where no clip was ever stored (say every clip failed) is not bound to its
    first settings: a run with other settings removes its meta.yaml, fitted codec, empty
    data/ and failures.jsonl and starts afresh."""
    if not (out / META_FILE).exists() or _holds_clips(out):
        return
    old = DataInfo.load(out)
    new = {"codec": to_dict(codec_cfg), "visual": {} if audio_only else to_dict(visual_cfg),
           "duration": float(cfg.duration), "fps": 0.0 if audio_only else float(cfg.fps), "has_visual": not audio_only,
           "label_names": list(manifest.label_names)}
    if any(getattr(old, k) != v for k, v in new.items()):
        for name in (DATA_DIR, PARTS_DIR):  # empty: no clip was stored
            shutil.rmtree(out / name, ignore_errors=True)
        for name in (META_FILE, FAILURES_FILE, CODEC_FILE):
            (out / name).unlink(missing_ok=True)


def _stored_dirs(out: Path) -> list[Path]:
    dirs = [out / DATA_DIR] if (out / DATA_DIR).exists() else []
    parts = out / PARTS_DIR
    if parts.exists():
        dirs += sorted(p for p in parts.iterdir() if p.is_dir() and not p.name.startswith("."))
    return dirs


def _recover_data_dir(out: Path) -> None:
    """Finish a merge that was killed between moving the old data away and renaming the new."""
    old = out / f"{DATA_DIR}.old"
    if old.exists():
        if not (out / DATA_DIR).exists():
            os.replace(old, out / DATA_DIR)
        else:
            shutil.rmtree(old)


def _append_failures(out: Path, failures: list[dict[str, Any]]) -> None:
    if not failures:
        return
    with open(out / FAILURES_FILE, "a") as fh:
        for f in failures:
            fh.write(json.dumps(f) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def build_info(
    codec, visual, codec_cfg: CodecConfig, visual_cfg: VisualConfig, cfg: ExtractConfig, manifest: Manifest, audio_only: bool
) -> DataInfo:
    codec_fields = to_dict(codec_cfg)
    if codec_cfg.name == "spectral":
        codec_fields["path"] = None  # the data set holds its own copy (keep_codec_file): where it came from is no setting
    return DataInfo(
        codec=codec_fields,
        num_codebooks=codec.num_codebooks,
        codebook_size=codec.codebook_size,
        sample_rate=codec.sample_rate,
        frame_rate=float(codec.frame_rate),
        duration=float(cfg.duration),
        has_visual=not audio_only,
        visual={} if audio_only else to_dict(visual_cfg),
        visual_dim=0 if audio_only else visual.dim,
        fps=0.0 if audio_only else float(cfg.fps),
        label_names=list(manifest.label_names),
        multi_label=manifest.multi_label,
    )


def _check_or_write_info(out: Path, info: DataInfo, is_main: bool) -> None:
    if (out / "meta.yaml").exists():
        old = DataInfo.load(out)
        diff = describe_difference(old.extraction_settings(), info.extraction_settings())
        if diff:
            raise VabError(
                f"{out}: already holds data extracted with other settings ({'; '.join(diff[:4])}); "
                "use another --out directory"
            )
        if old.label_names != info.label_names:
            raise VabError(f"{out}: already holds data with other label names; use another --out directory")
    elif is_main:
        info.save(out)


def keep_codec_file(codec_cfg: CodecConfig, out: Path) -> None:
    """A spectral codec fitted elsewhere (``codec.path``, e.g. another data set's) is copied into
    `out` byte for byte: the data set then decodes on its own, and can be trained together with
    the one it came from (they must hold the same codec file)."""
    if codec_cfg.name != "spectral" or not codec_cfg.path or (out / CODEC_FILE).exists():
        return
    with atomic_path(out / CODEC_FILE) as tmp:
        shutil.copyfile(Path(codec_cfg.path).expanduser(), tmp)


def fit_spectral_codec(codec, manifest: Manifest, cfg: ExtractConfig) -> int:
    """Fit the offline spectral codec on the audio of the first ``cfg.codec_fit_clips`` readable
    training clips.  Returns the number of clips used."""
    rows = [r for r in manifest.rows if r.split in (None, "", "train")] or manifest.rows
    wavs = []
    for row in rows:
        if len(wavs) >= cfg.codec_fit_clips:
            break
        try:
            wavs.append(media.read_audio(row.path, codec.sample_rate, row.start, row.start + cfg.duration))
        except MediaError:
            continue
    if not wavs:
        raise VabError(f"{manifest.source}: no readable audio to fit the spectral codec on")
    codec.fit([torch.from_numpy(w) for w in wavs])
    return len(wavs)


def extract(
    manifest: Manifest,
    out_dir: str | Path,
    codec_cfg: CodecConfig,
    visual_cfg: VisualConfig,
    cfg: ExtractConfig,
    *,
    rank: int = 0,
    world_size: int = 1,
    barrier: Callable[[], None] = lambda: None,
    retry_failed: bool = False,
    progress: bool = True,
    console=None,
) -> ExtractSummary:
    """Extract every clip of `manifest` into `out_dir` (see the module docstring).

    With several processes, call it on each with its `rank`, the `world_size` and a
    `barrier` (e.g. ``accelerator.wait_for_everyone``); the summary of rank 0 covers
    the merge.  Raises VabError for problems with the whole run (settings mismatch,
    unwritable directory); per-clip problems go to ``failures.jsonl``.
    """
    start_time = time.perf_counter()
    out = Path(out_dir)
    is_main = rank == 0
    audio_only = _check_request(manifest, out, cfg)
    if is_main and out.is_dir():
        _recover_data_dir(out)
        _start_over_if_empty(out, manifest, codec_cfg, visual_cfg, cfg, audio_only)
    barrier()

    device = pick_device(cfg.device, "extract.device")
    codec, visual = _encoders(out, manifest, codec_cfg, visual_cfg, cfg, audio_only, rank, barrier)
    codec = codec.to(device).eval()
    info = build_info(codec, visual, codec_cfg, visual_cfg, cfg, manifest, audio_only)
    _check_or_write_info(out, info, is_main)
    barrier()

    todo, summary = _plan(out, manifest, info.label_names, retry_failed)
    shard = todo[rank::world_size]
    parts = _Parts(out, info, rank)
    # workers forked before the progress bar starts its refresh thread, whose locks they must not inherit
    batches = start_workers(_loader(shard, cfg, codec.sample_rate, audio_only))
    with _progress(progress and is_main, console) as bar:
        task = bar.add_task("extracting", total=len(shard))
        for batch in batches:
            _extract_batch(batch, codec, visual, device, parts, summary)
            if parts.pending >= cfg.chunk_size:
                parts.flush()
            bar.advance(task, len(batch))
        parts.flush()

    barrier()
    if is_main:
        merge_parts(out)
    barrier()
    summary.reasons = dict(parts.reasons)
    summary.seconds = time.perf_counter() - start_time
    return summary


def _check_request(manifest: Manifest, out: Path, cfg: ExtractConfig) -> bool:
    """Refuse a run that cannot start (nothing is created); returns whether it is audio only."""
    check_writable_dir(out)  # creates nothing: a refused run leaves no folder behind
    if not manifest.rows:
        raise VabError(f"{manifest.source}: the manifest lists no clips")
    return cfg.audio_only or is_audio_only(manifest)


def _encoders(out: Path, manifest: Manifest, codec_cfg: CodecConfig, visual_cfg: VisualConfig, cfg: ExtractConfig,
              audio_only: bool, rank: int, barrier: Callable[[], None]):
    """(codec, frame encoder or None): built from settings known good, then the folder is made
    and a spectral codec fitted on the manifest's training clips (by the main process; the
    others read the fitted one)."""
    is_main = rank == 0
    codec = build_codec(codec_cfg, directory=out)
    visual = None if audio_only else build_visual_encoder(visual_cfg)
    _make_folder(out, rank)
    if is_main:
        keep_codec_file(codec_cfg, out)
    if getattr(codec, "is_fitted", True) is False:
        if is_main:
            fit_spectral_codec(codec, manifest, cfg)
            codec.save(out)
        barrier()
        if not is_main:
            codec = build_codec(codec_cfg, directory=out)
    return codec, visual


def _make_folder(out: Path, rank: int) -> None:
    """Create `out` and prove a file can be written in it (one line when not)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe_file = out / f".write-test-{rank}"
        probe_file.write_text("ok")
        probe_file.unlink()
    except OSError as exc:
        raise VabError(f"{out}: cannot write here ({exc.strerror or exc})") from None


def _plan(out: Path, manifest: Manifest, label_names: list[str], retry_failed: bool
          ) -> tuple[list[ManifestRow], ExtractSummary]:
    """(rows still to extract, the summary's counts of what earlier runs did).  Stored rows
    whose manifest row changed are refused; failures of a row that now names another file
    (or all, with `retry_failed`) are tried again."""
    label_ids = {name: i for i, name in enumerate(label_names)}
    stored, failed_ids = _done_ids(out)
    refuse_changed_rows(out, manifest, label_ids)
    failed_ids -= changed_failures(out, manifest)
    if retry_failed:
        failed_ids = set()
    todo = [r for r in manifest.rows if r.id not in stored and r.id not in failed_ids]
    summary = ExtractSummary(
        total=len(manifest.rows),
        skipped=sum(r.id in stored for r in manifest.rows),
        failed_before=sum(r.id in failed_ids and r.id not in stored for r in manifest.rows),
    )
    return todo, summary


def _loader(rows: list[ManifestRow], cfg: ExtractConfig, sample_rate: int, audio_only: bool):
    """Batches (lists) of decoded clips, decoded in `cfg.num_workers` worker processes."""
    return torch.utils.data.DataLoader(
        _ClipDecoder(rows, cfg, sample_rate, audio_only),
        batch_size=max(1, cfg.batch_size),
        num_workers=cfg.num_workers,
        collate_fn=_collate,
        worker_init_fn=_die_with_parent,
    )


class _Parts:
    """Extracted clips and failures of one process, written a part at a time (the unit a
    re-run resumes from): a part of the data set under ``parts/`` and the failures appended
    to ``failures.jsonl``."""

    COLUMNS = ("index", "id", "path", "split", "labels", "start", "source_duration", "tokens", "features")

    def __init__(self, out: Path, info: DataInfo, rank: int):
        self.out, self.info, self.rank = out, info, rank
        self.label_ids = {name: i for i, name in enumerate(info.label_names)}
        self.rows: dict[str, list] = {k: [] for k in self.COLUMNS}
        self.failures: list[dict[str, Any]] = []
        self.reasons: Counter[str] = Counter()

    @property
    def pending(self) -> int:
        """Clips and failures not written yet."""
        return len(self.rows["id"]) + len(self.failures)

    def add(self, item: dict[str, Any], tokens: np.ndarray, features: np.ndarray | None) -> None:
        """One extracted clip: tokens ``[K, T]`` int16, features ``[F, D]`` float16 or None."""
        row, length = item["row"], item["source_duration"]
        values = {
            "index": row.index, "id": row.id, "path": row.path, "split": row.split or "",
            "labels": [self.label_ids[name] for name in row.labels], "start": float(row.start),
            "source_duration": float("nan") if length is None else float(length), "tokens": tokens,
        }
        if features is not None:
            values["features"] = features
        for k, v in values.items():
            self.rows[k].append(v)

    def fail(self, item: dict[str, Any]) -> None:
        row = item["row"]
        self.reasons[item["error"]] += 1
        self.failures.append({"index": row.index, "id": row.id, "path": row.path, "reason": item["error"]})

    def flush(self) -> None:
        if self.rows["id"]:
            rows = {k: v for k, v in self.rows.items() if k != "features" or self.info.has_visual}
            rows["tokens"] = np.stack(rows["tokens"])
            if self.info.has_visual:
                rows["features"] = np.stack(rows["features"])
            write_part(self.out / PARTS_DIR / f"r{self.rank:03d}-{self.rows['index'][0]:09d}", self.info, rows)
        _append_failures(self.out, self.failures)
        for v in self.rows.values():
            v.clear()
        self.failures.clear()


def _extract_batch(batch: list[dict[str, Any]], codec, visual, device, parts: _Parts, summary: ExtractSummary) -> None:
    """Encode the decoded clips of `batch` and hand each clip, or its failure, to `parts`."""
    good = [b for b in batch if b["error"] is None]
    if good:
        good, tokens, features = _encode_each_or_alone(codec, visual, good, device, summary)
    for b in batch:
        summary.decode_seconds += b["decode_seconds"]
        if b["error"] is not None:
            parts.fail(b)
    for j, b in enumerate(good):
        parts.add(b, tokens[j], None if features is None else features[j])
    summary.extracted += len(good)
    summary.failed += len(batch) - len(good)


def _encode_each_or_alone(codec, visual, items, device, summary: ExtractSummary):
    """(items encoded, their tokens, their features): the batch at once, or, when the codec
    or encoder fails on it, each clip alone, so one odd clip is one failure (its item's
    ``error`` set) and the others are kept."""
    try:
        return (items, *_encode_batch(codec, visual, items, device, summary))
    except Exception as exc:
        if len(items) == 1:
            items[0]["error"] = describe(exc)
            return [], None, None
    done, tokens, features = [], [], []
    for item in items:
        try:
            t, f = _encode_batch(codec, visual, [item], device, summary)
        except Exception as exc:
            item["error"] = describe(exc)
            continue
        done.append(item)
        tokens.append(t[0])
        features.append(None if f is None else f[0])
    if not done:
        return [], None, None
    return done, np.stack(tokens), None if features[0] is None else np.stack(features)


def _encode_batch(codec, visual, items, device, summary: ExtractSummary) -> tuple[np.ndarray, np.ndarray | None]:
    t0 = time.perf_counter()
    wav = torch.from_numpy(np.stack([b["wav"] for b in items]))[:, None].to(device)
    with torch.inference_mode():
        codes = codec.encode(wav)
    if codes.max() > np.iinfo(np.int16).max:
        raise VabError(f"codec {codec.name}: codes exceed the int16 storage range")
    tokens = codes.to(torch.int16).cpu().numpy()
    summary.codec_seconds += time.perf_counter() - t0
    if visual is None:
        return tokens, None
    t0 = time.perf_counter()
    # frames of clips with equal frame sizes go through the encoder together
    features: list[np.ndarray | None] = [None] * len(items)
    by_shape: dict[tuple, list[int]] = {}
    for j, b in enumerate(items):
        by_shape.setdefault(b["frames"].shape, []).append(j)
    for idx in by_shape.values():
        frames = np.concatenate([items[j]["frames"] for j in idx])
        feats = visual.encode(frames).to(torch.float16).numpy()
        per = len(items[idx[0]]["frames"])
        for n, j in enumerate(idx):
            features[j] = feats[n * per : (n + 1) * per]
    summary.visual_seconds += time.perf_counter() - t0
    return tokens, np.stack(features)  # type: ignore[arg-type]


def merge_parts(out: str | Path) -> int:
    """Merge ``data/`` and every part into a new ``data/`` sorted by manifest row, then
    drop the parts and de-duplicate ``failures.jsonl``.  Returns the number of clips."""
    out = Path(out)
    _recover_data_dir(out)
    dirs = _stored_dirs(out)
    parts = [d for d in dirs if d.parent.name == PARTS_DIR]
    pieces = [load_dataset_dir(d) for d in dirs]
    if parts and pieces:  # (no clip at all: no data/, which `datasets` could not read back empty)
        merged = datasets.concatenate_datasets(pieces).sort("index")
        quiet_datasets()
        tmp = out / f".{DATA_DIR}.merging"
        if tmp.exists():
            shutil.rmtree(tmp)
        merged.save_to_disk(str(tmp))
        if (out / DATA_DIR).exists():
            os.replace(out / DATA_DIR, out / f"{DATA_DIR}.old")
        os.replace(tmp, out / DATA_DIR)
        _recover_data_dir(out)
        for p in parts:
            shutil.rmtree(p)
    stored = set(load_dataset_dir(out / DATA_DIR)["id"]) if (out / DATA_DIR).exists() else set()
    failures = {f["id"]: f for f in read_failures(out) if f["id"] not in stored}
    if (out / FAILURES_FILE).exists():
        with atomic_path(out / FAILURES_FILE) as tmp_file:
            tmp_file.write_text("".join(json.dumps(f) + "\n" for f in sorted(failures.values(), key=lambda f: f["index"])))
    return len(stored)


def _progress(enabled: bool, console=None):
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        console=console,
        transient=False,
    )


def summary_dict(summary: ExtractSummary) -> dict[str, Any]:
    out = asdict(summary)
    out["clips_per_second"] = summary.clips_per_second
    return out
