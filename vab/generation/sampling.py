"""Iterative parallel decoding of audio tokens (MaskGIT; paper section 3.3, docs/ARCHITECTURE.md, "Algorithms").

Every position that is not given starts as [MASK].  Steps are counted
``i = 0 .. N-1`` (``N = steps``); at step i, for each example b separately:

1. one forward (with classifier-free guidance: one batched ``[cond ; uncond]`` forward,
   combined by :func:`guide_logits`; outside the guidance interval, steps with
   ``not guidance_start <= i / N < guidance_stop``, the conditional forward alone, w = 1,
   so those steps cost half);
2. every position still masked draws a token from ``softmax(filtered logits / temperature)``
   (:func:`filter_logits`: top-k, then top-p; temperature 0 = argmax);
3. confidence = ``log p(drawn token) + tau * (1 - (i + 1) / N) * Gumbel``, with ``log p``
   taken from the distribution the token was drawn from (guided, tempered, filtered;
   at temperature 0 the guided, filtered logits at temperature 1), and ``tau`` =
   ``mask_temperature``, so the noise anneals linearly to exactly 0 at the last step;
4. of the positions masked at this step, the ``n_i`` least confident are masked again
   and the others are committed for good, with ``n_i`` from :func:`mask_schedule`:
   ``floor(N0_b * gamma((i + 1) / N))``, ``N0_b`` = the positions example b had to
   generate, at least one committed per step while any remain, ``n_{N-1} = 0``; gamma is
   the schedule (:data:`SCHEDULES`; the paper's ``cos(pi/2 * r)`` by default).

docs/ARCHITECTURE.md counts steps from 1 (``cos(pi/2 * i/N)``, ``1 - i/N``): the same numbers.
Given positions (prompt audio, edit spans kept, coarse levels, the overlap of a
previous window) are never masked and never resampled.

Randomness: example b owns a CPU ``torch.Generator`` seeded with ``seeds[b]``
(default ``cfg.seed + b``) and draws exactly two uniforms per masked position per
step from it (one for the token, one for the Gumbel noise).  Tokens are drawn by
inverting the CDF with that uniform, which needs one number per position instead
of one per vocabulary entry, so drawing on the CPU and moving the numbers stays
cheap on any device.  Hence an example's output does not depend on the rest of
its batch, and a seed draws the same numbers on every device.  (Bit-identical
outputs across batch sizes also need the model's forward to give each example the same
logits in any batch, as it does in the CPU tests; some GPU kernels round differently per
batch size, and a token whose probabilities such rounding moves may then differ.)
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field, fields
from typing import Any, Callable

import torch
from torch import nn

from vab.errors import VabError

Progress = Callable[[int, int], None]

#: decoding steps of the coarse-to-fine model (paper appendix D.1)
C2F_STEPS = 36


def _option(default, label: str, flag: str, hint: str, choices: tuple[str, ...] = ()):
    """A SamplingConfig field with what its users show of it: the page's `label`, the CLI's
    `flag`, and a one-line `hint` saying what raising the value does (the CLI's help and the
    page's text under the setting are both this line); `choices` for a field of names."""
    return field(default=default, metadata={"label": label, "flag": flag, "hint": hint, "choices": choices})


#: the range of each bounded sampling setting: the paper's values sit far inside (16-36 steps,
#: guidance 3-5, mask temperature 20-25); 1000 steps is an hour of a paper-size window on a
#: CPU, guidance or 1 / temperature far beyond these only overflows float32 logits, and a seed
#: is what torch.Generator.manual_seed takes
SAMPLING_LIMITS = {"steps": (1, 1000), "guidance": (-100.0, 100.0), "mask_temperature": (0.0, 1000.0),
                   "temperature": (0.01, 100.0), "seed": (-(2**63), 2**63 - 1)}


#: masked share after a fraction r in (0, 1] of the steps (gamma of MaskGIT): 1 at r = 0, 0 at r = 1.
#: cosine (the paper's) and the power curves commit few tokens early and many late; linear evenly;
#: arccos many early
SCHEDULES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "cosine": lambda r: torch.cos(math.pi / 2 * r),
    "linear": lambda r: 1 - r,
    "square": lambda r: 1 - r**2,
    "cubic": lambda r: 1 - r**3,
    "arccos": lambda r: torch.arccos(r) / (math.pi / 2),
}


@dataclass
class SamplingConfig:
    """Decoding settings.  The defaults are the best measured on the offline worlds
    (docs/BENCHMARKS.md, "Sampling defaults"): guidance 2 and temperature 0.5 named the shown
    class more often than the paper's 5 and 1 on every world and length measured, and 4 steps
    with guidance on the first half (6 forward rows per window instead of 32) kept class and
    timing agreement within 0.03 of 16 guided steps on both demo worlds and on the held-out
    words world.  3 steps with the first alone guided (4 rows, sampling 1.46x faster) held on
    four worlds but lost 0.034 of class agreement on `words`, kept out of that choice (ten
    draws each, issue 30's eighth measurement), so it is not the default.  The paper's own
    settings are ``steps=16, guidance=5, temperature=1, guidance_stop=1`` (mask temperature
    22.5 in both).

    Every option is declared once, here (its field, with the page's label, the CLI's flag and
    a hint): `vab generate` and ``eval/generation.py`` make their options from these fields
    (:func:`add_sampling_arguments`, :func:`sampling_from_args`) and the page its settings
    (:func:`sampling_options`), so an option is added by adding a field."""

    steps: int = _option(4, "steps per window", "--steps",
                         "passes per window: more refine the sound and take proportionally longer")
    # classifier-free guidance w: logits = u + w * (c - u); 1 = conditional only, 0 = unconditional only
    guidance: float = _option(2.0, "guidance", "--cfg",
                              "how closely the sound follows the picture: higher follows it more strictly and "
                              "varies less (1: no guidance)")
    # guidance acts on the steps i (0-based) of N with start <= i / N < stop; elsewhere the
    # conditional forward alone (w = 1), which skips the unconditional rows: half the work
    guidance_start: float = _option(0.0, "guidance from", "--guidance-start",
                                    "share of the steps done before guidance starts: higher is faster and "
                                    "follows the picture less (0: from the first)")
    guidance_stop: float = _option(0.5, "guidance until", "--guidance-stop",
                                   "share of the steps after which guidance stops: lower is faster and "
                                   "follows the picture less (1: to the last)")
    # masked share after each step (SCHEDULES)
    schedule: str = _option("cosine", "schedule", "--schedule",
                            "how many tokens each pass settles: cosine few early and many late, linear evenly, "
                            "arccos many early", choices=tuple(SCHEDULES))
    # tau of the Gumbel noise on confidences, annealed linearly to 0 at the last step
    mask_temperature: float = _option(22.5, "mask temperature", "--mask-temperature",
                                      "noise in the order tokens are settled: higher tries bolder orders, "
                                      "0 settles the surest first")
    temperature: float = _option(0.5, "temperature", "--temperature",
                                 "spread of each drawn token: higher is more varied and noisier "
                                 "(0: always the likeliest)")
    top_k: int = _option(0, "top-k", "--top-k",
                         "draw among the k likeliest tokens only: lower is plainer and safer (0: all)")
    top_p: float = _option(1.0, "top-p", "--top-p",
                           "draw among the likeliest tokens holding this share of probability: lower is plainer "
                           "and safer (1: all)")
    seed: int = _option(0, "seed", "--seed",
                        "starts the random draws: another seed gives another soundtrack with the same settings")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise VabError listing every out-of-range setting (:data:`SAMPLING_LIMITS`: beyond them a
        value only overflows float32 logits or runs without end, it never samples better)."""
        problems = []
        low, high = SAMPLING_LIMITS["steps"]
        if not isinstance(self.steps, int) or not low <= self.steps <= high:
            problems.append(f"steps must be an integer in [{low}, {high}] (got {self.steps!r})")
        for name, words in (("guidance", "guidance"), ("mask_temperature", "mask temperature")):
            low, high = SAMPLING_LIMITS[name]
            if not low <= getattr(self, name) <= high:  # NaN too
                problems.append(f"{words} must be in [{low:g}, {high:g}] (got {getattr(self, name)!r})")
        if not 0 <= self.guidance_start < self.guidance_stop <= 1:  # NaN too
            problems.append("the guidance interval must satisfy 0 <= start < stop <= 1 "
                            f"(got {self.guidance_start!r} .. {self.guidance_stop!r})")
        if self.schedule not in SCHEDULES:
            problems.append(f"schedule must be one of {', '.join(SCHEDULES)} (got {self.schedule!r})")
        low, high = SAMPLING_LIMITS["temperature"]
        if not (self.temperature == 0 or low <= self.temperature <= high):
            problems.append(f"temperature must be 0 (the likeliest token) or in [{low:g}, {high:g}] "
                            f"(got {self.temperature!r})")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            problems.append(f"top-k must be an integer >= 0 (got {self.top_k!r})")
        if not 0 < self.top_p <= 1:
            problems.append(f"top-p must be in (0, 1] (got {self.top_p!r})")
        low, high = SAMPLING_LIMITS["seed"]
        if not isinstance(self.seed, int) or not low <= self.seed <= high:
            problems.append(f"seed must be an integer in [-2^63, 2^63 - 1] (got {self.seed!r})")
        if problems:
            raise VabError("sampling: " + "; ".join(problems))


@dataclass(frozen=True)
class SamplingOption:
    """One field of :class:`SamplingConfig` as its users show it: `name` (the field),
    `label` (the page), `flag` (the CLI), `hint` (one line, both), `default`, `kind` and,
    for a field of names, its `choices`."""

    name: str
    label: str
    flag: str
    hint: str
    default: int | float | str
    kind: type
    choices: tuple[str, ...] = ()


def sampling_options() -> list[SamplingOption]:
    """The fields of :class:`SamplingConfig` in declaration order, with their labels and hints."""
    kinds = {"int": int, "float": float, "str": str}
    return [SamplingOption(f.name, f.metadata["label"], f.metadata["flag"], f.metadata["hint"], f.default,
                           kinds[f.type] if isinstance(f.type, str) else f.type, f.metadata["choices"])
            for f in fields(SamplingConfig)]


def add_sampling_arguments(group: Any, defaults: SamplingConfig | None = None) -> None:
    """One command-line option per :class:`SamplingConfig` field into `group` (a parser or an
    argument group), with `defaults` (default: the paper's) and the field's hint as help."""
    defaults = defaults or SamplingConfig()
    for option in sampling_options():
        value = getattr(defaults, option.name)
        shown = f"one of {', '.join(option.choices)}; default {value}" if option.choices else f"default {value:g}"
        group.add_argument(option.flag, type=option.kind, default=value, dest=option.name,
                           choices=option.choices or None, metavar=option.name.upper(),
                           help=f"{option.hint} ({shown})")


def sampling_from_args(args: argparse.Namespace, **changes: Any) -> SamplingConfig:
    """The settings :func:`add_sampling_arguments` parsed into `args`, then `changes`."""
    return SamplingConfig(**{**{o.name: getattr(args, o.name) for o in sampling_options()}, **changes})


# ---------------------------------------------------------------------- pieces
def mask_schedule(num_masked: int | torch.Tensor, steps: int, schedule: str = "cosine") -> torch.Tensor:
    """Positions still masked after each step: ``[..., steps]`` long for ``num_masked``
    (N0, an int or a long tensor of any shape).

    ``n_i = min(floor(N0 * gamma((i + 1) / steps)), n_{i-1} - 1)`` clamped at 0,
    with ``n_{-1} = N0`` and gamma the `schedule` (:data:`SCHEDULES`; cosine:
    ``cos(pi/2 * r)``), committing at least one position per step while any remain;
    the last entry is 0.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1 (got {steps})")
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r} (expected one of {', '.join(SCHEDULES)})")
    n0 = torch.as_tensor(num_masked, dtype=torch.long).cpu()
    frac = torch.arange(1, steps + 1, dtype=torch.float64) / steps
    # the tolerance makes exact products floor to themselves: 10 * cos(pi/3) is 5 (not 4.999...)
    target = torch.floor(n0[..., None].double() * SCHEDULES[schedule](frac) + 1e-6).long()
    target[..., -1] = 0  # cos(pi/2) is 6e-17 in floating point, not 0
    out = torch.empty_like(target)
    prev = n0
    for i in range(steps):
        prev = torch.minimum(target[..., i], prev - 1).clamp_min(0)
        out[..., i] = prev
    return out


def mask_noise_scale(mask_temperature: float, step: int, steps: int) -> float:
    """Scale of the Gumbel noise on confidences at step ``step`` (0-based) of ``steps``:
    ``tau * (1 - (step + 1) / steps)``, linear, exactly 0 at the last step."""
    return mask_temperature * (steps - step - 1) / steps


def guided_step(cfg: SamplingConfig, step: int) -> bool:
    """True if step `step` (0-based) of ``cfg.steps`` runs the unconditional rows for guidance
    (``guidance_start <= step / steps < guidance_stop``, and a guidance other than 1)."""
    return cfg.guidance != 1 and cfg.guidance_start <= step / cfg.steps < cfg.guidance_stop


def guide_logits(cond: torch.Tensor, uncond: torch.Tensor, guidance: float) -> torch.Tensor:
    """Classifier-free guidance ``u + w * (c - u)``; exactly ``c`` at w = 1 and ``u`` at w = 0.
    Computed in at least float32: w multiplies any rounding of ``c - u``."""
    dtype = torch.promote_types(torch.promote_types(cond.dtype, uncond.dtype), torch.float32)
    return torch.lerp(uncond.to(dtype), cond.to(dtype), float(guidance))


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Logits ``[..., V]`` with everything outside the top-k, then outside the top-p
    nucleus of what is left, set to -inf.  The most likely token is always kept."""
    vocab = logits.shape[-1]
    if 0 < top_k < vocab:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs  # mass of the strictly more likely tokens
        drop_sorted = before >= top_p
        drop_sorted[..., 0] = False
        drop = torch.empty_like(drop_sorted).scatter_(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def draw_tokens(logits: torch.Tensor, uniform: torch.Tensor, cfg: SamplingConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens ``[M]`` and their log-probabilities ``[M]`` for guided logits ``[M, V]`` (float32)
    and one uniform ``[M]`` in [0, 1) per row (inverse-CDF sampling)."""
    if cfg.temperature == 0:
        logp = filter_logits(logits, cfg.top_k, cfg.top_p).log_softmax(dim=-1)
        tokens = logp.argmax(dim=-1)
    else:
        scaled = logits if cfg.temperature == 1 else logits / cfg.temperature
        logp = filter_logits(scaled, cfg.top_k, cfg.top_p).log_softmax(dim=-1)
        cdf = logp.exp().cumsum(dim=-1)  # non-decreasing, so searchsorted applies
        total = cdf[:, -1:]
        # strictly below the total: a token with zero mass is then never picked
        target = torch.minimum(uniform[:, None] * total, torch.nextafter(total, torch.zeros_like(total)))
        tokens = torch.searchsorted(cdf, target, right=True).squeeze(1)
    return tokens, logp.gather(-1, tokens[:, None]).squeeze(1)


def gumbel(uniform: torch.Tensor) -> torch.Tensor:
    """Standard Gumbel noise from uniforms in [0, 1)."""
    tiny = torch.finfo(uniform.dtype).tiny
    return -torch.log(-torch.log(uniform.clamp(tiny, 1 - torch.finfo(uniform.dtype).eps)))


# ---------------------------------------------------------------------- decoding
@torch.inference_mode()
def sample_tokens(
    model: nn.Module,
    features: torch.Tensor | None,
    *,
    num_frames: int | None = None,
    given: torch.Tensor | None = None,
    given_mask: torch.Tensor | None = None,
    cfg: SamplingConfig | None = None,
    seeds: list[int] | None = None,
    progress: Progress | None = None,
) -> torch.Tensor:
    """Decode audio tokens ``[B, K, T]`` (long, on the model's device; K = ``model.levels``).

    features: frame features ``[B, F, D]``, or None for unconditional generation (then
    guidance is moot and one forward per step is run).
    num_frames: T, audio frames to generate; default ``given``'s length, else the
    features' duration at the codec frame rate, else the model's trained length.
    given, given_mask: ``[B, K, T]`` tokens and where they are given (True = kept as is,
    never masked nor resampled).  Without ``given_mask`` the positions of ``given``
    that are not ``model.mask_id`` are given.  Levels below ``model.given_levels``
    (coarse-to-fine) must be given.
    seeds: one seed per example (default ``cfg.seed + b``).
    progress: called as ``progress(step, steps)`` after every step.
    """
    cfg = cfg if cfg is not None else SamplingConfig()
    cfg.validate()
    device = model_device(model)
    batch, length = _batch_and_length(model, features, num_frames, given, seeds)
    seeds = list(seeds) if seeds is not None else [cfg.seed + b for b in range(batch)]
    tokens = _initial_tokens(model, batch, length, given, given_mask, device)
    if features is not None:
        features = features.to(device)
    first = int(model.given_levels)
    steps = cfg.steps

    generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
    masked = tokens[:, first:] == model.mask_id  # [B, L, T]; L = predicted levels
    schedule = mask_schedule(masked.flatten(1).sum(1), steps, cfg.schedule).to(device)  # [B, N]
    positions = torch.arange(masked[0].numel(), device=device)

    was_training = model.training
    model.eval()
    try:
        for i in range(steps):
            counts = masked.flatten(1).sum(1).tolist()
            if sum(counts):  # later steps of a finished batch have nothing to do
                guidance = cfg.guidance if guided_step(cfg, i) else 1.0
                cond, uncond = _masked_logits(model, tokens, features, guidance, masked)
                rows = cond.float()  # [M, V], example-major order
                if uncond is not None:
                    rows = guide_logits(rows, uncond.float(), guidance)
                noise = torch.cat(
                    [torch.rand(2, n, generator=g) for n, g in zip(counts, generators)], dim=1
                ).to(device)
                drawn, confidence = draw_tokens(rows, noise[0], cfg)
                tau = mask_noise_scale(cfg.mask_temperature, i, steps)
                if tau > 0:
                    confidence = confidence + tau * gumbel(noise[1])

                # rank the masked positions of each example, least confident first;
                # positions not masked sort last (+inf) and are never picked
                conf = torch.full(masked.shape, float("inf"), device=device)
                conf[masked] = confidence
                order = conf.flatten(1).argsort(dim=1, stable=True)
                remask_sorted = positions[None] < schedule[:, i : i + 1]
                remask = torch.empty_like(remask_sorted).scatter_(1, order, remask_sorted).view_as(masked)

                predicted = tokens[:, first:]  # a view: writes land in `tokens`
                predicted[masked] = drawn
                predicted[remask] = model.mask_id
                masked = remask
            if progress is not None:
                progress(i + 1, steps)
    finally:
        model.train(was_training)
    return tokens


def coarse_to_fine(
    model: nn.Module,
    coarse: torch.Tensor,
    features: torch.Tensor | None,
    cfg: SamplingConfig | None = None,
    *,
    seeds: list[int] | None = None,
    progress: Progress | None = None,
) -> torch.Tensor:
    """Fine levels for coarse tokens ``[B, >=given_levels, T]`` with a coarse-to-fine model:
    returns ``[B, model.levels, T]`` (e.g. DAC: 4 coarse given, 8 fine decoded).
    Default config: :class:`SamplingConfig` with :data:`C2F_STEPS` steps (paper appendix D.1)."""
    g = int(model.given_levels)
    if g < 1:
        raise VabError("coarse_to_fine: the model predicts every level (given_levels is 0); use a coarse-to-fine model")
    if coarse.dim() != 3 or coarse.shape[1] < g:
        raise VabError(
            f"coarse tokens have shape {tuple(coarse.shape)}; the coarse-to-fine model needs [batch, >={g} levels, time]"
        )
    batch, _, length = coarse.shape
    given = torch.full((batch, model.levels, length), model.mask_id, dtype=torch.long, device=coarse.device)
    given[:, :g] = coarse[:, :g]
    given_mask = torch.zeros(given.shape, dtype=torch.bool, device=coarse.device)
    given_mask[:, :g] = True
    return sample_tokens(
        model, features, given=given, given_mask=given_mask,
        cfg=cfg if cfg is not None else SamplingConfig(steps=C2F_STEPS), seeds=seeds, progress=progress,
    )


# ---------------------------------------------------------------------- helpers
def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model with neither)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _masked_logits(
    model: nn.Module, tokens: torch.Tensor, features: torch.Tensor | None, guidance: float, masked: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(conditional or only logits, unconditional logits or None) at the `masked` positions
    ``[B, L, T]``: ``[M, V]`` each, in the order of ``logits[masked]``.  A model with
    ``reads_positions`` computes the read-out there alone; any other is read in full."""
    batch = tokens.shape[0]
    if features is None or guidance == 1:
        return _read(model, masked, tokens, features), None
    if guidance == 0:
        # the same null-visual input as the unconditional half of a guided forward
        drop = torch.ones(batch, dtype=torch.bool, device=tokens.device)
        return _read(model, masked, tokens, features, drop_visual=drop), None
    drop = torch.arange(2 * batch, device=tokens.device) >= batch
    both = _read(model, torch.cat([masked, masked]), torch.cat([tokens, tokens]), torch.cat([features, features]),
                 drop_visual=drop)
    return both.chunk(2)  # example-major: the conditional rows' positions, then the same again


def _read(model: nn.Module, where: torch.Tensor, *args: torch.Tensor | None, **kwargs: torch.Tensor) -> torch.Tensor:
    if getattr(model, "reads_positions", False):
        return model(*args, **kwargs, where=where)
    return model(*args, **kwargs)[where]


def _batch_and_length(
    model: nn.Module,
    features: torch.Tensor | None,
    num_frames: int | None,
    given: torch.Tensor | None,
    seeds: list[int] | None,
) -> tuple[int, int]:
    sizes = {}
    if features is not None:
        if features.dim() != 3:
            raise VabError(f"visual features have shape {tuple(features.shape)}; expected [batch, frames, dim]")
        sizes["features"] = features.shape[0]
    if given is not None:
        if given.dim() != 3:
            raise VabError(f"given tokens have shape {tuple(given.shape)}; expected [batch, levels, time]")
        sizes["given tokens"] = given.shape[0]
    if seeds is not None:
        sizes["seeds"] = len(seeds)
    if len(set(sizes.values())) > 1:
        raise VabError("batch sizes differ: " + ", ".join(f"{k} {v}" for k, v in sizes.items()))
    batch = next(iter(sizes.values()), 1)
    if batch < 1:
        raise VabError("nothing to sample: the batch is empty")

    if given is not None:
        length = given.shape[2]
        if num_frames is not None and num_frames != length:
            raise VabError(f"num_frames is {num_frames} but the given tokens have {length} frames")
    elif num_frames is not None:
        length = int(num_frames)
    elif features is not None:
        length = int(round(features.shape[1] / float(model.fps) * float(model.frame_rate)))
    else:
        length = int(model.num_audio_frames)
    if length < 1:
        raise VabError(f"nothing to sample: {length} audio frames requested")
    return batch, length


def _initial_tokens(
    model: nn.Module,
    batch: int,
    length: int,
    given: torch.Tensor | None,
    given_mask: torch.Tensor | None,
    device: torch.device,
) -> torch.Tensor:
    """``[B, K, T]`` long: given values where given, ``mask_id`` elsewhere."""
    levels, first, mask_id = int(model.levels), int(model.given_levels), int(model.mask_id)
    tokens = torch.full((batch, levels, length), mask_id, dtype=torch.long, device=device)
    if given is None:
        if given_mask is not None:
            raise VabError("given_mask needs the given tokens")
        if first:
            raise VabError(f"the model needs the first {first} (coarse) levels as given tokens")
        return tokens
    if given.shape[1] != levels:
        raise VabError(f"given tokens have {given.shape[1]} levels; the model has {levels}")
    if given.dtype.is_floating_point or given.dtype == torch.bool:
        raise VabError(f"given tokens must be integers (got {given.dtype})")
    given = given.to(device=device, dtype=torch.long)
    if given_mask is None:
        given_mask = given != mask_id
    else:
        if given_mask.shape != given.shape:
            raise VabError(f"given_mask has shape {tuple(given_mask.shape)}; the given tokens {tuple(given.shape)}")
        given_mask = given_mask.to(device=device, dtype=torch.bool)
    values = given[given_mask]
    if values.numel() and (values.min() < 0 or values.max() >= model.codebook_size):
        raise VabError(
            f"given tokens out of range: values must be in [0, {model.codebook_size}) where given "
            f"(found {int(values.min())}..{int(values.max())})"
        )
    if first and not bool(given_mask[:, :first].all()):
        raise VabError(f"the first {first} (coarse) levels must be given everywhere")
    return torch.where(given_mask, given, tokens)


__all__ = [
    "SamplingConfig",
    "coarse_to_fine",
    "draw_tokens",
    "filter_logits",
    "guide_logits",
    "guided_step",
    "gumbel",
    "mask_noise_scale",
    "mask_schedule",
    "model_device",
    "SCHEDULES",
    "sample_tokens",
]
