"""Audio tokenizers: waveform <-> residual codebook tokens (docs/ARCHITECTURE.md, "Data contracts").

`build_codec` is the one entry point; the libraries behind `encodec` and `dac` are
imported only when such a codec is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vab.codecs.base import AudioCodec
from vab.codecs.dac import load_dac
from vab.codecs.encodec import load_encodec
from vab.codecs.spectral import load_spectral
from vab.errors import ConfigError

CODECS = ("encodec", "dac", "spectral")


def build_codec(cfg: Any, directory: str | Path | None = None) -> AudioCodec:
    """The codec a `CodecConfig` describes, in eval mode on the CPU.

    `directory` is a model or data-set directory; a fitted spectral codec saved
    there (``codec.safetensors``) takes precedence over ``codec.path``.
    """
    name = cfg.name
    if name == "encodec":
        return load_encodec(cfg)
    if name == "dac":
        return load_dac(cfg)
    if name == "spectral":
        return load_spectral(cfg, directory)
    raise ConfigError(f"codec.name={name!r}: unknown codec (choose one of {', '.join(CODECS)})")


__all__ = ["AudioCodec", "CODECS", "build_codec"]
