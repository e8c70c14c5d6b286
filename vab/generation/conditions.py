"""Given tokens for editing and continuation: which tokens are kept, and their values.

- Edit (`--edit 2.5-4.0,7-8`): the video's own soundtrack is tokenized with the codec;
  the tokens of the listed time spans are regenerated and every other token is given.
  A span ``a-b`` (seconds) regenerates tokens ``[round(a * r), round(b * r))`` at frame
  rate r, rounding to the nearest token boundary with halves up (see
  :func:`~vab.generation.windows.seconds_to_tokens`).  Every span must lie within the
  soundtrack generated (:func:`check_spans`): a span past the end is refused, not cut.
- Continuation (`--prompt AUDIO`): the prompt's tokens are given at the start.
"""

from __future__ import annotations

import math
import os
import re
from typing import Sequence

import numpy as np
import torch

from vab import media
from vab.codecs.base import AudioCodec
from vab.errors import MediaError, VabError
from vab.generation.codec_chunks import encode_chunked
from vab.generation.windows import seconds_to_tokens

Spans = Sequence[tuple[float, float]]
_NUMBER = r"\s*(\d+(?:\.\d*)?|\.\d+)\s*"
_SPAN = re.compile(_NUMBER + "-" + _NUMBER)
#: a span may end this much after the end (seconds): lengths are shown rounded to 0.1 s
END_SLACK = 0.05


def parse_spans(text: str | Spans) -> list[tuple[float, float]]:
    """``"2.5-4.0,7-8"`` (or pairs) -> ``[(2.5, 4.0), (7.0, 8.0)]`` seconds, sorted, each with start < end."""
    if isinstance(text, str):
        spans = []
        for part in text.split(","):
            m = _SPAN.fullmatch(part)
            if not m:
                raise VabError(f"edit spans {text!r}: {part.strip()!r} is not a time span like 2.5-4.0 (seconds)")
            spans.append((float(m.group(1)), float(m.group(2))))
    else:
        try:
            spans = [(float(a), float(b)) for a, b in text]
        except (TypeError, ValueError):
            raise VabError(f"edit spans must be (start, end) pairs in seconds, got {text!r}") from None
    if not spans:
        raise VabError("edit: no time spans given")
    for a, b in spans:
        if not (0 <= a < b and math.isfinite(b)):
            raise VabError(f"edit span {a:g}-{b:g}: need 0 <= start < end (seconds)")
    return sorted(spans)


def check_spans(spans: Spans, seconds: float, where: str | os.PathLike) -> None:
    """A MediaError naming `where` if a span starts or ends after `seconds`, the length of
    the soundtrack to edit (a span may end up to :data:`END_SLACK` after it)."""
    for a, b in spans:
        if a >= seconds:
            raise MediaError(where, f"edit span {a:g}-{b:g} s starts after the end ({seconds:.2f} s)")
        if b > seconds + END_SLACK:
            raise MediaError(where, f"edit span {a:g}-{b:g} s ends after the end ({seconds:.2f} s)")


def kept_mask(spans: Spans, total: int, frame_rate: float, levels: int, where: str | os.PathLike) -> torch.Tensor:
    """Bool ``[levels, total]``: True where a token is kept (outside every span)."""
    check_spans(spans, total / frame_rate, where)
    keep = torch.ones(levels, total, dtype=torch.bool)
    for a, b in spans:
        lo, hi = seconds_to_tokens(a, frame_rate), min(seconds_to_tokens(b, frame_rate), total)
        if hi <= lo:
            raise VabError(f"edit span {a:g}-{b:g} s is shorter than one audio token ({1 / frame_rate:g} s)")
        keep[:, lo:hi] = False
    return keep


def soundtrack_tokens(
    codec: AudioCodec, audio: str | os.PathLike | np.ndarray, total: int, levels: int
) -> torch.Tensor:
    """The first `total` tokens ``[levels, total]`` of a video's own soundtrack (a media file,
    or a float32 waveform ``[N]`` at the codec's sample rate); zero-padded past its end."""
    hop = codec.hop_length
    if isinstance(audio, (str, os.PathLike)):
        if not media.probe(audio).has_audio:
            raise MediaError(audio, "no audio track to edit")
        wav = media.read_audio(audio, codec.sample_rate, 0.0, total / codec.frame_rate)
    else:
        wav = _as_wave(audio)
    wav = np.pad(wav[: total * hop], (0, max(0, total * hop - len(wav))))
    return encode_chunked(codec, wav, levels)


def prompt_tokens(
    codec: AudioCodec, prompt: str | os.PathLike | np.ndarray, levels: int, seconds: float | None = None
) -> torch.Tensor:
    """Tokens ``[levels, P]`` of an audio prompt (a media file, or float32 ``[N]`` at the codec's
    sample rate), its first `seconds` (default: all of it); P counts whole tokens only."""
    if seconds is not None and not seconds > 0:
        raise VabError(f"--prompt-seconds must be > 0, got {seconds}")
    if isinstance(prompt, (str, os.PathLike)):
        info = media.probe(prompt)
        if not info.has_audio:
            raise MediaError(prompt, "no audio stream to use as a prompt")
        # bounded by the file's length: read_audio zero-pads past the end of the stream
        t1 = None if seconds is None else min(seconds, info.duration or seconds)
        wav = media.read_audio(prompt, codec.sample_rate, 0.0, t1)
        where = str(prompt)
    else:
        wav = _as_wave(prompt)
        if seconds is not None:
            wav = wav[: int(round(seconds * codec.sample_rate))]
        where = "prompt"
    count = len(wav) // codec.hop_length
    if count < 1:
        raise VabError(f"{where}: the prompt is shorter than one audio token ({1 / codec.frame_rate:g} s)")
    return encode_chunked(codec, wav[: count * codec.hop_length], levels)


def _as_wave(audio: np.ndarray | torch.Tensor) -> np.ndarray:
    x = audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
    x = np.squeeze(x)
    if x.ndim != 1 or not np.issubdtype(x.dtype, np.floating):
        raise VabError(f"audio must be a float waveform [N] at the codec's sample rate, got {x.dtype} {x.shape}")
    return x.astype(np.float32, copy=False)


__all__ = ["Spans", "parse_spans", "check_spans", "kept_mask", "soundtrack_tokens", "prompt_tokens"]
