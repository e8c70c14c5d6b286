"""DAC through `descript-audio-codec`: the 16 kHz model, 50 Hz frames,
12 codebooks x 1024 entries of 8-d vectors.

Weights, in order of precedence:

- ``codec.path``: a ``.pth`` as written by `dac` (a dict with ``state_dict`` and
  ``metadata``; read with ``torch.load(weights_only=True)``, the architecture
  taken from its ``metadata.kwargs``), or a ``.safetensors`` state dict of the
  16 kHz architecture;
- ``codec.pretrained: true``: ``dac.utils.download(model_type="16khz")``;
- ``codec.pretrained: false``: seeded random init of the 16 kHz architecture
  (tests only).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch

from vab.codecs.base import AudioCodec, fit_length
from vab.codecs.weights import KEY, existing, seeded
from vab.errors import VabError
from vab.weights import first_line, load_state, read_weights, state_dict_in

# The architecture of the published weights_16khz.pth (its metadata kwargs);
# `dac` itself ships no 16 kHz preset, only the download URL.
DAC_16KHZ: dict[str, Any] = dict(
    encoder_dim=64,
    encoder_rates=[2, 4, 5, 8],
    latent_dim=1024,
    decoder_dim=1536,
    decoder_rates=[8, 5, 4, 2],
    n_codebooks=12,
    codebook_size=1024,
    codebook_dim=8,
    quantizer_dropout=False,
    sample_rate=16000,
)
DOWNLOAD_NAME = "weights_16khz.pth"


class DacCodec(AudioCodec):
    """Wraps a ``dac.DAC`` model; codes ``[B, 12, T]`` for the 16 kHz model."""

    name = "dac"

    def __init__(self, model: Any):
        super().__init__()
        self.model = model.eval().requires_grad_(False)

    @property
    def sample_rate(self) -> int:
        return int(self.model.sample_rate)

    @property
    def frame_rate(self) -> float:
        return self.model.sample_rate / int(self.model.hop_length)

    @property
    def num_codebooks(self) -> int:
        return int(self.model.n_codebooks)

    @property
    def codebook_size(self) -> int:
        return int(self.model.codebook_size)

    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, 1, N]`` at 16 kHz -> ``[B, K, ceil(N / 320)]`` long."""
        wav = self._check_wav(wav)
        with torch.no_grad():
            _, codes, *_ = self.model.encode(self.model.preprocess(wav, self.sample_rate))
        return codes.long()

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """``[B, k, T]`` (k <= K leading levels) -> ``[B, 1, T * 320]`` float."""
        codes = self._check_codes(codes)
        with torch.no_grad():
            latent = self.model.quantizer.from_codes(codes)[0]
            wav = self.model.decode(latent)
        return fit_length(wav, codes.shape[-1] * self.hop_length)

    def codebook_vectors(self, level: int) -> torch.Tensor:
        """The lookup table of quantizer `level` (0-based) as ``[1024, 8]``."""
        if not 0 <= level < self.num_codebooks:
            raise VabError(f"dac codec: level {level} out of range 0..{self.num_codebooks - 1}")
        return self.model.quantizer.quantizers[level].codebook.weight.detach().clone()


def load_dac(cfg: Any) -> DacCodec:
    """Build the codec from a `CodecConfig` (see the module docstring for weights)."""
    if cfg.path:
        return DacCodec(_from_file(existing(cfg.path)))
    if cfg.pretrained:
        import dac  # heavy optional library: imported only when a DAC codec is built

        try:
            file = Path(dac.utils.download(model_type="16khz"))
        except Exception as exc:
            raise VabError(
                f"could not fetch DAC weights ({first_line(exc)}); download them elsewhere "
                f"and set codec.path=/path/to/{DOWNLOAD_NAME}"
            ) from None
        return DacCodec(_from_file(file))
    return DacCodec(random_dac())


def random_dac(seed: int = 0, **overrides: Any) -> Any:
    """The 16 kHz architecture with seeded random weights."""
    import dac  # heavy optional library: imported only when a DAC codec is built

    with seeded(seed):
        return dac.DAC(**{**DAC_16KHZ, **overrides}).eval()


def _from_file(file: Path) -> Any:
    import dac  # heavy optional library: imported only when a DAC codec is built

    where = f"{KEY}={file}: not a valid DAC checkpoint"
    blob = read_weights(file, f"{KEY}={file}")
    kwargs = dict(DAC_16KHZ)
    if isinstance(blob, dict) and "state_dict" in blob:
        metadata = blob.get("metadata") or {}
        saved = metadata.get("kwargs", {}) if isinstance(metadata, dict) else {}
        accepted = inspect.signature(dac.DAC).parameters
        kwargs.update({k: v for k, v in saved.items() if k in accepted})
        state = blob["state_dict"]
    else:
        state = blob
    try:
        model = dac.DAC(**kwargs)
    except Exception as exc:
        raise VabError(f"{where}: bad architecture ({first_line(exc)})") from None
    load_state(model, state_dict_in(state, where, nested=()), where)
    return model.eval()
