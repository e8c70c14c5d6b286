"""Learning-rate schedule: linear warm-up, then half-cycle cosine decay to zero."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR


def cosine_with_warmup(step: int, warmup_steps: int, max_steps: int) -> float:
    """Multiplier of the base learning rate for the optimizer step that follows `step` completed steps.

    Warm-up: (step + 1) / warmup_steps, so the first update already moves the
    weights and the last warm-up step runs at the full rate.  Then
    0.5 * (1 + cos(pi * p)) with p = (step - warmup_steps) / (max_steps - warmup_steps),
    reaching 0 at `max_steps`.  With warmup_steps >= max_steps the run is warm-up only.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max_steps - warmup_steps
    if decay_steps <= 0:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def cosine_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int, max_steps: int) -> LambdaLR:
    """A LambdaLR stepping once per optimizer step (see `cosine_with_warmup`).

    The multiplier is a plain function on purpose: LambdaLR then leaves it out of
    its state dict, so a resumed run follows its own (possibly changed) config.
    """

    def multiplier(step: int) -> float:
        return cosine_with_warmup(step, warmup_steps, max_steps)

    return LambdaLR(optimizer, multiplier)


def restart_from(scheduler: LambdaLR, lr: float) -> None:
    """After loading a scheduler state: use base rate `lr` and set each group's rate
    for the current step exactly as `LambdaLR.step` would have."""
    scheduler.base_lrs = [lr] * len(scheduler.optimizer.param_groups)
    rates = [base * fn(scheduler.last_epoch) for base, fn in zip(scheduler.base_lrs, scheduler.lr_lambdas)]
    for group, rate in zip(scheduler.optimizer.param_groups, rates):
        group["lr"] = rate
    scheduler._last_lr = rates
