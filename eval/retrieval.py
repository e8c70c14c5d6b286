"""Audio-visual retrieval evaluation (CAV-MAE protocol): R@1/5/10 and median rank both ways.

    python eval/retrieval.py --checkpoint runs/retrieval/model data.path=[data/vggsound] \
        --split test --per-class 5 --json results.json

Video and audio of each clip are embedded separately (first expert layers,
mean-pooled, L2-normalised); every video queries all audio of the split
(video->audio) and vice versa.  Ranks are 1-based with ties counted
pessimistically (see vab.evaluation.metrics).  --per-class K keeps K clips per class.
"""

from __future__ import annotations

import argparse
import json
import sys

from vab.cli import run_script
from vab.config import load_config
from vab.errors import VabError
from vab.finetuning.contrastive import evaluate_retrieval
from vab.training.run import data_paths
from vab.utils import add_batch_size_option, add_device_option, atomic_path, check_output_file


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True,
                   help="model directory or Hugging Face Hub id org/name[@revision] (vab.load_pretrained)")
    p.add_argument("--split", default="test")
    p.add_argument("--per-class", type=int, default=None, metavar="K", help="evaluate on K clips per class")
    p.add_argument("--seed", type=int, default=0, help="seed of the per-class subset")
    add_batch_size_option(p, 32)
    add_device_option(p, "auto")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.set_defaults(overrides=[])
    return p


def print_table(results: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"retrieval: {results['clips']} clips (chance R@1 = {results['chance']:.4f})")
    table.add_column("direction")
    for key in ("R@1", "R@5", "R@10", "MedR"):
        table.add_column(key, justify="right")
    for direction in ("video->audio", "audio->video"):
        m = results[direction]
        table.add_row(direction, *(f"{100 * m[k]:.1f}" for k in ("R@1", "R@5", "R@10")), f"{m['MedR']:g}")
    Console().print(table)


def evaluate(args: argparse.Namespace) -> int:
    if args.per_class is not None and args.per_class < 1:
        raise VabError(f"--per-class {args.per_class}: must be at least 1")
    if args.json:  # before the evaluation, not after it
        check_output_file(args.json, "--json")
    paths = data_paths(load_config(None, args.overrides))
    results = evaluate_retrieval(
        args.checkpoint, paths, args.split, args.per_class, args.seed, args.batch_size, args.device
    )
    print_table(results)
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(results, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_script(parser(), evaluate, argv)


if __name__ == "__main__":
    sys.exit(main())
