"""What pretraining validation measures on the `valid` split (logged as ``valid/<name>``).

* ``acc@<r>/level<k>``, ``acc@<r>``: greedy masked-token accuracy at fixed mask ratios
  :data:`VALID_RATIOS`.  ``acc@0.55`` is the signal a user reads to know whether pretraining
  has learned what to sound yet (:data:`CONTENT_SIGNAL`): over the checkpoints of a run it
  ranked like the class agreement of generated soundtracks on every world measured
  (Spearman 0.99 shapes, 0.94 demo, 0.93 words; docs/BENCHMARKS.md), better than the
  full-mask numbers below, which need no tokens of the clip but follow the loss of the
  speaker-like detail no picture tells.
* ``loss@<r>``: the cross-entropy (nats per masked token) at the same fixed ratios; it ranked
  checkpoints exactly as ``acc@<r>`` on every world measured (issue 30's seventh measurement).
* ``full/level<k>``, ``full``: cross-entropy (nats per token) with every predicted token
  masked, the picture given: the state generation starts from.  (Its greedy accuracy was
  measured too and dropped: nearly constant over a run, 0.454-0.456 on `tunes`, as the
  likeliest token with nothing of the clip given is mostly the same one.)
* ``blind/level<k>``, ``blind``: the same without the picture (the learned null embedding).
* ``picture/level<k>``, ``picture``: ``blind - full``, how many nats per token the picture
  saves: 0 for a model that ignores the picture.  It rises early and then wanders while class
  agreement still climbs (Spearman 0.75 / 0.20 / -0.61 on the three worlds), so it says
  whether the picture is used at all, not how well.

All numbers are per-token means over the whole split, drawn with a fixed generator, so two
validations of the same weights agree exactly and runs are comparable.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

from vab.training.masking import apply_mask, level_mask
from vab.training.objective import masked_correct, prepare_batch, unwrap

VALID_RATIOS = (0.3, 0.55, 0.9)
#: the validation number a user reads for content (printed first in a validation line) and
#: `train.patience` follows; chosen by its rank correlation with class agreement (issue 30)
CONTENT_SIGNAL = "acc@0.55"


@torch.no_grad()
def full_mask_losses(model: torch.nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(summed cross-entropy with the picture ``[Kp]``, the same without it ``[Kp]``, token
    counts ``[Kp]``) with every predicted token of the batch masked (given levels kept)."""
    core = unwrap(model)
    tokens, features, _ = prepare_batch(model, batch)
    ratios = torch.ones(tokens.shape[0], device=tokens.device)
    mask = level_mask(tuple(tokens.shape), ratios, core.given_levels, None, tokens.device)
    masked = apply_mask(tokens, mask, core.mask_id)
    targets = tokens[:, core.given_levels:]
    sums = []
    for drop in (None, torch.ones(tokens.shape[0], dtype=torch.bool, device=tokens.device)):
        logits = model(masked, features, drop)  # [B, Kp, T, V]
        ce = F.cross_entropy(logits.float().flatten(0, 2), targets.flatten(), reduction="none")
        sums.append(ce.view(targets.shape).sum(dim=(0, 2)))
    counts = torch.full_like(sums[0], float(targets.shape[0] * targets.shape[2]))
    return sums[0], sums[1], counts


def pretraining_validation(ratios=VALID_RATIOS, seed: int = 1234) -> Callable[[torch.nn.Module, Any], dict[str, float]]:
    """validate(model, loader) -> the numbers of the module docstring, over every batch of `loader`."""

    def validate(model: torch.nn.Module, loader) -> dict[str, float]:
        core = unwrap(model)
        device = core.codebooks.device
        first = core.given_levels
        out: dict[str, float] = {}
        for ratio in ratios:
            gen = torch.Generator(device=device).manual_seed(seed)
            correct = counts = loss = None
            for batch in loader or []:
                c, n, summed = masked_correct(model, batch, ratio, gen, with_loss=True)
                correct = c if correct is None else correct + c
                counts = n if counts is None else counts + n
                loss = summed if loss is None else loss + summed
            if correct is None:
                return out
            out[f"loss@{ratio}"] = loss.item() / max(counts.sum().item(), 1)
            for k, (c, n) in enumerate(zip(correct.tolist(), counts.tolist())):
                out[f"acc@{ratio}/level{first + k}"] = c / max(n, 1)
            out[f"acc@{ratio}"] = correct.sum().item() / max(counts.sum().item(), 1)
        parts = [full_mask_losses(model, batch) for batch in loader]
        seen, blind, n = (torch.stack(p).sum(dim=0) for p in zip(*parts))
        for k in range(len(n)):
            out[f"full/level{first + k}"] = (seen[k] / n[k]).item()
            out[f"blind/level{first + k}"] = (blind[k] / n[k]).item()
            out[f"picture/level{first + k}"] = ((blind[k] - seen[k]) / n[k]).item()
        out["full"] = (seen.sum() / n.sum()).item()
        out["blind"] = (blind.sum() / n.sum()).item()
        out["picture"] = ((blind.sum() - seen.sum()) / n.sum()).item()
        return out

    return validate
