"""The autoregressive pretraining objective: next-token cross-entropy on delayed tokens.

One training step: augment as the masked objective does (temporal mixup and rolling,
``train.mixup_prob`` / ``train.roll_prob``; the baseline presets turn them off, as
FoleyGen trains without them) -> delay the tokens (:mod:`vab.baselines.delay`) -> drop the
visual features of some examples to the learned null embedding (``train.visual_dropout``,
0.1: classifier-free guidance) -> teacher-forced forward -> cross-entropy over every real
token of the delay pattern (padding positions excluded), averaged over them.

Same contract as :class:`vab.pretraining.PretrainObjective` (``objective(model, batch,
generator) -> (loss, logs)``), so the one training engine runs it unchanged.
"""

from __future__ import annotations

from typing import Any

import torch

from vab.baselines.delay import build_delay, delay_valid, shift_right
from vab.data.augment import augment
from vab.masking import uniform
from vab.pretraining import masked_loss, prepare_batch, unwrap


class AutoregressiveObjective:
    """``objective(model, batch, generator) -> (loss, logs)``; logs: loss, acc (next-token
    accuracy over real tokens) and acc/level<k>.  Augmentation and visual dropout apply in
    training mode only (validation gets the clean batch)."""

    def __init__(self, cfg: Any, augment: bool = True):
        t = cfg.train
        self.visual_dropout = float(t.visual_dropout)
        self.mixup_prob = float(t.mixup_prob) if augment else 0.0
        self.roll_prob = float(t.roll_prob) if augment else 0.0

    def __call__(
        self, model: torch.nn.Module, batch: dict[str, Any], generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        core = unwrap(model)
        tokens, features, labels = prepare_batch(model, batch)
        device = tokens.device
        if core.training:
            tokens, features, _ = augment(
                tokens, features, labels, mixup_prob=self.mixup_prob, roll_prob=self.roll_prob,
                frame_rate=core.frame_rate, fps=core.fps, generator=generator,
            )
        delayed = build_delay(tokens, core.mask_id)  # [B, K, S]
        drop = None
        if core.training and features is not None and self.visual_dropout > 0:
            drop = uniform((tokens.shape[0],), generator, device) < self.visual_dropout
        logits = model(shift_right(delayed, core.mask_id), features, drop)  # [B, K, S, V]
        real = delay_valid(delayed.shape[1], delayed.shape[2], device).expand_as(delayed)
        loss, correct, counts = masked_loss(logits, delayed, real, 0)
        logs = {"loss": loss.item(), "acc": (correct.sum() / counts.sum()).item()}
        for k, (c, n) in enumerate(zip(correct.tolist(), counts.tolist())):
            logs[f"acc/level{k}"] = c / n if n else float("nan")
        return loss, logs
