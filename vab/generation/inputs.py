"""Command-line inputs: files, folders and glob patterns -> video paths, and unique
output names for them."""

from __future__ import annotations

import glob
import os
from collections import defaultdict
from pathlib import Path

from vab.data.manifest import VIDEO_SUFFIXES

_GLOB_CHARS = "*?["


def expand_inputs(items: list[str], exclude: Path | None = None) -> tuple[list[Path], list[tuple[str, str]]]:
    """(video paths in the order given, each once; [(input, problem)] for inputs that
    name nothing usable).  Folders are searched recursively for video files (hidden
    files and folders skipped); patterns (``*``, ``?``, ``[``, ``**``) are expanded here,
    so quoted patterns work too.  Files named explicitly are taken whatever their suffix.
    Folders and patterns never pick files under `exclude` (the output folder: a re-run
    must not take earlier outputs for inputs)."""
    found: list[Path] = []
    problems: list[tuple[str, str]] = []
    skip = os.path.realpath(exclude) if exclude is not None else None

    def _folder_videos(folder: Path) -> list[Path]:
        return [p for p in _walk(folder) if skip is None or not _inside(p, skip)]

    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            videos = _folder_videos(path)
            if not videos:
                problems.append((item, f"no video files ({', '.join(VIDEO_SUFFIXES)}) in this folder"))
            found += videos
        elif path.exists():
            found.append(path)
        elif any(c in item for c in _GLOB_CHARS):
            matches = sorted(glob.glob(os.path.expanduser(item), recursive=True))
            if not matches:
                problems.append((item, "no files match this pattern"))
            for match in map(Path, matches):
                if match.is_dir():
                    found += _folder_videos(match)
                elif skip is None or not _inside(match, skip):
                    found.append(match)
        else:
            problems.append((item, "file not found"))
    unique, seen = [], set()
    for path in found:
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique, problems


def _inside(path: Path, folder: str) -> bool:
    real = os.path.realpath(path)
    return real == folder or real.startswith(folder.rstrip(os.sep) + os.sep)


def _walk(folder: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and Path(name).suffix.lower() in VIDEO_SUFFIXES:
                files.append(Path(dirpath, name))
    return files


def unique_names(paths: list[Path]) -> dict[Path, str]:
    """An output name (no suffix) per path: its stem, unless several paths share a stem.
    Those are told apart by their parent folders (``a/clip.mp4`` -> ``a__clip``,
    ``b/clip.mp4`` -> ``b__clip``), then by their suffix (``clip_mov``), then by a number;
    the result depends only on the colliding paths, so a re-run names them the same."""
    by_stem: dict[str, list[Path]] = defaultdict(list)
    for p in paths:
        by_stem[p.stem].append(p)
    names: dict[Path, str] = {}
    for stem, group in by_stem.items():
        if len(group) == 1:
            names[group[0]] = stem
            continue
        parts = {p: Path(os.path.abspath(p)).parent.parts[1:] for p in group}
        depth = max(len(v) for v in parts.values())
        chosen = None
        for d in range(1, depth + 1):
            candidate = {p: "__".join((*parts[p][-d:], stem)) for p in group}
            if len(set(candidate.values())) == len(group):
                chosen = candidate
                break
        if chosen is None:
            chosen = {p: "__".join((*parts[p][-1:], stem)) + f"_{p.suffix.lstrip('.')}" for p in group}
        names.update(chosen)
    # last resort (e.g. a file literally named a__clip.mp4 next to the above): number repeats
    counts: dict[str, int] = defaultdict(int)
    for p in sorted(names, key=lambda q: os.path.abspath(q)):
        name = names[p]
        counts[name] += 1
        if counts[name] > 1:
            names[p] = f"{name}-{counts[name]}"
    return names
