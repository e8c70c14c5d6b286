"""EnCodec through the `encodec` package: the 24 kHz model, 75 Hz frames,
1024-entry codebooks of 128-d vectors; ``codec.bandwidth`` kbps picks how many
levels are used (1.5 / 3 / 6 / 12 / 24 -> 2 / 4 / 8 / 16 / 32; 3 kbps = 4 x 1024).

The VAB paper tokenises with a 16 kHz EnCodec with 2048-entry codebooks; that
model is not published in the `encodec` package, so vab uses the 24 kHz one.

Weights, in order of precedence:

- ``codec.path``: a folder holding the library's ``encodec_24khz-d7cc33bc.th``
  (what the library accepts as ``repository``; the sha256 in the name is checked),
  or a single state-dict file (``.th`` / ``.pt`` read with
  ``torch.load(weights_only=True)``, or ``.safetensors``);
- ``codec.pretrained: true``: the library's own download (cached by torch.hub);
- ``codec.pretrained: false``: seeded random init, for tests only.  The library
  leaves untrained codebooks at zero (it fills them by k-means on the first
  training batch), which would give constant codes, so they get seeded random
  vectors placed around the random encoder's outputs instead.
"""

from __future__ import annotations

from typing import Any

import torch

from vab.codecs.base import AudioCodec, fit_length
from vab.codecs.weights import KEY, check_sha256_prefix, existing, seeded
from vab.errors import ConfigError, VabError
from vab.weights import first_line, load_state, read_weights, state_dict_in

CHECKPOINT = "encodec_24khz-d7cc33bc.th"
BANDWIDTHS = (1.5, 3.0, 6.0, 12.0, 24.0)  # kbps the 24 kHz model supports


class EncodecCodec(AudioCodec):
    """Wraps an ``encodec.EncodecModel``; codes ``[B, K, T]`` with K set by the bandwidth."""

    name = "encodec"

    def __init__(self, model: Any, bandwidth: float):
        super().__init__()
        model.set_target_bandwidth(bandwidth)
        self.model = model.eval().requires_grad_(False)
        self._levels = model.quantizer.get_num_quantizers_for_bandwidth(model.frame_rate, bandwidth)

    @property
    def sample_rate(self) -> int:
        return int(self.model.sample_rate)

    @property
    def frame_rate(self) -> float:
        return float(self.model.frame_rate)

    @property
    def num_codebooks(self) -> int:
        return self._levels

    @property
    def codebook_size(self) -> int:
        return int(self.model.quantizer.bins)

    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, 1, N]`` at 24 kHz -> ``[B, K, ceil(N / 320)]`` long."""
        wav = self._check_wav(wav)
        with torch.no_grad():
            frames = self.model.encode(wav)
        # the 24 kHz model has no segmenting: one frame covering the whole input
        return torch.cat([codes for codes, _ in frames], dim=-1).long()

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """``[B, k, T]`` (k <= K leading levels) -> ``[B, 1, T * 320]`` float."""
        codes = self._check_codes(codes)
        with torch.no_grad():
            wav = self.model.decode([(codes, None)])
        return fit_length(wav, codes.shape[-1] * self.hop_length)

    def codebook_vectors(self, level: int) -> torch.Tensor:
        """Codebook of `level` (0-based) as ``[1024, 128]``."""
        if not 0 <= level < self.num_codebooks:
            raise VabError(f"encodec codec: level {level} out of range 0..{self.num_codebooks - 1}")
        return self.model.quantizer.vq.layers[level]._codebook.embed.detach().clone()


def load_encodec(cfg: Any) -> EncodecCodec:
    """Build the codec from a `CodecConfig` (see the module docstring for weights)."""
    bandwidth = float(cfg.bandwidth)
    if bandwidth not in BANDWIDTHS:
        raise ConfigError(
            f"codec.bandwidth={cfg.bandwidth}: the 24 kHz EnCodec supports {', '.join(map(str, BANDWIDTHS))} kbps"
        )
    from encodec import EncodecModel  # heavy optional library: imported only when an EnCodec codec is built

    if cfg.path:
        model = _from_path(cfg.path)
    elif cfg.pretrained:
        try:
            model = EncodecModel.encodec_model_24khz(pretrained=True)
        except Exception as exc:
            raise VabError(
                f"could not fetch EnCodec weights ({first_line(exc)}); download them elsewhere "
                f"and set codec.path=/path/to/{CHECKPOINT}"
            ) from None
    else:
        model = random_encodec()
    return EncodecCodec(model, bandwidth)


def random_encodec(seed: int = 0) -> Any:
    """The 24 kHz architecture with seeded random weights and codebooks.

    A random-init encoder maps every input to nearly the same vector (a large
    constant plus a small input-dependent part), so random codebooks around zero
    would give constant codes.  Like the library's own k-means initialisation, the
    codebooks are placed where the encoder's outputs are: level 1 around their
    mean, all levels with the spread of the input-dependent part.
    """
    from encodec import EncodecModel  # heavy optional library: imported only when an EnCodec codec is built

    with seeded(seed):
        model = EncodecModel.encodec_model_24khz(pretrained=False)
        with torch.no_grad():
            frames = model.encoder(0.1 * torch.randn(1, 1, model.sample_rate))[0].T  # [T, 128]
        centre = frames.mean(dim=0)
        spread = (frames - centre).norm(dim=1).mean()
        for level, layer in enumerate(model.quantizer.vq.layers):
            directions = torch.randn_like(layer._codebook.embed)
            vectors = directions / directions.norm(dim=1, keepdim=True) * spread
            layer._codebook.embed.copy_(vectors + centre if level == 0 else vectors)
    return model


def _from_path(path: str) -> Any:
    from encodec import EncodecModel  # heavy optional library: imported only when an EnCodec codec is built

    file = existing(path)
    if file.is_dir():
        folder = file
        file = folder / CHECKPOINT
        if not file.is_file():
            raise VabError(f"codec.path={path}: no {CHECKPOINT} in this folder")
        check_sha256_prefix(file, CHECKPOINT.split("-")[1].split(".")[0], "EnCodec")
    where = f"{KEY}={file}"
    state = state_dict_in(read_weights(file, where), f"{where}: not a valid EnCodec checkpoint", nested=())
    model = EncodecModel.encodec_model_24khz(pretrained=False)
    load_state(model, state, f"{where}: not a valid EnCodec checkpoint")
    return model.eval()
