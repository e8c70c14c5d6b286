"""`vab curate INPUT --checkpoint MODEL_DIR --threshold T --out kept.jsonl`: keep clips whose
sound fits their picture (cosine of their own audio and video embeddings)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
from rich.console import Console

from vab.errors import VabError
from vab.files import InputGuard
from vab.search import Index, build_index, is_dataset_dir, is_index_dir, pair_scores
from vab.utils import add_device_option, atomic_path, check_output_file

EPILOG = """\
examples:
  vab curate data/mine --checkpoint models/vab-retrieval --threshold 0.3 --out kept.jsonl --plot scores.png
  vab curate index/mine --keep-fraction 0.8 --out kept.jsonl        # an index from `vab embed`

INPUT is an extracted data set (with --checkpoint) or an embedding index.  Every clip is
scored by the cosine between its own audio and video embeddings; clips scoring at least
--threshold (or the best --keep-fraction of them) are written to OUT as JSON lines
{"id", "path", "labels", "split", "score"}, best first.  --plot draws the score histogram.
"""


def register(sub, help: str) -> None:
    p = sub.add_parser(
        "curate", help=help,
        description="Score clips by audio-video agreement and write the kept ones as a manifest.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", metavar="INPUT", help="extracted data set or `vab embed` index folder")
    p.add_argument("--checkpoint", help="model directory or Hugging Face Hub id (needed for a data set)")
    rule = p.add_mutually_exclusive_group(required=True)
    rule.add_argument("--threshold", type=float, help="keep clips with cosine >= this")
    rule.add_argument("--keep-fraction", type=float, help="keep this fraction (0-1] of the clips, best scores first")
    p.add_argument("--out", required=True, help="JSONL manifest of the kept clips")
    p.add_argument("--plot", help="histogram PNG of the scores")
    p.add_argument("--split", help="only clips of this split (data sets)")
    add_device_option(p, "cpu")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    if args.keep_fraction is not None and not 0 < args.keep_fraction <= 1:
        raise VabError(f"--keep-fraction must be in (0, 1], got {args.keep_fraction}")

    source = Path(args.input).expanduser()
    outputs = {"--out": args.out, **({"--plot": args.plot} if args.plot else {})}
    guard = InputGuard([source, *(source.glob("*") if source.is_dir() else [])])
    for option, output in outputs.items():  # before embedding, not after
        check_output_file(output, option)
        guard.refuse([Path(output).expanduser()], option)
    if is_index_dir(source):
        index = Index.load(source)
    else:
        if not is_dataset_dir(source):
            raise VabError(f"{source}: neither an extracted data set (meta.yaml) nor an index (index.json)")
        if not args.checkpoint:
            raise VabError(f"{source}: a data set needs --checkpoint MODEL_DIR to be embedded")
        index, _ = build_index(str(source), args.checkpoint, split=args.split, device=args.device, console=console)
    scores = pair_scores(index).tolist()
    threshold = args.threshold if args.threshold is not None else fraction_threshold(scores, args.keep_fraction)
    kept = select(index, scores, threshold, args.keep_fraction)
    write_manifest(Path(args.out), index, scores, kept)
    if args.plot:
        plot_histogram(Path(args.plot), scores, threshold)
    console.print(f"kept {len(kept)} of {len(scores)} clip(s), dropped {len(scores) - len(kept)} "
                  f"(cosine threshold {threshold:.4f}) -> {args.out}")
    return 0


def fraction_threshold(scores: list[float], fraction: float) -> float:
    """The score of the last clip kept when keeping the best `fraction`."""
    count = max(1, math.ceil(fraction * len(scores) - 1e-9))
    return sorted(scores, reverse=True)[count - 1]


def select(index, scores: list[float], threshold: float, fraction: float | None) -> list[int]:
    """Rows kept, best first (with a fraction: exactly that many, ties by index order)."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    if fraction is not None:
        return order[: max(1, math.ceil(fraction * len(scores) - 1e-9))]
    return [i for i in order if scores[i] >= threshold]


def write_manifest(out: Path, index, scores: list[float], kept: list[int]) -> None:
    with atomic_path(out) as tmp:
        with open(tmp, "w") as f:
            for i in kept:
                f.write(json.dumps({
                    "id": index.ids[i], "path": index.paths[i],
                    "labels": index.labels[i] if index.labels else [],
                    "split": index.splits[i] if index.splits else None, "score": float(scores[i]),
                }, allow_nan=False) + "\n")


def plot_histogram(out: Path, scores: list[float], threshold: float) -> None:
    matplotlib.use("Agg")

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(scores, bins=min(50, max(10, len(scores) // 4)), color="tab:blue", alpha=0.8)
    ax.axvline(threshold, color="tab:red", linestyle="--", label=f"threshold {threshold:.3f}")
    ax.set_xlabel("cosine(audio, video) of each clip")
    ax.set_ylabel("clips")
    ax.legend()
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
