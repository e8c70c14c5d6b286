"""The autoregressive pretraining objective: next-token cross-entropy on delayed tokens.

One training step: augment as the masked objective does (temporal mixup and rolling,
``train.mixup_prob`` / ``train.roll_prob``; the baseline presets turn them off, as
FoleyGen trains without them) -> delay the tokens (:mod:`vab.baselines.delay`) -> drop the
visual features of some examples to the learned null embedding (``train.visual_dropout``,
0.1: classifier-free guidance) -> teacher-forced forward -> cross-entropy over every real
token of the delay pattern (padding positions excluded), averaged over them, each level
weighted by ``train.level_weights`` when given (as in the masked objective).  Nothing is
masked, so ``train.mask_full_prob`` has no meaning here: a value above 0 (the ``tiny``
preset's 0.3, say) is refused rather than silently ignored.

Same contract as :class:`vab.training.objective.PretrainObjective` (``objective(model, batch,
generator) -> (loss, logs)``), so the one training engine runs it unchanged.
"""

from __future__ import annotations

from typing import Any

import torch

from vab.baselines.delay import build_delay, delay_valid, shift_right
from vab.errors import ConfigError
from vab.training.objective import PretrainObjective, accuracy_logs, masked_loss


class AutoregressiveObjective(PretrainObjective):
    """``objective(model, batch, generator) -> (loss, logs)``; logs: loss, acc (next-token
    accuracy over real tokens) and acc/level<k>.  Augmentation and visual dropout apply in
    training mode only (validation gets the clean batch), as in the masked objective."""

    def __init__(self, cfg: Any, augment: bool = True):
        super().__init__(cfg, augment)  # checks level_weights (one per level: no level is given)
        if self.mask_full_prob > 0:
            raise ConfigError(
                f"train.mask_full_prob={self.mask_full_prob:g}: the autoregressive baseline "
                f"(model.type={cfg.model.type}) masks no tokens, so it cannot honour this; set train.mask_full_prob=0"
            )

    def __call__(
        self, model: torch.nn.Module, batch: dict[str, Any], generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        core, tokens, features = self.training_inputs(model, batch, generator)
        delayed = build_delay(tokens, core.mask_id)  # [B, K, S]
        drop = self.visual_drop(core, tokens, features, generator)
        logits = model(shift_right(delayed, core.mask_id), features, drop)  # [B, K, S, V]
        real = delay_valid(delayed.shape[1], delayed.shape[2], tokens.device).expand_as(delayed)
        loss, correct, counts = masked_loss(logits, delayed, real, 0, self.level_weights)
        return loss, {"loss": loss.item(), **accuracy_logs(correct, counts)}
