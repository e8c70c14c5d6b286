"""Measures of generated soundtracks that need no generated audio to train on.

* Class agreement: :class:`SoundClassifier` (scikit-learn logistic regression on
  log-mel statistics and on what follows what, :func:`sound_features`) is trained on the REAL
  training clips' audio only (the demo adds their codec round trip, still real audio), then
  labels each generated soundtrack; the share that names the class of the object shown.
* Timing agreement: per audio frame (50 Hz), "sound present" (frame energy above a
  threshold chosen on real training clips, :func:`fit_threshold`; the demo uses their codec
  round trip, whose silence is the decoder's floor like generated audio's) against "object
  visible" (the world's ground truth); the share of frames where they agree.
* Sync: the weights-free synchronisation score (:mod:`vab.evaluation.sync`) of each
  soundtrack against its clip's frames, which needs no ground truth.

Both come with their chance levels (:func:`timing_chance`): an honest number says how
far it is from what a model ignoring the picture would get.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torchaudio
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from vab.evaluation.sync import sync_score

FRAME_RATE = 50.0  # Hz, frames of the energy / visibility comparison
N_MELS = 48
ACTIVE_DB = 25.0  # a frame "sounds" within this many dB of the clip's loudest frame
#: what follows what (:func:`order_features`): log-mel bands pooled to this many, compared at these lags (s)
ORDER_BANDS = 12
ORDER_LAGS = (0.1, 0.2, 0.3)
ORDER_RANGE_DB = 40.0  # band levels below the frame's loudest band by more than this count as 0


def _frames(wav: np.ndarray, sample_rate: int, frame_rate: float) -> torch.Tensor:
    """float32 ``[T, hop]``: consecutive non-overlapping frames (the tail zero-padded)."""
    hop = int(round(sample_rate / frame_rate))
    x = torch.as_tensor(np.asarray(wav, dtype=np.float32))
    count = max(1, -(-len(x) // hop))
    x = torch.nn.functional.pad(x, (0, count * hop - len(x)))
    return x.view(count, hop)


def frame_energy_db(wav: np.ndarray, sample_rate: int, frame_rate: float = FRAME_RATE) -> np.ndarray:
    """RMS level per frame in dB re. full scale, ``[ceil(N / hop)]``."""
    rms = _frames(wav, sample_rate, frame_rate).pow(2).mean(dim=1).sqrt()
    return (20 * torch.log10(rms.clamp_min(1e-6))).numpy()


def log_mel(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    """dB log-mel spectrogram ``[T, N_MELS]`` at 50 frames / s."""
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=sample_rate, n_fft=1024, hop_length=int(sample_rate / FRAME_RATE), n_mels=N_MELS, power=2.0
    )
    spec = mel(torch.as_tensor(np.asarray(wav, dtype=np.float32)))
    return (10 * torch.log10(spec.clamp_min(1e-10))).T.numpy()


def order_features(mel: np.ndarray, active: np.ndarray) -> np.ndarray:
    """``[len(ORDER_LAGS) * ORDER_BANDS ** 2]``: what follows what.  For each lag L, the mean over
    frames t of outer(shape[t], shape[t + L]), where shape is a frame's band levels (`mel`
    ``[T, N_MELS]`` pooled to ORDER_BANDS bands) relative to its loudest band, mapped to [0, 1]
    over ORDER_RANGE_DB, and 0 for frames that are not `active` (bool ``[T]``).  Mean statistics
    cannot tell "ba-si" from "si-ba"; these can (the outer product is not symmetric in time)."""
    width = mel.shape[1] // ORDER_BANDS
    bands = mel[:, : width * ORDER_BANDS].reshape(len(mel), ORDER_BANDS, width).mean(axis=2)
    shape = np.clip((bands - bands.max(axis=1, keepdims=True) + ORDER_RANGE_DB) / ORDER_RANGE_DB, 0.0, 1.0)
    shape = shape * active[:, None]
    out = []
    for seconds in ORDER_LAGS:
        lag = max(1, int(round(seconds * FRAME_RATE)))
        pairs = max(1, int((active[:-lag] & active[lag:]).sum()))
        out.append((shape[:-lag].T @ shape[lag:]).ravel() / pairs)
    return np.concatenate(out)


def sound_features(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    """``[3 * N_MELS + len(ORDER_LAGS) * ORDER_BANDS ** 2]``: mean and std of the log-mel frames
    where something sounds (within ACTIVE_DB of the loudest frame), their mean shape relative to
    their own level, so the statistics describe the sound, not how long or how loud it plays;
    then what follows what in time (:func:`order_features`)."""
    m = log_mel(wav, sample_rate)
    level = m.max(axis=1)
    is_active = level >= level.max() - ACTIVE_DB
    active = m[is_active]
    mean = active.mean(axis=0)
    return np.concatenate(
        [mean, active.std(axis=0), mean - mean.max(), order_features(m, is_active)]
    ).astype(np.float32)


class SoundClassifier:
    """Logistic regression on :func:`sound_features`; fitted on real audio only."""

    def __init__(self, sample_rate: int):
        self.sample_rate = int(sample_rate)
        self.model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))

    def features(self, wavs: Sequence[np.ndarray]) -> np.ndarray:
        return np.stack([sound_features(w, self.sample_rate) for w in wavs])

    def fit(self, wavs: Sequence[np.ndarray], labels: Sequence[int]) -> "SoundClassifier":
        self.model.fit(self.features(wavs), np.asarray(labels))
        return self

    def predict(self, wavs: Sequence[np.ndarray]) -> np.ndarray:
        return self.model.predict(self.features(wavs))


def agreement(predicted: Sequence[int], shown: Sequence[int]) -> float:
    """Share of soundtracks labelled with the class of the object shown."""
    p, s = np.asarray(predicted), np.asarray(shown)
    return float((p == s).mean()) if len(s) else float("nan")


def fit_threshold(energies: Sequence[np.ndarray], visible: Sequence[np.ndarray]) -> float:
    """The dB level that best separates visible from invisible frames on REAL clips."""
    e = np.concatenate([np.asarray(x)[: len(v)] for x, v in zip(energies, visible)])
    v = np.concatenate([np.asarray(v)[: len(x)] for x, v in zip(energies, visible)])
    candidates = np.linspace(-90.0, 0.0, 181)
    scores = [((e > c) == v).mean() for c in candidates]
    best = float(np.max(scores))
    # the middle of the best plateau: as far as possible from both distributions
    good = candidates[np.asarray(scores) >= best - 1e-9]
    return float(0.5 * (good.min() + good.max()))


def timing_agreement(energy: np.ndarray, visible: np.ndarray, threshold: float) -> float:
    """Share of frames where "energy above threshold" equals "visible" (common length)."""
    n = min(len(energy), len(visible))
    return float(((np.asarray(energy[:n]) > threshold) == np.asarray(visible[:n])).mean())


@dataclass
class TimingResult:
    agreement: float  # mean over clips
    majority: float  # always answer the more frequent state
    shuffled: float  # each soundtrack scored against ANOTHER clip's visibility

    @property
    def chance(self) -> float:
        return max(self.majority, self.shuffled)


def timing_scores(
    energies: Sequence[np.ndarray], visible: Sequence[np.ndarray], threshold: float, seed: int = 0
) -> TimingResult:
    """Timing agreement of soundtracks with their own clips' visibility, and two chance levels."""
    n = len(energies)
    own = [timing_agreement(e, v, threshold) for e, v in zip(energies, visible)]
    share = float(np.mean(np.concatenate([np.asarray(v, dtype=float) for v in visible])))
    pairs = derangement(n, seed)
    shuffled = [timing_agreement(energies[i], visible[pairs[i]], threshold) for i in range(n)]
    return TimingResult(float(np.mean(own)), max(share, 1 - share), float(np.mean(shuffled)))


def derangement(n: int, seed: int = 0) -> list[int]:
    """``pairs[i]``: the other clip that clip i is scored against for a chance level (no clip
    paired with itself when n > 1): a random cyclic shift of a permutation."""
    rng = np.random.default_rng(seed)
    shift = rng.permutation(n) if n > 1 else np.zeros(1, dtype=int)
    other = np.roll(shift, 1) if n > 1 else shift
    pairs = dict(zip(shift.tolist(), other.tolist()))
    return [pairs[i] for i in range(n)]


@dataclass
class SyncSummary:
    """The weights-free sync score (:mod:`vab.evaluation.sync`) of soundtracks against their own
    clips' frames (`score`, mean correlation; `offset`, mean |offset| s) and against ANOTHER
    clip's frames (`shuffled_score`, `shuffled_offset`: the chance levels)."""

    score: float
    offset: float
    shuffled_score: float
    shuffled_offset: float


def sync_scores(wavs: Sequence[np.ndarray], sample_rate: int, frames: Sequence[np.ndarray], fps: float,
                seed: int = 0) -> SyncSummary:
    """:class:`SyncSummary` of soundtracks ``[S]`` against frames ``[F, H, W, 3]`` at `fps` (clips
    with no score, e.g. a picture that never changes, are left out of the means)."""
    def means(pairs):
        results = [sync_score(wavs[i], sample_rate, frames[j], fps) for i, j in pairs]
        return (float(np.nanmean([r.score for r in results])),
                float(np.nanmean([abs(r.offset) for r in results])))

    n = len(wavs)
    own, other = means(zip(range(n), range(n))), means(enumerate(derangement(n, seed)))
    return SyncSummary(own[0], own[1], other[0], other[1])
