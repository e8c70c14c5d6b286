"""Batch augmentations on extracted tokens and features (paper appendix B.3, docs/ARCHITECTURE.md, "Algorithms").

Both modalities are always cut or shifted at the same instant.  Times follow the
model's ALiBi convention: audio frame t covers the instant ``(t + 0.5) / frame_rate``
seconds, visual frame f the instant ``(f + 0.5) / fps`` seconds (frames are sampled
at interval centres).

* Temporal mixup: example i is paired with example ``perm[i]`` of the same batch
  and a cut instant c is drawn uniformly in ``[0, duration)``.  Every audio frame
  and every visual frame whose instant is before c comes from clip i, every later
  one from its partner; labels become the union (element-wise max of multi-hot).
* Temporal rolling: both modalities are rolled (circularly) by the same time
  shift.  The shift is a whole number of visual frames that is also a whole number
  of audio frames (with 50 Hz tokens and 1 fps, any whole second), so the two
  stay aligned exactly.  Audio-only batches roll by any number of audio frames.

Inputs: tokens ``[B, K, T]``, features ``[B, F, D]`` or None, labels ``[B, C]`` or None.
Random numbers come from the optional ``torch.Generator`` (drawn on its device).
"""

from __future__ import annotations

from fractions import Fraction

import torch

from vab.utils import uniform


def _draw_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    return generator.device if generator is not None else device


def frame_times(num: int, rate: float, device: torch.device | None = None) -> torch.Tensor:
    """Instants ``[num]`` (seconds) of frames sampled at the centres of ``1 / rate`` intervals."""
    return (torch.arange(num, dtype=torch.float64, device=device) + 0.5) / rate


def temporal_mixup(
    tokens: torch.Tensor,
    features: torch.Tensor | None,
    labels: torch.Tensor | None,
    *,
    p: float,
    frame_rate: float,
    fps: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """With probability `p` per example, the part after a random instant comes from another
    clip of the batch (both modalities cut at the same instant).  Returns new tensors."""
    b, _, t = tokens.shape
    device = tokens.device
    apply = uniform((b,), generator, device) < p
    partner = torch.randperm(b, generator=generator, device=_draw_device(generator, device)).to(device)
    duration = t / frame_rate
    cut = uniform((b,), generator, device, torch.float64) * duration
    audio_late = apply[:, None] & (frame_times(t, frame_rate, device)[None] >= cut[:, None])  # [B, T]
    tokens = torch.where(audio_late[:, None, :], tokens[partner], tokens)
    if features is not None:
        visual_late = apply[:, None] & (frame_times(features.shape[1], fps, device)[None] >= cut[:, None])
        features = torch.where(visual_late[:, :, None], features[partner], features)
    if labels is not None:
        labels = torch.where(apply[:, None], torch.maximum(labels, labels[partner]), labels)
    return tokens, features, labels


def roll_step(frame_rate: float, fps: float) -> tuple[int, int]:
    """Smallest shift (visual frames, audio frames) that is whole in both modalities."""
    ratio = Fraction(frame_rate / fps).limit_denominator(1000)  # audio frames per visual frame
    return ratio.denominator, ratio.numerator


def temporal_roll(
    tokens: torch.Tensor,
    features: torch.Tensor | None,
    *,
    p: float,
    frame_rate: float,
    fps: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """With probability `p` per example, roll audio and video forward in time by the same
    random shift (``out[t] = in[t - shift]``, circular).  Returns new tensors."""
    b, k, t = tokens.shape
    device = tokens.device
    apply = uniform((b,), generator, device) < p
    draw = _draw_device(generator, device)
    if features is None:
        audio_shift = torch.randint(t, (b,), generator=generator, device=draw).to(device)
    else:
        visual_step, audio_step = roll_step(frame_rate, fps)
        choices = max(1, -(-features.shape[1] // visual_step))  # shifts 0, step, 2 step ... < F
        units = torch.randint(choices, (b,), generator=generator, device=draw).to(device)
        units = torch.where(apply, units, 0)
        visual_shift = units * visual_step
        audio_shift = units * audio_step
        f = features.shape[1]
        index = (torch.arange(f, device=device)[None] - visual_shift[:, None]) % f
        features = features.gather(1, index[:, :, None].expand(-1, -1, features.shape[2]))
    audio_shift = torch.where(apply, audio_shift, 0)
    index = (torch.arange(t, device=device)[None] - audio_shift[:, None]) % t
    tokens = tokens.gather(2, index[:, None, :].expand(-1, k, -1))
    return tokens, features


def augment(
    tokens: torch.Tensor,
    features: torch.Tensor | None,
    labels: torch.Tensor | None,
    *,
    mixup_prob: float,
    roll_prob: float,
    frame_rate: float,
    fps: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Temporal mixup, then temporal rolling (paper appendix B.3)."""
    if mixup_prob > 0 and tokens.shape[0] > 1:
        tokens, features, labels = temporal_mixup(
            tokens, features, labels, p=mixup_prob, frame_rate=frame_rate, fps=fps, generator=generator
        )
    if roll_prob > 0:
        tokens, features = temporal_roll(tokens, features, p=roll_prob, frame_rate=frame_rate, fps=fps, generator=generator)
    return tokens, features, labels
