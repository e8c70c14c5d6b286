"""Manifest readers: which media files make a data set, with ids, labels and splits.

Formats (``fmt=``):

- ``csv``: a header row with a ``path`` column and optional ``id`` (default: the
  file stem), ``label`` (one) or ``labels`` (several, separated by ``;`` or ``|``),
  ``split`` and ``start`` (seconds into the file where the clip starts).
- ``jsonl``: one JSON object per line with the same keys; ``labels`` is a list.
- ``vggsound``: VGGSound's ``vggsound.csv`` (no header:
  ``youtube_id,start_seconds,label,train|test``).
- ``audioset``: an AudioSet segment CSV (``# `` comment lines, then
  ``YTID, start_seconds, end_seconds, "mid1,mid2"``) plus ``class_index``, the
  ``class_labels_indices.csv`` (``index,mid,display_name``); multi-label, label
  names are display names in index order.
- ``dir``: a folder; every media file under it (recursive, sorted), id = the
  relative path without suffix, no labels.
- ``auto`` (default): a folder -> dir; ``.jsonl`` -> jsonl; ``.csv`` -> sniffed
  from its first line.

Relative paths are relative to ``root`` when given, else to the manifest's folder.
VGGSound and AudioSet rows name downloaded files by ``name_template`` (default
``{ytid}_{start:06d}``, the VGGSound release's naming; fields: ytid, start and
end in whole seconds, start_ms, end_ms, split) under ``root``, with the first of
``extensions`` that exists; a row whose file is missing keeps the name with the
first extension (extraction records it as a failure).  Those files are taken to
hold just the segment (``trimmed=True``: the clip starts at 0 s); with
``trimmed=False`` they are full videos and the clip starts at ``start_seconds``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vab.errors import VabError

FORMATS = ("auto", "csv", "jsonl", "vggsound", "audioset", "dir")
DEFAULT_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".flac", ".wav")
DEFAULT_NAME_TEMPLATE = "{ytid}_{start:06d}"
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".ts", ".mts",
                  ".m2ts", ".3gp")
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".aiff", ".aif")
MEDIA_SUFFIXES = VIDEO_SUFFIXES + AUDIO_SUFFIXES
_LABEL_SEP = re.compile(r"[;|]")
_VGGSOUND_SPLITS = ("train", "test")


@dataclass
class ManifestRow:
    """One clip: `path` is absolute; `start` is seconds into the file."""

    index: int
    id: str
    path: str
    labels: list[str] = field(default_factory=list)
    split: str | None = None
    start: float = 0.0


@dataclass
class Manifest:
    """Rows in file order, the label vocabulary and where they came from."""

    rows: list[ManifestRow]
    label_names: list[str]
    multi_label: bool
    source: str

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[ManifestRow]:
        return iter(self.rows)

    @property
    def label_index(self) -> dict[str, int]:
        """Label name -> class id (its position in `label_names`)."""
        return {name: i for i, name in enumerate(self.label_names)}

    def label_ids(self, labels: ManifestRow | Sequence[str]) -> list[int]:
        """Class ids of a row (or of a list of label names); unknown names raise VabError."""
        names = labels.labels if isinstance(labels, ManifestRow) else labels
        index = self.label_index
        missing = [n for n in names if n not in index]
        if missing:
            raise VabError(f"{self.source}: label(s) {', '.join(map(repr, missing))} not among the manifest's labels")
        return [index[n] for n in names]

    def select(self, split: str | None) -> "Manifest":
        """The rows of one split (same label vocabulary)."""
        return replace(self, rows=[r for r in self.rows if r.split == split])


def read_manifest(
    path: str | os.PathLike,
    *,
    fmt: str = "auto",
    root: str | os.PathLike | None = None,
    class_index: str | os.PathLike | None = None,
    name_template: str | None = None,
    extensions: Sequence[str] = DEFAULT_EXTENSIONS,
    split: str | None = None,
    trimmed: bool = True,
) -> Manifest:
    """Read a manifest file (or list a folder) into a :class:`Manifest`.

    `split` is used for rows that name none (AudioSet: instead of the split implied
    by the file name).  Any problem with the input raises a one-line VabError
    naming the file and, where there is one, the line.
    """
    path = Path(path).expanduser()
    if fmt not in FORMATS:
        raise VabError(f"{path}: unknown manifest format {fmt!r} (choose from {', '.join(FORMATS)})")
    if not path.exists():
        raise VabError(f"{path}: no such manifest file or folder")
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt == "dir":
        if not path.is_dir():
            raise VabError(f"{path}: not a folder")
        return _read_dir(path, split)
    if path.is_dir():
        raise VabError(f"{path}: is a folder, not a {fmt} manifest")
    root_path = Path(root).expanduser() if root is not None else None
    if fmt in ("csv", "jsonl"):
        records = _csv_records(path) if fmt == "csv" else _jsonl_records(path)
        return _from_records(path, records, root_path or path.parent, split)
    exts = _normalise_extensions(path, extensions)
    if root_path is None:
        raise VabError(f"{path}: a {fmt} manifest needs root= (the folder holding the downloaded clips)")
    template = name_template or DEFAULT_NAME_TEMPLATE
    if fmt == "vggsound":
        return _read_vggsound(path, root_path, template, exts, split, trimmed)
    if class_index is None:
        raise VabError(f"{path}: an AudioSet manifest needs class_index= (class_labels_indices.csv)")
    return _read_audioset(path, Path(class_index).expanduser(), root_path, template, exts, split, trimmed)


# ---------------------------------------------------------------- format detection


def detect_format(path: Path) -> str:
    """dir | jsonl | csv | vggsound | audioset, from the path and (for .csv) the first line."""
    if path.is_dir():
        return "dir"
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix != ".csv":
        raise VabError(
            f"{path}: unknown manifest format {suffix or '(no suffix)'!r}: expected a .csv or .jsonl file "
            f"or a folder (or choose the format: {', '.join(FORMATS[1:])})"
        )
    with _open_text(path) as f:
        first = next((line for line in _lines(path, f) if line.strip()), "")
    if not first:
        raise VabError(f"{path}: empty manifest")
    if first.lstrip().startswith("#"):
        return "audioset"
    cells = [c.strip().lower() for c in next(csv.reader([first]), [])]
    if "path" in cells:
        return "csv"
    if cells and cells[0] == "ytid":
        return "audioset"
    if len(cells) == 4 and cells[3] in _VGGSOUND_SPLITS:
        return "vggsound"
    raise VabError(
        f"{path}:1: cannot tell the manifest format: expected a header with a 'path' column, an AudioSet "
        f"segment file ('#' header) or VGGSound rows (youtube_id,start_seconds,label,train|test)"
    )


# ---------------------------------------------------------------- generic CSV / JSONL


def _open_text(path: Path):
    try:
        # utf-8-sig: spreadsheet exports start with a byte-order mark
        return open(path, encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise VabError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _lines(path: Path, reader: Iterable[Any]) -> Iterator[Any]:
    """Pass items through, turning decoding errors into a one-line VabError."""
    try:
        yield from reader
    except UnicodeDecodeError:
        raise VabError(f"{path}: not a UTF-8 text file") from None
    except csv.Error as exc:
        raise VabError(f"{path}: malformed CSV ({exc})") from None


def _csv_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with _open_text(path) as f:
        reader = csv.reader(f)
        rows = _lines(path, reader)
        header = next((h for h in rows if not _blank(h)), None)
        if header is None:
            raise VabError(f"{path}: empty manifest")
        columns = [c.strip().lower() for c in header]
        if "path" not in columns:
            raise VabError(f"{path}:{reader.line_num}: no 'path' column in the header (columns: {', '.join(columns)})")
        for fields in rows:
            line = reader.line_num
            if _blank(fields):
                continue
            if len(fields) > len(columns):
                raise VabError(
                    f"{path}:{line}: {len(fields)} fields but the header has {len(columns)} "
                    f"(quote fields that contain commas)"
                )
            # missing trailing fields are empty, as spreadsheets write them
            values = [c.strip() for c in fields] + [""] * (len(columns) - len(fields))
            yield line, dict(zip(columns, values))


def _blank(fields: list[str]) -> bool:
    """An empty CSV line (csv gives [] for it; a lone space gives [' '])."""
    return not fields or (len(fields) == 1 and not fields[0].strip())


def _jsonl_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with _open_text(path) as f:
        for line, text in enumerate(_lines(path, f), 1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise VabError(f"{path}:{line}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(obj, dict):
                raise VabError(f"{path}:{line}: expected a JSON object, found {type(obj).__name__}")
            yield line, obj


def _label_list(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [s.strip() for s in _LABEL_SEP.split(value)]
    if isinstance(value, bool) or not isinstance(value, (int, list, tuple)):
        raise VabError(f"{where}: labels must be text, a number or a list, found {type(value).__name__}")
    if isinstance(value, int):
        return [str(value)]
    out = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            raise VabError(f"{where}: each label must be text or a number, found {type(item).__name__}")
        out.append(str(item).strip())
    return out


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(i for i in items if i))


def _seconds(value: Any, where: str, key: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise VabError(f"{where}: {key} must be a number of seconds, found {value!r}") from None
    if not math.isfinite(x) or x < 0:
        raise VabError(f"{where}: {key} must be a non-negative number of seconds, found {value!r}")
    return x


def _resolve(base: Path, value: str) -> str:
    p = Path(os.path.expanduser(value))
    return os.path.abspath(p if p.is_absolute() else base / p)


def _from_records(path: Path, records: Iterable[tuple[int, dict[str, Any]]], base: Path, split: str | None) -> Manifest:
    rows: list[ManifestRow] = []
    first_line: dict[str, int] = {}
    uses_labels = False
    for line, rec in records:
        where = f"{path}:{line}"
        raw_path = rec.get("path")
        if raw_path is None or raw_path == "" or (isinstance(raw_path, str) and not raw_path.strip()):
            raise VabError(f"{where}: missing 'path'")
        if not isinstance(raw_path, str):
            raise VabError(f"{where}: path must be text, found {type(raw_path).__name__}")
        raw_path = raw_path.strip()
        raw_id = rec.get("id")
        if raw_id is None or str(raw_id).strip() == "":
            row_id = Path(raw_path).stem
        elif isinstance(raw_id, (str, int)) and not isinstance(raw_id, bool):
            row_id = str(raw_id).strip()
        else:
            raise VabError(f"{where}: id must be text or a number, found {type(raw_id).__name__}")
        if row_id in first_line:
            raise VabError(
                f"{where}: duplicate id {row_id!r} (also on line {first_line[row_id]}); give each row a unique 'id'"
            )
        first_line[row_id] = line
        uses_labels = uses_labels or rec.get("labels") not in (None, "")
        labels = _unique(_label_list(rec.get("labels"), where) + _label_list(rec.get("label"), where))
        row_split = rec.get("split")
        if row_split is not None and not isinstance(row_split, str):
            raise VabError(f"{where}: split must be text, found {type(row_split).__name__}")
        start = rec.get("start")
        rows.append(
            ManifestRow(
                index=len(rows),
                id=row_id,
                path=_resolve(base, raw_path),
                labels=labels,
                split=(row_split or "").strip() or split,
                start=0.0 if start is None or start == "" else _seconds(start, where, "start"),
            )
        )
    if not rows:
        raise VabError(f"{path}: the manifest lists no files")
    names = _sorted_labels({name for r in rows for name in r.labels})
    multi = uses_labels or any(len(r.labels) > 1 for r in rows)
    return Manifest(rows=rows, label_names=names, multi_label=multi, source=str(path))


def _sorted_labels(names: Iterable[str]) -> list[str]:
    """Sorted label names; all-integer names sort as numbers (2 before 10)."""
    names = list(names)
    if names and all(re.fullmatch(r"-?\d+", n) for n in names):
        return sorted(names, key=int)
    return sorted(names)


# ---------------------------------------------------------------- folders


def _read_dir(folder: Path, split: str | None) -> Manifest:
    files = []
    for dirpath, dirnames, filenames in os.walk(folder):
        # hidden folders and files: caches, editors' and our own temporary files
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in MEDIA_SUFFIXES:
                files.append(Path(dirpath, name).relative_to(folder))
    files.sort(key=lambda p: p.as_posix())
    if not files:
        raise VabError(f"{folder}: no media files ({', '.join(MEDIA_SUFFIXES)}) in this folder")
    rows: list[ManifestRow] = []
    seen: dict[str, Path] = {}
    for rel in files:
        row_id = rel.with_suffix("").as_posix()
        if row_id in seen:
            raise VabError(f"{folder}: {seen[row_id]} and {rel} would share the id {row_id!r}; rename one")
        seen[row_id] = rel
        rows.append(ManifestRow(index=len(rows), id=row_id, path=os.path.abspath(folder / rel), split=split))
    return Manifest(rows=rows, label_names=[], multi_label=False, source=str(folder))


# ---------------------------------------------------------------- VGGSound / AudioSet


def _normalise_extensions(path: Path, extensions: Sequence[str]) -> tuple[str, ...]:
    exts = tuple(e if e.startswith(".") else f".{e}" for e in extensions)
    if not exts:
        raise VabError(f"{path}: extensions= must list at least one file suffix")
    return exts


class _FileFinder:
    """Finds ``root/<stem><ext>`` for the first existing ext, listing each folder once
    (hundreds of thousands of rows would otherwise cost several stat calls each).
    Plain strings, not Path objects: this runs once per row."""

    def __init__(self, root: Path, extensions: tuple[str, ...]):
        self.root = os.path.abspath(root)
        self.extensions = extensions
        self._listings: dict[str, set[str]] = {}

    def _names(self, folder: str) -> set[str]:
        names = self._listings.get(folder)
        if names is None:
            try:
                names = {e.name for e in os.scandir(folder) if not e.is_dir()}
            except OSError:
                names = set()
            self._listings[folder] = names
        return names

    def find(self, stem: str) -> str:
        full = os.path.join(self.root, stem)
        if "/" in stem or os.sep in stem:
            full = os.path.normpath(full)
        folder, base = os.path.split(full)
        names = self._names(folder)
        for ext in self.extensions:
            if base + ext in names:
                return full + ext
        return full + self.extensions[0]


def _format_name(template: str, fields: dict[str, Any], where: str) -> str:
    try:
        name = template.format(**fields)
    except (KeyError, IndexError, ValueError) as exc:
        raise VabError(
            f"{where}: name_template {template!r} does not fit ({type(exc).__name__}: {exc}; "
            f"fields: {', '.join(fields)})"
        ) from None
    if not name.strip():
        raise VabError(f"{where}: name_template {template!r} gives an empty file name")
    return name


class _SegmentRows:
    """Collects rows of the YouTube-segment sets; an exact repeat of a row is dropped,
    the same clip with different labels or split is an error."""

    def __init__(self, path: Path, finder: _FileFinder):
        self.path, self.finder = path, finder
        self.rows: list[ManifestRow] = []
        self._seen: dict[str, tuple[int, ManifestRow]] = {}

    def add(self, line: int, name: str, labels: list[str], split: str | None, start: float) -> None:
        if name in self._seen:
            first_line, first = self._seen[name]
            if first.labels == labels and first.split == split and first.start == start:
                return
            raise VabError(
                f"{self.path}:{line}: clip {name!r} is listed again with different labels or split "
                f"(first on line {first_line})"
            )
        row = ManifestRow(len(self.rows), name, self.finder.find(name), labels, split, start)
        self._seen[name] = (line, row)
        self.rows.append(row)


def _read_vggsound(
    path: Path, root: Path, template: str, exts: tuple[str, ...], split: str | None, trimmed: bool
) -> Manifest:
    out = _SegmentRows(path, _FileFinder(root, exts))
    with _open_text(path) as f:
        reader = csv.reader(f)
        for fields in _lines(path, reader):
            line = reader.line_num
            if _blank(fields) or fields[0].lstrip().startswith("#"):
                continue
            where = f"{path}:{line}"
            if len(fields) != 4:
                raise VabError(
                    f"{where}: expected 4 fields (youtube_id,start_seconds,label,train|test), found {len(fields)}"
                )
            ytid, start_text, label, row_split = (c.strip() for c in fields)
            start = _seconds(start_text, where, "start_seconds")
            if row_split not in _VGGSOUND_SPLITS:
                raise VabError(f"{where}: split must be train or test, found {row_split!r}")
            if not ytid or not label:
                raise VabError(f"{where}: empty youtube_id or label")
            whole = int(round(start))
            fields_ = {"ytid": ytid, "start": whole, "start_ms": int(round(start * 1000)), "split": row_split}
            name = _format_name(template, fields_, where)
            out.add(line, name, [label], row_split or split, 0.0 if trimmed else start)
    if not out.rows:
        raise VabError(f"{path}: the manifest lists no clips")
    names = _sorted_labels({r.labels[0] for r in out.rows})
    return Manifest(rows=out.rows, label_names=names, multi_label=False, source=str(path))


def read_class_index(path: Path) -> tuple[list[str], list[str]]:
    """AudioSet ``class_labels_indices.csv`` -> (mids, display names), both in index order.
    A display name used twice is made unique by appending its mid."""
    if not path.is_file():
        raise VabError(f"{path}: no such class index file (AudioSet class_labels_indices.csv)")
    entries: dict[int, tuple[str, str, int]] = {}
    with _open_text(path) as f:
        reader = csv.reader(f, skipinitialspace=True)
        rows = _lines(path, reader)
        header = [c.strip().lower() for c in next(rows, [])]
        if header[:3] != ["index", "mid", "display_name"]:
            raise VabError(f"{path}:1: expected the header index,mid,display_name, found {','.join(header)!r}")
        for fields in rows:
            line = reader.line_num
            if _blank(fields):
                continue
            if len(fields) < 3:
                raise VabError(f"{path}:{line}: expected index,mid,display_name, found {len(fields)} fields")
            try:
                index = int(fields[0])
            except ValueError:
                raise VabError(f"{path}:{line}: index must be an integer, found {fields[0]!r}") from None
            if index in entries:
                raise VabError(f"{path}:{line}: index {index} repeats line {entries[index][2]}")
            entries[index] = (fields[1].strip(), fields[2].strip(), line)
    if not entries:
        raise VabError(f"{path}: the class index lists no classes")
    ordered = [entries[i] for i in sorted(entries)]
    mids = [mid for mid, _, _ in ordered]
    if len(set(mids)) != len(mids):
        raise VabError(f"{path}: a mid is listed twice")
    counts: dict[str, int] = {}
    for _, name, _ in ordered:
        counts[name] = counts.get(name, 0) + 1
    names = [name if counts[name] == 1 else f"{name} ({mid})" for mid, name, _ in ordered]
    return mids, names


def split_from_filename(path: Path) -> str | None:
    """AudioSet file names: ``*eval*`` -> test, ``*train*`` -> train, else None."""
    stem = path.stem.lower()
    if "eval" in stem:
        return "test"
    if "train" in stem:
        return "train"
    return None


def _read_audioset(
    path: Path,
    class_index: Path,
    root: Path,
    template: str,
    exts: tuple[str, ...],
    split: str | None,
    trimmed: bool,
) -> Manifest:
    mids, names = read_class_index(class_index)
    name_of = dict(zip(mids, names))
    row_split = split or split_from_filename(path)
    out = _SegmentRows(path, _FileFinder(root, exts))
    with _open_text(path) as f:
        # skipinitialspace: fields are written as `a, b, "c,d"`
        reader = csv.reader(f, skipinitialspace=True)
        for fields in _lines(path, reader):
            line = reader.line_num
            if _blank(fields) or fields[0].lstrip().startswith("#"):
                continue
            if fields[0].strip().lower() == "ytid":  # a header without the comment mark
                continue
            where = f"{path}:{line}"
            if len(fields) != 4:
                raise VabError(
                    f"{where}: expected 4 fields (YTID, start_seconds, end_seconds, \"labels\"), found {len(fields)}"
                )
            ytid = fields[0].strip()
            start = _seconds(fields[1].strip(), where, "start_seconds")
            end = _seconds(fields[2].strip(), where, "end_seconds")
            if end <= start:
                raise VabError(f"{where}: end_seconds {end:g} is not after start_seconds {start:g}")
            labels = []
            for mid in _unique(m.strip() for m in fields[3].split(",")):
                if mid not in name_of:
                    raise VabError(f"{where}: label {mid!r} is not in {class_index}")
                labels.append(name_of[mid])
            if not ytid:
                raise VabError(f"{where}: empty YTID")
            fields_ = {
                "ytid": ytid,
                "start": int(round(start)),
                "end": int(round(end)),
                "start_ms": int(round(start * 1000)),
                "end_ms": int(round(end * 1000)),
                "split": row_split or "",
            }
            name = _format_name(template, fields_, where)
            out.add(line, name, labels, row_split, 0.0 if trimmed else start)
    if not out.rows:
        raise VabError(f"{path}: the manifest lists no clips")
    return Manifest(rows=out.rows, label_names=names, multi_label=True, source=str(path))
