"""Frame features for one generation window at a time, from a video file or from
features already extracted, so memory does not grow with the video's length."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from vab import media
from vab.errors import MediaError, VabError
from vab.visual.base import VisualEncoder


class FeatureSource(Protocol):
    """Features ``[frames, D]`` of the window that starts at `t0` seconds."""

    seconds: float  # how long the source is

    def window(self, t0: float) -> torch.Tensor: ...


def video_seconds(path: str | os.PathLike) -> float:
    """Length of the picture in seconds (first displayed frame to the end of the last), the
    span `media.mux` keeps; reads packets without decoding them.  A truncated file gives the
    length of what it holds."""
    info = media.probe(path)  # missing, unreadable, not media: one clear MediaError
    if not info.has_video:
        raise MediaError(path, "no video stream (an audio-only file?)")
    seconds = media.picture_seconds(path)
    if seconds > 0:
        return seconds
    if info.duration and info.duration > 0:
        return float(info.duration)
    raise MediaError(path, "video stream has no readable packets")


def _pad_frames(x: np.ndarray | torch.Tensor, count: int):
    """Repeat the last row up to `count` rows (as training pads short clips), or cut."""
    if len(x) >= count:
        return x[:count]
    if isinstance(x, np.ndarray):
        return np.concatenate([x, np.repeat(x[-1:], count - len(x), axis=0)])
    return torch.cat([x, x[-1:].expand(count - len(x), *x.shape[1:])])


class VideoFeatures:
    """Reads and encodes the frames of one window per call (`media.read_frames` with t0, t1)."""

    def __init__(
        self,
        path: str | os.PathLike,
        encoder: VisualEncoder,
        fps: float,
        num_frames: int,
        max_short_side: int | None = None,
        seconds: float | None = None,
    ):
        self.path = Path(path)
        self.encoder = encoder
        self.fps = float(fps)
        self.num_frames = int(num_frames)
        self.max_short_side = max_short_side
        self.seconds = video_seconds(path) if seconds is None else float(seconds)

    def window(self, t0: float) -> torch.Tensor:
        """``[num_frames, D]`` float32 for the frames at ``t0 + (i + 0.5) / fps``; past the end
        of the video the last frame repeats."""
        t1 = t0 + self.num_frames / self.fps
        frames, _ = media.read_frames(self.path, self.fps, t0, t1, max_short_side=self.max_short_side)
        if len(frames) == 0 and 0 < self.seconds < t1 - t0:
            # a video shorter than half a frame interval (one frame, a blink): no sample time
            # falls inside it, so take the frame at its middle and repeat it
            frames, _ = media.read_frames(self.path, 1.0 / self.seconds, 0.0, self.seconds, self.max_short_side)
        if len(frames) == 0:
            raise MediaError(self.path, f"no video frames could be decoded after {t0:.2f} s (truncated file?)")
        return self.encoder.encode(_pad_frames(frames, self.num_frames)).float()


class ArrayFeatures:
    """Features ``[F, D]`` already extracted at the model's fps (frame k covers
    ``[k / fps, (k + 1) / fps)``)."""

    def __init__(self, features: torch.Tensor | np.ndarray, fps: float, num_frames: int, dim: int):
        x = torch.as_tensor(np.asarray(features) if not isinstance(features, torch.Tensor) else features)
        if x.dim() != 2 or x.shape[1] != dim or x.shape[0] == 0 or not x.is_floating_point():
            raise VabError(f"features must be float [frames, {dim}] at {fps:g} fps, got {tuple(x.shape)} {x.dtype}")
        self.features = x.detach().float().cpu()
        self.fps = float(fps)
        self.num_frames = int(num_frames)
        self.seconds = len(self.features) / self.fps

    def window(self, t0: float) -> torch.Tensor:
        first = int(math.floor(t0 * self.fps + 0.5))  # the frame on screen at the first sample time
        index = torch.arange(first, first + self.num_frames).clamp_(max=len(self.features) - 1)
        return self.features[index]
