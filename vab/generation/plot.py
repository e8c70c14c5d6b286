"""`vab generate --plot`: a strip of frames across the video above the spectrogram
of the generated audio, as a PNG (matplotlib, no display needed)."""

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


def save_plot(
    out_path: str | os.PathLike,
    waveform: np.ndarray,
    sample_rate: int,
    frames: list[tuple[float, np.ndarray]] | None = None,
    title: str | None = None,
) -> Path:
    """Write the PNG atomically: frames (if any) above the spectrogram of `waveform` (float32 [N])."""
    frames = frames or []
    seconds = len(waveform) / sample_rate
    fig = Figure(figsize=(10, 5 if frames else 3.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2 if frames else 1, max(1, len(frames)), height_ratios=[1, 1.6] if frames else None)
    for k, (t, frame) in enumerate(frames):
        ax = fig.add_subplot(grid[0, k])
        ax.imshow(frame)
        ax.set_title(f"{t:.1f} s", fontsize=8)
        ax.axis("off")
    ax = fig.add_subplot(grid[-1, :])
    db, _ = log_spectrogram(waveform, sample_rate)
    image = ax.imshow(
        db, origin="lower", aspect="auto", cmap="magma", vmin=-80, vmax=0,
        extent=(0, seconds, 0, sample_rate / 2000),
    )
    ax.set_xlabel("time (s)")
    ax.set_ylabel("kHz")
    fig.colorbar(image, ax=ax, label="dB", pad=0.01)
    if title:
        fig.suptitle(title, fontsize=10)
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, format="png")
    return out_path
