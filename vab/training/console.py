"""Console output of a training run (main process only): a rich progress bar on a
terminal and one log line per logging interval everywhere (terminals and log files)."""

from __future__ import annotations

import math
from typing import Mapping

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def format_value(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    magnitude = abs(value)
    if magnitude != 0 and (magnitude < 1e-3 or magnitude >= 1e5):
        return f"{value:.3e}"
    return f"{value:.4g}"


def format_line(step: int, max_steps: int, metrics: Mapping[str, float]) -> str:
    """`step 120/1000  train/loss 2.31  train/lr 1.2e-04 ...` (keys sorted, loss first)."""
    keys = sorted(metrics, key=lambda k: (not k.endswith("/loss"), k))
    return f"step {step}/{max_steps}  " + "  ".join(f"{k} {format_value(metrics[k])}" for k in keys)


class TrainConsole:
    """Context manager; a no-op on processes other than the main one (`enabled=False`)."""

    def __init__(self, enabled: bool, total: int, start: int):
        self.enabled = enabled
        self.console = Console()
        self.progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
            console=self.console,
            disable=not (enabled and self.console.is_terminal),
        )
        self.task = self.progress.add_task("train", total=total, completed=start, status="")

    def __enter__(self) -> "TrainConsole":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, step: int, status: str = "") -> None:
        if self.enabled:
            self.progress.update(self.task, completed=step, status=status)

    def print(self, text: str, style: str | None = None) -> None:
        if self.enabled:
            self.console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)
