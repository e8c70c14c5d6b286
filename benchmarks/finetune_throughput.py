"""Fine-tuning throughput: retrieval and classification steps against a pretraining step.

    python benchmarks/finetune_throughput.py                      # tiny and vab-dac-test
    python benchmarks/finetune_throughput.py --presets tiny --steps 30 --batch-size 32

Each preset runs in a fresh subprocess with random weights (geometry as in
`benchmarks/pretrain_throughput.py`, nothing downloaded).  In that one process,
interleaved round by round so that a change of load on the machine hits every
objective alike, it times real optimizer steps (forward, backward, clipping,
AdamW over the parameters the recipe trains) of:

- ``pretrain``: `PretrainObjective` (the reference: all layers, all heads);
- ``retrieval``: `ContrastiveObjective` on `ContrastiveVAB` (two passes through the
  first expert layers; embeddings, expert layers and temperature trained);
- ``classify-audio`` / ``classify-visual`` / ``classify-audio-visual``:
  `ClassificationObjective` on `Classifier`, whole backbone trained;
- ``linear-probe``: audio-visual, head only.

Reported per objective: median step time, clips/s, parameters updated (those that
receive a gradient: a unimodal pass never reaches the upper layers) and the speed
relative to the pretraining step of the same run (ratio > 1 = faster).  The fine-tuning
passes read only the first `expert_layers` layers, so they should be well above 1.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pretrain_throughput import (  # noqa: E402
    DEFAULT_BATCH,
    DEFAULT_STEPS,
    PRESETS,
    build_random_model,
    machine_line,
    per_preset,
    random_batch,
    rss_mb,
    run_preset,
)

OBJECTIVES = ("pretrain", "retrieval", "classify-audio", "classify-visual", "classify-audio-visual", "linear-probe")
CLASSES = 8


def build_objectives(preset: str) -> dict[str, tuple[torch.nn.Module, Callable, Callable[[str], bool]]]:
    """name -> (model, objective, trainable(name)) for every objective of the module docstring;
    each gets its own randomly initialised backbone so optimizer states do not mix."""
    from vab.finetuning.classification_objective import ClassificationObjective
    from vab.finetuning.classifier import Classifier
    from vab.finetuning.contrastive import ContrastiveObjective, ContrastiveVAB
    from vab.training.objective import PretrainObjective

    out = {}
    for name in OBJECTIVES:
        cfg, vab = build_random_model(preset)
        if name == "pretrain":
            out[name] = (vab, PretrainObjective(cfg), lambda _: True)
        elif name == "retrieval":
            model = ContrastiveVAB(vab)
            out[name] = (model, ContrastiveObjective(cfg), model.trainable)
        else:
            mode = "audio-visual" if name == "linear-probe" else name.removeprefix("classify-")
            probe = name == "linear-probe"
            out[name] = (
                Classifier(vab, CLASSES, mode),
                ClassificationObjective("ce", 0.1, float(cfg.train.mixup_prob), float(cfg.train.roll_prob)),
                (lambda n: n.startswith("head.")) if probe else (lambda _: True),
            )
    return out


class Stepper:
    """One optimizer step of one objective: forward, backward, clipping, AdamW."""

    def __init__(self, model: torch.nn.Module, objective: Callable, trainable: Callable[[str], bool], cfg: Any):
        from vab.training.optim import build_adamw

        for name, param in model.named_parameters():
            param.requires_grad_(trainable(name))
        model.train()
        self.model, self.objective, self.clip = model, objective, float(cfg.train.clip_grad)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = build_adamw(model, float(cfg.train.lr), float(cfg.train.weight_decay), cfg.train.betas)
        self.generator = torch.Generator().manual_seed(0)
        self.updated = 0  # parameters that received a gradient (a pass may skip upper layers)

    def __call__(self, batch: dict) -> float:
        t0 = time.perf_counter()
        loss, _ = self.objective(self.model, batch, self.generator)
        loss.backward()
        self.updated = sum(p.numel() for p in self.params if p.grad is not None)
        if self.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - t0


def worker(preset: str, batch_size: int, steps: int, warmup: int) -> dict:
    """Measure every objective of one preset in this (fresh) process."""
    cfg, reference = build_random_model(preset)
    steppers = {name: Stepper(model, objective, trainable, cfg)
                for name, (model, objective, trainable) in build_objectives(preset).items()}
    data_gen = torch.Generator().manual_seed(1)
    for _ in range(warmup):
        for stepper in steppers.values():
            stepper(random_batch(reference, batch_size, CLASSES, data_gen))
    times: dict[str, list[float]] = {name: [] for name in steppers}
    for _ in range(steps):  # round-robin: load changes touch every objective alike
        batch = random_batch(reference, batch_size, CLASSES, data_gen)
        for name, stepper in steppers.items():
            times[name].append(stepper(batch))
    base = statistics.median(times["pretrain"])
    rows = []
    for name, stepper in steppers.items():
        median = statistics.median(times[name])
        rows.append({
            "objective": name,
            "trained_params": stepper.updated,
            "step_median": median,
            "step_min": min(times[name]),
            "clips_per_s": batch_size / median,
            "speed_vs_pretrain": base / median,
        })
    return {"preset": preset, "batch": batch_size, "steps": steps, "rows": rows, "rss_peak_mb": rss_mb(),
            "threads": torch.get_num_threads()}


def print_results(results: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(machine_line())
    for r in results:
        table = Table(title=f"{r['preset']}: batch {r['batch']}, median of {r['steps']} steps, "
                            f"peak RSS {r['rss_peak_mb']:.0f} MB")
        for col in ("objective", "params updated", "step (s)", "clips/s", "vs pretrain step"):
            table.add_column(col, justify="left" if col == "objective" else "right")
        for row in r["rows"]:
            table.add_row(row["objective"], f"{row['trained_params']:,}", f"{row['step_median']:.3f}",
                          f"{row['clips_per_s']:.1f}", f"{row['speed_vs_pretrain']:.2f}x")
        console.print(table)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=list(PRESETS))
    p.add_argument("--batch-size", nargs="*", default=[], help="N for all presets, or preset=N")
    p.add_argument("--steps", nargs="*", default=[], help="timed rounds: N for all presets, or preset=N")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        result = worker(args.worker, int(args.batch_size[0]), int(args.steps[0]), args.warmup)
        Path(args.worker_out).write_text(json.dumps(result))
        return 0
    batch = per_preset(args.batch_size, DEFAULT_BATCH)
    steps = per_preset(args.steps, DEFAULT_STEPS)
    results = [run_preset(preset, batch.get(preset, 2), steps.get(preset, 3), args.warmup, __file__)
               for preset in args.presets]
    print_results(results)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine_line(), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
