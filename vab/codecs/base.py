"""The interface every audio tokenizer implements (DESIGN section 3)."""

from __future__ import annotations

import abc
from pathlib import Path

import torch


class AudioCodec(abc.ABC, torch.nn.Module):
    """Waveform <-> residual codebook tokens.

    Shapes: waveforms are ``[B, 1, N]`` float32 at :attr:`sample_rate` (Hz);
    codes are ``LongTensor [B, K, T]`` with ``T = N / hop`` and
    ``hop = sample_rate / frame_rate``.
    """

    #: registry name (encodec | dac | spectral)
    name: str = ""

    @property
    @abc.abstractmethod
    def sample_rate(self) -> int: ...

    @property
    @abc.abstractmethod
    def frame_rate(self) -> float: ...

    @property
    @abc.abstractmethod
    def num_codebooks(self) -> int: ...

    @property
    @abc.abstractmethod
    def codebook_size(self) -> int: ...

    @abc.abstractmethod
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, 1, N]`` float -> ``[B, K, T]`` long."""

    @abc.abstractmethod
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """``[B, k, T]`` long (k <= K leading levels) -> ``[B, 1, T * hop]`` float."""

    @abc.abstractmethod
    def codebook_vectors(self, level: int) -> torch.Tensor:
        """The codebook of `level` as ``[codebook_size, d]`` (reused as audio embeddings)."""

    @property
    def hop_length(self) -> int:
        return int(round(self.sample_rate / self.frame_rate))

    def num_frames(self, seconds: float) -> int:
        """Tokens per level for `seconds` of audio."""
        return int(round(seconds * self.frame_rate))

    def state_files(self) -> dict[str, torch.Tensor]:
        """Tensors that must travel with a model / data set to rebuild this codec
        offline (the fitted spectral codec); empty for library codecs."""
        return {}

    def save(self, directory: str | Path) -> None:
        """Write what :meth:`state_files` returns as ``codec.safetensors`` (if anything)."""
        tensors = self.state_files()
        if not tensors:
            return
        from safetensors.torch import save_file

        from vab.utils import atomic_path

        with atomic_path(Path(directory) / "codec.safetensors") as tmp:
            save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, str(tmp))
