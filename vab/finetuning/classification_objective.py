"""What classification fine-tuning optimises (paper 3.5): the training step on the shared engine.

Temporal mixup / rolling (labels merged by union) -> logits -> loss:

* BCE (multi-label, AudioSet): smoothed targets ``y * (1 - eps) + eps / 2``,
  i.e. every class target moves eps/2 toward 0.5.
* CE (single-label, VGGSound): the target distribution is the (mixup-merged)
  label set normalised to sum 1, smoothed by ``torch``'s ``label_smoothing=eps``
  (``p * (1 - eps) + eps / C``).

`auto` picks BCE when the data's metadata says ``multi_label``, else CE.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vab.data.augment import augment
from vab.errors import VabError
from vab.training.objective import prepare_batch, unwrap

LOSSES = ("auto", "bce", "ce")



def smoothed_targets(labels: torch.Tensor, loss: str, eps: float) -> torch.Tensor:
    """Targets ``[B, C]`` for `loss`: BCE ``y (1 - eps) + eps / 2``; CE the label set normalised
    to a distribution (smoothing is left to ``F.cross_entropy``)."""
    if loss == "bce":
        return labels * (1.0 - eps) + eps / 2.0
    return labels / labels.sum(dim=1, keepdim=True).clamp_min(1e-12)



def classification_loss(logits: torch.Tensor, labels: torch.Tensor, loss: str, eps: float = 0.1) -> torch.Tensor:
    """Mean loss of logits ``[B, C]`` against multi-hot labels ``[B, C]`` (``loss`` bce | ce)."""
    targets = smoothed_targets(labels.float(), loss, eps)
    if loss == "bce":
        return F.binary_cross_entropy_with_logits(logits.float(), targets)
    if loss == "ce":
        return F.cross_entropy(logits.float(), targets, label_smoothing=eps)
    raise VabError(f"loss {loss!r}: expected bce or ce")



def scores_from_logits(logits: torch.Tensor, loss: str) -> torch.Tensor:
    """Class probabilities ``[B, C]``: sigmoid (BCE) or softmax (CE)."""
    return torch.sigmoid(logits.float()) if loss == "bce" else torch.softmax(logits.float(), dim=-1)



def resolve_loss(loss: str, multi_label: bool) -> str:
    if loss not in LOSSES:
        raise VabError(f"loss {loss!r}: expected one of {', '.join(LOSSES)}")
    return ("bce" if multi_label else "ce") if loss == "auto" else loss



class ClassificationObjective:
    """``objective(model, batch, generator) -> (loss, logs)`` for the engine.

    Mixup / rolling (``cfg.train.mixup_prob`` / ``roll_prob``) only while training."""

    def __init__(self, loss: str, smoothing: float = 0.1, mixup_prob: float = 0.5, roll_prob: float = 0.1):
        if not 0 <= float(smoothing) < 1:  # NaN too
            raise VabError(f"--label-smoothing must be in [0, 1), got {smoothing}")
        self.loss, self.smoothing = loss, float(smoothing)
        self.mixup_prob, self.roll_prob = float(mixup_prob), float(roll_prob)

    def __call__(
        self, model: nn.Module, batch: dict[str, Any], generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        clf = unwrap(model)
        backbone = clf.backbone
        tokens, features, labels = prepare_batch(backbone, batch)
        if labels is None:
            raise VabError("classification needs labels in the data set")
        if clf.training:
            tokens, features, labels = augment(
                tokens, features, labels, mixup_prob=self.mixup_prob, roll_prob=self.roll_prob,
                frame_rate=backbone.frame_rate, fps=backbone.fps, generator=generator,
            )
        logits = model({"tokens": tokens, "features": features})
        loss = classification_loss(logits, labels, self.loss, self.smoothing)
        hit = labels.gather(1, logits.detach().argmax(-1, keepdim=True)) > 0
        return loss, {"loss": loss.item(), "acc": hit.float().mean().item()}

