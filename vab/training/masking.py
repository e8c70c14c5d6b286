"""Mask-ratio distribution and mask construction for masked audio-token prediction
(paper section 3.2, docs/ARCHITECTURE.md, "Algorithms").

Per example a ratio r is drawn from a normal(mean, std) truncated to (0, 1] (with
probability ``full_prob`` it is 1 instead: everything masked), and
exactly ``max(1, round(r * N))`` of its N maskable tokens are masked, at uniformly
random positions.  Levels below ``given_levels`` (the coarse levels of the
coarse-to-fine model) are never masked.  Every function takes an optional
``torch.Generator``; random numbers are drawn on the generator's device and moved
to the data's device, so the same seed gives the same masks on any device.
"""

from __future__ import annotations

import math

import torch

from vab.utils import uniform


def truncated_normal_moments(mean: float, std: float, low: float = 0.0, high: float = 1.0) -> tuple[float, float]:
    """Mean and standard deviation of normal(mean, std) truncated to [low, high]."""
    a, b = (low - mean) / std, (high - mean) / std

    def pdf(x: float) -> float:
        return math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)

    def cdf(x: float) -> float:
        return 0.5 * (1 + math.erf(x / math.sqrt(2)))

    z = cdf(b) - cdf(a)
    m = (pdf(a) - pdf(b)) / z
    var = 1 + (a * pdf(a) - b * pdf(b)) / z - m * m
    return mean + std * m, std * math.sqrt(var)


def sample_mask_ratio(
    n: int,
    mean: float = 0.55,
    std: float = 0.25,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``[n]`` float32 ratios from normal(mean, std) truncated to (0, 1], by inverting the CDF."""
    if std <= 0:
        return torch.full((n,), min(max(mean, 1e-6), 1.0), device=device)
    normal = torch.distributions.Normal(torch.tensor(mean, dtype=torch.float64), torch.tensor(std, dtype=torch.float64))
    lo, hi = normal.cdf(torch.tensor(0.0, dtype=torch.float64)), normal.cdf(torch.tensor(1.0, dtype=torch.float64))
    u = lo + (hi - lo) * uniform((n,), generator, "cpu", torch.float64)
    ratio = normal.icdf(u.clamp(min=lo.item(), max=hi.item()))
    # the lower end is open: a ratio of exactly 0 would mask nothing
    return ratio.clamp(min=1e-6, max=1.0).float().to(device)


def mask_counts(ratios: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """``max(1, round(r * num_tokens))`` per example (at most num_tokens), LongTensor ``[B]``."""
    return torch.round(ratios.double() * num_tokens).long().clamp(1, num_tokens)


def random_mask(
    shape: tuple[int, int, int],
    counts: torch.Tensor,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """BoolTensor ``[B, K, T]`` with exactly ``counts[b]`` True entries per example, at
    uniformly random positions (the `counts[b]` smallest of i.i.d. uniform scores)."""
    b, k, t = shape
    scores = uniform((b, k * t), generator, device)
    ranks = scores.argsort(dim=1).argsort(dim=1)
    return (ranks < counts.to(ranks.device)[:, None]).view(b, k, t)


def level_mask(
    shape: tuple[int, int, int],
    ratios: torch.Tensor,
    given_levels: int = 0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Mask ``[B, K, T]`` at per-example `ratios` over the levels ``>= given_levels`` only."""
    b, k, t = shape
    predicted = k - given_levels
    counts = mask_counts(ratios, predicted * t)
    fine = random_mask((b, predicted, t), counts, generator, device)
    if given_levels == 0:
        return fine
    return torch.cat([torch.zeros(b, given_levels, t, dtype=torch.bool, device=fine.device), fine], dim=1)


def pretraining_mask(
    shape: tuple[int, int, int],
    mean: float = 0.55,
    std: float = 0.25,
    given_levels: int = 0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    full_prob: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask ``[B, K, T]``, ratios ``[B]``): a truncated-normal ratio per example, replaced by
    1 (all predicted tokens masked) with probability `full_prob`."""
    ratios = sample_mask_ratio(shape[0], mean, std, generator, device)
    if full_prob > 0:  # no extra draw otherwise: seeded runs keep their masks
        full = uniform((shape[0],), generator, "cpu", torch.float64).to(ratios.device) < full_prob
        ratios = torch.where(full, torch.ones_like(ratios), ratios)
    return level_mask(shape, ratios, given_levels, generator, device), ratios


def apply_mask(tokens: torch.Tensor, mask: torch.Tensor, mask_id: int) -> torch.Tensor:
    """Tokens ``[B, K, T]`` with ``mask_id`` where `mask` is True."""
    return tokens.masked_fill(mask, mask_id)
