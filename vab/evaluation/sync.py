"""A synchronisation score that needs no weights: does the sound change when the picture does?

Learnt sync scores (Synchformer's DeSync) need a 1-GB network; this one needs a clip's
frames and its audio only, so every run (offline ones included) can say whether a
soundtrack is in time with its picture.  It is in the spirit of AV-Align (audio onsets
against video motion peaks), made to work at the picture's own time resolution:

* **picture change** ``v[i]`` (``[F - 1]``): the mean absolute RGB difference between frame
  ``i - 1`` and frame ``i`` (0-255 scale).  Frame ``i`` is on screen during
  ``[i / fps, (i + 1) / fps)``, so this change is seen at ``i / fps``.
* **sound change** ``a[i]`` (``[F - 1]``): the audio's loudness change between the times
  frames ``i - 1`` and ``i`` are on screen: log-mel levels (dB, 40 bands 50 Hz - 8 kHz,
  5-ms hop, floored 60 dB under the clip's loudest band) averaged over the time each frame
  is on screen, then the absolute difference of the two frames' band means.  Sounds starting
  and stopping count; a sound that only changes its spectrum at equal loudness (speech's
  syllables, vibrato, click trains faster than the frame rate) barely does, so speech is not
  a stream of events the picture never shows.
* **correlation curve** ``c(d)``: the Pearson correlation of ``a`` and ``v`` with the audio
  read ``d`` s later, ``d`` on a :data:`LAG_STEP` grid up to ``max_lag`` either way
  (intervals whose moved window leaves the audio are dropped).  **Offset**: 0 when ``c(0)``
  is within :data:`IN_STEP_MARGIN` of the curve's best (sound and picture are in step),
  otherwise the delay of the best (s, positive = the sound comes late; a weights-free
  counterpart of DeSync's offset).
* **score**: ``c(0)`` when in step, otherwise the best correlation discounted by its delay,
  ``max c * exp(-|offset| / DELAY_SCALE)``: -1 .. 1, about 0 for audio of another clip,
  higher is better, and lower the further the sound is moved (0.1 / 0.2 / 0.5 / 1 s:
  docs/BENCHMARKS.md).  A correlation at lag 0 alone cannot grade moves longer than a frame:
  every such copy is as unrelated to the picture as another clip's audio.

Where it differs from AV-Align (Yariv et al. 2024, TempoTokens' ``av_align.py``): frame
differences instead of Farneback optical flow (appearing and disappearing objects move no
pixels, and no OpenCV is needed); loudness change in both directions (a sound stopping is an
event as much as one starting) instead of librosa onsets (spectral flux, which speech keeps
high throughout); a correlation of envelopes at the frame rate instead of the IoU of peak
lists with a one-frame tolerance, so the score falls smoothly as the audio moves by less
than a frame and fast periodic sounds are not a stream of unmatched peaks.  Clips whose picture or sound never changes have no score (NaN).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torchaudio

SAMPLE_RATE = 16000
HOP_SECONDS = 0.005
WINDOW_SECONDS = 0.025
N_MELS = 40
DB_RANGE = 60.0  # levels more than this under the clip's loudest band are one floor (silence)
LAG_STEP = 0.02  # s, the offset grid
MAX_LAG = 1.0  # s, default search range of the offset either way
#: lag 0 counts as in step when its correlation is at most this far under the curve's best;
#: chosen with DELAY_SCALE on the demo and shapes worlds, checked on the words world
IN_STEP_MARGIN = 0.2
DELAY_SCALE = 0.2  # s: a best correlation found d s away is worth exp(-|d| / DELAY_SCALE) of it
#: recorded with each score: records made by another version of the score are redone
#: (2: loudness change and the delay-discounted score, issue 26)
VERSION = 2


@dataclass
class SyncResult:
    """`score`: how well sound change follows picture change, discounted by the delay at which it
    does (module doc; NaN: nothing changes); `offset`: that delay (s; 0 in step; NaN likewise)."""

    score: float
    offset: float


def picture_change(frames: np.ndarray) -> np.ndarray:
    """uint8 frames ``[F, H, W, 3]`` -> mean absolute difference of consecutive frames ``[F - 1]``."""
    x = np.asarray(frames)
    if x.ndim != 4 or x.shape[0] < 2:
        raise ValueError(f"frames must be [F >= 2, H, W, C], got {x.shape}")
    x = x.astype(np.float32)
    return np.abs(np.diff(x, axis=0)).mean(axis=(1, 2, 3))


_MEL: dict[str, torchaudio.transforms.MelSpectrogram] = {}


def audio_levels(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono audio ``[S]`` -> log-mel levels ``[T, N_MELS]`` (dB, floored :data:`DB_RANGE` under
    the loudest value), frame ``j`` centred at ``j * HOP_SECONDS`` s."""
    x = torch.as_tensor(np.asarray(wav, dtype=np.float32)).reshape(-1)
    if int(sample_rate) != SAMPLE_RATE:
        x = torchaudio.functional.resample(x, int(sample_rate), SAMPLE_RATE)
    if "mel" not in _MEL:
        _MEL["mel"] = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=512, win_length=round(WINDOW_SECONDS * SAMPLE_RATE),
            hop_length=round(HOP_SECONDS * SAMPLE_RATE), f_min=50.0, f_max=8000.0, n_mels=N_MELS, power=2.0,
            center=True,
        )
    with torch.no_grad():
        power = _MEL["mel"](x).double().T.numpy()  # [T, N_MELS]
    db = 10.0 * np.log10(power + 1e-12)
    return np.maximum(db, db.max() - DB_RANGE)


def sound_change(levels: np.ndarray, fps: float, frames: int, lag: float = 0.0) -> np.ndarray:
    """Levels ``[T, B]`` (dB, 5-ms hop) -> loudness change ``[frames - 1]`` (dB) between the
    times frames ``i - 1`` and ``i`` are on screen, the audio read `lag` s later (NaN where a
    frame's moved window is not inside the audio)."""
    # level frame j belongs to picture frame floor((j * hop - lag) * fps): the frames of picture
    # frame i are a run [first[i], first[i + 1]) of level frames, summed from a cumulative sum
    position = (np.arange(len(levels)) * HOP_SECONDS - lag) * fps + 1e-9
    first = np.searchsorted(position, np.arange(frames + 1), side="left")
    cumulative = np.concatenate([np.zeros((1, levels.shape[1])), np.cumsum(levels, axis=0)])
    counts = np.diff(first).astype(np.float64)
    sums = cumulative[first[1:]] - cumulative[first[:-1]]
    duration = (len(levels) - 1) * HOP_SECONDS
    starts = np.arange(frames) / fps + lag
    inside = (starts >= -1e-9) & (starts + 1.0 / fps <= duration + HOP_SECONDS + 1e-9) & (counts > 0)
    means = np.where(inside[:, None], sums / np.maximum(counts, 1)[:, None], np.nan)
    return np.abs(np.diff(means.mean(axis=1)))


def correlation(a: np.ndarray, v: np.ndarray) -> float:
    """Pearson correlation over the entries where both are finite; NaN when fewer than 3
    remain or either side is constant."""
    a, v = np.asarray(a, dtype=np.float64), np.asarray(v, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(v)
    a, v = a[ok], v[ok]
    if len(a) < 3:
        return float("nan")
    a, v = a - a.mean(), v - v.mean()
    norm = np.sqrt((a @ a) * (v @ v))
    if norm <= 1e-12 * max(1.0, float(np.abs(a).max() * np.abs(v).max()) * len(a)):
        return float("nan")
    return float(a @ v / norm)


def sync_score(wav: np.ndarray, sample_rate: int, frames: np.ndarray, fps: float,
               max_lag: float = MAX_LAG) -> SyncResult:
    """The score and offset (module doc) of mono audio ``[S]`` at `sample_rate` Hz against
    uint8 frames ``[F, H, W, 3]`` at `fps`, both starting at the clip's first displayed frame."""
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    v = picture_change(frames)
    levels = audio_levels(wav, sample_rate)
    count = len(frames)
    steps = int(np.floor(max_lag / LAG_STEP + 1e-9))
    lags = np.arange(-steps, steps + 1) * LAG_STEP
    curve = np.array([correlation(sound_change(levels, fps, count, lag), v) for lag in lags])
    if not np.isfinite(curve).any():
        return SyncResult(float("nan"), float("nan"))
    best, at_zero = np.nanmax(curve), curve[steps]  # lags[steps] == 0
    if np.isfinite(at_zero) and at_zero >= best - IN_STEP_MARGIN:
        return SyncResult(float(at_zero), 0.0)
    # ties (a flat stretch of the curve): the smallest delay
    candidates = lags[np.isclose(curve, best, rtol=0, atol=1e-12)]
    offset = float(candidates[np.argmin(np.abs(candidates))])
    return SyncResult(float(best * np.exp(-abs(offset) / DELAY_SCALE)), offset)


def shifted(wav: np.ndarray, seconds: float, sample_rate: int) -> np.ndarray:
    """`wav` played `seconds` later (earlier when negative), same length, silence filled in."""
    x = np.asarray(wav)
    n = int(round(abs(seconds) * sample_rate))
    if n == 0:
        return x.copy()
    out = np.zeros_like(x)
    if n < len(x):
        if seconds > 0:
            out[n:] = x[:-n]
        else:
            out[:-n] = x[n:]
    return out


__all__ = ["DELAY_SCALE", "IN_STEP_MARGIN", "MAX_LAG", "SyncResult", "audio_levels", "correlation", "picture_change",
           "shifted", "sound_change", "sync_score"]
