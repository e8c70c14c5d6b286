"""What one generated soundtrack becomes on disk: OUT/<name>.wav (or .flac), OUT/<name>.mp4
(the original video stream copied, the new audio as its only track) and OUT/<name>.png
(frames over the spectrogram), each written atomically, all or none."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Outputs:
    """The files one video gets."""

    audio: Path
    video: Path | None
    plot: Path | None

    def paths(self) -> list[Path]:
        return [p for p in (self.audio, self.video, self.plot) if p is not None]


def plan_outputs(out: Path, name: str, audio_format: str = "wav", *, mux: bool = True, plot: bool = False) -> Outputs:
    """OUT/<name>.<audio_format>, OUT/<name>.mp4 (with `mux`) and OUT/<name>.png (with `plot`)."""
    return Outputs(
        audio=out / f"{name}.{audio_format}",
        video=out / f"{name}.mp4" if mux else None,
        plot=out / f"{name}.png" if plot else None,
    )


def remove_stale_temporaries(outputs: Outputs) -> None:
    """Temporary files a killed run left for these outputs (see `vab.utils.atomic_path`)."""
    for path in outputs.paths():
        pattern = re.compile(rf"\.{re.escape(path.stem)}\.[a-z0-9_]{{8}}\.tmp{re.escape(path.suffix)}")
        if path.parent.is_dir():
            for leftover in path.parent.iterdir():
                if pattern.fullmatch(leftover.name):
                    leftover.unlink(missing_ok=True)


def write_outputs(result, video: Path, outputs: Outputs, duration: float | None = None) -> None:
    """Write every output of one video, each atomically; if one fails, none of them stays.
    With `duration` (seconds) the mp4 keeps only that much of the video."""
    from vab import media
    from vab.generation.plot import read_frame_strip, save_plot

    written: list[Path] = []
    try:
        # the mux first: it is what an odd input is most likely to refuse
        if outputs.video is not None:
            written.append(media.mux(video, result.waveform, result.sample_rate, outputs.video, duration))
        written.append(media.write_audio(outputs.audio, result.waveform, result.sample_rate))
        if outputs.plot is not None:
            frames = read_frame_strip(video, result.seconds)
            written.append(save_plot(outputs.plot, result.waveform, result.sample_rate, frames, title=video.name))
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
