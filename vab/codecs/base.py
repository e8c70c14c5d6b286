"""The interface every audio tokenizer implements (docs/ARCHITECTURE.md, "Data contracts")."""

from __future__ import annotations

import abc
import itertools
from pathlib import Path

import torch
from safetensors.torch import save_file

from vab.errors import VabError
from vab.filenames import CODEC_FILE
from vab.utils import atomic_path


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

    def train(self, mode: bool = True) -> "AudioCodec":
        """Codecs are frozen tokenizers: always in eval mode (DAC's quantizer
        changes its codes in training mode), whatever a parent module asks."""
        return super().train(False)

    @property
    def device(self) -> torch.device:
        for tensor in itertools.chain(self.parameters(), self.buffers()):
            return tensor.device
        return torch.device("cpu")

    def _check_wav(self, wav: torch.Tensor) -> torch.Tensor:
        """Validate a ``[B, 1, N]`` waveform; return it as float32 on the codec's device."""
        if not isinstance(wav, torch.Tensor) or wav.dim() != 3 or wav.shape[1] != 1 or wav.shape[-1] == 0:
            shape = list(wav.shape) if isinstance(wav, torch.Tensor) else type(wav).__name__
            raise VabError(f"{self.name} codec: expected a mono waveform [B, 1, N] with N > 0, got {shape}")
        if wav.is_complex():
            raise VabError(f"{self.name} codec: expected a real waveform, got {wav.dtype}")
        return wav.to(device=self.device, dtype=torch.float32)

    def _check_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Validate ``[B, k, T]`` codes (1 <= k <= K, values in [0, codebook_size));
        return them as long on the codec's device."""
        if not isinstance(codes, torch.Tensor) or codes.dim() != 3:
            shape = list(codes.shape) if isinstance(codes, torch.Tensor) else type(codes).__name__
            raise VabError(f"{self.name} codec: expected codes [B, K, T], got {shape}")
        if codes.is_floating_point() or codes.is_complex():
            raise VabError(f"{self.name} codec: codes must be integers, got {codes.dtype}")
        if not 1 <= codes.shape[1] <= self.num_codebooks or codes.shape[-1] == 0:
            raise VabError(
                f"{self.name} codec: codes {list(codes.shape)} need 1..{self.num_codebooks} levels and T > 0"
            )
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise VabError(
                f"{self.name} codec: code values must lie in [0, {self.codebook_size}), "
                f"got [{int(codes.min())}, {int(codes.max())}]"
            )
        return codes.to(device=self.device, dtype=torch.long)

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
        """Write what :meth:`state_files` returns as ``codec.safetensors`` (:data:`vab.filenames.CODEC_FILE`), if anything."""
        tensors = self.state_files()
        if not tensors:
            return

        with atomic_path(Path(directory) / CODEC_FILE) as tmp:
            save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, str(tmp))


def fit_length(wav: torch.Tensor, length: int) -> torch.Tensor:
    """Zero-pad or trim the last axis of `wav` to `length` samples (decoders of
    library codecs can return a few samples more or fewer than ``T * hop``)."""
    if wav.shape[-1] >= length:
        return wav[..., :length]
    return torch.nn.functional.pad(wav, (0, length - wav.shape[-1]))
