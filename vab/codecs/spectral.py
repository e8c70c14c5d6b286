"""The offline spectral codec: residual k-means over STFT log-magnitude frames.

Needs no downloaded weights: it is fitted on the user's own audio in seconds and
saved next to the model / data set as ``codec.safetensors`` (no pickle).

- Frames: one STFT frame (Hann window of ``n_fft``) every ``hop = sample_rate /
  frame_rate`` samples, magnitudes in dB re. a full-scale sine, floored at
  :data:`FLOOR_DB` so that silence and inaudible detail do not spend codebook
  entries.  No per-bin normalisation: k-means is translation invariant, and the
  squared dB error it minimises is exactly what the log-spectral distance measures.
- Codes: level 1 is the nearest of ``codebook_size`` centroids to the frame,
  level 2 the nearest centroid to the remaining residual, and so on.
- Decoding: the sum of the chosen centroids (any number of leading levels) gives
  a magnitude spectrogram; phase comes from fast Griffin-Lim with a fixed
  initial phase, so decoding is deterministic.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from sklearn.cluster import KMeans

from vab.codecs.base import AudioCodec
from vab.codecs.weights import scalar
from vab.errors import ConfigError, VabError
from vab.filenames import CODEC_FILE
from vab.weights import read_safetensors

FLOOR_DB = -80.0  # dB re. a full-scale sine
GRIFFIN_LIM_MOMENTUM = 0.99


class SpectralCodec(AudioCodec):
    """Codes ``[B, levels, N / hop]``; codebook vectors are dB spectra ``[codebook_size, n_fft/2+1]``."""

    name = "spectral"

    def __init__(
        self,
        sample_rate: int = 16000,
        frame_rate: float = 50.0,
        n_fft: int = 1024,
        levels: int = 4,
        codebook_size: int = 256,
        griffin_lim_iters: int = 32,
    ):
        super().__init__()
        hop = sample_rate / frame_rate
        if sample_rate <= 0 or frame_rate <= 0 or abs(hop - round(hop)) > 1e-6:
            raise ConfigError(
                f"codec.frame_rate={frame_rate}: codec.sample_rate={sample_rate} must be a whole multiple of it"
            )
        if not round(hop) < n_fft:
            raise ConfigError(f"codec.n_fft={n_fft}: must exceed the hop of {round(hop)} samples")
        if levels < 1 or codebook_size < 2 or griffin_lim_iters < 0:
            raise ConfigError(
                f"spectral codec: need codec.levels >= 1, codec.codebook_size >= 2, codec.griffin_lim_iters >= 0 "
                f"(got {levels}, {codebook_size}, {griffin_lim_iters})"
            )
        self._sample_rate = int(sample_rate)
        self._frame_rate = float(frame_rate)
        self._hop = int(round(hop))
        self.n_fft = int(n_fft)
        self.griffin_lim_iters = int(griffin_lim_iters)
        self.n_bins = self.n_fft // 2 + 1
        # buffers (not persistent: the codec travels as codec.safetensors, not inside a model's state dict)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        self.register_buffer("centroids", torch.zeros(levels, codebook_size, self.n_bins), persistent=False)
        self._fitted = False

    @classmethod
    def from_config(cls, cfg: Any) -> "SpectralCodec":
        return cls(
            sample_rate=int(cfg.sample_rate),
            frame_rate=float(cfg.frame_rate),
            n_fft=int(cfg.n_fft),
            levels=int(cfg.levels),
            codebook_size=int(cfg.codebook_size),
            griffin_lim_iters=int(cfg.griffin_lim_iters),
        )

    # ------------------------------------------------------------------ interface
    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def frame_rate(self) -> float:
        return self._frame_rate

    @property
    def hop_length(self) -> int:
        return self._hop

    @property
    def num_codebooks(self) -> int:
        return self.centroids.shape[0]

    @property
    def codebook_size(self) -> int:
        return self.centroids.shape[1]

    @property
    def is_fitted(self) -> bool:
        return self._fitted

    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, 1, N]`` -> ``[B, levels, ceil(N / hop)]`` long."""
        self._require_fitted()
        residual = self.log_magnitude(self._check_wav(wav))  # [B, T, F]
        codes = []
        with torch.no_grad():
            for level in range(self.num_codebooks):
                index = _nearest(residual, self.centroids[level])
                residual = residual - self.centroids[level][index]
                codes.append(index)
        return torch.stack(codes, dim=1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """``[B, k, T]`` (k leading levels) -> ``[B, 1, T * hop]`` float."""
        self._require_fitted()
        codes = self._check_codes(codes)
        with torch.no_grad():
            db = sum(self.centroids[level][codes[:, level]] for level in range(codes.shape[1]))  # [B, T, F]
            magnitude = torch.pow(10.0, db / 20.0) * self._scale
            return self._griffin_lim(magnitude.transpose(1, 2)).unsqueeze(1)

    def codebook_vectors(self, level: int) -> torch.Tensor:
        """Centroids of `level` (0-based; residual dB spectra) as ``[codebook_size, n_fft/2+1]``."""
        self._require_fitted()
        if not 0 <= level < self.num_codebooks:
            raise VabError(f"spectral codec: level {level} out of range 0..{self.num_codebooks - 1}")
        return self.centroids[level].detach().clone()

    # ------------------------------------------------------------------ features
    @property
    def _scale(self) -> float:
        # |STFT| of a unit sine peaks at sum(window) / 2: divide so that it reads 0 dB
        return float(self.window.sum()) / 2.0

    def _stft(self, signal: torch.Tensor) -> torch.Tensor:
        """``[B, N]`` with N a multiple of hop -> complex ``[B, F, N / hop + 1]`` (centred frames)."""
        return torch.stft(
            signal,
            self.n_fft,
            self._hop,
            window=self.window,
            center=True,
            pad_mode="constant",  # works for inputs shorter than n_fft / 2
            return_complex=True,
        )

    def log_magnitude(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, 1, N]`` -> dB magnitudes ``[B, T, F]``, ``T = ceil(N / hop)``, floored at FLOOR_DB."""
        wav = self._check_wav(wav)
        frames = math.ceil(wav.shape[-1] / self._hop)
        signal = torch.nn.functional.pad(wav[:, 0], (0, frames * self._hop - wav.shape[-1]))
        with torch.no_grad():
            magnitude = self._stft(signal)[..., :frames].abs() / self._scale
            db = 20.0 * torch.log10(magnitude.clamp_min(10.0 ** (FLOOR_DB / 20.0)))
        return db.transpose(1, 2).contiguous()

    def _griffin_lim(self, magnitude: torch.Tensor) -> torch.Tensor:
        """Magnitudes ``[B, F, T]`` -> waveform ``[B, T * hop]`` (fast Griffin-Lim, Perraudin et al. 2013)."""
        frames = magnitude.shape[-1]
        length = frames * self._hop
        # a centred STFT of T * hop samples has T + 1 frames: repeat the last one
        magnitude = torch.cat([magnitude, magnitude[..., -1:]], dim=-1)
        angles = torch.ones_like(magnitude, dtype=torch.complex64)
        previous = torch.zeros_like(angles)
        for _ in range(self.griffin_lim_iters):
            signal = torch.istft(magnitude * angles, self.n_fft, self._hop, window=self.window, length=length)
            rebuilt = self._stft(signal)
            angles = rebuilt - (GRIFFIN_LIM_MOMENTUM / (1.0 + GRIFFIN_LIM_MOMENTUM)) * previous
            angles = angles / angles.abs().clamp_min(1e-16)
            previous = rebuilt
        return torch.istft(magnitude * angles, self.n_fft, self._hop, window=self.window, length=length)

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        wavs: torch.Tensor | Sequence[torch.Tensor | np.ndarray],
        max_frames: int = 20000,
        seed: int = 0,
    ) -> "SpectralCodec":
        """Fit the residual k-means codebooks on ``[B, 1, N]`` or a list of 1-D waveforms
        at :attr:`sample_rate`; at most `max_frames` frames (a seeded random subset) are used."""
        frames = self._training_frames(wavs)
        if frames.shape[0] < self.codebook_size:
            raise VabError(
                f"spectral codec: {frames.shape[0]} audio frames are too few to fit {self.codebook_size} "
                f"centroids; give more audio or lower codec.codebook_size"
            )
        generator = np.random.default_rng(seed)
        if frames.shape[0] > max_frames:
            frames = frames[torch.from_numpy(np.sort(generator.choice(frames.shape[0], max_frames, replace=False)))]
        residual = frames
        centroids = []
        for level in range(self.num_codebooks):
            # random init: k-means++ seeding costs more than the whole fit and buys little here
            kmeans = KMeans(
                n_clusters=self.codebook_size, init="random", n_init=1, max_iter=30, random_state=seed + level
            )
            kmeans.fit(residual.numpy())
            level_centroids = torch.from_numpy(kmeans.cluster_centers_).float()
            # assign with the same rule as `encode`, so later levels fit what encoding leaves
            residual = residual - level_centroids[_nearest(residual, level_centroids)]
            centroids.append(level_centroids)
        self.centroids.copy_(torch.stack(centroids))
        self._fitted = True
        return self

    def _training_frames(self, wavs: torch.Tensor | Sequence[torch.Tensor | np.ndarray]) -> torch.Tensor:
        """All dB frames of `wavs` on the CPU as ``[M, F]`` float32."""
        if isinstance(wavs, torch.Tensor):
            batches = [wavs]
        else:
            batches = []
            for wav in wavs:
                wav = torch.as_tensor(np.asarray(wav) if not isinstance(wav, torch.Tensor) else wav)
                if wav.dim() != 1:
                    raise VabError(f"spectral codec: fit expects 1-D waveforms, got shape {list(wav.shape)}")
                if wav.numel():
                    batches.append(wav.view(1, 1, -1))
        if not batches:
            raise VabError("spectral codec: nothing to fit on (no audio given)")
        return torch.cat([self.log_magnitude(b).reshape(-1, self.n_bins).cpu() for b in batches])

    def _require_fitted(self) -> None:
        if not self._fitted:
            raise VabError(
                "spectral codec is not fitted: fit it on audio first (codec.fit(wavs), or `vab extract` "
                "does it), or load a fitted codec.safetensors"
            )

    # ------------------------------------------------------------------ saving
    def state_files(self) -> dict[str, torch.Tensor]:
        return self.settings_state(self.centroids) if self._fitted else {}

    def settings_state(self, centroids: torch.Tensor) -> dict[str, torch.Tensor]:
        """The fitted state of this codec with `centroids` ``[levels, codebook_size, bins]`` (dB):
        what ``codec.safetensors`` holds and :meth:`load_fitted` takes."""
        return {
            "centroids": centroids,
            "sample_rate": torch.tensor(self._sample_rate),
            "hop_length": torch.tensor(self._hop),
            "n_fft": torch.tensor(self.n_fft),
            "floor_db": torch.tensor(FLOOR_DB),
        }

    def load_state_file(self, path: str | Path, label: str | None = None) -> "SpectralCodec":
        """Load fitted centroids from a ``codec.safetensors``; they must match this codec's settings.
        `label` names the file in errors (default: the path)."""
        label = label or str(path)
        if not Path(path).is_file():
            raise VabError(f"{label}: file not found")
        return self.load_fitted(read_safetensors(path, label)[1], label)

    def load_fitted(self, state: dict[str, torch.Tensor], label: str) -> "SpectralCodec":
        """Take the fitted state :meth:`state_files` gives (centroids ``[levels, codebook_size,
        bins]`` in dB and the settings they were fitted with); they must match this codec's
        settings.  `label` names where the state came from in errors."""
        needed = ["centroids", "sample_rate", "hop_length", "n_fft", "floor_db"]
        missing = [k for k in needed if k not in state]
        if missing:
            raise VabError(f"{label}: not a spectral codec file (missing {', '.join(missing)})")
        numbers = {k: scalar(label, state, k) for k in ("sample_rate", "hop_length", "n_fft", "floor_db")}
        centroids = state["centroids"]
        if centroids.dim() != 3 or not centroids.is_floating_point() or not bool(torch.isfinite(centroids).all()):
            raise VabError(f"{label}: centroids must be a [levels, codebook_size, bins] tensor of finite floats "
                           f"(got {centroids.dtype} {tuple(centroids.shape)})")
        saved = {
            "sample_rate": _whole(numbers["sample_rate"]),
            "hop (sample_rate / frame_rate)": _whole(numbers["hop_length"]),
            "n_fft": _whole(numbers["n_fft"]),
            "levels": centroids.shape[0] if centroids.dim() == 3 else None,
            "codebook_size": centroids.shape[1] if centroids.dim() == 3 else None,
            "floor_db": numbers["floor_db"],
        }
        wanted = {
            "sample_rate": self._sample_rate,
            "hop (sample_rate / frame_rate)": self._hop,
            "n_fft": self.n_fft,
            "levels": self.num_codebooks,
            "codebook_size": self.codebook_size,
            "floor_db": FLOOR_DB,
        }
        differ = [f"{k} {saved[k]} (config: {wanted[k]})" for k in wanted if saved[k] != wanted[k]]
        if differ or state["centroids"].shape[-1] != self.n_bins:
            raise VabError(f"{label}: fitted with other codec settings: {'; '.join(differ) or 'bins'}")
        self.centroids.copy_(state["centroids"].to(torch.float32))
        self._fitted = True
        return self


def _whole(x: float) -> int | float:
    """`x` as an int when it is a whole number (for messages and comparisons)."""
    return int(x) if x.is_integer() else x


def _nearest(vectors: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centroid ``[C, F]`` for each of ``vectors [..., F]`` (squared L2)."""
    # |v - c|^2 = |v|^2 - 2 v.c + |c|^2 and |v|^2 does not change the argmin
    scores = centroids.pow(2).sum(-1) - 2.0 * vectors @ centroids.T
    return scores.argmin(dim=-1)


def load_spectral(cfg: Any, directory: str | Path | None = None) -> SpectralCodec:
    """An unfitted codec from the config, fitted from ``directory/codec.safetensors``
    if present, else from ``codec.path`` if set."""
    codec = SpectralCodec.from_config(cfg)
    if directory is not None and (Path(directory) / CODEC_FILE).is_file():
        return codec.load_state_file(Path(directory) / CODEC_FILE)
    if cfg.path:
        return codec.load_state_file(Path(cfg.path).expanduser(), label=f"codec.path={cfg.path}")
    return codec
