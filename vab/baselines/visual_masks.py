"""FoleyGen's visual attention masks (FoleyGen section 2.4, Fig. 2).

The decoder's sequence is ``[visual frames (F) ; delayed audio steps (S)]``.  Visual
positions attend causally among themselves (the decoder's default mask; they never see
audio).  Audio step s attends causally to the audio steps ``<= s`` and, by `kind`, to

- ``all``: every frame (the plain causal decoder over a prepended prefix);
- ``causal``: the frames that start at or before step s's time (``f / fps <= s / frame_rate``);
- ``frame``: only the frame on screen at step s's time.

"Step s's time" is ``s / frame_rate``: the position that *produces* delayed step s (its
level-0 token is frame s) is the row; with the delay pattern, level k of that step
belongs to frame ``s - k``, which is never later.  Steps past the end of the video (the
delay tail) use the last frame.  Frame f is on screen during ``[f / fps, (f + 1) / fps)``.
"""

from __future__ import annotations

import torch

from vab.errors import ConfigError
from vab.model.base import frame_of_step

VISUAL_MASKS = ("all", "causal", "frame")
__all__ = ["VISUAL_MASKS", "check_visual_mask", "frame_of_step", "visual_attention_mask"]


def check_visual_mask(kind: str) -> None:
    if kind not in VISUAL_MASKS:
        raise ConfigError(f"model.visual_mask: {kind!r} is not one of {', '.join(VISUAL_MASKS)}")


def visual_attention_mask(kind: str, num_frames: int, steps: int, fps: float, frame_rate: float) -> torch.Tensor:
    """Bool ``[F + S, F + S]``, True where query row i may attend to key column j."""
    check_visual_mask(kind)
    length = num_frames + steps
    allowed = torch.ones(length, length, dtype=torch.bool).tril_()  # causal over the whole sequence
    if kind != "all" and num_frames and steps:
        frame = frame_of_step(steps, fps, frame_rate, num_frames)[:, None]  # [S, 1]
        f = torch.arange(num_frames)[None, :]  # [1, F]
        allowed[num_frames:, :num_frames] = f <= frame if kind == "causal" else f == frame
    return allowed
