"""When to stop: the best value of one validation number and how long ago it was reached.

A run names the validation number that says whether it still improves (``monitor``, higher is
better; pretraining: ``valid/acc@0.55``, masked accuracy at mask ratio 0.55, :mod:`vab.training.validation`).
:class:`Plateau` follows it over validations; with ``patience`` > 0 the engine stops the run once
that many validations in a row brought no new best, and the model the run returns is the one of
the best validation (its weights are kept in RUN/best.safetensors, so a resumed run keeps them).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

BEST_FILE = "best.safetensors"


@dataclass
class Plateau:
    """The best value of `monitor` so far, its step, and the validations since."""

    monitor: str
    patience: int = 0  # validations without a new best before stopping (0: never stop)
    best: float = -math.inf
    best_step: int = -1
    since_best: int = 0

    def update(self, step: int, metrics: dict[str, float]) -> bool:
        """Fold in one validation's `metrics`; True when `monitor` reached a new best (a missing
        or non-finite value counts as no improvement)."""
        value = metrics.get(self.monitor)
        if value is not None and math.isfinite(value) and value > self.best:
            self.best, self.best_step, self.since_best = float(value), int(step), 0
            return True
        self.since_best += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.best_step >= 0 and self.since_best >= self.patience

    def describe(self, step: int) -> str:
        """One line for the console after a validation at `step`."""
        if self.best_step < 0:
            return f"step {step}: no {self.monitor} yet"
        if self.best_step == step:
            return f"step {step}: {self.monitor} {self.best:.4g}, the best so far"
        wait = f" (stopping after {self.patience})" if self.patience > 0 else ""
        return (f"step {step}: {self.monitor} not above its best {self.best:.4g} (step {self.best_step}) "
                f"for {self.since_best} validation(s){wait}")

    def state(self) -> dict:
        """What a checkpoint keeps (JSON-able; -inf as None)."""
        out = asdict(self)
        out["best"] = None if not math.isfinite(self.best) else self.best
        return {k: out[k] for k in ("best", "best_step", "since_best")}

    def load(self, state: dict) -> None:
        best = state.get("best")
        self.best = -math.inf if best is None else float(best)
        self.best_step, self.since_best = int(state.get("best_step", -1)), int(state.get("since_best", 0))
