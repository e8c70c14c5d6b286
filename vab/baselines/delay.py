"""The MusicGen delay pattern (FoleyGen section 2.3, V-AURA section III-B).

Level k of a token sequence ``[B, K, T]`` is shifted k steps to the right, so delayed
step s holds level k of audio frame ``s - k``.  One autoregressive step then predicts
all K levels at once, and level k of frame t is predicted after levels < k of the same
frame were seen.  The sequence grows to ``S = T + K - 1`` steps; the positions no
frame fills (the triangle before each level starts and after it ends) hold `pad_id`.
"""

from __future__ import annotations

import torch


def delayed_length(frames: int, levels: int) -> int:
    """S = T + K - 1 delayed steps for T frames of K levels."""
    return frames + levels - 1


def delay_valid(levels: int, steps: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Bool ``[K, S]``: True where delayed step s of level k holds a real frame
    (``0 <= s - k < S - K + 1``)."""
    frames = steps - levels + 1
    s = torch.arange(steps, device=device)[None, :]
    k = torch.arange(levels, device=device)[:, None]
    return (s >= k) & (s - k < frames)


def build_delay(tokens: torch.Tensor, pad_id: int | bool) -> torch.Tensor:
    """``[B, K, T]`` -> ``[B, K, T + K - 1]``: ``out[:, k, t + k] = tokens[:, k, t]``, `pad_id`
    elsewhere.  Works for any dtype (a bool mask delays with ``pad_id=False``)."""
    b, levels, frames = tokens.shape
    out = torch.full((b, levels, delayed_length(frames, levels)), pad_id, dtype=tokens.dtype, device=tokens.device)
    for k in range(levels):
        out[:, k, k : k + frames] = tokens[:, k]
    return out


def revert_delay(delayed: torch.Tensor) -> torch.Tensor:
    """``[B, K, S]`` (or ``[B, K, S, ...]``, e.g. logits) -> ``[B, K, S - K + 1, ...]``: the
    inverse of :func:`build_delay` (pad positions are dropped)."""
    levels, steps = delayed.shape[1], delayed.shape[2]
    frames = steps - levels + 1
    if frames < 1:
        raise ValueError(f"{steps} delayed steps cannot hold {levels} levels")
    return torch.stack([delayed[:, k, k : k + frames] for k in range(levels)], dim=1)


def shift_right(delayed: torch.Tensor, start_id: int) -> torch.Tensor:
    """Teacher-forcing inputs ``[B, K, S]``: input step s is delayed step s - 1, step 0 the
    start token (`start_id` on every level), so output s predicts delayed step s."""
    start = torch.full_like(delayed[:, :, :1], start_id)
    return torch.cat([start, delayed[:, :, :-1]], dim=2)
