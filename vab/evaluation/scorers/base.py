"""The interface every audio scorer of `eval/generation.py` implements.

An :class:`AudioEmbedder` turns one clip (mono float32 ``[S]`` at any sample rate) into
embeddings ``[N, D]`` (N segments of the clip; FAD pools the segments of all clips) and,
when it has a label space, label distributions ``[N, C]`` (rows sum to 1; a clip's
distribution is the mean of its rows, see :func:`clip_distribution`).
"""

from __future__ import annotations

import abc

import numpy as np
import torch
import torchaudio.functional as AF


class AudioEmbedder(abc.ABC):
    """Embeddings (for FAD) and optionally label distributions (for KL) of audio clips."""

    #: short name for tables and JSON ("logmel", "vggish", ...)
    name: str = "embedder"
    #: the rate the model works at, Hz; inputs at other rates are resampled
    sample_rate: int = 16000
    #: where the scorer computes (its numbers may differ in the last bits between devices)
    device: torch.device = torch.device("cpu")

    @property
    def has_labels(self) -> bool:
        """Whether :meth:`label_probs` is available."""
        return type(self).label_probs is not AudioEmbedder.label_probs

    @abc.abstractmethod
    def embed(self, wav: torch.Tensor) -> torch.Tensor:
        """Mono float32 ``[S]`` at :attr:`sample_rate` -> embeddings ``[N, D]`` (N >= 1)."""

    def label_probs(self, wav: torch.Tensor) -> torch.Tensor:
        """Mono float32 ``[S]`` at :attr:`sample_rate` -> label distributions ``[N, C]`` (rows sum to 1)."""
        raise NotImplementedError(f"{self.name} has no label space")

    def embed_and_label_probs(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both of :meth:`embed` and :meth:`label_probs` (scorers whose one forward gives both
        override it to run once)."""
        return self.embed(wav), self.label_probs(wav)

    # -- convenience for callers holding audio at another rate
    def prepare(self, wav: np.ndarray | torch.Tensor, sample_rate: int) -> torch.Tensor:
        """Mono float32 ``[S]`` at `sample_rate` Hz -> float32 ``[S']`` at :attr:`sample_rate`."""
        x = torch.as_tensor(np.asarray(wav, dtype=np.float32) if not torch.is_tensor(wav) else wav).float()
        if x.dim() != 1:
            x = x.reshape(-1, x.shape[-1]).mean(dim=0)
        if int(sample_rate) != int(self.sample_rate):
            x = AF.resample(x, int(sample_rate), int(self.sample_rate))
        return x.contiguous()

    def embed_at(self, wav: np.ndarray | torch.Tensor, sample_rate: int) -> np.ndarray:
        """:meth:`embed` of audio at `sample_rate` Hz, as float64 numpy ``[N, D]``."""
        with torch.no_grad():
            return self.embed(self.prepare(wav, sample_rate)).detach().double().cpu().numpy()

    def label_probs_at(self, wav: np.ndarray | torch.Tensor, sample_rate: int) -> np.ndarray:
        """:meth:`label_probs` of audio at `sample_rate` Hz, as float64 numpy ``[N, C]``."""
        with torch.no_grad():
            return self.label_probs(self.prepare(wav, sample_rate)).detach().double().cpu().numpy()

    def embed_and_label_probs_at(self, wav: np.ndarray | torch.Tensor, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`embed_and_label_probs` of audio at `sample_rate` Hz, as float64 numpy."""
        with torch.no_grad():
            embeddings, probs = self.embed_and_label_probs(self.prepare(wav, sample_rate))
        return embeddings.detach().double().cpu().numpy(), probs.detach().double().cpu().numpy()


def clip_distribution(probs: np.ndarray) -> np.ndarray:
    """One clip's label distribution ``[C]``: the mean of its segments' rows ``[N, C]``."""
    p = np.asarray(probs, dtype=np.float64).mean(axis=0)
    return p / p.sum()


def pad_to(wav: torch.Tensor, samples: int) -> torch.Tensor:
    """Zero-pad ``[S]`` at the end to at least `samples` samples."""
    return torch.nn.functional.pad(wav, (0, max(0, samples - wav.shape[-1])))
