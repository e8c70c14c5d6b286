"""The masked audio-token prediction objective (paper eq. 1 and 3, docs/ARCHITECTURE.md, "Algorithms").

One training step: augment (temporal mixup, rolling) -> mask a truncated-normal
ratio of the predicted levels -> drop the visual features of some examples (null
embedding) -> forward -> cross-entropy on the masked tokens only, averaged over
them.  For the coarse-to-fine model the given (coarse) levels are never masked.

Batches are dicts as the data set yields them: ``tokens`` int16 ``[B, K, T]``,
``features`` float16 ``[B, F, D]`` (absent / None for audio-only data), ``labels``
float32 ``[B, C]``; dtypes are converted on the model's device here.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from vab.data.augment import augment
from vab.errors import ConfigError
from vab.training.masking import apply_mask, level_mask, pretraining_mask
from vab.utils import uniform


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The VAB inside a DDP / FSDP / compiled wrapper (for its attributes)."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None:
            return model
        model = inner


def prepare_batch(model: torch.nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(tokens long ``[B, levels, T]`` | None, features float32 ``[B, F, D]`` | None, labels | None)
    on the model's device; a part the batch does not hold is None."""
    core = unwrap(model)
    device = core.codebooks.device
    tokens = batch.get("tokens")
    if tokens is not None:
        tokens = torch.as_tensor(tokens).to(device=device, dtype=torch.long)[:, : core.levels]
    features = batch.get("features")
    if features is not None:
        features = torch.as_tensor(features).to(device=device, dtype=torch.float32)
    labels = batch.get("labels")
    if labels is not None:
        labels = torch.as_tensor(labels).to(device=device, dtype=torch.float32)
    return tokens, features, labels


def masked_loss(
    logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor, given_levels: int,
    level_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cross-entropy averaged over masked tokens of the predicted levels.

    logits ``[B, Kp, T, V]``, tokens / mask ``[B, K, T]`` with ``K = given_levels + Kp``;
    `level_weights` ``[Kp]`` (optional) weighs each masked token by its level (a weighted mean).
    Returns (loss, correct ``[Kp]``, masked count ``[Kp]``)."""
    targets, m = tokens[:, given_levels:], mask[:, given_levels:]
    if level_weights is None:
        loss = F.cross_entropy(logits[m].float(), targets[m])
    else:
        w = level_weights.to(logits.device, torch.float32)[None, :, None].expand(m.shape)[m]
        per_token = F.cross_entropy(logits[m].float(), targets[m], reduction="none")
        loss = (per_token * w).sum() / w.sum().clamp_min(1e-12)
    correct = ((logits.detach().argmax(-1) == targets) & m).sum(dim=(0, 2))
    return loss, correct, m.sum(dim=(0, 2))


def level_weights(cfg: Any) -> torch.Tensor | None:
    """``[Kp]`` loss weight per predicted level (coarse first), or None when all weigh the same.

    ``train.level_weights`` when given (one per predicted level); otherwise ``train.coarse_weight``'s
    rule: codec level ``k`` weighs ``max(1, coarse_weight / 2**k)``, so one setting fits any
    ``model.levels`` / ``model.given_levels``."""
    t = cfg.train
    levels, given = int(cfg.model.levels), int(cfg.model.given_levels)
    weights = [float(w) for w in (getattr(t, "level_weights", None) or [])]
    predicted = levels - given
    if weights:
        if len(weights) != predicted or min(weights) < 0 or sum(weights) <= 0:
            raise ConfigError(
                f"train.level_weights={weights}: expected {predicted} non-negative weights (one per predicted "
                f"level, coarse first) that do not all vanish"
            )
        return torch.tensor(weights)
    coarse = float(getattr(t, "coarse_weight", 1.0))  # its range is checked on load (config.RULES)
    if coarse <= 1.0:
        return None
    return torch.tensor([max(1.0, coarse / 2.0**k) for k in range(given, levels)])


class PretrainObjective:
    """``objective(model, batch, generator) -> (loss, logs)`` for one training step.

    Settings come from ``cfg.train``: mask_mean, mask_std, mask_full_prob, coarse_weight, level_weights,
    visual_dropout, mixup_prob, roll_prob.  Augmentation and visual dropout are training-time only: a model in
    eval mode (validation) gets the clean batch, still masked at random ratios.
    `logs` holds floats: loss, mask_ratio (batch mean), acc (all masked
    tokens) and acc/level<k> for every predicted level k.
    """

    def __init__(self, cfg: Any, augment: bool = True):
        t = cfg.train
        self.mask_mean = float(t.mask_mean)
        self.mask_std = float(t.mask_std)
        self.mask_full_prob = float(getattr(t, "mask_full_prob", 0.0))
        if not 0.0 <= self.mask_full_prob <= 1.0:
            raise ConfigError(f"train.mask_full_prob={self.mask_full_prob}: expected a probability in [0, 1]")
        self.level_weights = level_weights(cfg)
        self.visual_dropout = float(t.visual_dropout)
        self.mixup_prob = float(t.mixup_prob) if augment else 0.0
        self.roll_prob = float(t.roll_prob) if augment else 0.0

    def training_inputs(
        self, model: torch.nn.Module, batch: dict[str, Any], generator: torch.Generator | None = None
    ) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor | None]:
        """(core model, tokens ``[B, K, T]``, features ``[B, F, D]`` or None): the batch after
        training-time augmentation (mixup, rolling); in eval mode the clean batch."""
        core = unwrap(model)
        tokens, features, labels = prepare_batch(model, batch)
        if core.training:
            tokens, features, _ = augment(
                tokens, features, labels, mixup_prob=self.mixup_prob, roll_prob=self.roll_prob,
                frame_rate=core.frame_rate, fps=core.fps, generator=generator,
            )
        return core, tokens, features

    def visual_drop(
        self, core: torch.nn.Module, tokens: torch.Tensor, features: torch.Tensor | None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor | None:
        """``[B]`` bool: examples whose visual features become the null embedding (classifier-
        free guidance), drawn in training mode only; None when nothing is dropped."""
        if not core.training or features is None or self.visual_dropout <= 0:
            return None
        return uniform((tokens.shape[0],), generator, tokens.device) < self.visual_dropout

    def __call__(
        self, model: torch.nn.Module, batch: dict[str, Any], generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        core, tokens, features = self.training_inputs(model, batch, generator)
        mask, ratios = pretraining_mask(
            tuple(tokens.shape), self.mask_mean, self.mask_std, core.given_levels, generator, tokens.device,
            self.mask_full_prob,
        )
        drop = self.visual_drop(core, tokens, features, generator)
        logits = model(apply_mask(tokens, mask, core.mask_id), features, drop)
        loss, correct, counts = masked_loss(logits, tokens, mask, core.given_levels, self.level_weights)
        return loss, {"loss": loss.item(), "mask_ratio": ratios.mean().item(),
                      **accuracy_logs(correct, counts, core.given_levels)}


def accuracy_logs(correct: torch.Tensor, counts: torch.Tensor, first_level: int = 0) -> dict[str, float]:
    """``acc`` over all predicted tokens and ``acc/level<k>`` per level, from per-level
    correct and total counts ``[K]`` (level numbers start at `first_level`)."""
    logs = {"acc": (correct.sum() / counts.sum()).item()}
    for i, (c, n) in enumerate(zip(correct.tolist(), counts.tolist())):
        logs[f"acc/level{first_level + i}"] = c / n if n else float("nan")
    return logs


@torch.no_grad()
def masked_correct(
    model: torch.nn.Module, batch: dict[str, Any], ratio: float, generator: torch.Generator | None = None,
    with_loss: bool = False,
) -> tuple[torch.Tensor, ...]:
    """(correct ``[Kp]``, masked ``[Kp]``) greedy predictions at a fixed mask `ratio`, with
    the visual features (no augmentation, no dropout); with `with_loss` also the summed
    cross-entropy of the masked tokens (a scalar, nats).  Sum these over a validation set."""
    core = unwrap(model)
    tokens, features, _ = prepare_batch(model, batch)
    ratios = torch.full((tokens.shape[0],), float(ratio), device=tokens.device)
    mask = level_mask(tuple(tokens.shape), ratios, core.given_levels, generator, tokens.device)
    logits = model(apply_mask(tokens, mask, core.mask_id), features)
    loss, correct, counts = masked_loss(logits, tokens, mask, core.given_levels)
    if with_loss:
        return correct, counts, loss.detach() * counts.sum()
    return correct, counts


def masked_accuracy(
    model: torch.nn.Module, batch: dict[str, Any], ratio: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Per-level masked-token accuracy ``[Kp]`` at a fixed mask `ratio` (validation: 0.3, 0.55, 0.9)."""
    correct, counts = masked_correct(model, batch, ratio, generator)
    return correct.double() / counts.clamp_min(1)
