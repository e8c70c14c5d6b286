"""Running the codec over long sequences in chunks, so memory does not grow with length.

Decoding: overlap-discard with a crossfade.  Each chunk of tokens is decoded together
with `context` tokens of real neighbours on both sides (the codec's receptive field:
DAC / EnCodec convolutions, the spectral codec's STFT window and Griffin-Lim phase),
and only its own span is kept.  Around each chunk boundary the two decodes, which both
had context there, are mixed by a short linear crossfade: for the neural codecs they
are nearly identical anyway, and for Griffin-Lim (whose phase is estimated per chunk)
it hides the phase jump that a hard cut would turn into a click.

Encoding: overlap-discard without a crossfade (tokens are discrete): each chunk is
encoded with `context` tokens on both sides and only its own tokens are kept.

A sequence no longer than one chunk plus its context is processed in one call, exactly
as the codec would process it whole.
"""

from __future__ import annotations

import numpy as np
import torch

from vab.codecs.base import AudioCodec, fit_length
from vab.generation.windows import plan_chunks

#: tokens per codec call, in seconds of audio
CHUNK_SECONDS = 20.0
#: real neighbours decoded / encoded on each side of a chunk, seconds
CONTEXT_SECONDS = 0.5
#: crossfade across each decoded chunk boundary, seconds
CROSSFADE_SECONDS = 0.05


def _sizes(codec: AudioCodec, chunk_seconds: float, context_seconds: float) -> tuple[int, int]:
    rate = float(codec.frame_rate)
    return max(1, int(round(chunk_seconds * rate))), max(0, int(round(context_seconds * rate)))


def decode_chunked(
    codec: AudioCodec,
    tokens: torch.Tensor,
    *,
    chunk_seconds: float = CHUNK_SECONDS,
    context_seconds: float = CONTEXT_SECONDS,
    crossfade_seconds: float = CROSSFADE_SECONDS,
) -> np.ndarray:
    """Tokens ``[K, T]`` -> waveform float32 ``[T * hop]`` at ``codec.sample_rate`` Hz."""
    hop = codec.hop_length
    total = int(tokens.shape[-1])
    chunk, context = _sizes(codec, chunk_seconds, context_seconds)
    fade = min(int(round(crossfade_seconds * codec.frame_rate)), chunk)
    chunks = plan_chunks(total, chunk, context)
    out = np.zeros(total * hop, dtype=np.float32)

    def half_fade(boundary: int) -> int:
        # samples each side of a boundary; both chunks decoded real context there
        b = boundary * hop
        return min(fade * hop // 2, context * hop, b, total * hop - b)

    for i, c in enumerate(chunks):
        codes = tokens[None, :, c.lo : c.hi].to(codec.device)
        wav = fit_length(codec.decode(codes), (c.hi - c.lo) * hop)[0, 0].float().cpu().numpy()
        left = half_fade(c.start) if i > 0 else 0
        right = half_fade(c.stop) if i < len(chunks) - 1 else 0
        a, b = c.start * hop - left, c.stop * hop + right
        piece = wav[a - c.lo * hop : b - c.lo * hop]
        if left:
            piece[: 2 * left] *= (np.arange(2 * left, dtype=np.float32) + 0.5) / (2 * left)
        if right:
            piece[len(piece) - 2 * right :] *= 1.0 - (np.arange(2 * right, dtype=np.float32) + 0.5) / (2 * right)
        out[a:b] += piece
    return out


def encode_chunked(
    codec: AudioCodec,
    wav: np.ndarray,
    levels: int,
    *,
    chunk_seconds: float = CHUNK_SECONDS,
    context_seconds: float = CONTEXT_SECONDS,
) -> torch.Tensor:
    """Waveform float32 ``[T * hop]`` at ``codec.sample_rate`` -> tokens long ``[levels, T]`` (CPU)."""
    hop = codec.hop_length
    total = len(wav) // hop
    if total * hop != len(wav):
        raise ValueError(f"waveform length {len(wav)} is not a multiple of the codec hop {hop}")
    chunk, context = _sizes(codec, chunk_seconds, context_seconds)
    parts = []
    for c in plan_chunks(total, chunk, context):
        x = torch.from_numpy(np.ascontiguousarray(wav[c.lo * hop : c.hi * hop], dtype=np.float32))
        codes = codec.encode(x.view(1, 1, -1).to(codec.device))[0, :levels].cpu()
        parts.append(codes[:, c.start - c.lo : c.stop - c.lo])
    return torch.cat(parts, dim=1).long()
