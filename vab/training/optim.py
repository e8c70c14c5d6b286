"""AdamW with weight decay applied to weight matrices only.

Rule: a trainable parameter is decayed unless its name is in the
`no_weight_decay()` set of the module holding it (timm / open_clip convention;
names relative to that module, any depth: a wrapper around a VAB inherits its
set) or it is not a matrix (fewer than two dimensions larger than 1: scalars,
[D], [1, D]).  The models name their biases, norm scales and learned vectors
([MASK] ``[levels, D]``, null, modality ``[2, D]``: 2-D, yet shrinking them
towards zero only fights their purpose), so linear / attention / FFN weights and
embedding tables are what decays.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def is_decayed(param: torch.Tensor) -> bool:
    """True for genuine matrices: two or more dimensions of size > 1."""
    return sum(size > 1 for size in param.shape) >= 2


def no_weight_decay(model: nn.Module) -> set[str]:
    """Full names of the parameters exempted by the `no_weight_decay()` of `model` or of any
    of its sub-modules."""
    exempt: set[str] = set()
    for prefix, module in model.named_modules():
        if callable(getattr(module, "no_weight_decay", None)):
            exempt.update(f"{prefix}.{n}" if prefix else n for n in module.no_weight_decay())
    return exempt


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups over the parameters with `requires_grad`: [decayed, not decayed].

    Both groups are always present (possibly empty) so optimizer state dicts
    keep the same layout from run to run.  Each group carries `names`.
    """
    exempt = no_weight_decay(model)
    decay: list[tuple[str, nn.Parameter]] = []
    keep: list[tuple[str, nn.Parameter]] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (decay if is_decayed(param) and name not in exempt else keep).append((name, param))
    return [
        {"params": [p for _, p in decay], "names": [n for n, _ in decay], "weight_decay": weight_decay},
        {"params": [p for _, p in keep], "names": [n for n, _ in keep], "weight_decay": 0.0},
    ]


def build_adamw(model: nn.Module, lr: float, weight_decay: float, betas: Sequence[float]) -> torch.optim.AdamW:
    """AdamW over `param_groups(model, weight_decay)`."""
    groups = param_groups(model, weight_decay)
    if not any(group["params"] for group in groups):
        raise ValueError("the model has no trainable parameters")
    return torch.optim.AdamW(groups, lr=lr, betas=(float(betas[0]), float(betas[1])))


def apply_hyperparameters(
    optimizer: torch.optim.Optimizer, lr: float, weight_decay: float, betas: Sequence[float]
) -> None:
    """Re-impose configured hyper-parameters after loading an optimizer state, so a
    resumed run honours e.g. a lowered `train.lr` (the checkpoint stores the old ones)."""
    for index, group in enumerate(optimizer.param_groups):
        group["initial_lr"] = lr
        group["betas"] = (float(betas[0]), float(betas[1]))
        group["weight_decay"] = weight_decay if index == 0 else 0.0
