"""`vab generate --plot`: a strip of frames across the video above the spectrogram
of the generated audio, as a PNG (matplotlib, no display needed).  Where only part of the
soundtrack was generated (an edit, a continuation) the generated spans are shaded; the
web page's Edit tab draws a soundtrack alone with the spans it will regenerate
(:func:`spectrogram_picture`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vab import media
from vab.utils import atomic_path

#: spectrogram columns at most (long videos get a coarser hop, not a wider image)
MAX_COLUMNS = 2000
#: the shading of generated / chosen spans over a spectrogram
SPAN_COLOUR = "#22d3ee"
Spans = list[tuple[float, float]]


def read_frame_strip(path: str | os.PathLike, seconds: float, count: int = 6, max_short_side: int = 128) -> list[tuple[float, np.ndarray]]:
    """`count` frames ``(t, uint8 [H, W, 3])`` at the centres of equal parts of ``[0, seconds)``;
    each is one short seek-and-decode, so a long video costs no more than a short one."""
    strip = []
    for k in range(count):
        t = (k + 0.5) * seconds / count
        # one sample at exactly t: the window [t - 0.005, t + 0.005) read at 100 fps
        frames, _ = media.read_frames(path, 100.0, max(0.0, t - 0.005), t + 0.005, max_short_side=max_short_side)
        if len(frames):
            strip.append((t, frames[0]))
    return strip


def log_spectrogram(waveform: np.ndarray, sample_rate: int, n_fft: int = 512) -> tuple[np.ndarray, float]:
    """dB magnitudes ``[n_fft / 2 + 1, columns]`` (at most MAX_COLUMNS) and the hop in seconds."""
    x = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32))
    if len(x) < n_fft:
        x = torch.nn.functional.pad(x, (0, n_fft - len(x)))
    hop = max(n_fft // 4, -(-len(x) // MAX_COLUMNS))
    spec = torch.stft(x, n_fft, hop, window=torch.hann_window(n_fft), center=True, return_complex=True).abs()
    db = 20 * torch.log10(spec.clamp_min(1e-5) / (n_fft / 4))
    return db.numpy(), hop / sample_rate


def generated_spans(given_mask: torch.Tensor, seconds: float) -> Spans:
    """The time spans (seconds) of a soundtrack that were generated, from a result's
    ``given_mask`` (bool ``[K, T]``, True where a token was given); [] when all of it was
    generated (nothing to tell apart) or none of it."""
    generated = ~given_mask.bool().all(dim=0)
    if bool(generated.all()) or not bool(generated.any()):
        return []
    per_token = seconds / generated.numel()
    edges = torch.diff(torch.cat([torch.zeros(1), generated.float(), torch.zeros(1)])).nonzero().flatten().tolist()
    return [(start * per_token, stop * per_token) for start, stop in zip(edges[::2], edges[1::2])]


def save_plot(
    out_path: str | os.PathLike,
    waveform: np.ndarray,
    sample_rate: int,
    frames: list[tuple[float, np.ndarray]] | None = None,
    title: str | None = None,
    spans: Spans = (),
) -> Path:
    """Write the PNG atomically: frames (if any) above the spectrogram of `waveform` (float32
    [N]), with the `spans` (seconds) that were generated shaded."""
    frames = frames or []
    fig = _figure(10, 5 if frames else 3.5)
    grid = fig.add_gridspec(2 if frames else 1, max(1, len(frames)), height_ratios=[1, 1.6] if frames else None)
    for k, (t, frame) in enumerate(frames):
        ax = fig.add_subplot(grid[0, k])
        ax.imshow(frame)
        ax.set_title(f"{t:.1f} s", fontsize=8)
        ax.axis("off")
    ax = fig.add_subplot(grid[-1, :])
    image = _spectrogram(ax, waveform, sample_rate, spans, "generated")
    fig.colorbar(image, ax=ax, label="dB", pad=0.01)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, out_path)


def spectrogram_picture(
    out_path: str | os.PathLike, waveform: np.ndarray, sample_rate: int, spans: Spans = ()
) -> tuple[Path, tuple[float, float]]:
    """Write a PNG of the spectrogram of `waveform` (float32 [N]) with a time axis and the
    chosen `spans` (seconds) shaded; returns it with the pixel columns ``(x0, x1)`` where
    the time axis runs from 0 to the waveform's end, so a click's column gives a time."""
    fig = _figure(10, 2.6)
    ax = fig.add_subplot()
    _spectrogram(ax, waveform, sample_rate, spans, "to regenerate")
    fig.canvas.draw()  # lays the axes out, so their pixel extent is final
    box = ax.get_window_extent()
    return _save(fig, out_path), (float(box.x0), float(box.x1))


def _figure(width: float, height: float):
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _spectrogram(ax, waveform: np.ndarray, sample_rate: int, spans: Spans, what: str):
    """Draw the dB spectrogram of `waveform` on `ax` over time in seconds, `spans` shaded
    and named `what` in a legend; returns the image (for a colour bar)."""
    seconds = len(waveform) / sample_rate
    db, _ = log_spectrogram(waveform, sample_rate)
    image = ax.imshow(
        db, origin="lower", aspect="auto", cmap="magma", vmin=-80, vmax=0,
        extent=(0, seconds, 0, sample_rate / 2000),
    )
    for k, (a, b) in enumerate(spans):
        ax.axvspan(a, b, facecolor=SPAN_COLOUR, alpha=0.3, edgecolor=SPAN_COLOUR, linewidth=1.5,
                   label=what if k == 0 else None)
    if spans:
        ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
    ax.set_xlim(0, seconds)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("kHz")
    return image


def _save(fig, out_path: str | os.PathLike) -> Path:
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, format="png")
    return out_path
