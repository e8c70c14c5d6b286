"""What one generated soundtrack becomes on disk: OUT/<name>.wav (or .flac), OUT/<name>.mp4
(the original video stream copied, the new audio as its only track) and OUT/<name>.png
(frames over the spectrogram), each written atomically, all or none; and the record
OUT/.<name>.vab.json of the source file they were made from, so a re-run skips a video only
when its outputs came from that same file, and never writes over an input or over files it
did not make (:func:`choose_outputs`)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vab import media
from vab.errors import VabError
from vab.files import InputGuard
from vab.generation.plot import generated_spans, read_frame_strip, save_plot
from vab.utils import atomic_path

#: names tried (<name>, then <name>-vab, <name>-vab2 ...) while the files are an input or another file's outputs
MAX_NAME_TRIES = 100


@dataclass
class Outputs:
    """The files one video gets."""

    audio: Path
    video: Path | None
    plot: Path | None

    def paths(self) -> list[Path]:
        return [p for p in (self.audio, self.video, self.plot) if p is not None]

    @property
    def record(self) -> Path:
        """OUT/.<name>.vab.json: the source file these outputs were made from."""
        return self.audio.with_name(f".{self.audio.stem}.vab.json")


def plan_outputs(out: Path, name: str, audio_format: str = "wav", *, mux: bool = True, plot: bool = False) -> Outputs:
    """OUT/<name>.<audio_format>, OUT/<name>.mp4 (with `mux`) and OUT/<name>.png (with `plot`)."""
    return Outputs(
        audio=out / f"{name}.{audio_format}",
        video=out / f"{name}.mp4" if mux else None,
        plot=out / f"{name}.png" if plot else None,
    )


def source_record(video: Path) -> dict[str, Any]:
    """What identifies a source file: its resolved path, size (bytes) and mtime (ns)."""
    st = os.stat(video)
    return {"source": os.path.realpath(video), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def read_record(outputs: Outputs) -> dict[str, Any] | None:
    """The source record of existing outputs (None: no record, or not one vab wrote)."""
    try:
        record = json.loads(outputs.record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "source" in record else None


def write_record(outputs: Outputs, video: Path, settings: dict[str, Any] | None = None) -> None:
    """Record (atomically) that `outputs` are made from `video`, with the run's `settings`."""
    with atomic_path(outputs.record) as tmp:
        tmp.write_text(json.dumps({**source_record(video), "settings": settings or {}}, indent=1), encoding="utf-8")


def write_recorded(result, video: Path, outputs: Outputs, duration: float | None = None,
                   settings: dict[str, Any] | None = None) -> None:
    """:func:`write_record`, then :func:`write_outputs`; when the outputs fail and none of
    them exists, the record goes too (a killed write keeps it: the re-run finds its name)."""
    write_record(outputs, video, settings)
    try:
        write_outputs(result, video, outputs, duration)
    except BaseException:
        if not any(p.exists() for p in outputs.paths()):
            outputs.record.unlink(missing_ok=True)
        raise


def choose_outputs(
    out: Path, name: str, video: Path, guard: InputGuard, reserved: set[str], audio_format: str = "wav", *,
    mux: bool = True, plot: bool = False,
) -> tuple[Outputs, bool]:
    """(outputs for `video`, whether they already exist and were made from it).

    The first of <name>, <name>-vab, <name>-vab2 ... whose files are none of the command's
    inputs (`guard`), not in `reserved` (names other videos of the run use) and either do
    not exist or were made from this same file.  They count as done only when its size
    and mtime are still those recorded (:func:`source_record`); outputs of an older version
    of the file are regenerated in place.  So generating into the videos' own folder names the outputs
    of ``clip.mp4`` ``clip-vab.*``, and two videos that share a stem, generated into one
    folder in two runs, both keep their soundtrack.  Files without a record are never
    overwritten.  Raises VabError when no name is free."""
    source = source_record(video)
    for i in range(1, MAX_NAME_TRIES + 1):
        candidate = name if i == 1 else f"{name}-vab" if i == 2 else f"{name}-vab{i - 1}"
        if candidate in reserved:
            continue
        outputs = plan_outputs(out, candidate, audio_format, mux=mux, plot=plot)
        if any(guard.clashes(p) is not None for p in (*outputs.paths(), outputs.record)):
            continue
        record = read_record(outputs)
        exists = [p.exists() for p in outputs.paths()]
        if record is None and not any(exists):
            return outputs, False
        if record is not None and record.get("source") == source["source"]:  # this file, maybe changed since
            return outputs, all(exists) and all(record.get(k) == v for k, v in source.items())
    raise VabError(f"{out / name}: no free output name ({name} to {name}-vab{MAX_NAME_TRIES - 1} are inputs or "
                   "outputs of other files); choose another --out")


def remove_stale_temporaries(outputs: Outputs) -> None:
    """Temporary files a killed run left for these outputs (see `vab.utils.atomic_path`)."""
    for path in (*outputs.paths(), outputs.record):
        pattern = re.compile(rf"\.{re.escape(path.stem)}\.[a-z0-9_]{{8}}\.tmp{re.escape(path.suffix)}")
        if path.parent.is_dir():
            for leftover in path.parent.iterdir():
                if pattern.fullmatch(leftover.name):
                    leftover.unlink(missing_ok=True)


def write_outputs(result, video: Path, outputs: Outputs, duration: float | None = None) -> None:
    """Write every output of one video, each atomically; if one fails, none of them stays.
    With `duration` (seconds) the mp4 keeps only that much of the video."""
    written: list[Path] = []
    try:
        # the mux first: it is what an odd input is most likely to refuse
        if outputs.video is not None:
            written.append(media.mux(video, result.waveform, result.sample_rate, outputs.video, duration))
        written.append(media.write_audio(outputs.audio, result.waveform, result.sample_rate))
        if outputs.plot is not None:
            frames = read_frame_strip(video, result.seconds)
            written.append(save_plot(outputs.plot, result.waveform, result.sample_rate, frames, title=video.name,
                                     spans=generated_spans(result.given_mask, result.seconds)))
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
