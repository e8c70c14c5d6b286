"""Classification evaluation: mAP (macro mean of per-class AP, scikit-learn), top-1 accuracy, per-class CSV.

    python eval/classification.py --checkpoint runs/cls/model data.path=[data/vggsound] \
        --split test --csv per_class.csv --json results.json

`--checkpoint` is a classifier directory written by finetune/classification.py.
Classes without a positive clip in the split have no AP: they are left out of
the mean and their CSV row has ap = nan.  For multi-label data a clip counts as
correct when its top-scoring class is one of its labels.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from vab.cli import run_script
from vab.config import load_config
from vab.finetuning.classification import evaluate_classifier, write_per_class_csv
from vab.training.run import data_paths
from vab.utils import add_batch_size_option, add_device_option, atomic_path, check_output_file


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="classifier directory or Hugging Face Hub id (org/name[@revision])")
    p.add_argument("--split", default="test")
    add_batch_size_option(p, 32)
    add_device_option(p, "cpu")
    p.add_argument("--csv", help="write per-class AP / positives / top-1 recall to this CSV file")
    p.add_argument("--json", help="also write the overall metrics to this JSON file")
    p.set_defaults(overrides=[])
    return p


def print_table(metrics: dict, rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    skipped = sum(1 for r in rows if math.isnan(r["ap"]))
    title = f"classification: {int(metrics['clips'])} clips, {len(rows)} classes"
    if skipped:
        title += f" ({skipped} without positives, left out of mAP)"
    table = Table(title=title)
    table.add_column("mAP", justify="right")
    table.add_column("accuracy", justify="right")
    table.add_row(f"{100 * metrics['mAP']:.2f}", f"{100 * metrics['accuracy']:.2f}")
    Console().print(table)


def evaluate(args: argparse.Namespace) -> int:
    for option, value in (("--csv", args.csv), ("--json", args.json)):
        if value:  # before the evaluation, not after it
            check_output_file(value, option)
    paths = data_paths(load_config(None, args.overrides))
    metrics, rows = evaluate_classifier(args.checkpoint, paths, args.split, args.batch_size, args.device)
    print_table(metrics, rows)
    if args.csv:
        write_per_class_csv(rows, args.csv)
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(metrics, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_script(parser(), evaluate, argv)


if __name__ == "__main__":
    sys.exit(main())
