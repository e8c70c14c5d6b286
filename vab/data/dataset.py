"""Read extracted data sets back for training and evaluation.

Items are dicts of tensors in their stored dtypes (no silent upcast):
``tokens`` int16 ``[K, T]``, ``features`` float16 ``[F, D]`` (absent for audio-only
data), ``labels`` float32 multi-hot ``[C]``, ``id`` str.  Conversion to the model's
dtypes happens on the device, inside the model / objective.

Features may be stored at a higher fps than the model reads (the paper stores
VGGSound at 5 fps and uses 1): training then picks one random stored frame per
model interval, evaluation the middle one.  Clips may also be longer than the
model's window: training takes a random aligned window, evaluation the first.

The random choices are a function of (seed, epoch, item) only, never of a global
RNG, so they are the same in any loader worker and after an exact resume; the
training engine calls :meth:`VABDataset.set_epoch` before each epoch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from vab.config import to_dict
from vab.data.store import DATA_DIR, DataInfo, column_to_numpy, describe_difference, load_dataset_dir
from vab.errors import VabError
from vab.visual import OFFLINE_ENCODERS, visual_dim


def load_infos(paths: Sequence[str | Path]) -> DataInfo:
    """The shared DataInfo of several data sets (label names merged); VabError if their
    extraction settings differ, saying what differs."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not paths:
        raise VabError("no data set given (set data.path=DIR, or several: data.path=[DIR1,DIR2])")
    infos = [DataInfo.load(p) for p in paths]
    first = infos[0]
    for p, info in zip(paths[1:], infos[1:]):
        diff = describe_difference(first.extraction_settings(), info.extraction_settings())
        if diff:
            raise VabError(f"{p}: cannot be mixed with {paths[0]}: {'; '.join(diff[:4])}")
    merged = DataInfo(**{**first.__dict__})
    names = list(first.label_names)
    for info in infos[1:]:
        names += [n for n in info.label_names if n not in names]
    merged.label_names = names
    merged.multi_label = any(i.multi_label for i in infos) or len(infos) > 1 and len(names) > len(first.label_names)
    return merged


def check_matches_config(info: DataInfo, cfg: Any, source: str = "data") -> None:
    """Refuse data whose codec, visual encoder, fps or duration does not fit the model config."""
    problems = []
    codec_keys = ["name", "bandwidth"] + (
        ["sample_rate", "frame_rate", "n_fft", "levels", "codebook_size"] if cfg.codec.name == "spectral" else []
    )
    want_codec = to_dict(cfg.codec)
    for key in codec_keys:
        if info.codec.get(key) != want_codec.get(key):
            problems.append(f"codec.{key}: data {info.codec.get(key)!r}, model {want_codec.get(key)!r}")
    if cfg.model.levels > info.num_codebooks:
        problems.append(f"model.levels {cfg.model.levels} > {info.num_codebooks} codebooks stored")
    if info.has_visual:
        want_visual = to_dict(cfg.visual)
        for key in ("name", "model", "pretrained", "grid") if cfg.visual.name == "clip" else ("name", "grid"):
            if info.visual.get(key) != want_visual.get(key):
                problems.append(f"visual.{key}: data {info.visual.get(key)!r}, model {want_visual.get(key)!r}")
        made_with = info.visual.get("name")
        if made_with != cfg.visual.name and made_with in OFFLINE_ENCODERS:
            # e.g. data extracted with `pixels`, the `tiny` preset's encoder before hog-colour
            problems.append(f"the data was made with visual.name={made_with} visual.grid={info.visual.get('grid')}: "
                            f"train with those overrides, or extract again with --visual {cfg.visual.name}")
        if not problems and cfg.visual.name in OFFLINE_ENCODERS:
            want = visual_dim(cfg.visual)
            if info.visual_dim != want:
                # same settings but another feature size: meta.yaml edited or the features replaced
                problems.append(f"features: data {info.visual_dim}-d, the {cfg.visual.name} encoder (visual.grid="
                                f"{cfg.visual.grid}) gives {want}-d")
        ratio = info.fps / cfg.data.fps if cfg.data.fps else 0
        if cfg.data.fps <= 0 or abs(ratio - round(ratio)) > 1e-6 or round(ratio) < 1:
            problems.append(f"data.fps {cfg.data.fps} must divide the stored fps {info.fps} (train with "
                            f"data.fps={info.fps:g} or extract again with --fps {cfg.data.fps:g})")
    if cfg.data.duration > info.duration + 1e-6:
        problems.append(f"data.duration {cfg.data.duration} s > stored clips of {info.duration} s")
    if problems:
        raise VabError(f"{source} does not match the model config: " + "; ".join(problems))


class VABDataset(torch.utils.data.Dataset):
    """One or more extracted data sets as one torch Dataset.

    Args:
        paths: `vab extract` output directories (their settings must agree).
        split: keep only clips of this split (None = all).
        fps: visual frames per second to return (default: as stored).
        duration: seconds per item (default: as stored).
        train: random frame / window choice (True) or the deterministic middle / start.
        levels: keep only the first `levels` codebooks (default: all stored).
        seed: seeds the training-time random choices (with the epoch and item).
    """

    def __init__(
        self,
        paths: str | Path | Sequence[str | Path],
        split: str | None = None,
        *,
        fps: float | None = None,
        duration: float | None = None,
        train: bool = True,
        levels: int | None = None,
        seed: int = 0,
    ):
        self.paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
        self.info = load_infos(self.paths)
        info = self.info
        self.train = train
        self.seed = int(seed)
        self.epoch = 0
        self.duration = float(duration or info.duration)
        self.levels = levels or info.num_codebooks
        self.fps = float(fps or info.fps)
        if info.has_visual:
            ratio = info.fps / self.fps
            if abs(ratio - round(ratio)) > 1e-6 or round(ratio) < 1:
                raise VabError(f"{self.paths[0]}: requested fps {self.fps} must divide the stored fps {info.fps}")
            self.stride = int(round(ratio))
        if self.duration > info.duration + 1e-6:
            raise VabError(f"{self.paths[0]}: requested {self.duration} s > stored clips of {info.duration} s")
        self.num_tokens = int(round(self.duration * info.frame_rate))
        self.num_frames = int(round(self.duration * self.fps)) if info.has_visual else 0
        # window starts must fall on instants where both token and frame indices are whole
        step = 1.0 / self.fps if info.has_visual else 1.0 / info.frame_rate
        self.window_starts = max(0, int(np.floor((info.duration - self.duration) / step + 1e-6))) + 1
        self.window_step = step

        self.tables = []  # (arrow table, row numbers in this split, label id remap)
        self.index: list[tuple[int, int]] = []
        for n, path in enumerate(self.paths):
            data_dir = path / DATA_DIR
            if not data_dir.exists():
                raise VabError(f"{path}: extraction has not finished (no {DATA_DIR}/); re-run `vab extract`")
            try:
                ds = load_dataset_dir(data_dir)
            except Exception as exc:
                raise VabError(f"{data_dir}: unreadable data set ({type(exc).__name__})") from None
            splits = ds["split"] if split is not None else None
            rows = [i for i in range(len(ds)) if split is None or splits[i] == split]
            names = DataInfo.load(path).label_names
            remap = np.array([info.label_names.index(x) for x in names], dtype=np.int64)
            self.tables.append((ds.data.table, remap))
            self.index += [(n, i) for i in rows]
        if not self.index:
            raise VabError(f"{', '.join(map(str, self.paths))}: no clips" + (f" in split {split!r}" if split else ""))

    def __len__(self) -> int:
        return len(self.index)

    def set_epoch(self, epoch: int) -> None:
        """Vary the training-time random choices from epoch to epoch."""
        self.epoch = int(epoch)

    @property
    def num_classes(self) -> int:
        return len(self.info.label_names)

    def _row(self, table, column: str, i: int, dtype) -> np.ndarray:
        return column_to_numpy(table.column(column).slice(i, 1), dtype)[0]

    def __getitem__(self, item: int) -> dict[str, Any]:
        n, i = self.index[item]
        table, remap = self.tables[n]
        info = self.info
        rng = np.random.default_rng([self.seed, self.epoch, item]) if self.train else None
        start = 0
        if rng is not None and self.window_starts > 1:
            start = int(rng.integers(self.window_starts))
        t0 = start * self.window_step
        tok0 = int(round(t0 * info.frame_rate))
        tokens = self._row(table, "tokens", i, np.int16)[: self.levels, tok0 : tok0 + self.num_tokens]
        labels = np.zeros(self.num_classes, dtype=np.float32)
        ids = table.column("labels")[i].as_py()
        labels[remap[ids]] = 1.0
        out: dict[str, Any] = {
            "tokens": torch.from_numpy(np.array(tokens)),  # a writable copy of the memory-mapped row
            "labels": torch.from_numpy(labels),
            "id": table.column("id")[i].as_py(),
        }
        if info.has_visual:
            stored = self._row(table, "features", i, np.float16)
            f0 = int(round(t0 * info.fps))
            if rng is not None and self.stride > 1:
                offsets = rng.integers(self.stride, size=self.num_frames)
            else:
                offsets = np.full(self.num_frames, self.stride // 2)
            pick = f0 + np.arange(self.num_frames) * self.stride + offsets
            out["features"] = torch.from_numpy(np.ascontiguousarray(stored[pick]))
        return out


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack items: tokens ``[B, K, T]`` int16, features ``[B, F, D]`` float16, labels ``[B, C]``."""
    out: dict[str, Any] = {"id": [x["id"] for x in items]}
    for key in ("tokens", "features", "labels"):
        if key in items[0]:
            out[key] = torch.stack([x[key] for x in items])
    return out
