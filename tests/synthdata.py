"""A synthetic extracted data set (no media): class-dependent tokens and features.

Class c has its own visual feature direction and its own small set of likely audio
tokens per level, so audio alone, video alone and both predict the class, and the
audio and video of one clip belong together.  Written in the `vab extract` layout
(meta.yaml + data/ + a fitted spectral codec) with the tiny preset's geometry, so every
reader and recipe works.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from vab.config import VisualConfig
from vab.data.store import DATA_DIR, DataInfo, write_part
from vab.visual import visual_dim


def make_synthetic_dataset(
    out: str | Path,
    *,
    classes: int = 4,
    per_class: dict[str, int] | None = None,
    levels: int = 4,
    codebook_size: int = 32,
    frames: int = 8,
    dim: int | None = None,
    frame_rate: float = 50.0,
    duration: float = 4.0,
    seed: int = 0,
    swap_audio: list[int] | None = None,
    visual: VisualConfig | None = None,
) -> Path:
    """Write the data set; `per_class` maps split -> clips per class (default train 16, valid 4,
    test 4).  `swap_audio` lists clip indices whose tokens come from another class.  The
    spectral codec beside it is fitted on one tone per class, so the stored data decodes."""
    per_class = per_class or {"train": 16, "valid": 4, "test": 4}
    visual = visual or VisualConfig()  # default: the offline default encoder, as the tiny preset's
    dim = visual_dim(visual) if dim is None else dim
    rng = np.random.default_rng(seed)
    T = int(round(duration * frame_rate))
    fps = frames / duration
    directions = rng.normal(size=(classes, dim)).astype(np.float32)
    likely = rng.integers(0, codebook_size, size=(classes, levels, 4))
    rows: dict[str, list] = {k: [] for k in ("index", "id", "path", "split", "labels", "start", "source_duration",
                                         "tokens", "features")}
    n = 0
    swap = set(swap_audio or [])
    for split, count in per_class.items():
        for c in range(classes):
            for _ in range(count):
                audio_class = (c + 1) % classes if n in swap else c
                pick = rng.integers(0, 4, size=(levels, T))
                tokens = np.take_along_axis(likely[audio_class], pick, axis=1)
                noise = rng.random((levels, T)) < 0.2
                tokens = np.where(noise, rng.integers(0, codebook_size, size=(levels, T)), tokens).astype(np.int16)
                feats = directions[c] + 0.5 * rng.normal(size=(frames, dim)).astype(np.float32)
                rows["index"].append(n)
                rows["id"].append(f"clip{n:04d}")
                rows["path"].append(f"synthetic/clip{n:04d}.mp4")
                rows["split"].append(split)
                rows["labels"].append([c])
                rows["start"].append(0.0)
                rows["source_duration"].append(duration)
                rows["tokens"].append(tokens)
                rows["features"].append(feats.astype(np.float16))
                n += 1
    info = DataInfo(
        codec={"name": "spectral", "bandwidth": 3.0, "sample_rate": 16000, "frame_rate": frame_rate,
               "n_fft": 1024, "levels": levels, "codebook_size": codebook_size},
        num_codebooks=levels, codebook_size=codebook_size, sample_rate=16000, frame_rate=frame_rate,
        duration=duration, has_visual=True, visual={"name": visual.name, "grid": visual.grid}, visual_dim=dim, fps=fps,
        label_names=[f"class{c}" for c in range(classes)], multi_label=False,
    )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    info.save(out)
    rows["tokens"] = np.stack(rows["tokens"])
    rows["features"] = np.stack(rows["features"])
    write_part(out / DATA_DIR, info, rows)
    fit_codec(classes, levels, codebook_size, frame_rate).save(out)
    return out


def fit_codec(classes: int, levels: int, codebook_size: int, frame_rate: float, sample_rate: int = 16000):
    """A spectral codec fitted on a one-second tone per class (frequencies 220 Hz * 1.5^c)."""
    from vab.codecs.spectral import SpectralCodec

    t = torch.arange(sample_rate) / sample_rate
    n_tones = max(classes, codebook_size // int(frame_rate) + 1)  # enough frames for the k-means
    tones = [0.3 * torch.sin(2 * math.pi * 220.0 * 1.5 ** (c % 8) * (1 + c // 8) * t) for c in range(n_tones)]
    codec = SpectralCodec(sample_rate, frame_rate, n_fft=1024, levels=levels, codebook_size=codebook_size)
    return codec.fit(tones)


def tiny_overrides(path: str | Path, codebook_size: int = 32, fps: float = 2.0) -> list[str]:
    """Config overrides that make the `tiny` preset match the synthetic data set (its frames at
    `fps`: 2 for :func:`make_synthetic_dataset`'s 8 frames in 4 s or 4 in 2 s)."""
    return [f"data.path=[{path}]", f"codec.codebook_size={codebook_size}", "codec.n_fft=1024", f"data.fps={fps}"]
