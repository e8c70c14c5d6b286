"""Per-clip evaluation records: what scoring one clip's audio produced, kept on disk so
that a killed evaluation (one process or many) re-run with the same command redoes only
the clips that have no record, and so that the main process of a sharded run can merge
the other processes' clips.

    OUT/records/<side>-<key>/<clip>.npz

`side` is ``real`` or a model's label; `key` is a hash of every setting the scores depend
on (scorers, sampling, checkpoint files, real-audio mode ...), so records made under other
settings are never reused.  A record holds the FAD embeddings ``[N, D]`` (float32), the KL
label distribution ``[C]`` when a classifier is used, and a JSON header: the clip it was
made for (id, file, start, duration) plus numbers such as the generation wall time.  Each
file is written to a temporary name and renamed, so a record is whole or absent.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from vab.utils import atomic_path

RECORDS_DIR = "records"
#: what reading a damaged record raises: a 0-byte file (EOFError), a truncated one
#: (BadZipFile), a file that is not a record (ValueError, KeyError ...)
DAMAGED = (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile)


def settings_key(settings: dict[str, Any]) -> str:
    """A short stable hash of JSON-able `settings`."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def files_stamp(folder: str | os.PathLike) -> dict[str, list[int]]:
    """{file name: [size, mtime ns]} of the files in a model folder: a model retrained into
    the same folder gets new records."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    return {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(folder.iterdir()) if p.is_file()}


def safe_name(text: str) -> str:
    """`text` as one file-name component (other characters become ``_``)."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)


class RecordStore:
    """The records of one side (real audio or one model) under one set of settings."""

    def __init__(self, root: str | os.PathLike, side: str, settings: dict[str, Any]):
        self.folder = Path(root) / RECORDS_DIR / f"{safe_name(side)}-{settings_key(settings)}"
        self.settings = settings

    def path(self, clip_id: str) -> Path:
        # the hash keeps ids that differ only in unsafe characters apart
        digest = hashlib.sha256(clip_id.encode()).hexdigest()[:8]
        return self.folder / f"{safe_name(clip_id)[:80]}-{digest}.npz"

    def write(self, clip: dict[str, Any], embeddings: np.ndarray, distribution: np.ndarray | None,
              **numbers: Any) -> None:
        """Record one clip atomically (`clip`: its id, file, start and duration)."""
        header = json.dumps({"clip": clip, **numbers})
        arrays = {"embeddings": np.asarray(embeddings, dtype=np.float32), "header": np.array(header)}
        if distribution is not None:
            arrays["distribution"] = np.asarray(distribution, dtype=np.float64)
        self.folder.mkdir(parents=True, exist_ok=True)
        settings = self.folder / "settings.json"
        if not settings.exists():  # for a reader wondering what the hash stands for
            with atomic_path(settings) as tmp:
                tmp.write_text(json.dumps(self.settings, indent=1, sort_keys=True, default=str))
        with atomic_path(self.path(clip["id"])) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)

    def read(self, clip: dict[str, Any]) -> dict[str, Any] | None:
        """{embeddings, distribution (or None), and the header's numbers} of `clip`, or None
        when there is no record, or one made for another clip of that id (new start, duration
        or file) or unreadable."""
        path = self.path(clip["id"])
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                header = json.loads(str(z["header"]))
                record = {"embeddings": z["embeddings"],
                          "distribution": z["distribution"] if "distribution" in z.files else None}
        except DAMAGED:
            return None  # empty, truncated or not a record: made again
        if not isinstance(header, dict) or record["embeddings"].ndim != 2 or (
                record["distribution"] is not None and record["distribution"].ndim != 1):
            return None
        if header.pop("clip", None) != json.loads(json.dumps(clip)):
            return None
        return {**record, **header}

    def remove_temporaries(self) -> None:
        """Half-written records of a killed run (`vab.utils.atomic_path` names).  Call it only
        when no process is writing."""
        if self.folder.is_dir():
            for leftover in self.folder.glob(".*.tmp.*"):
                leftover.unlink(missing_ok=True)
