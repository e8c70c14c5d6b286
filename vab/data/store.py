"""The on-disk layout of an extracted data set.

```
DIR/meta.yaml           codec, visual encoder, fps, duration, label names (DataInfo)
DIR/codec.safetensors   the fitted spectral codec, when that codec is used
DIR/data/               Hugging Face `datasets` (save_to_disk): the merged clips
DIR/parts/<name>/       parts written during extraction, merged into data/ at the end
DIR/failures.jsonl      one {"index", "id", "path", "reason"} line per clip that failed
```

Columns: `index` (manifest row), `id`, `path`, `split`, `labels` (class ids),
`start` (seconds into `path` where the clip was cut), `source_duration` (seconds of
the whole file, NaN when the container does not say), `tokens` Array2D int16 ``[K, T]``, `features` Array2D float16 ``[F, D]`` (absent for
audio-only data).  Format 1 (before `start` and `source_duration` were stored) is still
read; :func:`clip_starts` says what is known of its starts.  Arrays are read back through Arrow in their stored dtypes:
`datasets`' numpy/torch formatters would upcast to int64 / float32.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import yaml
from omegaconf import OmegaConf

from vab.errors import VabError
from vab.utils import atomic_path

META_FILE = "meta.yaml"
DATA_DIR = "data"
PARTS_DIR = "parts"
FAILURES_FILE = "failures.jsonl"
FORMAT_VERSION = 2  # 2: per-clip `start` and `source_duration` columns


@dataclass
class DataInfo:
    """What a data set holds; training refuses data whose info disagrees with the model."""

    codec: dict[str, Any]  # CodecConfig fields
    num_codebooks: int  # K stored
    codebook_size: int
    sample_rate: int  # Hz
    frame_rate: float  # audio tokens per second
    duration: float  # seconds per clip
    has_visual: bool
    visual: dict[str, Any] = field(default_factory=dict)  # VisualConfig fields
    visual_dim: int = 0  # D
    fps: float = 0.0  # stored visual frames per second
    label_names: list[str] = field(default_factory=list)
    multi_label: bool = False
    version: int = FORMAT_VERSION

    @property
    def num_tokens(self) -> int:
        return int(round(self.duration * self.frame_rate))

    @property
    def num_frames(self) -> int:
        return int(round(self.duration * self.fps)) if self.has_visual else 0

    def extraction_settings(self) -> dict[str, Any]:
        """The fields that must agree for two runs to write into the same directory."""
        keep = asdict(self)
        keep.pop("label_names")
        keep.pop("multi_label")
        return keep

    def save(self, directory: str | Path) -> None:
        with atomic_path(Path(directory) / META_FILE) as tmp:
            tmp.write_text(OmegaConf.to_yaml(OmegaConf.create(asdict(self))))

    @classmethod
    def load(cls, directory: str | Path) -> "DataInfo":
        path = Path(directory) / META_FILE
        if not path.exists():
            raise VabError(f"{directory}: not an extracted data set (no {META_FILE}); run `vab extract` first")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
            return cls(**raw)
        except (TypeError, yaml.YAMLError) as exc:
            raise VabError(f"{path}: unreadable data set metadata ({str(exc).splitlines()[0]})") from None


def describe_difference(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """Human-readable list of the keys whose values differ between two nested dicts."""
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += describe_difference(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}: {va!r} vs {vb!r}")
    return out


def features_schema(info: DataInfo):
    """The `datasets.Features` of one stored clip."""
    cols = {
        "index": datasets.Value("int64"),
        "id": datasets.Value("string"),
        "path": datasets.Value("string"),
        "split": datasets.Value("string"),
        "labels": datasets.Sequence(datasets.Value("int32")),
        "start": datasets.Value("float64"),
        "source_duration": datasets.Value("float64"),
        "tokens": datasets.Array2D((info.num_codebooks, info.num_tokens), "int16"),
    }
    if info.has_visual:
        cols["features"] = datasets.Array2D((info.num_frames, info.visual_dim), "float16")
    return datasets.Features(cols)


def quiet_datasets() -> None:
    """`datasets` prints a progress bar for every save; vab shows its own progress."""
    datasets.disable_progress_bars()


def write_part(directory: str | Path, info: DataInfo, rows: dict[str, list | np.ndarray]) -> None:
    """Write one part atomically (a killed write leaves no part that looks complete)."""
    quiet_datasets()

    ds = datasets.Dataset.from_dict(rows, features=features_schema(info))
    with atomic_path(directory, is_dir=True) as tmp:
        ds.save_to_disk(str(tmp))


def load_dataset_dir(directory: str | Path):
    return datasets.load_from_disk(str(directory))


def clip_spans(table) -> tuple[list[float | None], list[float | None]]:
    """(start seconds, source file seconds) of every row of a stored table; None where the data
    set does not say (format 1 stored neither; `source_duration` is also None when the container
    gave no duration)."""
    n = table.num_rows
    if "start" not in table.column_names:
        return [None] * n, [None] * n
    lengths = [None if x is None or math.isnan(x) else float(x) for x in table.column("source_duration").to_pylist()]
    return [float(x) for x in table.column("start").to_pylist()], lengths


def column_to_numpy(column, dtype: str | np.dtype) -> np.ndarray:
    """An Arrow Array2D / list column -> numpy ``[N, *shape]`` in the stored dtype (no upcast)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    storage = column.storage if isinstance(column, pa.ExtensionArray) else column
    n = len(storage)
    inner = storage.flatten()
    rows = len(inner) // max(n, 1)
    values = inner.flatten().to_numpy(zero_copy_only=False)
    return values.astype(dtype, copy=False).reshape(n, rows, -1)


def read_failures(directory: str | Path) -> list[dict[str, Any]]:
    path = Path(directory) / FAILURES_FILE
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a kill mid-append: that clip is simply retried
    return out
