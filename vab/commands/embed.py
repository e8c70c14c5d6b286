"""`vab embed INPUT --checkpoint MODEL_DIR --out INDEX_DIR`: audio and video embeddings of clips."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from rich.console import Console

from vab.files import InputGuard
from vab.search import EMBEDDINGS_FILE, INDEX_FILE, Embedder, Index, build_index, is_index_dir, refuse_other_index
from vab.sharding import Shard
from vab.utils import add_batch_size_option, add_device_option, atomic_path, check_writable_dir

EPILOG = """\
examples:
  vab embed data/vggsound --checkpoint models/vab-retrieval --out index/vggsound --split test
  vab embed videos/ --checkpoint models/vab-retrieval --out index/videos
  vab embed manifest.csv --checkpoint models/vab-retrieval --out index/mine
  vab embed videos/ --checkpoint org/vab-retrieval@v1 --out index/videos   # a Hugging Face Hub id

INPUT is an extracted data set (a `vab extract` output: its stored tokens and features are
used), a video file, a folder of videos (searched recursively) or a manifest (csv / jsonl);
media are tokenized and encoded on the fly with the model's codec and frame encoder (the
first model window of each clip).  Writes INDEX_DIR/embeddings.safetensors (audio [N, W],
video [N, W], L2-normalised) and INDEX_DIR/index.json (ids, paths, labels, model).
Files that cannot be used are listed at the end and make the exit code 1.  An INDEX_DIR
that holds an index of other data (another INPUT or --split) or of another model is not
replaced unless --replace is given; re-embedding the same input with the same model is.

Many processes or GPUs: `accelerate launch --num_processes 8 -m vab embed INPUT ...`.  Each
process embeds one contiguous block of the clips into INDEX_DIR/.parts/; the main process
joins the blocks in input order (the index is the one a single process writes) and removes
the parts.
"""

PARTS_DIR = ".parts"


def register(sub, help: str) -> None:
    p = sub.add_parser(
        "embed", help=help,
        description="Embed clips (audio and video separately) with a VAB model.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", metavar="INPUT", help="extracted data set, video, folder of videos or manifest")
    p.add_argument("--checkpoint", required=True,
                   help="model directory (config.yaml + model.safetensors) or Hugging Face Hub id org/name[@revision]")
    p.add_argument("--out", required=True, help="index folder to write")
    p.add_argument("--split", help="only clips of this split (data sets and manifests with splits)")
    add_batch_size_option(p, 16, "clips per model call for data sets (default 16)")
    add_device_option(p, "cpu")
    p.add_argument("--replace", action="store_true",
                   help="replace an index of other data or another model already in INDEX_DIR")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    check_writable_dir(Path(args.out), "the index")  # before any work, not after it
    InputGuard([args.input]).refuse([Path(args.out) / EMBEDDINGS_FILE, Path(args.out) / INDEX_FILE])
    source = str(Path(args.input).expanduser().resolve())
    if not args.replace:
        refuse_other_index(Path(args.out), source, args.split)
    shard = Shard.current()
    embedder = Embedder(args.checkpoint, device=shard.device(args.device), batch_size=args.batch_size)
    if not args.replace:
        refuse_other_index(Path(args.out), source, args.split, embedder)
    index, problems = build_index(args.input, args.checkpoint, split=args.split, device=shard.device(args.device),
                                  batch_size=args.batch_size, console=console, shard=shard, embedder=embedder)
    if shard.world_size > 1:
        index, problems = join_parts(Path(args.out), shard, index, problems)
        if not shard.is_main:
            shard.close()
            return 0
    if index is not None:
        index.source, index.source_split = source, args.split
        index.save(args.out)
        console.print(f"embedded {len(index)} clip(s) -> {args.out}")
    report_problems(console, problems)
    shard.close()
    return 1 if problems or index is None else 0


def join_parts(out: Path, shard, index, problems: list[tuple[str, str]]):
    """Every process writes its block to OUT/.parts/<rank-of-world>/ (atomically; the problem
    list last); after a barrier the main process returns the blocks joined in rank order,
    which is input order, and removes the parts.  Others return their own block."""
    part = out / PARTS_DIR / shard.name
    with atomic_path(part, is_dir=True) as tmp:
        tmp.mkdir(parents=True)
        if index is not None:
            index.save(tmp)
        (tmp / "problems.json").write_text(json.dumps(problems))
    shard.barrier()
    if not shard.is_main:
        return index, problems
    blocks, problems = [], []
    for rank in range(shard.world_size):
        folder = out / PARTS_DIR / type(shard)(rank, shard.world_size).name
        if is_index_dir(folder):
            blocks.append(Index.load(folder))
        problems += [tuple(p) for p in json.loads((folder / "problems.json").read_text())]
    shutil.rmtree(out / PARTS_DIR, ignore_errors=True)
    return (Index.concat(blocks) if blocks else None), problems


def report_problems(console, problems: list[tuple[str, str]]) -> None:
    if problems:
        console.print(f"[red]{len(problems)} input(s) failed:")
        for file, why in problems:
            console.print(f"  {file}: {why}", markup=False, highlight=False, soft_wrap=True)
