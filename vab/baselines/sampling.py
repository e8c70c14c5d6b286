"""Autoregressive decoding of delayed codec tokens (FoleyGen 3.2, MusicGen), with
classifier-free guidance, top-k / top-p sampling and a key-value cache.

For T frames of K levels the sampler runs ``S = T + K - 1`` steps over the delay
pattern.  At step s every level of delayed step s is drawn at once from the logits the
model gave at position s (whose input is delayed step s - 1); level k there is frame
``s - k``.  Guidance runs the conditional and the unconditional (null visual) rows as one
batch, ``logits = u + w * (c - u)`` (:func:`vab.generation.sampling.guide_logits`).

Given tokens (a window's overlap with the previous window, a prompt, kept edit spans) are
never resampled: where a step holds a given token it is written in place of the draw.
Leading steps that are given for every example are fed in one prefill forward, which is
how a window takes the previous window's last overlap tokens as its prompt.

Randomness mirrors :func:`vab.generation.sampling.sample_tokens`: example b draws a ``[S, K]`` block of
uniforms from a CPU generator seeded with ``seeds[b]`` and uses entry ``[s, k]`` for level k
of step s (inverse-CDF sampling, :func:`vab.generation.sampling.draw_tokens`), so an example's tokens do
not depend on its batch, nor on whether the cache is used.
"""

from __future__ import annotations

import torch
from torch import nn

from vab.baselines.delay import build_delay, delay_valid, delayed_length, revert_delay, shift_right
from vab.errors import VabError
from vab.generation.sampling import Progress, SamplingConfig, _batch_and_length, _initial_tokens, draw_tokens, guide_logits, model_device


@torch.inference_mode()
def sample_autoregressive(
    model: nn.Module,
    features: torch.Tensor | None,
    *,
    num_frames: int | None = None,
    given: torch.Tensor | None = None,
    given_mask: torch.Tensor | None = None,
    cfg: SamplingConfig | None = None,
    seeds: list[int] | None = None,
    progress: Progress | None = None,
    use_cache: bool = True,
) -> torch.Tensor:
    """Decode audio tokens ``[B, K, T]`` (long, on the model's device) with a
    :class:`~vab.baselines.foleygen.FoleyGen` model.  Arguments as
    :func:`vab.generation.sampling.sample_tokens` (``cfg.steps`` and ``cfg.mask_temperature`` do not
    apply: there is one step per delayed position); ``use_cache=False`` recomputes the whole
    prefix at every step (for tests: the result is the same)."""
    cfg = cfg if cfg is not None else SamplingConfig()
    cfg.validate()
    if not getattr(model, "autoregressive", False):
        raise VabError("sample_autoregressive needs an autoregressive (foleygen) model")
    device = model_device(model)
    batch, length = _batch_and_length(model, features, num_frames, given, seeds)
    seeds = list(seeds) if seeds is not None else [cfg.seed + b for b in range(batch)]
    tokens = _initial_tokens(model, batch, length, given, given_mask, device)
    levels, pad = int(model.levels), int(model.mask_id)
    steps = delayed_length(length, levels)
    delayed = build_delay(tokens, pad)  # [B, K, S]; filled in step by step
    known = build_delay(tokens != pad, False)  # given tokens
    todo = delay_valid(levels, steps, device)[None] & ~known  # [B, K, S] tokens to draw
    pending = todo.any(dim=(0, 1)).nonzero()
    if len(pending) == 0:
        return tokens
    prefill = int(pending[0])  # steps 0 .. prefill - 1 are given for every example
    noise = torch.stack([torch.rand(steps, levels, generator=torch.Generator().manual_seed(int(s))) for s in seeds]).to(device)

    rows_features, drop, guided = _rows(features, batch, cfg.guidance, device)
    reps = 2 if guided else 1

    def logits_at(inputs: torch.Tensor, cache) -> torch.Tensor:
        """The last position's logits ``[rows, K, V]`` for inputs ``[B, K, n]``."""
        out = model(inputs.repeat(reps, 1, 1), rows_features, drop, cache=cache)
        return out[:, :, -1].float()

    was_training = model.training
    model.eval()
    try:
        cache = model.new_cache(batch * reps, steps) if use_cache else None
        logits = logits_at(shift_right(delayed[:, :, : prefill + 1], pad), cache)
        for s in range(prefill, steps):
            rows = guide_logits(logits[:batch], logits[batch:], cfg.guidance) if guided else logits
            drawn, _ = draw_tokens(rows.reshape(batch * levels, -1), noise[:, s].reshape(-1), cfg)
            column = delayed[:, :, s]
            delayed[:, :, s] = torch.where(todo[:, :, s], drawn.view(batch, levels), column)
            if progress is not None:
                progress(s + 1 - prefill, steps - prefill)
            if s + 1 < steps:
                if use_cache:
                    logits = logits_at(delayed[:, :, s : s + 1], cache)
                else:
                    logits = logits_at(shift_right(delayed[:, :, : s + 2], pad), None)
    finally:
        model.train(was_training)
    return revert_delay(delayed)


def _rows(
    features: torch.Tensor | None, batch: int, guidance: float, device: torch.device
) -> tuple[torch.Tensor | None, torch.Tensor | None, bool]:
    """(features of the forward's rows, drop_visual or None, guided?): ``[cond ; uncond]``
    with guidance, the conditional rows alone at w = 1 (or without features), the
    null-visual rows alone at w = 0."""
    if features is None or guidance == 1:
        return (None if features is None else features.to(device)), None, False
    features = features.to(device)
    if guidance == 0:
        return features, torch.ones(batch, dtype=torch.bool, device=device), False
    drop = torch.arange(2 * batch, device=device) >= batch
    return torch.cat([features, features]), drop, True


__all__ = ["sample_autoregressive"]
